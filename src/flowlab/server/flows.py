"""Flows: create, read, reconfigure and list them. A flow's config is the template its new items copy."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import msgspec

from flowlab import schemas
from flowlab.server.auth import Principal
from flowlab.server.clock import Clock
from flowlab.server.datapoints import content
from flowlab.server.errors import Invalid, NotFound
from flowlab.server.kinds import kind_of
from flowlab.server.media import MediaCatalog
from flowlab.server.model import FlowConfig, FlowRecord
from flowlab.server.people import new_id, require_text
from flowlab.server.store import Row, Store

MAX_LEASE = 3600.0

_json = msgspec.json.Encoder()


class Flows:
    """Every flow, in memory: flows are few and small, and the database holds each one's row."""

    def __init__(self, store: Store, clock: Clock, media: MediaCatalog) -> None:
        self.store = store
        self.clock = clock
        self.media = media
        self.flows: dict[str, FlowRecord] = {}
        self._edit_locks: dict[str, asyncio.Lock] = {}

    def restore(self, rows: list[Row], item_counts: dict[str, int]) -> None:
        for row in rows:
            cfg = msgspec.json.decode(row["config"], type=FlowConfig)
            self.flows[row["id"]] = FlowRecord(
                row["id"],
                row["owner"],
                cfg,
                row["created_at"],
                row["updated_at"],
                ended_version=int(row.get("ended_version") or 0),
                item_count=item_counts.get(row["id"], 0),
            )

    def view(self, flow: FlowRecord) -> schemas.Flow:
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
            item_count=flow.item_count,
            owner=flow.owner,
            kind=c.kind,  # type: ignore[arg-type]
            categories=c.categories,
            starting_elo=c.starting_elo,
        )

    def get(self, who: Principal, flow_id: str) -> FlowRecord:
        flow = self.flows.get(flow_id)
        if flow is None or flow.owner != who.id:
            raise NotFound(f"No flow {flow_id!r} belongs to this API key; list yours with client.flow.find_flows().")
        return flow

    def listing(self, who: Principal, limit: int, *, offset: int = 0, name: str = "") -> list[schemas.Flow]:
        """The key's flows, newest first, whose name contains `name`: `limit` of them from `offset`."""
        if limit < 1:
            raise Invalid("limit must be at least 1.", field="limit")
        if offset < 0:
            raise Invalid("offset cannot be negative.", field="offset")
        mine = [f for f in self.flows.values() if f.owner == who.id and name in f.config.name]
        mine.sort(key=lambda f: f.created_at, reverse=True)
        return [self.view(f) for f in mine[offset : offset + limit]]

    async def create_validation_set(self, who: Principal, req: schemas.ValidationSetCreate) -> schemas.ValidationSet:
        name = require_text(req.name, "name")
        if not req.pairs:
            raise Invalid("A validation set needs at least one gold pair.", field="pairs")
        await self._check_pairs(req.pairs, "pairs")
        made = schemas.ValidationSet(
            id=new_id("vset"), name=name, pair_count=len(req.pairs), created_at=self.clock.now()
        )
        await self.store.write(
            [
                (
                    "INSERT INTO validation_sets (id, owner, name, pairs, created_at) VALUES (?,?,?,?,?)",
                    (made.id, who.id, name, _json.encode(req.pairs).decode(), made.created_at),
                )
            ]
        )
        return made

    async def validation_set(
        self, who: Principal, set_id: str
    ) -> tuple[schemas.ValidationSet, list[schemas.ValidationPair]]:
        rows = await self.store.aread("SELECT * FROM validation_sets WHERE id = ? AND owner = ?", (set_id, who.id))
        if not rows:
            raise NotFound(
                f"No validation set {set_id!r} belongs to this API key; make one with "
                "client.flow.create_validation_set(name, pairs).",
                field="validation_set_id",
            )
        row = rows[0]
        pairs = msgspec.json.decode(row["pairs"], type=list[schemas.ValidationPair])
        return schemas.ValidationSet(row["id"], row["name"], len(pairs), row["created_at"]), pairs

    async def create(self, who: Principal, req: schemas.FlowCreate) -> schemas.Flow:
        gold = list(req.validation_pairs)
        if req.validation_set_id is not None:
            if req.kind != "pairwise":
                raise Invalid(
                    "Validation sets hold gold pairs, for ranking flows; classify flows have no gold questions yet.",
                    field="validation_set_id",
                )
            gold += (await self.validation_set(who, req.validation_set_id))[1]
        cfg = FlowConfig(
            name=require_text(req.name, "name"),
            instruction=require_text(req.instruction, "instruction"),
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
            validation_pairs=gold,
            kind=req.kind,
            categories=req.categories,
            starting_elo=req.starting_elo,
        )
        await self.check_config(cfg)
        now = self.clock.now()
        flow = FlowRecord(new_id("flow"), who.id, cfg, now, now)
        await self.store.write(
            [
                (
                    "INSERT INTO flows (id, owner, config, created_at, updated_at) VALUES (?,?,?,?,?)",
                    (flow.id, who.id, _json.encode(cfg).decode(), now, now),
                )
            ]
        )
        self.flows[flow.id] = flow
        return self.view(flow)

    async def update(self, who: Principal, flow_id: str, req: schemas.FlowConfigUpdate) -> schemas.Flow:
        flow = self.get(who, flow_id)
        changes = {f: getattr(req, f) for f in req.__struct_fields__ if getattr(req, f) is not None}
        if "instruction" in changes:
            changes["instruction"] = require_text(changes["instruction"], "instruction")
        # One edit of a flow at a time, each durable before anyone sees it: a concurrent edit builds on this
        # one instead of overwriting it, and a refused write (503) leaves nothing behind.
        async with self._edit_lock(flow.id):
            current = flow.config
            if (
                "max_response_threshold" in changes
                and "min_response_threshold" not in changes
                and current.min_response_threshold > changes["max_response_threshold"]
            ):
                changes["min_response_threshold"] = changes["max_response_threshold"]
            cfg = msgspec.structs.replace(current, **changes, config_version=current.config_version + 1)
            await self.check_config(cfg)
            now = self.clock.now()
            await self.store.write(
                [("UPDATE flows SET config=?, updated_at=? WHERE id=?", (_json.encode(cfg).decode(), now, flow.id))]
            )
            flow.config, flow.updated_at = cfg, now
        flow.touch()
        return self.view(flow)

    def forget(self, flow_id: str) -> None:
        self._edit_locks.pop(flow_id, None)

    def _edit_lock(self, flow_id: str) -> asyncio.Lock:
        lock = self._edit_locks.get(flow_id)
        if lock is None:
            lock = self._edit_locks[flow_id] = asyncio.Lock()
        return lock

    async def _check_pairs(self, pairs: list[schemas.ValidationPair], field: str) -> None:
        known = await self.media.resolve(d.media for pair in pairs for d in (pair.a, pair.b) if d.media is not None)
        for i, pair in enumerate(pairs):
            content(pair.a, f"{field}[{i}].a", known)
            content(pair.b, f"{field}[{i}].b", known)

    async def check_config(self, cfg: FlowConfig) -> None:
        kind_of(cfg.kind).check_config(cfg)
        await self._check_pairs(cfg.validation_pairs, "validation_pairs")
        check_thresholds(cfg, Invalid)
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


def check_thresholds(cfg: FlowConfig, error: Callable[..., Exception]) -> None:
    if cfg.max_response_threshold < 1:
        raise error("max_response_threshold must be at least 1 (votes per flow item).", field="max_response_threshold")
    if cfg.min_response_threshold < 0:
        raise error("min_response_threshold cannot be negative.", field="min_response_threshold")
    if cfg.min_response_threshold > cfg.max_response_threshold:
        raise error(
            f"min_response_threshold ({cfg.min_response_threshold}) is above "
            f"max_response_threshold ({cfg.max_response_threshold}); lower the minimum or raise "
            "the maximum.",
            field="min_response_threshold",
        )
