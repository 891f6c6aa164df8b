"""A write project's rows: one prompt to answer a row, twenty to an item."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowlab.client._core import Op
from flowlab.client._errors import ValidationError
from flowlab.client._kinds import ProjectRows, task
from flowlab.client._write import write_task

COLUMNS = ("prompt", "guidance", "reference", "responses", "name")


def _point(raw: Mapping[str, Any], where: str, number: int) -> Op[dict[str, Any]]:
    made = task(raw, where, number, COLUMNS)
    if "prompt" not in made:
        raise ValidationError(
            422,
            f"{where}: a write task has a prompt column (text or a conversation); it has {sorted(raw) or 'none'}.",
            field=where,
        )
    return (yield from write_task(made, where, None))


ROWS = ProjectRows(_point, per_item=20)
