"""The flowlab SDK: sync and async clients over one request-building core."""

from flowlab.client._async import (
    AsyncChatFlow,
    AsyncChatFlowItem,
    AsyncClassifyFlow,
    AsyncClassifyFlowItem,
    AsyncClient,
    AsyncFlow,
    AsyncFlowItem,
    AsyncRlhfFlow,
    AsyncRlhfFlowItem,
)
from flowlab.client._chat import ModelHandle
from flowlab.client._client import (
    ChatFlow,
    ChatFlowItem,
    ClassifyFlow,
    ClassifyFlowItem,
    Client,
    Flow,
    FlowItem,
    RlhfFlow,
    RlhfFlowItem,
)

__all__ = [
    "AsyncChatFlow",
    "AsyncChatFlowItem",
    "AsyncClassifyFlow",
    "AsyncClassifyFlowItem",
    "AsyncClient",
    "AsyncFlow",
    "AsyncFlowItem",
    "AsyncRlhfFlow",
    "AsyncRlhfFlowItem",
    "ChatFlow",
    "ChatFlowItem",
    "ClassifyFlow",
    "ClassifyFlowItem",
    "Client",
    "Flow",
    "FlowItem",
    "ModelHandle",
    "RlhfFlow",
    "RlhfFlowItem",
]
