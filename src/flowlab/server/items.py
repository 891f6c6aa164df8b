"""Flow items: creating them, moving them along their lifecycle, ending them into the database, and reading
them back, live from memory or ended from their final record."""

from __future__ import annotations

import asyncio
import logging
import math
import random
import statistics
from collections.abc import Collection
from typing import Any

import msgspec

from flowlab import schemas
from flowlab.server import lifecycle
from flowlab.server.auth import Principal
from flowlab.server.clock import Clock
from flowlab.server.datapoints import build_asset, build_datapoints
from flowlab.server.errors import Invalid, NotFound
from flowlab.server.flows import Flows
from flowlab.server.history import EndedItem, History, encode_record, has_matrix
from flowlab.server.kinds import TaskKind, kind_of
from flowlab.server.leases import LeaseBook
from flowlab.server.media import MediaCatalog
from flowlab.server.model import FlowConfig, FlowRecord, ItemRecord, Signal
from flowlab.server.people import new_id
from flowlab.server.store import Op, Row, Store
from flowlab.server.webhooks import Webhooks

log = logging.getLogger("flowlab.items")

MAX_DATAPOINTS = 1000  # the win-loss matrix is dense, n x n
MAX_TTL = 7 * 24 * 3600.0
MIN_TTL = 0.1
RETAIN_ENDED = 30.0  # seconds an ended item stays in memory after its record is durable, for the last readers

_json = msgspec.json.Encoder()


class ItemBody(msgspec.Struct):
    """What is stored for an item: its config snapshot and everything it was created with."""

    config: FlowConfig
    datapoints: list[schemas.Datapoint]
    context: str | None
    context_assets: list[schemas.ContextAsset]
    private_metadata: dict[str, Any] | None
    ttl: float
    pairs: list[tuple[int, int]] | None = None  # ranking items that compare only these pairs


class Items:
    """Live items in memory (`live`; `active` are those not yet ended); ended ones through `history`.

    An item that ends waits for the answers still committing, writes its final record (results, matrix,
    status) and, `retain_ended` seconds later, leaves memory: memory follows live work, not history."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        flows: Flows,
        leases: LeaseBook,
        history: History,
        media: MediaCatalog,
        rng: random.Random,
        work: Signal,
        wakeup: Signal,
        webhooks: Webhooks,
        *,
        retain_ended: float = RETAIN_ENDED,
    ) -> None:
        self.store = store
        self.clock = clock
        self.flows = flows
        self.leases = leases
        self.history = history
        self.media = media
        self.rng = rng
        self.work = work
        self.wakeup = wakeup
        self.webhooks = webhooks
        self.retain_ended = retain_ended
        self.live: dict[str, ItemRecord] = {}
        self.active: dict[str, ItemRecord] = {}
        self._finalising: dict[str, asyncio.Task[None]] = {}
        # Batch projects (`server.projects.Projects`) follow their items' ends; set when they are made.
        self.projects: Any = None

    # ------------------------------------------------------------ start-up

    def restore(self, rows: list[Row], votes: list[Row], suspended: Collection[str] = ()) -> None:
        """Rebuild the live items and count their durable votes again, leaving out the answers of `suspended`
        people; items whose deadline passed while the server was down end now, as they would have then."""
        failed: list[Op] = []
        restored: list[ItemRecord] = []
        for row in rows:
            flow = self.flows.flows.get(row["flow_id"])
            if flow is None:
                continue
            try:
                body = msgspec.json.decode(row["body"], type=ItemBody)
                item = self.make(row["id"], flow, body, row["created_at"])
            except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
                log.error("item %s could not be restored: %s", row["id"], exc)
                failed.append(
                    (
                        "UPDATE items SET state='Failed', reason=? WHERE id=?",
                        (f"could not be restored: {exc}", row["id"]),
                    )
                )
                continue
            item.state, item.started_at, item.ended_at, item.reason = (
                row["state"],
                row["started_at"],
                row["ended_at"],
                row["reason"],
            )
            if row.get("project_id") is not None and self.projects is not None:
                self.projects.attach(row["project_id"], item)
            self.live[item.id] = item
            flow.items[item.id] = item
            restored.append(item)
        by_item: dict[str, list[Row]] = {}
        for v in votes:
            by_item.setdefault(v["item_id"], []).append(v)
        for item_id, item_votes in by_item.items():
            voted = self.live.get(item_id)
            if voted is not None:
                voted.kind.replay(voted, item_votes)
                if not lifecycle.is_terminal(voted.state) and set(voted.kind.answered_by(voted)) & set(suspended):
                    voted.recount(suspended)
        now = self.clock.now()
        for item in restored:
            if lifecycle.is_terminal(item.state):
                continue
            item.state = "Running" if item.state == "Stopping" else item.state
            new = lifecycle.next_state(item, now)
            if new is not None and lifecycle.is_terminal(new):
                item.state = new
                item.ended_at = min(now, item.deadline)
            elif new == "Stopping":
                item.state = new
            if not lifecycle.is_terminal(item.state):
                self.active[item.id] = item
        if failed:
            self.store.write_now(failed)

    def restand(self, annotator_id: str, suspended: Collection[str]) -> list[Op]:
        """Someone was suspended or reinstated: every live item they answered counts its answers again, leaving
        out those of the `suspended` people. Returns the ops that mark (or unmark) their stored answers in those
        items. Items that ended already keep their final results, and their answers' marks."""
        ops: list[Op] = []
        mark = int(annotator_id in suspended)
        for item in self.active.values():
            if annotator_id in item.kind.answered_by(item):
                item.recount(suspended)
                ops.append(
                    (
                        f"UPDATE {item.kind.answers_table} SET excluded=? WHERE item_id=? AND annotator_id=?",
                        (mark, item.id, annotator_id),
                    )
                )
        return ops

    def resume(self) -> None:
        """Once the writer runs: finish ending the items that ended without a durable final record."""
        for item in list(self.live.values()):
            if lifecycle.is_terminal(item.state) and not item.finalised:
                self._start_finalising(item)

    # ------------------------------------------------------------ creating

    async def create(self, who: Principal, flow: FlowRecord, req: schemas.ItemCreate) -> schemas.ItemStatus:
        body = await self.prepare(flow, req, check_ttl(req.time_to_live))
        item = self.make(new_id("item"), flow, body, self.clock.now())
        await self.store.write([self.insert_op(item, body)])
        if self.flows.flows.get(flow.id) is not flow:
            raise NotFound(f"Flow {flow.id!r} was deleted while this batch was being created.")
        self.add(item)
        return self.status(item)

    async def prepare(
        self, flow: FlowRecord, req: schemas.ItemCreate | schemas.ProjectItemIn, ttl: float, *, at: str = ""
    ) -> ItemBody:
        """Check a batch against its flow and build what is stored for it; `at` prefixes the fields errors
        name (a project's `items[3].`)."""
        n = len(req.datapoints)
        kind = kind_of(flow.config.kind)
        least = kind.min_datapoints
        if n < least:
            what = "to compare" if least > 1 else ""
            raise Invalid(
                f"A flow batch needs at least {least} datapoints {what}; got {n}.".replace("  ", " "),
                field=f"{at}datapoints",
            )
        if n > MAX_DATAPOINTS:
            raise Invalid(
                f"A flow batch holds at most {MAX_DATAPOINTS} datapoints; got {n}. Split it into several batches.",
                field=f"{at}datapoints",
            )
        rule = flow.config.stop_when
        if rule is not None and rule.rule == "top_k" and rule.k >= n:
            raise Invalid(
                f"The flow stops once its top {rule.k} are settled, but this batch has {n} datapoints: give it "
                "more, or lower the flow's stop_when k with flow.update_config().",
                field=f"{at}datapoints",
            )
        for i, d in enumerate(req.datapoints):
            kind.check_datapoint(d, f"{at}datapoints[{i}]")
        per_datapoint = [a for d in req.datapoints for a in d.context_assets or ()]
        shas = (
            [d.media for d in req.datapoints if d.media]
            + [r.media for d in req.datapoints for r in d.responses or () if r.media]
            + [a.media for a in (*req.context_assets, *per_datapoint) if a.media]
        )
        known = await self.media.resolve(shas)
        try:
            return ItemBody(
                config=flow.config,
                datapoints=build_datapoints(req.datapoints, known, min_responses=kind.min_responses),
                context=req.context,
                context_assets=[
                    build_asset(a, f"context_assets[{i}]", known) for i, a in enumerate(req.context_assets)
                ],
                private_metadata=req.private_metadata,
                ttl=ttl,
                pairs=check_pairs(req.pairs, n, kind),
            )
        except Invalid as exc:
            if at and exc.field is not None:
                exc.field = at + exc.field
            raise

    def insert_op(self, item: ItemRecord, body: ItemBody, *, replayable: bool = False) -> Op:
        """The item's row. `replayable`: the statement may run twice (it rides a commit that is retried when its
        outcome was lost, which may have landed), and the second run finds the row and leaves it."""
        project_id = None if item.project is None else item.project.id
        sql = "INSERT INTO items (id, flow_id, body, created_at, state, project_id) VALUES (?,?,?,?,?,?)"
        return (
            sql + " ON CONFLICT (id) DO NOTHING" if replayable else sql,
            (item.id, item.flow.id, _json.encode(body).decode(), item.created_at, item.state, project_id),
        )

    def add(self, item: ItemRecord) -> None:
        """A new item, durable: it is live and may be served from now on."""
        flow = item.flow
        self.live[item.id] = item
        self.active[item.id] = item
        flow.items[item.id] = item
        flow.item_count += 1
        flow.touch()
        self.work.fire()
        self.wakeup.fire()

    def make(self, item_id: str, flow: FlowRecord, body: ItemBody, created_at: float) -> ItemRecord:
        return ItemRecord(
            id=item_id,
            flow=flow,
            kind=kind_of(body.config.kind),
            config=body.config,
            datapoints=body.datapoints,
            context=body.context,
            context_assets=body.context_assets,
            private_metadata=body.private_metadata,
            ttl=body.ttl,
            pairs=body.pairs,
            created_at=created_at,
            seed=self.rng.random(),
        )

    # ------------------------------------------------------------ views

    def status(self, item: ItemRecord) -> schemas.ItemStatus:
        c = item.config
        return schemas.ItemStatus(
            id=item.id,
            flow_id=item.flow.id,
            state=item.state,  # type: ignore[arg-type]
            response_count=item.response_count,
            min_response_threshold=c.min_response_threshold,
            max_response_threshold=c.max_response_threshold,
            instruction=c.instruction,
            config_version=c.config_version,
            context=item.context,
            n_datapoints=len(item.datapoints),
            keys=item.keys,
            created_at=item.created_at,
            started_at=item.started_at,
            deadline=item.deadline,
            ended_at=item.ended_at,
            time_to_live=item.ttl,
            leases_out=item.leases_out,
            version=item.version,
            server_time=self.clock.now(),
            reason=item.reason,
            waiting=item.waiting if not lifecycle.is_terminal(item.state) else None,
        )

    def ended_status(self, ended: EndedItem) -> schemas.ItemStatus:
        return msgspec.structs.replace(ended.record.status, server_time=self.clock.now())

    # ------------------------------------------------------------ reads, live or ended

    async def find(self, who: Principal, item_id: str) -> ItemRecord | EndedItem:
        item = self.live.get(item_id)
        if item is not None:
            if item.flow.owner == who.id:
                return item
        else:
            ended = await self.history.get(item_id)
            if ended is not None and ended.owner == who.id and ended.flow_id in self.flows.flows:
                return ended
        raise NotFound(
            f"No flow item {item_id!r} belongs to this API key; list a flow's items with flow.get_flow_items()."
        )

    async def status_of(self, who: Principal, item_id: str) -> schemas.ItemStatus:
        found = await self.find(who, item_id)
        return self.status(found) if isinstance(found, ItemRecord) else self.ended_status(found)

    async def detail_of(self, who: Principal, item_id: str) -> schemas.ItemDetail:
        found = await self.find(who, item_id)
        if isinstance(found, ItemRecord):
            return schemas.ItemDetail(
                status=self.status(found),
                datapoints=found.datapoints,
                context_assets=found.context_assets,
                private_metadata=found.private_metadata,
            )
        stored = await self.history.body(found.id)
        if stored is None:
            raise NotFound(f"Flow item {item_id!r} was deleted with its flow.")
        body = msgspec.json.decode(stored, type=ItemBody)
        return schemas.ItemDetail(
            status=self.ended_status(found),
            datapoints=body.datapoints,
            context_assets=body.context_assets,
            private_metadata=body.private_metadata,
        )

    async def results_of(self, who: Principal, item_id: str) -> Any:
        found = await self.find(who, item_id)
        if isinstance(found, ItemRecord):
            ending = self._finalising.get(found.id)
            if ending is not None and lifecycle.is_terminal(found.state):
                # Ended, its final record on its way (with what only the ending adds, e.g. a review item's id):
                # wait for it briefly rather than answer an aggregate the record may differ from.
                await asyncio.wait([ending], timeout=5.0)
            # Ended and durable: the results every later read gets from the database, not a fresh aggregate.
            return found.final_results if found.finalised else await found.kind.results(found)
        return msgspec.json.decode(found.record.results, type=kind_of(found.record.kind).result_type)  # type: ignore[no-any-return]

    async def matrix_of(self, who: Principal, item_id: str) -> schemas.WinLossMatrix:
        found = await self.find(who, item_id)
        if isinstance(found, ItemRecord):
            matrix = found.kind.matrix(found)
            if matrix is not None:
                return matrix
        elif has_matrix(found.record):
            return msgspec.json.decode(found.record.matrix, type=schemas.WinLossMatrix)
        kind = found.kind if isinstance(found, ItemRecord) else kind_of(found.record.kind)
        raise NotFound(f"Item {item_id!r} is a {kind.title} item; it has no win-loss matrix. Read its results.")

    def ended_counts(self, ended: EndedItem) -> list[list[float]] | None:
        if not has_matrix(ended.record):
            return None
        return msgspec.json.decode(ended.record.matrix, type=schemas.WinLossMatrix).counts

    async def answers_of(self, who: Principal, item_id: str, path: str) -> list[Any]:
        """Every stored answer of an item whose kind lists them at /v1/items/{id}/<path> (votes, labels, ...).
        Counted answers are durable ones, so the database has every one the item counts."""
        found = await self.find(who, item_id)
        kind = found.kind if isinstance(found, ItemRecord) else kind_of(found.record.kind)
        if path == "votes" and kind.answers_path != path:  # a kind that implies pairs serves them as votes
            implied = kind.pair_votes(await self.history.answers(found.id, kind.answers_table))
            if implied is not None:
                return implied
        if kind.answers_path != path:
            raise NotFound(
                f"Item {item_id!r} is a {kind.title} item; read its answers at /v1/items/{item_id}/{kind.answers_path}."
            )
        return kind.votes(await self.history.answers(found.id, kind.answers_table))

    async def annotators_of(self, who: Principal, item_id: str) -> list[schemas.ItemAnnotator]:
        """Who answered the item, from its stored answers (live or ended): their share, their left-right habit
        on pairs and their speed, most answers first."""
        found = await self.find(who, item_id)
        kind = found.kind if isinstance(found, ItemRecord) else kind_of(found.record.kind)
        return annotator_summaries(await self.history.answers(found.id, kind.answers_table))

    async def statuses(self, flow: FlowRecord) -> list[schemas.ItemStatus]:
        statuses = {s.id: s for s in await self.history.statuses(flow.id)}
        now = self.clock.now()
        for s in statuses.values():
            s.server_time = now
        for item in list(flow.items.values()):
            statuses[item.id] = self.status(item)
        return sorted(statuses.values(), key=lambda s: s.created_at)

    async def summaries(self, flow: FlowRecord) -> list[schemas.ItemSummary]:
        return [
            schemas.ItemSummary(
                id=s.id,
                state=s.state,
                response_count=s.response_count,
                max_response_threshold=s.max_response_threshold,
                min_response_threshold=s.min_response_threshold,
                deadline=s.deadline,
                version=s.version,
            )
            for s in await self.statuses(flow)
        ]

    async def stop(self, who: Principal, item_id: str) -> schemas.ItemStatus:
        found = await self.find(who, item_id)
        if not isinstance(found, ItemRecord):
            return self.ended_status(found)
        if not lifecycle.is_terminal(found.state):
            # Unlike running out of time or reaching the maximum, a stop cannot be re-derived after a
            # restart: it is durable before it takes effect (and refused, 503, while the database is away).
            now, reason = self.clock.now(), "stopped by the researcher"
            await self.store.write(
                [("UPDATE items SET state=?, ended_at=?, reason=? WHERE id=?", ("Stopped", now, reason, found.id))]
            )
            if not lifecycle.is_terminal(found.state):
                self.set_state(found, "Stopped", now, reason=reason)
        return self.status(found)

    # ------------------------------------------------------------ the lifecycle

    def set_state(self, item: ItemRecord, state: str, now: float, *, reason: str | None = None) -> None:
        item.state = state
        if reason is not None:
            item.reason = reason
        if lifecycle.is_terminal(state):
            item.ended_at = now
            self.active.pop(item.id, None)
            self.leases.drop_item(item, "item_ended")
            if self.leases.withdrawn:
                self.work.fire()  # pages holding this item's tasks hear at once that they are gone
            self._start_finalising(item)
        elif state == "Running" and item.started_at is None:
            item.started_at = now
        item.touch()
        if not lifecycle.is_terminal(state):
            # Started and draining are re-derivable from the deadline and the votes; they must land all the
            # same, so the writer keeps them through an outage.
            self.store.submit([_state_op(item)], retry=True).add_done_callback(_log_failure)

    def tick(self) -> float:
        """Move items along their lifecycle and let go of ended ones; returns when something next needs doing."""
        now = self.clock.now()
        wake = now + 1.0
        for item in list(self.active.values()):
            new = lifecycle.next_state(item, now)
            if new is not None:
                self.set_state(item, new, now)
                if new == "Stopping":
                    # Nothing more will be served from this item: idle annotators should look elsewhere.
                    self.work.fire()
            at = lifecycle.next_wakeup(item)
            if at is not None:
                wake = min(wake, at)
        for item in [i for i in self.live.values() if i.finalised]:
            leave_at = (item.ended_at or now) + self.retain_ended
            if now >= leave_at:
                self._evict(item)
            else:
                wake = min(wake, leave_at)
        return wake

    def _start_finalising(self, item: ItemRecord) -> None:
        if item.id not in self._finalising and not item.finalised:
            task = asyncio.ensure_future(self._finalise(item))
            self._finalising[item.id] = task
            task.add_done_callback(lambda t: self._finished_finalising(item, t))

    def _finished_finalising(self, item: ItemRecord, task: asyncio.Task[None]) -> None:
        self._finalising.pop(item.id, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("item %s could not be ended: %s", item.id, task.exception())

    async def _finalise(self, item: ItemRecord) -> None:
        """Write the ended item's final record once every answer still committing has landed or failed."""
        committing = [lease.committing for lease in item.leases.values() if lease.committing is not None]
        if committing:
            await asyncio.gather(*committing, return_exceptions=True)
        self.leases.drop_item(item, "item_ended")
        # A final fit of a large item takes a while: off the event loop (no answer can change it now).
        results, matrix = await asyncio.to_thread(item.kind.final, item)
        follow_ops, followed = await self._follow_up(item, results)
        status = msgspec.structs.replace(self.status(item), leases_out=0, server_time=0.0)
        record = encode_record(item.kind.name, status, results, matrix)
        ended_status = _json.encode(status).decode()
        pushed = self.webhooks.event_ops(
            "item.completed",
            item.flow.owner,
            item.flow.id,
            {"flow_id": item.flow.id, "item": status, "results": f"/v1/items/{item.id}/results"},
        )
        project_ops = [] if item.project is None else self.projects.final_ops(item)
        await self.store.write(
            [
                *pushed,
                *project_ops,
                *follow_ops,
                # The flow's version takes the item's share once: a replayed commit finds `final` written.
                (
                    "UPDATE flows SET ended_version = ended_version + ? WHERE id = ? "
                    "AND EXISTS (SELECT 1 FROM items WHERE id = ? AND final IS NULL)",
                    (item.flow_share, item.flow.id, item.id),
                ),
                (
                    "UPDATE items SET state=?, started_at=?, ended_at=?, reason=?, final=?, ended_status=? WHERE id=?",
                    (item.state, item.started_at, item.ended_at, item.reason, record, ended_status, item.id),
                ),
            ],
            retry=True,
        )
        if pushed:
            self.webhooks.wake()
        if followed is not None and self.flows.flows.get(followed.flow.id) is followed.flow:
            self.add(followed)
        item.final_results = results
        item.finalised = True
        if item.project is not None:
            self.projects.ended(item)
        self.wakeup.fire()

    async def _follow_up(self, item: ItemRecord, results: Any) -> tuple[list[Op], ItemRecord | None]:
        """The item its kind asks for in another flow now that `item` ended (a write flow's review), to be
        inserted with the final record; nothing when it asks none, or the flow is gone or refuses the batch."""
        follow = item.kind.follow_up(item, results)
        if follow is None:
            return [], None
        flow = self.flows.flows.get(follow.flow_id)
        if flow is None or flow.owner != item.flow.owner:
            log.warning("item %s: its follow-up flow %s is gone; no item made there", item.id, follow.flow_id)
            return [], None
        ttl = follow.time_to_live if follow.time_to_live is not None else follow.request.time_to_live
        try:
            body = await self.prepare(flow, follow.request, check_ttl(ttl))
        except Invalid as exc:
            log.warning("item %s: flow %s refused its follow-up item: %s", item.id, flow.id, exc.detail)
            return [], None
        made = self.make(new_id("item"), flow, body, self.clock.now())
        follow.created(made.id)
        # With the final record, written with `retry`: a replayed commit must not fail on the item made the first time.
        return [self.insert_op(made, body, replayable=True)], made

    def _evict(self, item: ItemRecord) -> None:
        self.live.pop(item.id, None)
        flow = item.flow
        if flow.items.pop(item.id, None) is not None:
            flow.ended_version += item.flow_share  # the flow's version stays what it was

    def drop_flow(self, flow: FlowRecord) -> list[ItemRecord]:
        """Forget a deleted flow's live items at once (their rows go with the flow's)."""
        dropped = list(flow.items.values())
        for item in dropped:
            self.leases.drop_item(item, "item_ended")
            self.active.pop(item.id, None)
            self.live.pop(item.id, None)
            task = self._finalising.pop(item.id, None)
            if task is not None:
                task.cancel()
            item.changed.fire()
        flow.items.clear()
        self.history.forget_flow(flow.id)
        return dropped

    async def drain(self) -> None:
        """At shutdown: let the final records being written land (the writer keeps them through an outage)."""
        if self._finalising:
            await asyncio.wait(list(self._finalising.values()), timeout=5.0)


def annotator_summaries(rows: list[Row]) -> list[schemas.ItemAnnotator]:
    """Per annotator of `rows` (an item's stored answers): answers and share; where the rows say which side won
    (`chose_first`), the share of decisive votes for the first-shown side with a Wilson 95 % interval; where
    they say when the task was shown (`shown_at`), the median seconds to answer."""
    by: dict[str, list[Row]] = {}
    for r in rows:
        by.setdefault(r["annotator_id"], []).append(r)
    out = []
    for annotator_id, mine in by.items():
        summary = schemas.ItemAnnotator(annotator_id=annotator_id, answers=len(mine), share=len(mine) / len(rows))
        sides = [r["chose_first"] for r in mine if r.get("chose_first") is not None]
        if sides:
            first, n = int(sum(sides)), len(sides)
            low, high = wilson(first, n)
            summary.first_choices, summary.decisive, summary.first_share = first, n, first / n
            summary.first_ci_low, summary.first_ci_high = low, high
            summary.position_bias = high < 0.5 or low > 0.5
        took = [r["created_at"] - r["shown_at"] for r in mine if r.get("shown_at") is not None]
        if took:
            summary.median_seconds = statistics.median(took)
        out.append(summary)
    return sorted(out, key=lambda a: (-a.answers, a.annotator_id))


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion k / n (Wilson 1927): honest at small n and near 0 or 1."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _state_op(item: ItemRecord) -> Op:
    return (
        "UPDATE items SET state=?, started_at=?, ended_at=?, reason=? WHERE id=?",
        (item.state, item.started_at, item.ended_at, item.reason, item.id),
    )


def _log_failure(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.error("state write failed: %s", fut.exception())


def check_ttl(ttl: Any) -> float:
    if not (isinstance(ttl, int | float) and math.isfinite(ttl) and MIN_TTL <= ttl <= MAX_TTL):
        raise Invalid(
            f"time_to_live must be a number of seconds from {MIN_TTL} to {MAX_TTL:.0f} (7 days); got {ttl}.",
            field="time_to_live",
        )
    return float(ttl)


MAX_GIVEN_PAIRS = 10_000


def check_pairs(pairs: list[tuple[int, int]] | None, n: int, kind: TaskKind) -> list[tuple[int, int]] | None:
    """Given pairs of a ranking item: positions of two different datapoints, each pair once."""
    if pairs is None:
        return None
    if not kind.takes_pairs:
        raise Invalid(
            f"pairs say which datapoints a ranking item compares; a {kind.title} batch takes none.", field="pairs"
        )
    if not 1 <= len(pairs) <= MAX_GIVEN_PAIRS:
        raise Invalid(f"Give 1 to {MAX_GIVEN_PAIRS:,} pairs, or none for the flow's own pair selection.", field="pairs")
    seen: set[tuple[int, int]] = set()
    for i, (a, b) in enumerate(pairs):
        if not (0 <= a < n and 0 <= b < n) or a == b:
            raise Invalid(
                f"pairs[{i}] = ({a}, {b}): two different datapoint positions from 0 to {n - 1}.", field=f"pairs[{i}]"
            )
        key = (min(a, b), max(a, b))
        if key in seen:
            raise Invalid(f"pairs[{i}] = ({a}, {b}) is given twice.", field=f"pairs[{i}]")
        seen.add(key)
    return [(int(a), int(b)) for a, b in pairs]
