"""Durable storage behind a small protocol: the database is the source of truth for everything but leases
and live counters, and start-up reads back only what live work needs."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

# One write: an SQL statement and its parameters. Statements use SQLite's `?` placeholders; a store for
# another database translates them.
Op = tuple[str, Sequence[Any]]
Row = dict[str, Any]


@dataclass
class Snapshot:
    """What a server needs at start-up, as plain rows: never the history of ended items."""

    keys: list[Row] = field(default_factory=list)
    annotators: list[Row] = field(default_factory=list)
    flows: list[Row] = field(default_factory=list)
    item_counts: dict[str, int] = field(default_factory=dict)  # flow id -> items ever created
    items: list[Row] = field(default_factory=list)  # live items, and ended ones whose final results are unwritten
    votes: list[Row] = field(default_factory=list)  # answers of those items only (any kind), in commit order
    webhooks: list[Row] = field(default_factory=list)


class StoreUnavailable(RuntimeError):
    """The database cannot be written just now. Nothing of the request was kept; the writer keeps trying to
    get back and the request can be retried (a retried answer counts once)."""


class Fenced(StoreUnavailable):
    """This process was declared dead by the others of its cluster (its database session ended) and its flows
    are served elsewhere now: nothing it commits may land any more."""


class StoreRejected(RuntimeError):
    """The database refused one submission (a constraint, a bad statement); the others in its group commit."""


class Store(Protocol):
    degraded: str | None

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def write(self, ops: Sequence[Op], *, retry: bool = False) -> None:
        """Apply ops in one transaction; returns once that transaction is durable."""
        ...

    def submit(self, ops: Sequence[Op], *, retry: bool = False) -> asyncio.Future[None]:
        """Queue ops behind every earlier submission; the future resolves once they are durable.

        With `retry`, the ops are kept and committed once the database is back instead of failing: for writes
        that nobody waits on but that must land (state changes, final results)."""
        ...

    def write_now(self, ops: Sequence[Op]) -> None:
        """Commit synchronously; only for start-up, before anyone is served."""
        ...

    def load(self, *, items: bool = True) -> Snapshot: ...

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Rows of one query, on a connection of its own (never the writer's); blocking, so call it from a
        worker thread."""
        ...

    async def aread(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    def count_votes(self) -> int: ...
