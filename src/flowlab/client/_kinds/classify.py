"""A labelling project's rows: one datapoint a row, a hundred to an item."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowlab.client import _core as core
from flowlab.client._core import Op
from flowlab.client._errors import ValidationError
from flowlab.client._kinds import ProjectRows, cells, metadata, text


def _point(raw: Mapping[str, Any], where: str, number: int) -> Op[dict[str, Any]]:
    row = cells(raw, where)
    task = row.pop("id", None)
    context = text(row.pop("context", None), "context", where)
    field = next((k for k in ("datapoint", "text", "url", "path") if k in row), None)
    if field is None:
        raise ValidationError(
            422,
            f"{where}: a labelling task has a datapoint (or text, url, path) column; it has {sorted(raw) or 'none'}.",
            field=where,
        )
    given = row.pop(field)
    content = {field: given} if field in ("text", "path") else given
    point = yield from core._datapoint(content, where, text_only=field == "text")
    point["id"] = str(task if task is not None else number)
    if context is not None:
        point["context"] = context
    meta = metadata(row, where)
    if meta:
        point["private_metadata"] = meta
    return point


ROWS = ProjectRows(_point, per_item=100)
