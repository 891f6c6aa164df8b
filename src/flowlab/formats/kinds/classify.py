"""What a classify project delivers: a row per datapoint (majority, weighted value, confidence) and every label."""

from __future__ import annotations

from typing import Any

from flowlab import schemas
from flowlab.formats._deliverable import Deliverable, ExportedItem, Made
from flowlab.formats._records import _content as content


def _results(it: ExportedItem, made: Made) -> list[dict[str, Any]]:
    results: schemas.ClassifyResults = it.results
    return [
        {
            "task_id": d.key,
            "item_id": it.detail.status.id,
            "content": content(d),
            "context": d.context or it.detail.status.context,
            "majority": r.majority_value,
            "weighted": r.weighted_value,
            "confidence": r.confidence,
            "responses": r.response_count,
            "distribution": r.distribution,
            "metadata": d.private_metadata or {},
        }
        for d, r in zip(it.detail.datapoints, results.datapoints, strict=True)
    ]


def _labels(it: ExportedItem, made: Made) -> list[dict[str, Any]]:
    return [
        {
            "task_id": it.detail.datapoints[a.datapoint].key,
            "item_id": it.detail.status.id,
            "annotator_id": a.annotator_id,
            "value": a.value,
            "created_at": a.created_at,
        }
        for a in it.answers
    ]


DELIVERABLE = Deliverable(
    results=schemas.ClassifyResults,
    answers=schemas.Label,
    formats={"results": _results, "labels": _labels},
)
