"""An RLHF project's rows: one task (a prompt and its responses) a row, twenty to an item."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowlab.client import _core as core
from flowlab.client._core import Op
from flowlab.client._kinds import ProjectRows, task


def _point(raw: Mapping[str, Any], where: str, number: int) -> Op[dict[str, Any]]:
    return (yield from core.rlhf_task(task(raw, where, number, ("prompt", "responses", "name")), where))


ROWS = ProjectRows(_point, per_item=20)
