"""The live model: flows, the items that can still take answers, and their leases. The hot path reads and
writes only this; the store makes it durable, and ended items live in the database alone."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

import msgspec

from flowlab import schemas
from flowlab.schemas import STATE_RANK

if TYPE_CHECKING:
    from flowlab.server.kinds import TaskKind


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
    kind: str = schemas.DEFAULT_KIND  # the task kind: what annotators are asked and how answers aggregate
    categories: list[schemas.Category] = []  # classify flows
    starting_elo: float = 1200.0  # pairwise results: the Elo scale's centre
    validation_labels: list[schemas.ValidationLabel] = []  # classify flows' gold
    settings: dict[str, str] = {}  # hosted's feature flags (flowlab.settings)
    rlhf: schemas.RlhfSpec | None = None  # RLHF flows: the form
    stop_when: schemas.StopWhen | None = None  # ranking flows: end an item once its question is settled
    chat: schemas.ChatSpec | None = None  # chat flows: the models and the form
    write: schemas.WriteSpec | None = None  # write flows: lengths, pasting, the review flow
    max_votes_per_annotator: int | None = None  # answers one person may give an item (None: the kind's default)
    audiences: list[str] = []  # audience ids whose annotators it serves; empty: every annotator of its key
    absolute: bool = False  # ranking flows: "both good" / "both bad" answers, P(acceptable) in results
    listwise: schemas.ListwiseSpec | None = None  # listwise flows: k and the mode

    # Options a setting can also turn on (AllowNeitherBothSetting, MarkdownSetting), for as long as it is set.
    @property
    def ties_allowed(self) -> bool:
        return self.allow_ties or "compare_unsure" in self.settings

    @property
    def markdown(self) -> bool:
        return self.render_markdown or self.settings.get("use_main_text_markdown") == "true"


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
            # Not wait_for: on Python 3.11 it can swallow a cancellation that coincides with a fire(), and a
            # loop waiting here would then outlive its shutdown.
            async with asyncio.timeout(timeout):
                await self._event.wait()
            return True
        except TimeoutError:
            return False


class SharedSignal(Signal):
    """A signal that can also be passed on: in a cluster, `echo` tells the other processes it fired."""

    __slots__ = ("echo",)

    def __init__(self) -> None:
        super().__init__()
        self.echo: Callable[[], None] | None = None

    def fire(self) -> None:
        super().fire()
        if self.echo is not None:
            self.echo()


class FlowRecord:
    """A flow and its live items. Ended items leave `items`; what they added to the version stays, in
    `ended_version`, which the database keeps too."""

    __slots__ = (
        "changed",
        "config",
        "created_at",
        "ended_version",
        "id",
        "item_count",
        "items",
        "node",
        "owner",
        "updated_at",
    )

    def __init__(
        self,
        id: str,
        owner: str,
        config: FlowConfig,
        created_at: float,
        updated_at: float,
        *,
        ended_version: int = 0,
        item_count: int = 0,
        node: str | None = None,
    ) -> None:
        self.id = id
        self.owner = owner
        self.config = config
        self.created_at = created_at
        self.updated_at = updated_at
        self.ended_version = ended_version
        self.item_count = item_count
        self.node = node  # in a cluster, the process that serves the flow (its `nodes` row)
        self.items: dict[str, ItemRecord] = {}
        self.changed = Signal()

    @property
    def version(self) -> int:
        # Built only from things that grow and survive a restart (config edits, items, their versions), so a
        # client's `since` stays meaningful across restarts.
        return self.config.config_version + self.ended_version + sum(i.flow_share for i in self.items.values())

    def touch(self) -> None:
        self.changed.fire()


class Lease:
    """A task out with an annotator: one question, answerable once until `expires_at`.

    `question` is the task kind's own (a pair of datapoint indices for pairwise items); `gold` is a check
    question with a known answer, which counts towards the annotator's agreement and not towards the item.
    While the answer's transaction commits, `committing` holds its future: the lease neither expires nor
    takes a second answer meanwhile. `shown_at` is when the annotator's page first put the task on screen
    (None while it is only held): the clock starts again then (`LeaseBook.show`), and the time since is the
    annotator's time on the task."""

    __slots__ = (
        "annotator_id",
        "committing",
        "expires_at",
        "gold",
        "item",
        "leased_at",
        "maybe_landed",
        "paused_at",
        "question",
        "shown_at",
        "task_id",
    )

    def __init__(
        self,
        task_id: str,
        item: ItemRecord,
        question: Any,
        annotator_id: str,
        expires_at: float,
        gold: Any = None,
    ) -> None:
        self.task_id = task_id
        self.item = item
        self.question = question
        self.annotator_id = annotator_id
        self.expires_at = expires_at
        self.gold = gold
        self.committing: asyncio.Future[None] | None = None
        self.maybe_landed = False  # its answer's commit failed in a way that may have committed it after all
        self.paused_at: float | None = None  # the clock is stopped while a model writes a reply (chat tasks)
        self.shown_at: float | None = None  # when the page first showed it (POST /v1/tasks/{id}/shown)
        self.leased_at: float | None = None  # when it was handed out

    @property
    def on_screen_since(self) -> float | None:
        """When the annotator could first see the task: when their page showed it, else when it was handed out
        (a client that never says); stored with the answer, so time on task is answer time minus this."""
        return self.shown_at if self.shown_at is not None else self.leased_at


class ItemRecord:
    """A live item: its snapshot of the flow's config, its datapoints, its counters and leases. `tally` is
    the task kind's compact aggregate of the answers counted so far (never a list of answer objects)."""

    __slots__ = (
        "changed",
        "config",
        "context",
        "context_assets",
        "created_at",
        "datapoints",
        "deadline",
        "ended_at",
        "final_results",
        "finalised",
        "flow",
        "id",
        "keys",
        "kind",
        "leases",
        "pairs",
        "private_metadata",
        "project",
        "reason",
        "recount_offset",
        "recounted_version",
        "response_count",
        "settled",
        "started_at",
        "state",
        "tally",
        "ttl",
        "waiting",
    )

    def __init__(
        self,
        *,
        id: str,
        flow: FlowRecord,
        kind: TaskKind,
        config: FlowConfig,
        datapoints: list[schemas.Datapoint],
        context: str | None,
        context_assets: list[schemas.ContextAsset],
        private_metadata: dict[str, Any] | None,
        ttl: float,
        created_at: float,
        seed: float,
        pairs: list[tuple[int, int]] | None = None,
        state: str = "Pending",
        started_at: float | None = None,
        ended_at: float | None = None,
        reason: str | None = None,
    ) -> None:
        self.id = id
        self.flow = flow
        self.kind = kind
        self.config = config
        self.datapoints = datapoints
        self.keys = [d.key for d in datapoints]
        self.context = context
        self.context_assets = context_assets
        self.private_metadata = private_metadata
        self.ttl = ttl
        self.pairs = pairs  # a ranking item that compares only these pairs
        self.created_at = created_at
        self.deadline = created_at + ttl
        self.state = state
        self.started_at = started_at
        self.ended_at = ended_at
        self.reason = reason
        self.response_count = 0
        # Suspending or reinstating someone recounts the item, and its count may fall: the offset keeps the
        # version growing (one step a recount), and streams older than `recounted_version` get the counts anew.
        self.recount_offset = 0
        self.recounted_version = 0
        self.leases: dict[str, Lease] = {}
        self.finalised = False  # its final record is durable; it may leave memory
        self.final_results: Any = None  # the results in that record, served until it leaves
        self.settled = False  # the flow's stopping rule found its question answered (the reason says how)
        self.waiting: str | None = None  # why those asking get nothing from it now (the kind's per-person rules)
        self.project: Any = None  # the batch project that queued it (`server.projects.Project`), if any
        self.changed = Signal()
        self.tally: Any = kind.new_tally(self, seed)

    @property
    def leases_out(self) -> int:
        return len(self.leases)

    @property
    def version(self) -> int:
        # Answers (with the recount offset) and states only grow, so this does too; since the last recount a
        # subscriber's answer position is version // 8 - recount_offset.
        return 8 * (self.response_count + self.recount_offset) + STATE_RANK[self.state]

    def recount(self, excluded: Collection[str]) -> None:
        """Count the answers again without those of `excluded` people (see `TaskKind.recount`)."""
        before = self.response_count
        self.kind.recount(self, excluded)
        self.recount_offset += before - self.response_count + 1
        self.recounted_version = self.version
        self.touch()

    @property
    def flow_share(self) -> int:
        """What this item adds to its flow's version: one for existing, plus its own version."""
        return 1 + self.version

    def touch(self) -> None:
        self.changed.fire()
        self.flow.touch()
