"""What a write project delivers: a row per demonstration (prompt, demonstration, author, seconds), TRL's SFT
rows, seed-001 records (each demonstration a response with source_id "human:<annotator id>"), and every
demonstration as stored."""

from __future__ import annotations

from typing import Any

from flowlab import schemas
from flowlab.formats._deliverable import Deliverable, ExportedItem, Made
from flowlab.formats._demonstrations import demonstration_records, demonstration_rows, demonstration_sft_rows
from flowlab.formats.kinds.rlhf import answers_as_stored


def _rows(it: ExportedItem, made: Made) -> list[dict[str, Any]]:
    return demonstration_rows(it.detail.datapoints, it.answers, item_id=it.detail.status.id)


def _records(it: ExportedItem, made: Made) -> list[dict[str, Any]]:
    return demonstration_records(
        it.detail.datapoints,
        it.answers,
        item_id=it.detail.status.id,
        contributors=made.contributors,
        metadata={"flow_id": made.flow.id, "instruction": it.detail.status.instruction},
    )


DELIVERABLE = Deliverable(
    results=schemas.WriteResults,
    answers=schemas.Demonstration,
    formats={
        "demonstrations": _rows,
        "sft": lambda it, made: demonstration_sft_rows(it.detail.datapoints, it.answers),
        "records": _records,
        "answers": answers_as_stored,
    },
    names_contributors=True,
)
