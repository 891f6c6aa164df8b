"""The flow service's domain operations. Route handlers parse a request and call exactly one of these."""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import os
import random
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from flowlab import ranking, schemas
from flowlab.server import lifecycle, scheduler
from flowlab.server.auth import KEY_PREFIX, TOKEN_PREFIX, Auth, Principal, digest, new_secret
from flowlab.server.clock import Clock
from flowlab.server.datapoints import build_asset, build_datapoints, content, datapoint_view, gold_view
from flowlab.server.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized
from flowlab.server.media import MediaStore, classify
from flowlab.server.model import FlowConfig, FlowRecord, ItemRecord, Lease, Signal
from flowlab.server.store import Op, Snapshot

log = logging.getLogger("flowlab.service")

MAX_DATAPOINTS = 1000  # the win-loss matrix is dense, n x n
MAX_TTL = 7 * 24 * 3600.0
MAX_LEASE = 3600.0
FINISHED_MEMORY = 1_000_000  # answered/expired task ids remembered for idempotency and clear refusals
HOT_SECONDS = 600.0
INLINE_FIT_MAX = 200  # datapoints; above this, fits run on a worker thread

_json = msgspec.json.Encoder()


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


@dataclass(slots=True)
class AnnotatorInfo:
    principal: Principal
    created_at: float
    votes: int = 0
    gold_answered: int = 0
    gold_correct: int = 0
    last_seen: float | None = None


class FlowService:
    """Owns the in-memory model and keeps it in step with the store; every method is non-blocking."""

    def __init__(self, store: Any, media: MediaStore, clock: Clock, *, seed: int | None = None) -> None:
        self.store = store
        self.media = media
        self.clock = clock
        self.rng = random.Random(seed)
        self.auth = Auth()
        self.flows: dict[str, FlowRecord] = {}
        self.items: dict[str, ItemRecord] = {}
        self.active: dict[str, ItemRecord] = {}
        self.tasks: dict[str, Lease] = {}
        self.lease_heap: list[tuple[float, str]] = []
        self.finished: OrderedDict[str, tuple[str, str]] = OrderedDict()  # task_id -> (outcome, annotator)
        self.annotators: dict[str, AnnotatorInfo] = {}
        self.media_index: dict[str, tuple[str, str, int]] = {}
        self.work = Signal()  # idle annotators wait on this
        self.wakeup = Signal()  # the lifecycle ticker waits on this
        self.hot_until = 0.0
        self.annotator_listeners = 0
        self.admin_ids: set[str] = set()
        self.refitting: set[str] = set()  # items with a background fit running
        self.committing: dict[str, asyncio.Future[None]] = {}  # task_id -> the commit its vote is waiting on

    # ------------------------------------------------------------ start-up

    def bootstrap(self, data_dir: Path, env_key: str | None) -> str | None:
        """Load state; on an empty database make the first admin key. Returns a newly generated key, if any."""
        self.restore(self.store.load())
        if any(p.role == "admin" for p in self.auth.by_hash.values()):
            return None
        key = env_key or new_secret(KEY_PREFIX)
        self._add_key(key, "admin", admin=True, sync=True)
        if env_key:
            return None
        fd = os.open(data_dir / "admin_key", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key + "\n")
        return key

    def restore(self, snap: Snapshot) -> None:
        self.admin_ids |= {row["id"] for row in snap.keys if row["admin"]}
        for row in snap.keys:
            self.auth.add(
                row["key_hash"],
                Principal(
                    row["id"], row["name"], "admin" if row["admin"] else "researcher", revoked=bool(row["revoked"])
                ),
            )
        for row in snap.annotators:
            p = Principal(row["id"], row["name"], "annotator", owner=row["owner"], revoked=bool(row["revoked"]))
            self.auth.add(row["token_hash"], p)
            self.annotators[p.id] = AnnotatorInfo(p, row["created_at"])
        for row in snap.flows:
            cfg = msgspec.json.decode(row["config"], type=FlowConfig)
            self.flows[row["id"]] = FlowRecord(row["id"], row["owner"], cfg, row["created_at"], row["updated_at"])
        for row in snap.items:
            flow = self.flows.get(row["flow_id"])
            if flow is None:
                continue
            try:
                body = msgspec.json.decode(row["body"], type=_ItemBody)
                item = self._make_item(
                    row["id"],
                    flow,
                    body,
                    row["created_at"],
                    state=row["state"],
                    started_at=row["started_at"],
                    ended_at=row["ended_at"],
                    reason=row["reason"],
                )
            except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
                log.error("item %s could not be restored: %s", row["id"], exc)
                self.store.write_now(
                    [
                        (
                            "UPDATE items SET state='Failed', reason=? WHERE id=?",
                            (f"could not be restored: {exc}", row["id"]),
                        )
                    ]
                )
                continue
            self.items[item.id] = item
            flow.items.append(item)
        for v in snap.votes:
            voted = self.items.get(v["item_id"])
            if voted is not None:
                voted.add_vote(
                    v["winner"], v["loser"], bool(v["tie"]), v["task_id"], v["annotator_id"], v["created_at"]
                )
                self._remember(v["task_id"], "accepted", v["annotator_id"])
            info = self.annotators.get(v["annotator_id"])
            if info is not None:
                info.votes += 1
                info.last_seen = max(info.last_seen or 0.0, v["created_at"])
        for g in snap.gold_answers:
            info = self.annotators.get(g["annotator_id"])
            if info is not None:
                info.gold_answered += 1
                info.gold_correct += int(g["correct"])
            self._remember(g["task_id"], "accepted", g["annotator_id"])
        for m in snap.media:
            self.media_index[m["sha256"]] = (m["media_type"], m["kind"], m["size"])
        # Items whose deadline passed while the server was down end now, as they would have then.
        now = self.clock.now()
        ops: list[Op] = []
        for item in self.items.values():
            if lifecycle.is_terminal(item.state):
                continue
            item.state = "Running" if item.state == "Stopping" else item.state
            new = lifecycle.next_state(item, now)
            if new is not None and lifecycle.is_terminal(new):
                item.state = new
                item.ended_at = min(now, item.deadline)
                ops.append(self._state_op(item))
            elif new == "Stopping":
                item.state = new
            if not lifecycle.is_terminal(item.state):
                self.active[item.id] = item
        if ops:
            self.store.write_now(ops)

    # ------------------------------------------------------------ keys and annotators

    def _add_key(self, key: str, name: str, *, admin: bool, sync: bool = False) -> tuple[Principal, Op]:
        principal = Principal(_new_id("key"), name, "admin" if admin else "researcher")
        h = digest(key)
        op: Op = (
            "INSERT INTO keys (id, name, key_hash, admin, created_at) VALUES (?,?,?,?,?)",
            (principal.id, name, h, int(admin), self.clock.now()),
        )
        if sync:
            self.store.write_now([op])
        self.auth.add(h, principal)
        if admin:
            self.admin_ids.add(principal.id)
        return principal, op

    async def create_key(self, who: Principal, name: str) -> schemas.KeyCreated:
        if who.role != "admin":
            raise Forbidden("Only the admin key can create API keys; ask whoever runs this server.")
        name = _require_text(name, "name")
        key = new_secret(KEY_PREFIX)
        principal, op = self._add_key(key, name, admin=False)
        await self.store.write([op])
        return schemas.KeyCreated(id=principal.id, name=name, key=key, admin=False)

    async def create_annotator(self, who: Principal, name: str, base_url: str) -> schemas.AnnotatorCreated:
        name = _require_text(name, "name")
        token = new_secret(TOKEN_PREFIX)
        principal = Principal(_new_id("ann"), name, "annotator", owner=who.id)
        now = self.clock.now()
        await self.store.write(
            [
                (
                    "INSERT INTO annotators (id, name, token_hash, owner, created_at) VALUES (?,?,?,?,?)",
                    (principal.id, name, digest(token), who.id, now),
                )
            ]
        )
        self.auth.add(digest(token), principal)
        self.annotators[principal.id] = AnnotatorInfo(principal, now)
        return schemas.AnnotatorCreated(
            id=principal.id, name=name, token=token, join_url=f"{base_url.rstrip('/')}/annotate#token={token}"
        )

    def list_annotators(self, who: Principal) -> list[schemas.AnnotatorStats]:
        return [
            self._annotator_stats(a)
            for a in self.annotators.values()
            if who.role == "admin" or a.principal.owner == who.id
        ]

    def annotator_stats(self, annotator_id: str) -> schemas.AnnotatorStats:
        return self._annotator_stats(self.annotators[annotator_id])

    @staticmethod
    def _annotator_stats(a: AnnotatorInfo) -> schemas.AnnotatorStats:
        return schemas.AnnotatorStats(
            id=a.principal.id,
            name=a.principal.name,
            created_at=a.created_at,
            revoked=a.principal.revoked,
            votes=a.votes,
            gold_answered=a.gold_answered,
            gold_correct=a.gold_correct,
            gold_agreement=(a.gold_correct / a.gold_answered) if a.gold_answered else None,
            last_seen=a.last_seen,
        )

    async def revoke_annotator(self, who: Principal, annotator_id: str) -> None:
        info = self.annotators.get(annotator_id)
        if info is None or not (who.role == "admin" or info.principal.owner == who.id):
            raise NotFound(f"No annotator {annotator_id!r} among yours; list them with GET /v1/annotators.")
        info.principal.revoked = True
        for lease in [lease for lease in self.tasks.values() if lease.annotator_id == annotator_id]:
            self._release(lease, "revoked", requeue=True)
        self.work.fire()
        await self.store.write([("UPDATE annotators SET revoked=1 WHERE id=?", (annotator_id,))])

    # ------------------------------------------------------------ flows

    def flow_view(self, flow: FlowRecord) -> schemas.Flow:
        c = flow.config
        return schemas.Flow(
            id=flow.id,
            name=c.name,
            instruction=c.instruction,
            max_response_threshold=c.max_response_threshold,
            min_response_threshold=c.min_response_threshold,
            allow_ties=c.allow_ties,
            pair_selection=c.pair_selection,
            lease_seconds=c.lease_seconds,
            drain_seconds=c.drain_seconds,
            render_markdown=c.render_markdown,
            gold_rate=c.gold_rate,
            validation_pair_count=len(c.validation_pairs),
            config_version=c.config_version,
            created_at=flow.created_at,
            updated_at=flow.updated_at,
            item_count=len(flow.items),
            owner=flow.owner,
        )

    def get_flow(self, who: Principal, flow_id: str) -> FlowRecord:
        flow = self.flows.get(flow_id)
        if flow is None or flow.owner != who.id:
            raise NotFound(f"No flow {flow_id!r} belongs to this API key; list yours with client.flow.find_flows().")
        return flow

    def list_flows(self, who: Principal, limit: int) -> list[schemas.Flow]:
        if limit < 1:
            raise Invalid("limit must be at least 1.", field="limit")
        mine = [f for f in self.flows.values() if f.owner == who.id]
        mine.sort(key=lambda f: f.created_at, reverse=True)
        return [self.flow_view(f) for f in mine[:limit]]

    async def create_flow(self, who: Principal, req: schemas.FlowCreate) -> schemas.Flow:
        cfg = FlowConfig(
            name=_require_text(req.name, "name"),
            instruction=_require_text(req.instruction, "instruction"),
            max_response_threshold=req.max_response_threshold,
            min_response_threshold=(
                req.max_response_threshold if req.min_response_threshold is None else req.min_response_threshold
            ),
            allow_ties=req.allow_ties,
            pair_selection=req.pair_selection,
            lease_seconds=req.lease_seconds,
            drain_seconds=req.drain_seconds,
            render_markdown=req.render_markdown,
            gold_rate=req.gold_rate,
            validation_pairs=req.validation_pairs,
        )
        self._check_config(cfg)
        now = self.clock.now()
        flow = FlowRecord(_new_id("flow"), who.id, cfg, now, now)
        await self.store.write(
            [
                (
                    "INSERT INTO flows (id, owner, config, created_at, updated_at) VALUES (?,?,?,?,?)",
                    (flow.id, who.id, _json.encode(cfg).decode(), now, now),
                )
            ]
        )
        self.flows[flow.id] = flow
        return self.flow_view(flow)

    async def update_flow(self, who: Principal, flow_id: str, req: schemas.FlowConfigUpdate) -> schemas.Flow:
        flow = self.get_flow(who, flow_id)
        changes = {f: getattr(req, f) for f in req.__struct_fields__ if getattr(req, f) is not None}
        if "instruction" in changes:
            changes["instruction"] = _require_text(changes["instruction"], "instruction")
        if (
            "max_response_threshold" in changes
            and "min_response_threshold" not in changes
            and flow.config.min_response_threshold > changes["max_response_threshold"]
        ):
            changes["min_response_threshold"] = changes["max_response_threshold"]
        cfg = msgspec.structs.replace(flow.config, **changes, config_version=flow.config.config_version + 1)
        self._check_config(cfg)
        now = self.clock.now()
        # In memory before the commit, so a concurrent update builds on this one instead of overwriting it.
        flow.config, flow.updated_at = cfg, now
        flow.touch()
        await self.store.write(
            [("UPDATE flows SET config=?, updated_at=? WHERE id=?", (_json.encode(cfg).decode(), now, flow.id))]
        )
        return self.flow_view(flow)

    async def delete_flow(self, who: Principal, flow_id: str) -> None:
        flow = self.get_flow(who, flow_id)
        # Gone from memory first: a concurrent delete then gets a 404, and a concurrent create notices.
        del self.flows[flow.id]
        for item in flow.items:
            self._drop_leases(item, "item_ended")
            self.active.pop(item.id, None)
            self.items.pop(item.id, None)
            item.changed.fire()
        flow.touch()
        ops: list[Op] = [
            ("DELETE FROM flows WHERE id=?", (flow.id,)),
            ("DELETE FROM items WHERE flow_id=?", (flow.id,)),
            ("DELETE FROM gold_answers WHERE flow_id=?", (flow.id,)),
        ]
        ops += [("DELETE FROM votes WHERE item_id=?", (i.id,)) for i in flow.items]
        await self.store.write(ops)

    def _check_config(self, cfg: FlowConfig) -> None:
        for i, pair in enumerate(cfg.validation_pairs):
            content(pair.a, f"validation_pairs[{i}].a", self.media_index)
            content(pair.b, f"validation_pairs[{i}].b", self.media_index)
        if cfg.max_response_threshold < 1:
            raise Invalid(
                "max_response_threshold must be at least 1 (votes per flow item).", field="max_response_threshold"
            )
        if cfg.min_response_threshold < 0:
            raise Invalid("min_response_threshold cannot be negative.", field="min_response_threshold")
        if cfg.min_response_threshold > cfg.max_response_threshold:
            raise Invalid(
                f"min_response_threshold ({cfg.min_response_threshold}) is above "
                f"max_response_threshold ({cfg.max_response_threshold}); lower the minimum or raise "
                "the maximum.",
                field="min_response_threshold",
            )
        if not 0 < cfg.lease_seconds <= MAX_LEASE:
            raise Invalid(f"lease_seconds must be in (0, {MAX_LEASE:.0f}].", field="lease_seconds")
        if cfg.drain_seconds is not None and cfg.drain_seconds < 0:
            raise Invalid("drain_seconds cannot be negative.", field="drain_seconds")
        if not 0.0 <= cfg.gold_rate <= 1.0:
            raise Invalid("gold_rate is a probability: give a number from 0 to 1.", field="gold_rate")
        if cfg.allow_ties is False and any(p.answer == "tie" for p in cfg.validation_pairs):
            raise Invalid(
                "A validation pair answers 'tie' but the flow does not allow ties; set allow_ties=True.",
                field="validation_pairs",
            )

    # ------------------------------------------------------------ items

    def get_item(self, who: Principal, item_id: str) -> ItemRecord:
        item = self.items.get(item_id)
        if item is None or item.flow.owner != who.id:
            raise NotFound(
                f"No flow item {item_id!r} belongs to this API key; list a flow's items with flow.get_flow_items()."
            )
        return item

    async def create_item(self, who: Principal, flow_id: str, req: schemas.ItemCreate) -> schemas.ItemStatus:
        flow = self.get_flow(who, flow_id)
        n = len(req.datapoints)
        if n < 2:
            raise Invalid(f"A flow batch needs at least 2 datapoints to compare; got {n}.", field="datapoints")
        if n > MAX_DATAPOINTS:
            raise Invalid(
                f"A flow batch holds at most {MAX_DATAPOINTS} datapoints; got {n}. Split it into several batches.",
                field="datapoints",
            )
        if not (
            isinstance(req.time_to_live, int | float)
            and math.isfinite(req.time_to_live)
            and 0 < req.time_to_live <= MAX_TTL
        ):
            raise Invalid(
                f"time_to_live must be a number of seconds above 0 and at most {MAX_TTL:.0f} "
                f"(7 days); got {req.time_to_live}.",
                field="time_to_live",
            )
        body = _ItemBody(
            config=flow.config,
            datapoints=build_datapoints(req.datapoints, self.media_index),
            context=req.context,
            context_assets=[build_asset(a, i, self.media_index) for i, a in enumerate(req.context_assets)],
            private_metadata=req.private_metadata,
            ttl=float(req.time_to_live),
        )
        now = self.clock.now()
        item = self._make_item(_new_id("item"), flow, body, now)
        await self.store.write(
            [
                (
                    "INSERT INTO items (id, flow_id, body, created_at, state) VALUES (?,?,?,?,?)",
                    (item.id, flow.id, _json.encode(body).decode(), now, item.state),
                )
            ]
        )
        if self.flows.get(flow.id) is not flow:
            raise NotFound(f"Flow {flow.id!r} was deleted while this batch was being created.")
        self.items[item.id] = item
        self.active[item.id] = item
        flow.items.append(item)
        flow.touch()
        self.work.fire()
        self.wakeup.fire()
        return self.item_status(item)

    def _make_item(
        self, item_id: str, flow: FlowRecord, body: _ItemBody, created_at: float, **state: Any
    ) -> ItemRecord:
        return ItemRecord(
            id=item_id,
            flow=flow,
            config=body.config,
            datapoints=body.datapoints,
            context=body.context,
            context_assets=body.context_assets,
            private_metadata=body.private_metadata,
            ttl=body.ttl,
            created_at=created_at,
            rng=random.Random(self.rng.random()),
            **state,
        )

    def item_status(self, item: ItemRecord) -> schemas.ItemStatus:
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
        )

    def item_detail(self, item: ItemRecord) -> schemas.ItemDetail:
        return schemas.ItemDetail(
            status=self.item_status(item),
            datapoints=item.datapoints,
            context_assets=item.context_assets,
            private_metadata=item.private_metadata,
        )

    def list_items(self, who: Principal, flow_id: str) -> list[schemas.ItemStatus]:
        return [self.item_status(i) for i in self.get_flow(who, flow_id).items]

    def matrix(self, item: ItemRecord) -> schemas.WinLossMatrix:
        return schemas.WinLossMatrix(
            keys=item.keys, counts=item.wins.tolist(), response_count=item.response_count, version=item.version
        )

    def votes(self, item: ItemRecord) -> list[schemas.Vote]:
        return [
            schemas.Vote(task_id=t, annotator_id=a, winner=w, loser=lo, tie=bool(tie), created_at=at)
            for (w, lo, tie), (t, a, at) in zip(item.votes, item.vote_info, strict=True)
        ]

    async def results(self, item: ItemRecord) -> schemas.ItemResults:
        # Snapshot first: votes may land while the fit runs, and the answer must describe one moment.
        version, count, state = item.version, item.response_count, item.state
        wins = item.wins.copy()
        fit = await self._fit_async(item, wins, version)
        played = wins.sum(axis=1) + wins.sum(axis=0)
        won = wins.sum(axis=1)
        dps = [
            schemas.DatapointResult(
                key=item.keys[i],
                index=i,
                score=float(fit.scores[i]),
                elo=float(fit.elo[i]),
                ci_low=float(fit.ci_low[i]),
                ci_high=float(fit.ci_high[i]),
                rank=int(fit.ranks[i]),
                rank_low=int(fit.rank_low[i]),
                rank_high=int(fit.rank_high[i]),
                votes=round(float(played[i])),
                wins=float(won[i]),
            )
            for i in range(len(item.keys))
        ]
        dps.sort(key=lambda d: (d.rank, -d.score))
        return schemas.ItemResults(
            item_id=item.id,
            state=state,  # type: ignore[arg-type]
            total_votes=count,
            partial=not lifecycle.is_terminal(state),
            datapoints=dps,
            version=version,
        )

    async def _fit_async(self, item: ItemRecord, wins: np.ndarray, version: int) -> Any:
        """The item's Bradley–Terry fit at `version`, computed off the event loop: a fit of a large item takes
        long enough (0.1 s at n = 1,000) that acknowledgements would stall behind it."""
        if item.fit is not None and item.fit_version == version:
            return item.fit
        # Warm-started from the previous fit: a live refit after a few votes is a couple of Newton steps.
        init = item.fit.scores if item.fit is not None else None
        if len(item.keys) <= INLINE_FIT_MAX:
            fit = ranking.fit_bradley_terry(wins, len(item.keys), init=init)
        else:
            fit = await asyncio.to_thread(ranking.fit_bradley_terry, wins, len(item.keys), init=init)
        if version >= item.fit_version:
            item.fit, item.fit_version = fit, version
        return fit

    def _fit_for_selection(self, item: ItemRecord) -> Any:
        """A fit for choosing pairs, never blocking the lease path on a large item: a stale fit is good
        enough to rank candidate pairs, and a fresh one is computed in the background."""
        if item.fit is not None and item.fit_version == item.version:
            return item.fit
        if len(item.keys) <= INLINE_FIT_MAX:
            init = item.fit.scores if item.fit is not None else None
            item.fit = ranking.fit_bradley_terry(item.wins, len(item.keys), init=init)
            item.fit_version = item.version
            return item.fit
        if item.id not in self.refitting:
            self.refitting.add(item.id)
            task = asyncio.ensure_future(self._fit_async(item, item.wins.copy(), item.version))
            task.add_done_callback(lambda _: self.refitting.discard(item.id))
        return item.fit

    async def stop_item(self, item: ItemRecord) -> schemas.ItemStatus:
        if not lifecycle.is_terminal(item.state):
            self._set_state(item, "Stopped", self.clock.now(), reason="stopped by the researcher")
            await self.store.submit([self._state_op(item)])
        return self.item_status(item)

    # ------------------------------------------------------------ lifecycle

    @staticmethod
    def _state_op(item: ItemRecord) -> Op:
        return (
            "UPDATE items SET state=?, started_at=?, ended_at=?, reason=? WHERE id=?",
            (item.state, item.started_at, item.ended_at, item.reason, item.id),
        )

    def _set_state(self, item: ItemRecord, state: str, now: float, *, reason: str | None = None) -> None:
        item.state = state
        if reason is not None:
            item.reason = reason
        if lifecycle.is_terminal(state):
            item.ended_at = now
            self.active.pop(item.id, None)
            self._drop_leases(item, "item_ended")
        item.touch()

    def _drop_leases(self, item: ItemRecord, outcome: str) -> None:
        for task_id, lease in list(item.leases.items()):
            self.tasks.pop(task_id, None)
            self._remember(task_id, outcome, lease.annotator_id)
        item.leases.clear()

    def tick(self) -> float:
        """Expire leases and move items along their lifecycle; returns when something next needs doing."""
        now = self.clock.now()
        self.expire_leases(now)
        ops: list[Op] = []
        wake = now + 1.0
        for item in list(self.active.values()):
            new = lifecycle.next_state(item, now)
            if new is not None:
                self._set_state(item, new, now)
                ops.append(self._state_op(item))
                if new == "Stopping":
                    # Nothing more will be served from this item: idle annotators should look elsewhere.
                    self.work.fire()
            at = lifecycle.next_wakeup(item)
            if at is not None:
                wake = min(wake, at)
        if self.lease_heap:
            wake = min(wake, self.lease_heap[0][0])
        if ops:
            self._persist_later(ops)
        return wake

    def _persist_later(self, ops: list[Op]) -> None:
        # State changes are re-derivable from deadlines and votes, so nobody waits on their commit.
        fut = self.store.submit(ops)
        fut.add_done_callback(_log_failure)

    def expire_leases(self, now: float) -> None:
        heap = self.lease_heap
        expired_any = False
        while heap and heap[0][0] <= now:
            _, task_id = heapq.heappop(heap)
            lease = self.tasks.get(task_id)
            if lease is None or lease.expires_at > now:
                continue
            self._release(lease, "lease_expired", requeue=True)
            expired_any = True
        if expired_any:
            self.work.fire()

    def _release(self, lease: Lease, outcome: str, *, requeue: bool, defer: bool = False) -> None:
        """End a lease without a vote. Its pair is served again: next (an expired lease), or after fresh pairs
        (`defer`, a skip, so the annotator who skipped it is not handed it straight back)."""
        self.tasks.pop(lease.task_id, None)
        self._remember(lease.task_id, outcome, lease.annotator_id)
        if lease.gold is None:
            item = lease.item
            if item.leases.pop(lease.task_id, None) is not None:
                if requeue and not lifecycle.is_terminal(item.state):
                    if not defer:
                        item.requeue.append((lease.a, lease.b))
                    elif item.config.pair_selection != "active":  # the active selector re-chooses on its own
                        item.pair_queue.defer((lease.a, lease.b))
                item.touch()

    def _remember(self, task_id: str, outcome: str, annotator_id: str) -> None:
        self.finished[task_id] = (outcome, annotator_id)
        if len(self.finished) > FINISHED_MEMORY:
            self.finished.popitem(last=False)

    # ------------------------------------------------------------ the annotator protocol

    @property
    def poll_interval(self) -> float:
        return 0.05 if self.clock.now() < self.hot_until else 1.0

    def lease_next(self, who: Principal) -> schemas.Task | None:
        now = self.clock.now()
        self.expire_leases(now)
        # An annotator made with the admin key works on every flow; one made by a researcher, on theirs only.
        scope = None if who.owner in self.admin_ids else who.owner
        best = scheduler.choose_item(self.active.values(), now, scope)
        if best is None:
            return None
        info = self.annotators.get(who.id)
        if info is not None:
            info.last_seen = now
        cfg = best.config
        flow_cfg = best.flow.config
        if flow_cfg.validation_pairs and self.rng.random() < flow_cfg.gold_rate:
            return self._gold_task(best, who, now)
        a, b = scheduler.next_pair(best, self.rng, self._fit_for_selection)
        if self.rng.random() < 0.5:
            a, b = b, a
        lease = Lease(_new_id("task"), best, a, b, who.id, min(now + cfg.lease_seconds, best.deadline))
        best.leases[lease.task_id] = lease
        self.tasks[lease.task_id] = lease
        heapq.heappush(self.lease_heap, (lease.expires_at, lease.task_id))
        if best.state == "Pending":
            best.state, best.started_at = "Running", now
            self._persist_later([self._state_op(best)])
        best.touch()
        return self._task_view(lease, best.datapoints[a], best.datapoints[b], now)

    def _gold_task(self, item: ItemRecord, who: Principal, now: float) -> schemas.Task:
        gold = scheduler.pick_gold(item.flow.config.validation_pairs, self.rng)
        lease = Lease(
            _new_id("task"), item, -1, -1, who.id, min(now + item.config.lease_seconds, item.deadline), gold=gold
        )
        self.tasks[lease.task_id] = lease
        heapq.heappush(self.lease_heap, (lease.expires_at, lease.task_id))
        # Gold views carry ordinary-looking refs so a page cannot tell them apart from real pairs.
        n = len(item.datapoints)
        return self._task_view(
            lease, gold_view(gold.a, self.rng.randrange(n)), gold_view(gold.b, self.rng.randrange(n)), now
        )

    def _task_view(self, lease: Lease, a: Any, b: Any, now: float) -> schemas.Task:
        item = lease.item
        cfg = item.config
        return schemas.Task(
            task_id=lease.task_id,
            item_id=item.id,
            flow_id=item.flow.id,
            instruction=cfg.instruction,
            context=item.context,
            context_assets=item.context_assets,
            a=datapoint_view(a),
            b=datapoint_view(b),
            allow_ties=cfg.allow_ties,
            render_markdown=cfg.render_markdown,
            lease_expires_at=lease.expires_at,
            lease_seconds=cfg.lease_seconds,
            server_time=now,
        )

    async def wait_for_task(
        self, who: Principal, wait: float, gone: Callable[[], bool] = lambda: False
    ) -> schemas.Task | None:
        """Lease a task, waiting up to `wait` seconds for one. `gone` tells whether the asker hung up: a task
        leased to a closed connection would sit unanswered until its lease ran out."""
        deadline = time.monotonic() + max(0.0, min(wait, 60.0))
        while not gone():
            if who.revoked:
                raise Unauthorized("This annotator token was revoked while it waited for work.")
            task = self.lease_next(who)
            if task is not None:
                return task
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            await self.work.wait(min(left, 1.0))
        return None

    async def wait_for_tasks(
        self, who: Principal, n: int, wait: float, gone: Callable[[], bool] = lambda: False
    ) -> list[schemas.Task]:
        if not 1 <= n <= 1000:
            raise Invalid("n must be between 1 and 1000 tasks per request.", field="n")
        first = await self.wait_for_task(who, wait, gone)
        if first is None:
            return []
        tasks = [first]
        while len(tasks) < n:
            task = self.lease_next(who)
            if task is None:
                break
            tasks.append(task)
        return tasks

    def _answer(
        self, who: Principal, task_id: str, choice: str, now: float, ops: list[Op], waits: list[asyncio.Future[None]]
    ) -> schemas.Ack:
        """Apply one answer to the model and add its writes to `ops`; the caller acknowledges after the commit.

        A repeated answer whose first copy is still committing adds that commit to `waits`: "duplicate" must not
        be said of a vote before it is durable."""
        lease = self.tasks.get(task_id)
        if lease is None or lease.annotator_id != who.id:
            prior = self.finished.get(task_id)
            if prior is None or prior[1] != who.id:
                raise NotFound(
                    f"No task {task_id!r} is out with you (tasks handed out before a server restart are forgotten); "
                    "fetch one with POST /v1/tasks/next."
                )
            outcome = prior[0]
            if outcome == "accepted":
                committing = self.committing.get(task_id)
                if committing is not None:
                    waits.append(committing)
                return schemas.Ack(task_id=task_id, status="duplicate", detail="Already answered; counted once.")
            if outcome == "skipped" and choice == "skip":
                return schemas.Ack(task_id=task_id, status="skipped")
            return schemas.Ack(task_id=task_id, status="rejected", code=outcome, detail=_REFUSALS[outcome])
        item = lease.item
        if lease.gold is None and lifecycle.is_terminal(item.state):
            self._release(lease, "item_ended", requeue=False)
            return schemas.Ack(task_id=task_id, status="rejected", code="item_ended", detail=_REFUSALS["item_ended"])
        if now > lease.expires_at:
            self._release(lease, "lease_expired", requeue=True)
            self.work.fire()
            return schemas.Ack(
                task_id=task_id, status="rejected", code="lease_expired", detail=_REFUSALS["lease_expired"]
            )
        if choice == "tie" and not item.config.allow_ties:
            return schemas.Ack(
                task_id=task_id, status="rejected", code="tie_not_allowed", detail=_REFUSALS["tie_not_allowed"]
            )
        if choice == "skip":
            self._release(lease, "skipped", requeue=True, defer=True)
            self.work.fire()
            return schemas.Ack(task_id=task_id, status="skipped")
        info = self.annotators.get(who.id)
        if info is not None:
            info.last_seen = now
        if lease.gold is not None:
            correct = int(choice == lease.gold.answer)
            self.tasks.pop(task_id, None)
            self._remember(task_id, "accepted", who.id)
            if info is not None:
                info.gold_answered += 1
                info.gold_correct += correct
            ops.append(
                (
                    "INSERT INTO gold_answers (task_id, annotator_id, flow_id, correct, created_at) VALUES (?,?,?,?,?)",
                    (task_id, who.id, item.flow.id, correct, now),
                )
            )
            return schemas.Ack(task_id=task_id, status="accepted")
        winner, loser = (lease.b, lease.a) if choice == "b" else (lease.a, lease.b)
        tie = choice == "tie"
        del item.leases[task_id]
        self.tasks.pop(task_id, None)
        self._remember(task_id, "accepted", who.id)
        item.add_vote(winner, loser, tie, task_id, who.id, now)
        if info is not None:
            info.votes += 1
        ops.append(
            (
                "INSERT INTO votes (task_id, item_id, annotator_id, winner, loser, tie, created_at) "
                "VALUES (?,?,?,?,?,?,?)",
                (task_id, item.id, who.id, winner, loser, int(tie), now),
            )
        )
        new = lifecycle.next_state(item, now)
        if new is not None:
            self._set_state(item, new, now)
            ops.append(self._state_op(item))
        else:
            item.touch()
        return schemas.Ack(task_id=task_id, status="accepted")

    async def _commit_answers(self, ops: list[Op], accepted: list[str], waits: list[asyncio.Future[None]]) -> None:
        if ops:
            fut = self.store.submit(ops)
            for task_id in accepted:
                self.committing[task_id] = fut
            try:
                await asyncio.shield(fut)
            finally:
                for task_id in accepted:
                    self.committing.pop(task_id, None)
        for w in waits:
            await asyncio.shield(w)

    async def answer(self, who: Principal, task_id: str, req: schemas.Answer) -> schemas.Ack:
        ops: list[Op] = []
        waits: list[asyncio.Future[None]] = []
        ack = self._answer(who, task_id, req.choice, self.clock.now(), ops, waits)
        await self._commit_answers(ops, [task_id] if ack.status == "accepted" else [], waits)
        if ack.status == "rejected" and ack.code in ("item_ended", "lease_expired", "skipped", "revoked"):
            raise Conflict(ack.detail or "", code=ack.code)
        if ack.status == "rejected":
            raise Invalid(ack.detail or "", field="choice", code=ack.code)
        if req.fetch_next and not who.revoked:
            ack.next = self.lease_next(who)
        return ack

    async def answer_batch(self, who: Principal, answers: list[schemas.AnswerIn]) -> list[schemas.Ack]:
        if len(answers) > 10_000:
            raise Invalid("At most 10,000 answers per request.", field="answers")
        now = self.clock.now()
        ops: list[Op] = []
        waits: list[asyncio.Future[None]] = []
        acks = []
        for a in answers:
            try:
                acks.append(self._answer(who, a.task_id, a.choice, now, ops, waits))
            except NotFound as exc:
                acks.append(schemas.Ack(task_id=a.task_id, status="rejected", code="unknown_task", detail=exc.detail))
        await self._commit_answers(ops, [a.task_id for a in acks if a.status == "accepted"], waits)
        return acks

    async def preheat(self) -> schemas.Preheated:
        t0 = time.perf_counter()
        # Touch every path the first batch will take: a durable commit, a fit, the JSON encoder.
        await self.store.write([])
        demo = np.random.default_rng(0).integers(0, 3, size=(8, 8)).astype(float)
        np.fill_diagonal(demo, 0.0)
        ranking.fit_bradley_terry(demo, 8)
        _json.encode(self.list_annotators(Principal("warm", "warm", "admin")))
        now = self.clock.now()
        self.hot_until = now + HOT_SECONDS
        self.work.fire()
        return schemas.Preheated(
            warm_ms=(time.perf_counter() - t0) * 1000,
            annotators_notified=self.annotator_listeners,
            hot_until=self.hot_until,
        )

    # ------------------------------------------------------------ media

    async def put_media(self, data: bytes, content_type: str | None, filename: str | None) -> schemas.MediaRef:
        if not data:
            raise Invalid("The upload is empty; send the file's bytes as the request body.", field="body")
        media_type, kind = classify(data, content_type, filename)
        sha = await asyncio.to_thread(self.media.put, data)
        if sha not in self.media_index:
            await self.store.write(
                [
                    (
                        "INSERT OR IGNORE INTO media (sha256, media_type, kind, size, created_at) VALUES (?,?,?,?,?)",
                        (sha, media_type, kind, len(data), self.clock.now()),
                    )
                ]
            )
            self.media_index[sha] = (media_type, kind, len(data))
        return schemas.MediaRef(sha256=sha, media_type=media_type, kind=kind, size=len(data))  # type: ignore[arg-type]

    def media_file(self, sha256: str) -> tuple[Path, str]:
        known = self.media_index.get(sha256)
        if known is None:
            raise NotFound(f"No uploaded file has sha256 {sha256!r}.")
        return self.media.path(sha256), known[0]


class _ItemBody(msgspec.Struct):
    """What is stored for an item: its config snapshot and everything it was created with."""

    config: FlowConfig
    datapoints: list[schemas.Datapoint]
    context: str | None
    context_assets: list[schemas.ContextAsset]
    private_metadata: dict[str, Any] | None
    ttl: float


_REFUSALS = {
    "lease_expired": "Your lease on this pair ran out before the answer arrived, so the pair went to someone "
    "else; this answer was not counted. Fetch the next task.",
    "item_ended": "This flow item has ended (expired, completed or stopped); the answer was not counted. Fetch "
    "the next task.",
    "skipped": "This task was skipped; fetch a new one.",
    "revoked": "This annotator token was revoked; its tasks went back to the queue.",
    "tie_not_allowed": "This flow does not allow ties; answer 'a' or 'b' (or 'skip').",
}


def _log_failure(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.error("state write failed: %s", fut.exception())


def _require_text(value: str, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Invalid(f"{field} must be a non-empty string.", field=field)
    return value
