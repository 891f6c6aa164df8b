"""Chat items: a chat item's results are RLHF results with the flow's models as every task's responses, so it
draws the RLHF view's figures; its own entry words its thresholds and settings."""

from __future__ import annotations

from typing import Any

from flowlab_widgets._common import esc
from flowlab_widgets.kinds.rlhf import RlhfView

__all__ = ["ChatView"]


class ChatView(RlhfView):
    """Annotated conversations with the flow's models: ratings of each model's replies, how often its branch
    was chosen, the preference strength. Thresholds count conversations per task."""

    kind = "chat"
    unit = "conversations"
    caption = (
        '<span class="flowlab-caption" style="color:#555">A chat item has no win-loss matrix: each task collects '
        "annotated conversations, summarised per model.</span>"
    )

    @classmethod
    def settings(cls, config: Any) -> list[str]:
        spec = getattr(config, "chat", None)
        if spec is None:
            return []
        return [f"models: {esc(', '.join(m.name for m in spec.models))}", f"up to {spec.max_turns} turn(s)"]
