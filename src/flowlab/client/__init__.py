"""The flowlab SDK: sync and async clients over one request-building core."""

from flowlab.client._async import AsyncClassifyFlow, AsyncClassifyFlowItem, AsyncClient, AsyncFlow, AsyncFlowItem
from flowlab.client._client import ClassifyFlow, ClassifyFlowItem, Client, Flow, FlowItem

__all__ = [
    "AsyncClassifyFlow",
    "AsyncClassifyFlowItem",
    "AsyncClient",
    "AsyncFlow",
    "AsyncFlowItem",
    "ClassifyFlow",
    "ClassifyFlowItem",
    "Client",
    "Flow",
    "FlowItem",
]
