"""Durable storage behind a small protocol: the in-memory model is rebuilt from it at start-up."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

# One write: an SQL statement and its parameters. Statements use SQLite's `?` placeholders; a store for
# another database translates them.
Op = tuple[str, Sequence[Any]]


@dataclass
class Snapshot:
    """Everything a server needs to rebuild its in-memory state, as plain rows."""

    keys: list[dict[str, Any]] = field(default_factory=list)
    annotators: list[dict[str, Any]] = field(default_factory=list)
    flows: list[dict[str, Any]] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)
    votes: list[dict[str, Any]] = field(default_factory=list)
    gold_answers: list[dict[str, Any]] = field(default_factory=list)
    media: list[dict[str, Any]] = field(default_factory=list)


class StoreFailed(RuntimeError):
    """A commit failed; the server stops accepting writes rather than acknowledge anything it lost."""


class Store(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def write(self, ops: Sequence[Op]) -> None:
        """Apply ops in one transaction; returns once that transaction is durable."""
        ...

    def submit(self, ops: Sequence[Op]) -> asyncio.Future[None]:
        """Queue ops behind every earlier submission; the future resolves once they are durable."""
        ...

    def write_now(self, ops: Sequence[Op]) -> None:
        """Commit synchronously; only for start-up, before anyone is served."""
        ...

    def load(self) -> Snapshot: ...

    def count_votes(self) -> int: ...
