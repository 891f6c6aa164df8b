"""Export formats: preference pairs (prompt / chosen / rejected) and RLHF task records (messages + annotations)."""

from flowlab.formats._records import preference_pairs, rlhf_task

__all__ = ["preference_pairs", "rlhf_task"]
