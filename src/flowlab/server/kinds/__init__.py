"""Task kinds: what an annotator is asked, how an answer is checked, and how answers aggregate.

The lifecycle (TTL, drain, thresholds), leases, the scheduler, events and storage are shared by every kind;
a kind is one module implementing `TaskKind`. The service calls a kind at these points only:

    new_tally   an item is created (or restored): make its compact live aggregate
    replay      at start-up, count a live item's durable answers again
    full / enough / room / shortfall    the thresholds, in the kind's own unit, for the shared lifecycle
    ask         an annotator is served this item: the question (and maybe a gold question) to lease
    closed      a lease of the item ended, answered or not
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
    from flowlab.server.model import FlowConfig, ItemRecord, Lease
    from flowlab.server.store import Op, Row


class Refusal(Exception):
    """An answer that cannot count, with the code and sentence the annotator gets."""

    def __init__(self, code: str, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.field = field  # the part of the answer that is wrong, when it is not the choice itself


class TaskKind(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def min_datapoints(self) -> int: ...

    @property
    def answers_table(self) -> str:
        """The table its answers are stored in, one row each, with `task_id`, `item_id`, `annotator_id`."""
        ...

    def check_config(self, cfg: FlowConfig) -> None:
        """Refuse (Invalid, naming the field) a flow config this kind cannot serve."""
        ...

    def new_tally(self, item: ItemRecord, seed: float) -> Any: ...

    def replay(self, item: ItemRecord, rows: list[Row]) -> None: ...

    # Thresholds, in the kind's own unit (votes per item, answers per datapoint, ...); leases out count.
    def full(self, item: ItemRecord) -> bool: ...

    def enough(self, item: ItemRecord) -> bool: ...

    def room(self, item: ItemRecord) -> bool: ...

    def shortfall(self, item: ItemRecord) -> int: ...

    def ask(self, item: ItemRecord, rng: random.Random, annotator_id: str) -> tuple[Any, Any]:
        """(question, gold): a question for the item, (None, gold) for a gold question, or (None, None) when
        the item has nothing for this annotator."""
        ...

    def closed(self, lease: Lease) -> None:
        """A lease of this item ended (answered or not)."""
        ...

    def task_view(self, lease: Lease, rng: random.Random, now: float) -> schemas.Task: ...

    def check(self, lease: Lease, answer: schemas.Answer) -> Any: ...

    def answer_ops(self, lease: Lease, checked: Any, annotator_id: str, now: float) -> list[Op]: ...

    def count(self, lease: Lease, checked: Any) -> None: ...

    def release(self, lease: Lease, *, defer: bool) -> None: ...

    async def results(self, item: ItemRecord) -> Any:
        """Live results: the kind's own results struct (`ItemResults` for pairs, `ClassifyResults`, ...)."""
        ...

    def matrix(self, item: ItemRecord) -> schemas.WinLossMatrix: ...

    def delta(self, item: ItemRecord, start: int, stop: int) -> list[tuple[int, int, int]]: ...

    def snapshot(self, item: ItemRecord) -> list[list[float]]: ...

    def final(self, item: ItemRecord) -> tuple[Any, schemas.WinLossMatrix | None]: ...

    def votes(self, rows: list[Row]) -> list[Any]:
        """Stored answers as the API returns them."""
        ...


def kind_of(name: str) -> TaskKind:
    from flowlab.server.kinds.chat import CHAT
    from flowlab.server.kinds.classify import CLASSIFY
    from flowlab.server.kinds.pairwise import PAIRWISE
    from flowlab.server.kinds.rlhf import RLHF

    kinds: dict[str, TaskKind] = {PAIRWISE.name: PAIRWISE, CLASSIFY.name: CLASSIFY, RLHF.name: RLHF, CHAT.name: CHAT}
    try:
        return kinds[name]
    except KeyError:
        raise ValueError(f"unknown task kind {name!r}; this server knows {sorted(kinds)}") from None
