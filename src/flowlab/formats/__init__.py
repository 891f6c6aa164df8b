"""Export formats: preference pairs (prompt / chosen / rejected), RLHF task records (threads, turns, messages and
annotations) and the rows TRL's trainers read (preference, prompt-completion, unpaired preference)."""

from flowlab.formats._chat import branch_path, chat_records
from flowlab.formats._demonstrations import (
    best_demonstrations,
    demonstration_records,
    demonstration_rows,
    demonstration_sft_rows,
)
from flowlab.formats._records import acceptability_kto_rows, preference_pairs, rlhf_task
from flowlab.formats._rlhf import kto_rows, preference_rows, rlhf_records, sft_rows

__all__ = [
    "acceptability_kto_rows",
    "best_demonstrations",
    "branch_path",
    "chat_records",
    "demonstration_records",
    "demonstration_rows",
    "demonstration_sft_rows",
    "kto_rows",
    "preference_pairs",
    "preference_rows",
    "rlhf_records",
    "rlhf_task",
    "sft_rows",
]
