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
    AsyncWriteFlow,
    AsyncWriteFlowItem,
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
    WriteFlow,
    WriteFlowItem,
)
from flowlab.client._evals import AsyncEval, Eval

__all__ = [
    "AsyncChatFlow",
    "AsyncChatFlowItem",
    "AsyncClassifyFlow",
    "AsyncClassifyFlowItem",
    "AsyncClient",
    "AsyncEval",
    "AsyncFlow",
    "AsyncFlowItem",
    "AsyncRlhfFlow",
    "AsyncRlhfFlowItem",
    "AsyncWriteFlow",
    "AsyncWriteFlowItem",
    "ChatFlow",
    "ChatFlowItem",
    "ClassifyFlow",
    "ClassifyFlowItem",
    "Client",
    "Eval",
    "Flow",
    "FlowItem",
    "ModelHandle",
    "RlhfFlow",
    "RlhfFlowItem",
    "WriteFlow",
    "WriteFlowItem",
]
