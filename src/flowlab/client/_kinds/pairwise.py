"""A ranking project's rows: one comparison task (one item) a row."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowlab.client._core import Op
from flowlab.client._kinds import ProjectRows, ranked_item


def _item(raw: Mapping[str, Any], where: str, number: int) -> Op[dict[str, Any]]:
    return (yield from ranked_item(raw, where, 2, "pair"))


ROWS = ProjectRows(_item)
