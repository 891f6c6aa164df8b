"""flowlab: keep real humans in the RLHF loop."""

__version__ = "0.1.0"

from flowlab.client import (
    AsyncClassifyFlow,
    AsyncClassifyFlowItem,
    AsyncClient,
    AsyncFlow,
    AsyncFlowItem,
    ClassifyFlow,
    ClassifyFlowItem,
    Client,
    Flow,
    FlowItem,
)
from flowlab.client._errors import (
    APIError,
    AuthError,
    Conflict,
    ConnectError,
    FlowlabError,
    NotFound,
    Timeout,
    Unavailable,
    ValidationError,
)
from flowlab.client._models import (
    ClassifyDatapointResult,
    ClassifyFlowItemResult,
    FlowItemResult,
    FlowItemState,
    FlowItemStatus,
)

__all__ = [
    "APIError",
    "AsyncClassifyFlow",
    "AsyncClassifyFlowItem",
    "AsyncClient",
    "AsyncFlow",
    "AsyncFlowItem",
    "AuthError",
    "ClassifyDatapointResult",
    "ClassifyFlow",
    "ClassifyFlowItem",
    "ClassifyFlowItemResult",
    "Client",
    "Conflict",
    "ConnectError",
    "Flow",
    "FlowItem",
    "FlowItemResult",
    "FlowItemState",
    "FlowItemStatus",
    "FlowlabError",
    "NotFound",
    "Timeout",
    "Unavailable",
    "ValidationError",
    "__version__",
]
