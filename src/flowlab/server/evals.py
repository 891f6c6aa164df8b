"""Evals of a training run: held-out prompts compared, at every checkpoint, with an anchor by people; the
human win rate per checkpoint and tag beside the trainer's proxy reward, and a sentinel for reward hacking.

An eval owns one flow of a comparing kind (pairwise) and two tables, `evals` and `eval_checkpoints`, whose
statements are all in this module. A checkpoint is one item per prompt of its flow, comparing the checkpoint's
completion (datapoint 1) with the anchor's (datapoint 0): the fixed anchor's completion, or the previous
checkpoint's. The items are the votes' only home; an eval keeps per prompt what its items have gathered, read
from the live items (or, once ended, their final records), a few times a second by `run`. When a checkpoint's
counts change it emits `eval.checkpoint` (SSE and webhooks), runs the sentinel over the history, and when that
fires at a new step it marks the step and emits `eval.divergence` in the transaction that marks it.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np

from flowlab import schemas
from flowlab.server import lifecycle
from flowlab.server.auth import Principal
from flowlab.server.clock import Clock
from flowlab.server.errors import Conflict, Invalid, NotFound
from flowlab.server.eval_results import CheckpointCounts, divergence_check, history_rows, mean_proxy
from flowlab.server.flows import Flows
from flowlab.server.history import History
from flowlab.server.items import ItemBody, Items, check_ttl
from flowlab.server.kinds import all_kinds, kind_of
from flowlab.server.model import FlowRecord, ItemRecord, Signal
from flowlab.server.people import new_id
from flowlab.server.store import Op, Row, Store
from flowlab.server.webhooks import Webhooks

log = logging.getLogger("flowlab.evals")

POLL_SECONDS = 0.2  # how often live counts are compared with what the eval last saw
ANCHOR, CURRENT, PREVIOUS = 0, 1, 2  # datapoint positions in a checkpoint's items (PREVIOUS: set-ordering kinds)

_json = msgspec.json.Encoder()


class CheckpointBody(msgspec.Struct):
    """A checkpoint's row: its items and what the next checkpoint of a "previous" eval compares with."""

    item_ids: list[str]
    completions: list[str]
    metadata: list[dict[str, Any] | None]
    proxy: float | list[float] | None
    previous_ids: list[str] = []  # with compare_previous: one item per prompt against the previous checkpoint


class EvalBody(msgspec.Struct):
    """An eval's row: what it was created with."""

    prompts: list[str]
    tags: list[list[str]]
    anchor: list[str] | None  # None: the previous checkpoint
    anchor_metadata: list[dict[str, Any] | None]
    kind: str
    votes_per_pair: int
    time_to_live: float
    window: int
    alpha: float
    metadata: dict[str, Any] | None
    compare_previous: bool = False


_eval_body = msgspec.json.Decoder(EvalBody)
_checkpoint_body = msgspec.json.Decoder(CheckpointBody)


@dataclass
class Checkpoint:
    step: int
    body: CheckpointBody
    created_at: float
    divergence: bool
    wins: np.ndarray
    votes: np.ndarray
    settled: np.ndarray  # per prompt: its item ended and its counts were read from its final record
    seen: np.ndarray  # per prompt: the live item's version its counts were read at (-1: not yet)
    version: int = 0  # moves whenever its counts change


@dataclass
class EvalRecord:
    id: str
    owner: str
    name: str
    flow: FlowRecord
    body: EvalBody
    created_at: float
    checkpoints: dict[int, Checkpoint] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    changed: Signal = field(default_factory=Signal)
    # The latest event per (type, step), each with its sequence number: a stream sends those newer than what
    # its subscriber has, so a new subscriber gets the state and a resumed one what it missed.
    latest: dict[tuple[str, int], tuple[int, schemas.EvalEvent]] = field(default_factory=dict)
    divergence: schemas.EvalDivergence | None = None
    # Read back at start-up: the first refresh restores the counts the webhooks were already told about, so it
    # sends no eval.checkpoint deliveries (a divergence at a step not yet flagged is still news).
    reading_back: bool = False

    def ordered(self) -> list[Checkpoint]:
        return [self.checkpoints[s] for s in sorted(self.checkpoints)]


class Evals:
    """Every eval of every key, and the loop that follows their votes."""

    def __init__(
        self, store: Store, clock: Clock, flows: Flows, items: Items, history: History, webhooks: Webhooks
    ) -> None:
        self.store = store
        self.clock = clock
        self.flows = flows
        self.items = items
        self.history = history
        self.webhooks = webhooks
        self.evals: dict[str, EvalRecord] = {}
        self.seq = int(clock.now() * 1e6)  # event ids keep rising across restarts (a million events a second)

    # ------------------------------------------------------------ start-up

    def restore(self, flow_ids: set[str] | None = None) -> None:
        """The evals (of these flows, or of all) with their checkpoints; their counts are read back from the
        items by the next `refresh`."""
        checkpoints: dict[str, list[Row]] = {}
        for r in self.store.read("SELECT * FROM eval_checkpoints ORDER BY eval_id, step"):
            checkpoints.setdefault(r["eval_id"], []).append(r)
        for row in self.store.read("SELECT * FROM evals ORDER BY created_at"):
            flow = self.flows.flows.get(row["flow_id"])
            if flow is None or (flow_ids is not None and flow.id not in flow_ids) or row["id"] in self.evals:
                continue
            record = EvalRecord(
                row["id"], row["owner"], row["name"], flow, _eval_body.decode(row["body"]), row["created_at"]
            )
            record.reading_back = True
            for r in checkpoints.get(record.id, []):
                self._add_checkpoint(
                    record, int(r["step"]), _checkpoint_body.decode(r["body"]), r["created_at"], bool(r["divergence"])
                )
            self.evals[record.id] = record

    # ------------------------------------------------------------ the researcher's calls

    def get(self, who: Principal, eval_id: str) -> EvalRecord:
        record = self.evals.get(eval_id)
        if record is None or record.owner != who.id or self.flows.flows.get(record.flow.id) is not record.flow:
            raise NotFound(f"No eval {eval_id!r} belongs to this API key; list them with client.evals.list().")
        return record

    def listing(self, who: Principal) -> list[schemas.Eval]:
        return [self.view(e) for e in self.evals.values() if e.owner == who.id and e.flow.id in self.flows.flows]

    def view(self, record: EvalRecord) -> schemas.Eval:
        b = record.body
        return schemas.Eval(
            id=record.id,
            name=record.name,
            flow_id=record.flow.id,
            prompts=b.prompts,
            tags=b.tags,
            anchor="previous" if b.anchor is None else "fixed",
            compare_previous=b.compare_previous,
            kind=b.kind,  # type: ignore[arg-type]
            votes_per_pair=b.votes_per_pair,
            time_to_live=b.time_to_live,
            window=b.window,
            alpha=b.alpha,
            created_at=record.created_at,
            steps=sorted(record.checkpoints),
            metadata=b.metadata,
        )

    async def create(self, who: Principal, req: schemas.EvalCreate) -> schemas.Eval:
        n = len(req.prompts)
        if n == 0:
            raise Invalid("An eval needs at least one held-out prompt; prompts is empty.", field="prompts")
        for i, p in enumerate(req.prompts):
            if not p.strip():
                raise Invalid(f"prompts[{i}] is blank; give every prompt its text.", field=f"prompts[{i}]")
        tags = [[] for _ in range(n)] if req.tags is None else req.tags
        _same_length("tags", tags, n, "prompts")
        for i, ts in enumerate(tags):
            for t in ts:
                if not t.strip() or t == "all":
                    raise Invalid(
                        f"tags[{i}] holds {t!r}; a tag is a non-blank name other than 'all' (which means every "
                        "prompt in the history).",
                        field=f"tags[{i}]",
                    )
        anchor = None if req.anchor == "previous" else list(req.anchor)
        if anchor is not None:
            _same_length("anchor", anchor, n, "prompts")
            _no_blank("anchor", anchor)
        elif req.compare_previous:
            raise Invalid(
                "compare_previous adds comparisons with the previous checkpoint to a fixed anchor's; an eval with "
                'anchor="previous" compares with the previous checkpoint already.',
                field="compare_previous",
            )
        elif req.anchor_metadata is not None:
            raise Invalid(
                'anchor_metadata describes a fixed anchor\'s completions; an eval with anchor="previous" compares '
                "each checkpoint with the one before, whose metadata came with it.",
                field="anchor_metadata",
            )
        anchor_metadata: list[dict[str, Any] | None] = (
            [None] * n if req.anchor_metadata is None else list(req.anchor_metadata)
        )
        _same_length("anchor_metadata", anchor_metadata, n, "prompts")
        kind = kind_of(req.kind)
        if not (kind.takes_pairs or kind.compares_sets):
            comparing = " or ".join(repr(k.name) for k in all_kinds() if k.takes_pairs or k.compares_sets)
            raise Invalid(
                f"An eval compares each completion with its anchor, so its kind must compare datapoints; "
                f"{kind.title} flows do not. Use kind={comparing}.",
                field="kind",
            )
        if math.factorial(req.window) * req.alpha < 1:
            raise Invalid(
                f"A window of {req.window} checkpoints cannot reach alpha = {req.alpha:g}: the sentinel's trend test "
                f"has at best p = 1/{req.window}! there. Use window >= {_least_window(req.alpha)} or a larger alpha.",
                field="window",
            )
        ttl = check_ttl(req.time_to_live)
        flow = await self.flows.create(
            who,
            schemas.FlowCreate(
                name=f"eval: {req.name}"[: schemas.MAX_NAME_CHARS],
                instruction=req.instruction,
                max_response_threshold=req.votes_per_pair,
                kind=req.kind,
            ),
        )
        body = EvalBody(
            prompts=list(req.prompts),
            tags=[list(ts) for ts in tags],
            anchor=anchor,
            anchor_metadata=anchor_metadata,
            kind=req.kind,
            votes_per_pair=req.votes_per_pair,
            time_to_live=ttl,
            window=req.window,
            alpha=req.alpha,
            metadata=req.metadata,
            # A set-ordering kind puts the previous checkpoint beside the anchor in each item: direct edges
            # between checkpoints come with the same answers.
            compare_previous=req.compare_previous or (kind.compares_sets and anchor is not None),
        )
        now = self.clock.now()
        record = EvalRecord(new_id("eval"), who.id, req.name, self.flows.flows[flow.id], body, now)
        await self.store.write(
            [
                (
                    "INSERT INTO evals (id, owner, flow_id, name, body, created_at) VALUES (?,?,?,?,?,?)",
                    (record.id, who.id, flow.id, req.name, _json.encode(body).decode(), now),
                )
            ]
        )
        self.evals[record.id] = record
        return self.view(record)

    async def checkpoint(self, who: Principal, eval_id: str, req: schemas.CheckpointCreate) -> schemas.EvalCheckpoint:
        """Push the checkpoint's comparisons and return at once; votes arrive later."""
        record = self.get(who, eval_id)
        b = record.body
        n = len(b.prompts)
        _same_length("completions", req.completions, n, "prompts")
        _no_blank("completions", req.completions)
        if isinstance(req.proxy_reward, list):
            _same_length("proxy_reward", req.proxy_reward, n, "prompts")
        proxies = req.proxy_reward if isinstance(req.proxy_reward, list) else [req.proxy_reward]
        if any(p is not None and not math.isfinite(p) for p in proxies):
            raise Invalid("proxy_reward must be finite numbers.", field="proxy_reward")
        metadata: list[dict[str, Any] | None] = [None] * n if req.metadata is None else list(req.metadata)
        _same_length("metadata", metadata, n, "prompts")
        async with record.lock:
            if req.step in record.checkpoints:
                raise Conflict(
                    f"Eval {record.id!r} already has a checkpoint at step {req.step}; each step is submitted once."
                )
            if record.checkpoints and req.step < max(record.checkpoints):
                raise Invalid(
                    f"Checkpoints come in training order: step {req.step} is before the latest, "
                    f"{max(record.checkpoints)}.",
                    field="step",
                )
            against = self._anchor_of(record)
            ops: list[Op] = []
            made, previous = [], []
            beside = None  # a set-ordering kind: the previous checkpoint shown in the same item
            if kind_of(record.flow.config.kind).compares_sets and b.anchor is not None and record.checkpoints:
                before = record.checkpoints[max(record.checkpoints)]
                beside = (before.body.completions, before.body.metadata, f"step {before.step}")
            if against is not None:
                completions, anchor_meta = against
                made = await self._items(record, req, metadata, completions, anchor_meta, "anchor", beside)
            if beside is None and b.compare_previous and b.anchor is not None and record.checkpoints:
                before = record.checkpoints[max(record.checkpoints)]
                previous = await self._items(
                    record, req, metadata, before.body.completions, before.body.metadata, f"step {before.step}"
                )
            ops += [self.items.insert_op(item, body) for item, body in (*made, *previous)]
            body = CheckpointBody(
                item_ids=[i.id for i, _ in made],
                completions=list(req.completions),
                metadata=metadata,
                proxy=req.proxy_reward,
                # Beside the anchor in the same items, the previous checkpoint's answers are read from them.
                previous_ids=[i.id for i, _ in (made if beside is not None else previous)],
            )
            now = self.clock.now()
            ops.append(
                (
                    "INSERT INTO eval_checkpoints (eval_id, step, body, created_at, divergence) VALUES (?,?,?,?,0)",
                    (record.id, req.step, _json.encode(body).decode(), now),
                )
            )
            await self.store.write(ops)
            for item, _ in (*made, *previous):
                self.items.add(item)
            checkpoint = self._add_checkpoint(record, req.step, body, now, False)
        return self._checkpoint_view(record, checkpoint)

    async def _items(
        self,
        record: EvalRecord,
        req: schemas.CheckpointCreate,
        metadata: list[dict[str, Any] | None],
        against: list[str],
        against_meta: list[dict[str, Any] | None],
        name: str,
        beside: tuple[list[str], list[dict[str, Any] | None], str] | None = None,
    ) -> list[tuple[ItemRecord, ItemBody]]:
        """One item per prompt comparing the checkpoint's completion (datapoint 1) with `against`'s (0); with a
        set-ordering kind, the previous checkpoint's completion (2, `beside`) is ordered with them."""
        out = []
        pairs_given = kind_of(record.flow.config.kind).takes_pairs
        for i, prompt in enumerate(record.body.prompts):
            datapoints = [
                schemas.DatapointIn(id=name, text=against[i], private_metadata=against_meta[i]),
                schemas.DatapointIn(id=f"step {req.step}", text=req.completions[i], private_metadata=metadata[i]),
            ]
            if beside is not None:
                texts, metas, label = beside
                datapoints.append(schemas.DatapointIn(id=label, text=texts[i], private_metadata=metas[i]))
            item_req = schemas.ItemCreate(
                datapoints=datapoints,
                context=prompt,
                private_metadata={"eval_id": record.id, "step": req.step, "prompt": i, "against": name},
                pairs=[(ANCHOR, CURRENT)] if pairs_given else None,
            )
            prepared = await self.items.prepare(record.flow, item_req, record.body.time_to_live)
            out.append((self.items.make(new_id("item"), record.flow, prepared, self.clock.now()), prepared))
        return out

    def _anchor_of(self, record: EvalRecord) -> tuple[list[str], list[dict[str, Any] | None]] | None:
        """What a new checkpoint is compared with: the fixed anchor, the previous checkpoint, or nothing (the
        first checkpoint of a "previous" eval is the reference the next one is compared with)."""
        b = record.body
        if b.anchor is not None:
            return b.anchor, b.anchor_metadata
        if not record.checkpoints:
            return None
        previous = record.checkpoints[max(record.checkpoints)].body
        return previous.completions, previous.metadata

    def _add_checkpoint(
        self, record: EvalRecord, step: int, body: CheckpointBody, created_at: float, divergence: bool
    ) -> Checkpoint:
        n = len(body.item_ids) + len(body.previous_ids)
        checkpoint = Checkpoint(
            step,
            body,
            created_at,
            divergence,
            np.zeros(n),
            np.zeros(n),
            np.zeros(n, dtype=bool),
            np.full(n, -1, dtype=np.int64),
            version=1,
        )
        record.checkpoints[step] = checkpoint
        return checkpoint

    def _checkpoint_view(self, record: EvalRecord, c: Checkpoint) -> schemas.EvalCheckpoint:
        return schemas.EvalCheckpoint(
            eval_id=record.id,
            step=c.step,
            item_ids=c.body.item_ids,
            previous_item_ids=c.body.previous_ids,
            proxy_reward=mean_proxy(c.body.proxy),
            votes=float(c.votes[: len(c.body.item_ids)].sum()),
            wins=float(c.wins[: len(c.body.item_ids)].sum()),
            created_at=c.created_at,
            divergence=c.divergence,
            ended=bool(c.settled.all()),
        )

    def results(self, who: Principal, eval_id: str) -> schemas.EvalHistory:
        record = self.get(who, eval_id)
        return schemas.EvalHistory(
            eval_id=record.id,
            rows=self._rows(record),
            divergence=record.divergence,
            checkpoints=[self._checkpoint_view(record, c) for c in record.ordered()],
        )

    async def wait(self, who: Principal, eval_id: str, timeout: float) -> schemas.EvalHistory:
        """Long poll: the history once every checkpoint so far has ended (its final counts read), or at
        `timeout` (at most 60 s)."""
        record = self.get(who, eval_id)
        deadline = self.clock.now() + min(max(timeout, 0.0), 60.0)
        while not all(c.settled.all() for c in record.checkpoints.values()):
            left = deadline - self.clock.now()
            if left <= 0 or self.evals.get(record.id) is not record:
                break
            await record.changed.wait(left)
        return self.results(who, eval_id)

    def _rows(self, record: EvalRecord) -> list[schemas.EvalRow]:
        n = len(record.body.prompts)
        counts = [
            CheckpointCounts(
                c.step,
                _full(c.wins[:n], record),
                _full(c.votes[:n], record),
                c.body.proxy,
                c.divergence,
                previous_wins=c.wins[n:] if c.body.previous_ids else None,
                previous_votes=c.votes[n:] if c.body.previous_ids else None,
            )
            for c in record.ordered()
        ]
        return history_rows(counts, record.body.tags, chained=record.body.anchor is None)

    # ------------------------------------------------------------ following the votes

    async def run(self) -> None:
        """Compare each eval's live counts with what it last saw, a few times a second."""
        while True:
            await asyncio.sleep(POLL_SECONDS)
            for record in list(self.evals.values()):
                try:
                    await self.refresh(record)
                except Exception:
                    log.exception("eval %s could not be brought up to date", record.id)

    async def refresh(self, record: EvalRecord) -> None:
        changed = []
        settling = False
        for c in record.ordered():
            if c.settled.all():
                continue
            moved = False
            for i, item_id in enumerate((*c.body.item_ids, *c.body.previous_ids)):
                if c.settled[i]:
                    continue
                live = self.items.live.get(item_id)
                if live is not None and live.version == c.seen[i] and not lifecycle.is_terminal(live.state):
                    continue  # nothing new since the last look (a live item's version moves with every vote)
                c.seen[i] = -1 if live is None else live.version
                beside = i >= len(c.body.item_ids) and item_id in c.body.item_ids  # the previous, in the same item
                wins, votes, settled = await self._counts(item_id, PREVIOUS if beside else ANCHOR)
                if wins != c.wins[i] or votes != c.votes[i]:
                    c.wins[i], c.votes[i], moved = wins, votes, True
                c.settled[i] = settled
                settling = settling or settled
            if moved:
                c.version += 1
                changed.append(c)
        if changed:
            await self._changed(record, changed)
        elif settling:
            record.changed.fire()  # a checkpoint may have ended without a new vote: waiters look again
        record.reading_back = False

    async def _counts(self, item_id: str, against: int = 0) -> tuple[float, float, bool]:
        """(votes the checkpoint won against datapoint `against`, those votes, whether they can change no more)
        of one of its items; a listwise item's counts are the pairs its orders imply."""
        item = self.items.live.get(item_id)
        if item is not None:
            matrix = item.kind.matrix(item)
            counts = None if matrix is None else matrix.counts
            settled = lifecycle.is_terminal(item.state) and item.finalised
        else:
            ended = await self.history.get(item_id)
            counts = None if ended is None else self.items.ended_counts(ended)
            settled = True  # ended, or deleted with its flow
        if not counts:
            return 0.0, 0.0, settled
        won, lost = float(counts[CURRENT][against]), float(counts[against][CURRENT])
        return won, won + lost, settled

    async def _changed(self, record: EvalRecord, changed: list[Checkpoint]) -> None:
        rows = self._rows(record)
        found = divergence_check(rows, window=record.body.window, alpha=record.body.alpha)
        record.divergence = found
        flow_id, owner = record.flow.id, record.owner
        events = [
            schemas.EvalEvent(
                type="eval.checkpoint",
                eval_id=record.id,
                flow_id=flow_id,
                step=c.step,
                rows=[r for r in rows if r.step == c.step],
            )
            for c in changed
        ]
        ops: list[Op] = []
        fired_at = None
        if found is not None and found.fired and found.step is not None:
            at = record.checkpoints.get(found.step)
            if at is not None and not at.divergence:
                fired_at = at
                events.append(
                    schemas.EvalEvent(
                        type="eval.divergence", eval_id=record.id, flow_id=flow_id, step=at.step, divergence=found
                    )
                )
                ops.append(
                    (
                        "UPDATE eval_checkpoints SET divergence=1 WHERE eval_id=? AND step=?",
                        (record.id, at.step),
                    )
                )
        for event in events:
            if event.type == "eval.divergence" or not record.reading_back:
                ops += self.webhooks.event_ops(event.type, owner, flow_id, event)
        if ops:
            await self.store.write(ops, retry=True)
            self.webhooks.wake()
        if fired_at is not None:
            fired_at.divergence = True
            for event in events:  # the rows of that step now carry the flag
                for r in event.rows:
                    if r.step == fired_at.step:
                        r.divergence = True
        for event in events:
            self.seq += 1
            record.latest[(event.type, event.step)] = (self.seq, event)
        record.changed.fire()

    def drop_flow(self, flow_id: str) -> list[Op]:
        """A deleted flow takes its evals with it."""
        gone = [e for e in self.evals.values() if e.flow.id == flow_id]
        for record in gone:
            del self.evals[record.id]
            record.changed.fire()
        return [
            ("DELETE FROM eval_checkpoints WHERE eval_id IN (SELECT id FROM evals WHERE flow_id=?)", (flow_id,)),
            ("DELETE FROM evals WHERE flow_id=?", (flow_id,)),
        ]


def _full(values: np.ndarray, record: EvalRecord) -> np.ndarray:
    """Per prompt, zeros for a checkpoint without items (the first of a "previous" eval)."""
    return values if len(values) else np.zeros(len(record.body.prompts))


def _no_blank(name: str, texts: list[str]) -> None:
    for i, text in enumerate(texts):
        if not text.strip():
            raise Invalid(
                f"{name}[{i}] is blank; people cannot compare an empty completion. Send what the model wrote "
                "(a placeholder such as '(no answer)' if it wrote nothing).",
                field=f"{name}[{i}]",
            )


def _least_window(alpha: float) -> int:
    window = 3
    while math.factorial(window) * alpha < 1:
        window += 1
    return window


def _same_length(name: str, values: list[Any], n: int, of: str) -> None:
    if len(values) != n:
        raise Invalid(
            f"{name} has {len(values)} entries but the eval has {n} {of}; give one per prompt, in the prompts' order.",
            field=name,
        )
