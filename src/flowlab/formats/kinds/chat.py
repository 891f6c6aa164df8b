"""What a chat project delivers: a row per task (RLHF results, the flow's models as the responses), seed-001
records (a thread per branch) and every conversation as stored."""

from __future__ import annotations

from typing import Any

from flowlab import schemas
from flowlab.formats._chat import chat_records
from flowlab.formats._deliverable import Deliverable, ExportedItem, Made
from flowlab.formats.kinds.rlhf import answers_as_stored, task_results


def _records(it: ExportedItem, made: Made) -> list[dict[str, Any]]:
    return chat_records(
        it.detail.datapoints,
        it.answers,
        item_id=it.detail.status.id,
        spec=made.flow.chat or schemas.ChatSpec(),
        contributors=made.contributors,
        metadata={"flow_id": made.flow.id, "instruction": it.detail.status.instruction},
    )


DELIVERABLE = Deliverable(
    results=schemas.RlhfResults,
    answers=schemas.Conversation,
    formats={"results": task_results, "records": _records, "conversations": answers_as_stored},
    names_contributors=True,
)
