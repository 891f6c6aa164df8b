"""Which item an annotator is served next; the question within it is the item's task kind's to choose."""

from __future__ import annotations

from collections.abc import Iterable

from flowlab.server import lifecycle
from flowlab.server.model import ItemRecord


def open_to(item: ItemRecord, owner: str | None, audience: str | None) -> bool:
    """Whether an annotator of `owner`'s (None: anyone's) who belongs to `audience` may be served the item. A flow
    that names audiences serves their members only; one that names none serves the annotators its key made, never
    people who enrolled through a link (a link reaches only the flows of its audience)."""
    if owner is not None and item.flow.owner != owner:
        return False
    allowed = item.flow.config.audiences
    return audience in allowed if allowed else audience is None


def choose_item(
    items: Iterable[ItemRecord], now: float, owner: str | None, audience: str | None = None
) -> ItemRecord | None:
    """The item to serve next: of those that can take another lease and are open to the annotator (`open_to`),
    the one furthest below its minimum and nearest its deadline."""
    best: ItemRecord | None = None
    best_key: tuple[int, float, int] | None = None
    for item in items:
        if open_to(item, owner, audience) and lifecycle.can_serve(item, now):
            key = lifecycle.serve_priority(item)
            if best_key is None or key < best_key:
                best, best_key = item, key
    return best


def ranked_items(
    items: Iterable[ItemRecord], now: float, owner: str | None, audience: str | None = None
) -> list[ItemRecord]:
    """Every item that can take another lease, in the order `choose_item` would pick them."""
    ok = [i for i in items if open_to(i, owner, audience) and lifecycle.can_serve(i, now)]
    return sorted(ok, key=lifecycle.serve_priority)
