"""Which task an annotator gets next: the item, the pair within it, and now and then a gold pair."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from flowlab import ranking, schemas
from flowlab.server import lifecycle
from flowlab.server.model import ItemRecord

ACTIVE_BATCH = 16  # pairs chosen per fit in active mode


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


def next_pair(item: ItemRecord, rng: random.Random, fit: Callable[[ItemRecord], Any]) -> tuple[int, int]:
    """Pairs whose lease expired come first; then covering rounds (uniform) or the ranking's active choice."""
    if item.requeue:
        return item.requeue.popleft()
    if item.config.pair_selection != "active":
        return item.pair_queue.next_pair()
    if not item.active_queue:
        # A small batch per fit, so a busy item refits once per batch rather than once per lease; pairs out on
        # lease count as pending so the batch does not repeat them.
        out = np.array([(lease.a, lease.b) for lease in item.leases.values()], dtype=np.int64).reshape(-1, 2)
        batch = max(2, min(ACTIVE_BATCH, len(item.keys) // 2))
        pairs = ranking.select_pairs(
            item.wins, batch, fit=fit(item), rng=np.random.default_rng(rng.getrandbits(32)), pending=out
        )
        item.active_queue.extend((int(a), int(b)) for a, b in pairs)
    return item.active_queue.popleft()


def pick_gold(pairs: list[schemas.ValidationPair], rng: random.Random) -> schemas.ValidationPair:
    """A gold pair in a random order, its answer given for the order shown."""
    pair = rng.choice(pairs)
    if rng.random() < 0.5:
        return pair
    flipped = {"a": "b", "b": "a"}.get(pair.answer, pair.answer)
    return schemas.ValidationPair(a=pair.b, b=pair.a, answer=flipped)  # type: ignore[arg-type]
