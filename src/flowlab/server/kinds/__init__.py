"""Task kinds: what an annotator is asked, how an answer is checked, and how answers aggregate.

The lifecycle (TTL, drain, thresholds), leases, the scheduler, events and storage are shared by every kind;
a kind is one module implementing `TaskKind`. The service calls a kind at these points only:

    new_tally   an item is created (or restored): make its compact live aggregate
    replay      at start-up, count a live item's durable answers again
    ask         an annotator is served this item: the question (and maybe a gold question) to lease
    task_view   the task as the annotator sees it
    check       an answer arrived: validate it against the lease, or raise a refusal
    answer_ops  the rows that make a checked answer durable
    count       the answer is durable: add it to the tally
    release     a lease ended unanswered: ask its question again (now, or after fresh ones)
    results / matrix / delta     live reads
    final       the item ended: its record for the database, read back for every later request
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any, Protocol

from flowlab import schemas

if TYPE_CHECKING:
    from flowlab.server.model import ItemRecord, Lease
    from flowlab.server.store import Op, Row


class Refusal(Exception):
    """An answer that cannot count, with the code and sentence the annotator gets."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class Question(Protocol):
    """What one lease asks; a kind's own type."""


class TaskKind(Protocol):
    name: str

    def new_tally(self, item: ItemRecord, seed: float) -> Any: ...

    def replay(self, item: ItemRecord, rows: list[Row]) -> None: ...

    def ask(self, item: ItemRecord, rng: random.Random) -> tuple[Any, Any]:
        """(question, gold): a question for the item, or (None, gold) for a gold question."""
        ...

    def task_view(self, lease: Lease, rng: random.Random, now: float) -> schemas.Task: ...

    def check(self, lease: Lease, answer: schemas.Answer) -> Any: ...

    def answer_ops(self, lease: Lease, checked: Any, annotator_id: str, now: float) -> list[Op]: ...

    def count(self, lease: Lease, checked: Any) -> None: ...

    def release(self, lease: Lease, *, defer: bool) -> None: ...

    async def results(self, item: ItemRecord) -> schemas.ItemResults: ...

    def matrix(self, item: ItemRecord) -> schemas.WinLossMatrix: ...

    def delta(self, item: ItemRecord, start: int, stop: int) -> list[tuple[int, int, int]]: ...

    def snapshot(self, item: ItemRecord) -> list[list[float]]: ...

    def final(self, item: ItemRecord) -> tuple[schemas.ItemResults, schemas.WinLossMatrix]: ...

    def votes(self, rows: list[Row]) -> list[schemas.Vote]: ...


def kind_of(name: str) -> TaskKind:
    from flowlab.server.kinds.pairwise import PAIRWISE

    kinds: dict[str, TaskKind] = {PAIRWISE.name: PAIRWISE}
    try:
        return kinds[name]
    except KeyError:
        raise ValueError(f"unknown task kind {name!r}; this server knows {sorted(kinds)}") from None
