"""A chat project's rows: one conversation to start from a row, twenty to an item."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowlab.client._chat import chat_task
from flowlab.client._core import Op
from flowlab.client._kinds import ProjectRows, task


def _point(raw: Mapping[str, Any], where: str, number: int) -> Op[dict[str, Any]]:
    yield from ()  # an op like the other kinds' rows, though a chat task has no files to upload
    return chat_task(task(raw, where, number, ("messages", "guidance", "name")), where)


ROWS = ProjectRows(_point, per_item=20)
