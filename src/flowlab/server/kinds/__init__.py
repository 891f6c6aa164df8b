"""Task kinds: what an annotator is asked, how an answer is checked, and how answers aggregate.

The lifecycle (TTL, drain, thresholds), leases, the scheduler, events and storage are shared by every kind;
a kind is one module implementing `TaskKind` (most start from `_base.KindBase`). What the rest of the server
knows of a kind is what it declares: its title and create call (for messages), its results and answers (type,
table, path), its defaults (lease, a project's live window), the config fields it owns, the datapoints it
takes. Nothing outside `kinds/` names a kind. The service calls a kind at these points only:

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
    results / matrix / delta     live reads (`matrix` is None for kinds that compare nothing pairwise)
    final       the item ended: its record for the database, read back for every later request
    answered_by / recount        people were suspended or reinstated: count the item's answers again without
                the answers of those suspended (set aside in memory, so reinstating puts them back)
    follow_up   the item ended: an item to create in another flow with its final record (a write flow's review)
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection
from dataclasses import dataclass
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


@dataclass
class FollowUp:
    """An item an ended item asks for in another flow (of the same owner), created in the transaction that
    writes the ended item's final record; `created(item_id)` tells the ended item's results its id."""

    flow_id: str
    request: schemas.ItemCreate
    time_to_live: float | None
    created: Callable[[str], None]


class TaskKind(Protocol):
    name: str  # as the wire says it (FlowConfig.kind)
    title: str  # as people say it: "ranking", "classify", "RLHF", "chat", "write"
    create_call: str  # the SDK call that makes a flow of this kind, for messages
    min_datapoints: int
    answers_table: str  # the table its answers are stored in, one row each, with task_id, item_id, annotator_id
    answers_path: str  # /v1/items/{id}/<answers_path> lists them
    result_type: type  # its results struct, live and read back after the item ended
    default_lease: float  # seconds an annotator holds one of its tasks
    default_live_items: int  # a batch project's live window
    # FlowConfig fields only this kind reads: set on a flow of another kind, they are refused.
    owns: tuple[str, ...]
    takes_pairs: bool  # a batch may say which datapoint pairs to compare
    # A task orders several of an item's datapoints at once, so an eval puts the anchor, the checkpoint and the
    # previous checkpoint in one item; False with takes_pairs: an eval compares through given pairs.
    compares_sets: bool
    min_responses: int  # model responses a prompt-and-responses datapoint needs (RLHF: 2, to compare)
    assets_per_datapoint: bool  # datapoints may carry context assets of their own
    gold: str | None  # what a validation set for its flows holds ("pairs", "labels"); None: its flows take no set

    def check_config(self, cfg: FlowConfig) -> None:
        """Refuse (Invalid, naming the field) a flow config this kind cannot serve."""
        ...

    def complete(self, cfg: FlowConfig) -> FlowConfig:
        """The config with this kind's defaults filled in (its form, when none was given)."""
        ...

    def check_datapoint(self, d: schemas.DatapointIn, where: str) -> None:
        """Refuse (Invalid, naming `where`) a datapoint this kind cannot ask about."""
        ...

    def linked_flows(self, cfg: FlowConfig) -> list[tuple[str, str, str]]:
        """Other flows this config names, as (flow id, the kind it must be, the field naming it): each must exist
        and belong to the same key."""
        ...

    def follow_up(self, item: ItemRecord, results: Any) -> FollowUp | None:
        """The item ended with `results` (not yet durable): an item to create in another flow, or None."""
        ...

    def tasks_in(self, n_datapoints: int) -> int:
        """Tasks in one item of `n_datapoints`, in the unit its thresholds count."""
        ...

    def annotator_cap(self, cfg: FlowConfig) -> int | None:
        """Answers one person may give one item under this config (None: no cap beyond the kind's own rules)."""
        ...

    def new_tally(self, item: ItemRecord, seed: float) -> Any: ...

    def replay(self, item: ItemRecord, rows: list[Row]) -> None: ...

    # Thresholds, in the kind's own unit (votes per item, answers per datapoint, ...); leases out count.
    def full(self, item: ItemRecord) -> bool: ...

    def enough(self, item: ItemRecord) -> bool: ...

    def room(self, item: ItemRecord) -> bool: ...

    def shortfall(self, item: ItemRecord) -> int: ...

    def ask(self, item: ItemRecord, rng: random.Random, annotator_id: str, now: float) -> tuple[Any, Any]:
        """(question, gold): a question for the item, (None, gold) for a gold question, or (None, None) when
        the item has nothing for this annotator."""
        ...

    def closed(self, lease: Lease) -> None:
        """A lease of this item ended (answered or not)."""
        ...

    def task_view(self, lease: Lease, rng: random.Random, now: float) -> schemas.Task: ...

    def check(self, lease: Lease, answer: schemas.Answer) -> Any: ...

    def answer_ops(self, lease: Lease, checked: Any, annotator_id: str, now: float) -> list[Op]: ...

    def consensus_sql(self, mine: str) -> str | None:
        """A query of (annotator_id, compared, agreed) over the answers in its table that satisfy `mine` (an SQL
        condition on alias `m`, with `?` parameters): how many of each person's answers others also answered, and
        how many of those agree with the others' majority. None for a kind without such a notion."""
        ...

    async def consensus(self, store: Any, mine: str, params: list[Any]) -> list[tuple[str, int, int]]:
        """(annotator_id, compared, agreed) per person over the answers satisfying `mine`: `consensus_sql` run,
        or the kind's own count where SQL cannot compare its answers."""
        ...

    def count(self, lease: Lease, checked: Any) -> None: ...

    def release(self, lease: Lease, *, defer: bool, now: float) -> None:
        """A lease ended unanswered (handed back, skipped, expired): its question goes back to the pool, now or
        (`defer`) after fresh ones."""
        ...

    async def results(self, item: ItemRecord) -> Any:
        """Live results: an instance of `result_type`."""
        ...

    def matrix(self, item: ItemRecord) -> schemas.WinLossMatrix | None:
        """The live win-loss matrix, or None for a kind that has none."""
        ...

    def delta(self, item: ItemRecord, start: int, stop: int) -> list[tuple[int, int, int]]:
        """The live stream's answers `start`..`stop` as (row, column, tie) counts of `snapshot`."""
        ...

    def snapshot(self, item: ItemRecord) -> list[list[float]]:
        """The live stream's counts: wins for pairs, labels per datapoint, choices per response."""
        ...

    def final(self, item: ItemRecord) -> tuple[Any, schemas.WinLossMatrix | None]: ...

    def votes(self, rows: list[Row]) -> list[Any]:
        """Stored answers as the API returns them, each saying whether the item's results leave it out."""
        ...

    def pair_votes(self, rows: list[Row]) -> list[schemas.Vote] | None:
        """The pairwise votes a kind's stored answers are or imply (what its win-loss matrix counts), served at
        /v1/items/{id}/votes; None for a kind that compares no pairs."""
        ...

    def answered_by(self, item: ItemRecord) -> Collection[str]:
        """The people whose answers the item has counted or set aside."""
        ...

    def recount(self, item: ItemRecord, excluded: Collection[str]) -> None:
        """Count the item's answers again from the ones it holds in memory, leaving out (setting aside) those of
        the `excluded` people and putting back set-aside answers of anyone no longer excluded; sets
        `item.response_count` to the answers that count. Who was given what (a person's share, the pairs or
        datapoints they had) stays: it is about serving, not about results."""
        ...


_KINDS: dict[str, TaskKind] = {}


def all_kinds() -> list[TaskKind]:
    """Every kind this server serves."""
    if not _KINDS:
        from flowlab.server.kinds.chat import CHAT
        from flowlab.server.kinds.classify import CLASSIFY
        from flowlab.server.kinds.listwise import LISTWISE
        from flowlab.server.kinds.pairwise import PAIRWISE
        from flowlab.server.kinds.rlhf import RLHF
        from flowlab.server.kinds.write import WRITE

        _KINDS.update({k.name: k for k in (PAIRWISE, CLASSIFY, RLHF, CHAT, LISTWISE, WRITE)})
    return list(_KINDS.values())


def gold_kind(holds: str) -> TaskKind:
    """The kind whose flows a validation set holding `holds` ("pairs" or "labels") serves."""
    for kind in all_kinds():
        if kind.gold == holds:
            return kind
    raise ValueError(f"no task kind takes a validation set of {holds}")


def kind_of(name: str) -> TaskKind:
    known = {k.name: k for k in all_kinds()}
    try:
        return known[name]
    except KeyError:
        raise ValueError(f"unknown task kind {name!r}; this server knows {sorted(known)}") from None
