"""The in-memory model: flows, items, leases. The hot path reads and writes only this; the store makes it durable."""

from __future__ import annotations

import asyncio
import random
from collections import deque
from typing import Any

import msgspec
import numpy as np

from flowlab import schemas
from flowlab.schemas import STATE_RANK


class FlowConfig(msgspec.Struct):
    """A flow's settings. Items keep a copy taken when they are created."""

    name: str
    instruction: str
    max_response_threshold: int
    min_response_threshold: int
    allow_ties: bool = False
    pair_selection: schemas.PairSelection = "uniform"
    lease_seconds: float = 60.0
    drain_seconds: float | None = None
    render_markdown: bool = False
    gold_rate: float = 0.1
    validation_pairs: list[schemas.ValidationPair] = []
    config_version: int = 1


class Signal:
    """Wakes every coroutine waiting on it; costs nothing when nobody waits."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event: asyncio.Event | None = None

    def fire(self) -> None:
        if self._event is not None:
            self._event.set()
            self._event = None

    async def wait(self, timeout: float) -> bool:
        if self._event is None:
            self._event = asyncio.Event()
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
            return True
        except TimeoutError:
            return False


class FlowRecord:
    __slots__ = ("changed", "config", "created_at", "id", "items", "owner", "updated_at")

    def __init__(self, id: str, owner: str, config: FlowConfig, created_at: float, updated_at: float) -> None:
        self.id = id
        self.owner = owner
        self.config = config
        self.created_at = created_at
        self.updated_at = updated_at
        self.items: list[ItemRecord] = []
        self.changed = Signal()

    @property
    def version(self) -> int:
        # Built only from things that grow and survive a restart (config edits, items, their versions), so a
        # client's `since` stays meaningful across restarts.
        return self.config.config_version + len(self.items) + sum(i.version for i in self.items)

    def touch(self) -> None:
        self.changed.fire()


class Lease:
    """A task out with an annotator: one pair, shown in order (a, b), answerable once until `expires_at`."""

    __slots__ = ("a", "annotator_id", "b", "expires_at", "gold", "item", "task_id")

    def __init__(
        self,
        task_id: str,
        item: ItemRecord,
        a: int,
        b: int,
        annotator_id: str,
        expires_at: float,
        gold: schemas.ValidationPair | None = None,
    ) -> None:
        self.task_id = task_id
        self.item = item
        self.a = a
        self.b = b
        self.annotator_id = annotator_id
        self.expires_at = expires_at
        self.gold = gold


class PairQueue:
    """Uniform pairs in rounds: each round is a random matching that shows every datapoint once."""

    __slots__ = ("_queue", "_rng", "n")

    def __init__(self, n: int, rng: random.Random) -> None:
        self.n = n
        self._rng = rng
        self._queue: deque[tuple[int, int]] = deque()

    def next_pair(self) -> tuple[int, int]:
        if not self._queue:
            self._refill()
        return self._queue.popleft()

    def defer(self, pair: tuple[int, int]) -> None:
        """Serve `pair` again, but after at least one fresh round."""
        if len(self._queue) < 2:
            self._refill()
        self._queue.append(pair)

    def _refill(self) -> None:
        order = list(range(self.n))
        self._rng.shuffle(order)
        pairs = [(order[i], order[i + 1]) for i in range(0, self.n - 1, 2)]
        if self.n % 2:
            last = order[-1]
            other = self._rng.choice(order[:-1])
            pairs.append((last, other))
        self._queue.extend(pairs)


class ItemRecord:
    __slots__ = (
        "active_queue",
        "changed",
        "config",
        "context",
        "context_assets",
        "created_at",
        "datapoints",
        "deadline",
        "ended_at",
        "fit",
        "fit_version",
        "flow",
        "id",
        "keys",
        "leases",
        "pair_queue",
        "private_metadata",
        "reason",
        "requeue",
        "started_at",
        "state",
        "ttl",
        "vote_info",
        "votes",
        "wins",
    )

    def __init__(
        self,
        *,
        id: str,
        flow: FlowRecord,
        config: FlowConfig,
        datapoints: list[schemas.Datapoint],
        context: str | None,
        context_assets: list[schemas.ContextAsset],
        private_metadata: dict[str, Any] | None,
        ttl: float,
        created_at: float,
        rng: random.Random,
        state: str = "Pending",
        started_at: float | None = None,
        ended_at: float | None = None,
        reason: str | None = None,
    ) -> None:
        self.id = id
        self.flow = flow
        self.config = config
        self.datapoints = datapoints
        self.keys = [d.key for d in datapoints]
        self.context = context
        self.context_assets = context_assets
        self.private_metadata = private_metadata
        self.ttl = ttl
        self.created_at = created_at
        self.deadline = created_at + ttl
        self.state = state
        self.started_at = started_at
        self.ended_at = ended_at
        self.reason = reason
        n = len(datapoints)
        self.votes: list[tuple[int, int, int]] = []
        self.vote_info: list[tuple[str, str, float]] = []  # task_id, annotator_id, created_at
        self.wins = np.zeros((n, n), dtype=np.float64)
        self.leases: dict[str, Lease] = {}
        self.requeue: deque[tuple[int, int]] = deque()
        self.active_queue: deque[tuple[int, int]] = deque()
        self.pair_queue = PairQueue(n, rng)
        self.fit: Any = None
        self.fit_version = -1
        self.changed = Signal()

    @property
    def response_count(self) -> int:
        return len(self.votes)

    @property
    def leases_out(self) -> int:
        return len(self.leases)

    @property
    def version(self) -> int:
        # Votes and states only grow, so this does too; a subscriber's vote position is version // 8.
        return 8 * len(self.votes) + STATE_RANK[self.state]

    def add_vote(self, winner: int, loser: int, tie: bool, task_id: str, annotator_id: str, at: float) -> None:
        self.votes.append((winner, loser, int(tie)))
        self.vote_info.append((task_id, annotator_id, at))
        if tie:
            self.wins[winner, loser] += 0.5
            self.wins[loser, winner] += 0.5
        else:
            self.wins[winner, loser] += 1.0

    def touch(self) -> None:
        self.changed.fire()
        self.flow.touch()
