"""What an RLHF project delivers: a row per task (ratings per response, choices, Likert, rewrites), seed-001
records, TRL's preference, SFT and KTO rows, and every annotation as stored."""

from __future__ import annotations

from typing import Any

from flowlab import schemas
from flowlab.formats._deliverable import Deliverable, ExportedItem, Made, plain
from flowlab.formats._rlhf import kto_rows, preference_rows, rlhf_records, sft_rows


def task_results(it: ExportedItem, made: Made) -> list[dict[str, Any]]:
    """A row per task of RLHF results (chat items' results are RLHF results too)."""
    results: schemas.RlhfResults = it.results
    return [{"task_id": t.key, "item_id": it.detail.status.id, **plain(t)} for t in results.tasks]


def answers_as_stored(it: ExportedItem, made: Made) -> list[dict[str, Any]]:
    """Every answer as stored, with the key of the task it answers."""
    keys = [d.key for d in it.detail.datapoints]
    return [{"item_id": it.detail.status.id, "task_key": keys[a.datapoint], **plain(a)} for a in it.answers]


def _spec(made: Made) -> schemas.RlhfSpec:
    return made.flow.rlhf or schemas.RlhfSpec()


def _records(it: ExportedItem, made: Made) -> list[dict[str, Any]]:
    return rlhf_records(
        it.detail.datapoints,
        it.answers,
        item_id=it.detail.status.id,
        spec=_spec(made),
        contributors=made.contributors,
        metadata={"flow_id": made.flow.id, "instruction": it.detail.status.instruction},
    )


DELIVERABLE = Deliverable(
    results=schemas.RlhfResults,
    answers=schemas.Annotation,
    formats={
        "results": task_results,
        "records": _records,
        "preference": lambda it, made: preference_rows(it.detail.datapoints, it.answers, spec=_spec(made)),
        "sft": lambda it, made: sft_rows(it.detail.datapoints, it.answers, spec=_spec(made)),
        "kto": lambda it, made: kto_rows(it.detail.datapoints, it.answers, spec=_spec(made)),
        "annotations": answers_as_stored,
    },
    names_contributors=True,
)
