"""A listwise project's rows: one ranking task (one item, its datapoints shown k at a time) a row."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowlab.client._core import Op
from flowlab.client._kinds import ProjectRows, ranked_item


def _item(raw: Mapping[str, Any], where: str, number: int) -> Op[dict[str, Any]]:
    return (yield from ranked_item(raw, where, 3, "listwise ranking"))


ROWS = ProjectRows(_item)
