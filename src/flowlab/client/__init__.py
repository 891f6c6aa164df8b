"""The flowlab SDK: sync and async clients over one request-building core."""

from flowlab.client._async import AsyncClient, AsyncFlow, AsyncFlowItem
from flowlab.client._client import Client, Flow, FlowItem

__all__ = ["AsyncClient", "AsyncFlow", "AsyncFlowItem", "Client", "Flow", "FlowItem"]
