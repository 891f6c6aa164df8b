"""Which item an annotator is served next; the question within it is the item's task kind's to choose."""

from __future__ import annotations

from collections.abc import Iterable

from flowlab.server import lifecycle
from flowlab.server.model import ItemRecord


def choose_item(items: Iterable[ItemRecord], now: float, owner: str | None) -> ItemRecord | None:
    """The item to serve next: of those that can take another lease (and belong to `owner`, unless None), the
    one furthest below its minimum and nearest its deadline."""
    best: ItemRecord | None = None
    best_key: tuple[int, float, int] | None = None
    for item in items:
        if (owner is None or item.flow.owner == owner) and lifecycle.can_serve(item, now):
            key = lifecycle.serve_priority(item)
            if best_key is None or key < best_key:
                best, best_key = item, key
    return best


def ranked_items(items: Iterable[ItemRecord], now: float, owner: str | None) -> list[ItemRecord]:
    """Every item that can take another lease, in the order `choose_item` would pick them."""
    ok = [i for i in items if (owner is None or i.flow.owner == owner) and lifecycle.can_serve(i, now)]
    return sorted(ok, key=lifecycle.serve_priority)
