"""Flows: create, read, reconfigure and list them. A flow's config is the template its new items copy."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import msgspec

from flowlab import schemas
from flowlab.server.auth import Principal
from flowlab.server.clock import Clock
from flowlab.server.datapoints import build_asset, content
from flowlab.server.errors import Invalid, NotFound
from flowlab.server.kinds import all_kinds, gold_kind, kind_of
from flowlab.server.media import MediaCatalog
from flowlab.server.model import FlowConfig, FlowRecord
from flowlab.server.people import new_id, require_text
from flowlab.server.store import Row, Store
from flowlab.settings import check_flags

MAX_LEASE = 3600.0
MAX_DIMENSIONS = 32


def _dimensions(given: list[str]) -> list[str]:
    """A validation set's tracking dimensions (hosted's), checked: distinct non-empty names."""
    if len(given) > MAX_DIMENSIONS:
        raise Invalid(f"A validation set names at most {MAX_DIMENSIONS} dimensions.", field="dimensions")
    out = []
    for i, d in enumerate(given):
        if not d.strip():
            raise Invalid("Each dimension is a non-empty name.", field=f"dimensions[{i}]")
        if d not in out:
            out.append(d)
    return out


_json = msgspec.json.Encoder()


class Flows:
    """Every flow, in memory: flows are few and small, and the database holds each one's row."""

    def __init__(self, store: Store, clock: Clock, media: MediaCatalog) -> None:
        self.store = store
        self.clock = clock
        self.media = media
        self.flows: dict[str, FlowRecord] = {}
        self._edit_locks: dict[str, asyncio.Lock] = {}
        # In a cluster, this process's node id: the flows it creates are its own to serve. Alone, None.
        self.node: str | None = None
        # Refuses audience ids that are not the key's (set by the service, which knows the audiences).
        self.check_audiences: Callable[[Principal, list[str]], list[str]] = lambda _who, ids: ids

    def restore(self, rows: list[Row], item_counts: dict[str, int]) -> None:
        for row in rows:
            self.flows[row["id"]] = _record(row, item_counts.get(row["id"], 0))

    def mine(self, flow: FlowRecord) -> bool:
        """Whether this process serves the flow (alone, it serves them all)."""
        return self.node is None or flow.node == self.node

    def refresh(self, rows: list[Row], item_counts: dict[str, int], ids: set[str] | None) -> list[str]:
        """Bring the flows that other processes of the cluster serve up to date with their rows (of `ids`,
        or of all flows): config, counts and which process serves each. Returns those now served here."""
        seen = {row["id"] for row in rows}
        for flow_id in [f for f in self.flows if (ids is None or f in ids) and f not in seen]:
            if not self.mine(self.flows[flow_id]):
                del self.flows[flow_id]  # deleted by the process that served it
        adopted = []
        for row in rows:
            flow = self.flows.get(row["id"])
            fresh = _record(row, item_counts.get(row["id"], 0))
            if flow is None:
                self.flows[fresh.id] = fresh
            elif not self.mine(flow):
                flow.config, flow.updated_at, flow.node = fresh.config, fresh.updated_at, fresh.node
                flow.ended_version, flow.item_count = fresh.ended_version, fresh.item_count
            else:
                continue
            if self.mine(self.flows[fresh.id]):
                adopted.append(fresh.id)
        return adopted

    def view(self, flow: FlowRecord) -> schemas.Flow:
        c = flow.config
        return schemas.Flow(
            id=flow.id,
            name=c.name,
            instruction=c.instruction,
            max_response_threshold=c.max_response_threshold,
            min_response_threshold=c.min_response_threshold,
            allow_ties=c.ties_allowed,
            pair_selection=c.pair_selection,
            lease_seconds=c.lease_seconds,
            drain_seconds=c.drain_seconds,
            render_markdown=c.markdown,
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
            validation_label_count=len(c.validation_labels),
            settings=c.settings,
            rlhf=c.rlhf,
            stop_when=c.stop_when,
            chat=c.chat,
            write=c.write,
            max_votes_per_annotator=kind_of(c.kind).annotator_cap(c),
            audiences=c.audiences,
            absolute=c.absolute,
            listwise=c.listwise,
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
        if bool(req.pairs) == bool(req.labels):
            raise Invalid(
                "A validation set holds gold pairs (for ranking flows) or gold labels (for classify flows): "
                "give one of pairs or labels, not both or neither.",
                field="labels" if req.labels else "pairs",
            )
        await self._check_gold(req.pairs, req.labels)
        for i, label in enumerate(req.labels):
            if not label.truths or not all(isinstance(t, str) and t for t in label.truths):
                raise Invalid("Each gold label needs one or more true category values.", field=f"labels[{i}].truths")
        made = schemas.ValidationSet(
            id=new_id("vset"),
            name=name,
            pair_count=len(req.pairs),
            created_at=self.clock.now(),
            label_count=len(req.labels),
            kind=gold_kind("pairs" if req.pairs else "labels").name,  # the kind its gold serves
            dimensions=_dimensions(req.dimensions),
        )
        await self.store.write(
            [
                (
                    "INSERT INTO validation_sets (id, owner, name, pairs, created_at, labels, dimensions) "
                    "VALUES (?,?,?,?,?,?,?)",
                    (
                        made.id,
                        who.id,
                        name,
                        _json.encode(req.pairs).decode(),
                        made.created_at,
                        _json.encode(req.labels).decode(),
                        _json.encode(made.dimensions).decode(),
                    ),
                )
            ]
        )
        return made

    async def validation_sets(
        self, who: Principal, limit: int, *, offset: int = 0, name: str = ""
    ) -> list[schemas.ValidationSet]:
        """The key's validation sets, newest first, whose name contains `name`: `limit` of them from `offset`."""
        if limit < 1:
            raise Invalid("limit must be at least 1.", field="limit")
        if offset < 0:
            raise Invalid("offset cannot be negative.", field="offset")
        rows = await self.store.aread(
            "SELECT id, name, created_at FROM validation_sets WHERE owner = ? ORDER BY created_at DESC, id DESC",
            (who.id,),
        )
        page = [r["id"] for r in rows if name in r["name"]][offset : offset + limit]
        return [(await self.validation_set(who, set_id))[0] for set_id in page]

    async def update_validation_set(
        self, who: Principal, set_id: str, req: schemas.ValidationSetUpdate
    ) -> schemas.ValidationSet:
        found = (await self.validation_set(who, set_id))[0]
        changes: dict[str, object] = {}
        if req.dimensions is not None:
            changes["dimensions"] = _json.encode(_dimensions(req.dimensions)).decode()
        if req.should_alert is not None:
            changes["should_alert"] = int(req.should_alert)
        if req.can_be_flagged is not None:
            changes["can_be_flagged"] = int(req.can_be_flagged)
        if not changes:
            raise Invalid("Give at least one of dimensions, should_alert or can_be_flagged to change.")
        columns = ", ".join(f"{column} = ?" for column in changes)
        await self.store.write(
            [
                (
                    f"UPDATE validation_sets SET {columns} WHERE id = ? AND owner = ?",
                    (*changes.values(), found.id, who.id),
                )
            ]
        )
        return (await self.validation_set(who, set_id))[0]

    async def delete_validation_set(self, who: Principal, set_id: str) -> None:
        """Forget the set; flows made from it keep the gold questions they copied."""
        found = (await self.validation_set(who, set_id))[0]
        await self.store.write([("DELETE FROM validation_sets WHERE id = ? AND owner = ?", (found.id, who.id))])

    async def validation_set(
        self, who: Principal, set_id: str
    ) -> tuple[schemas.ValidationSet, list[schemas.ValidationPair], list[schemas.ValidationLabel]]:
        rows = await self.store.aread("SELECT * FROM validation_sets WHERE id = ? AND owner = ?", (set_id, who.id))
        if not rows:
            raise NotFound(
                f"No validation set {set_id!r} belongs to this API key; make one with "
                "client.validation.create_compare_set(...) or create_classification_set(...).",
                field="validation_set_id",
            )
        row = rows[0]
        pairs = msgspec.json.decode(row["pairs"], type=list[schemas.ValidationPair])
        labels = msgspec.json.decode(row.get("labels") or "[]", type=list[schemas.ValidationLabel])
        made = schemas.ValidationSet(
            id=row["id"],
            name=row["name"],
            pair_count=len(pairs),
            created_at=row["created_at"],
            label_count=len(labels),
            kind=gold_kind("labels" if labels else "pairs").name,
            dimensions=msgspec.json.decode(row.get("dimensions") or "[]", type=list[str]),
            should_alert=bool(row.get("should_alert", 1)),
            can_be_flagged=bool(row.get("can_be_flagged", 1)),
        )
        if not made.should_alert:  # hosted's update_should_alert(False): a wrong gold answer is not explained
            pairs = [msgspec.structs.replace(p, explanation=None) for p in pairs]
            labels = [msgspec.structs.replace(label, explanation=None) for label in labels]
        return made, pairs, labels

    async def create(self, who: Principal, req: schemas.FlowCreate) -> schemas.Flow:
        gold, gold_labels = list(req.validation_pairs), list(req.validation_labels)
        if req.validation_set_id is not None:
            found, pairs, labels = await self.validation_set(who, req.validation_set_id)
            if found.kind != req.kind:
                serves, wanted = kind_of(found.kind), kind_of(req.kind)
                raise Invalid(
                    f"Validation set {found.id!r} holds gold for {serves.title} flows, not for {wanted.title} flows: "
                    "gold pairs (client.validation.create_compare_set) serve ranking flows, gold labels "
                    "(client.validation.create_classification_set) classify flows.",
                    field="validation_set_id",
                )
            gold += pairs
            gold_labels += labels
        try:
            flags = check_flags(req.settings)
        except ValueError as exc:
            raise Invalid(str(exc), field="settings") from None
        cfg = FlowConfig(
            name=require_text(req.name, "name"),
            instruction=require_text(req.instruction, "instruction"),
            max_response_threshold=req.max_response_threshold,
            # The minimum is what an item needs to count as complete; it defaults to the maximum, unless
            # the item may stop early, where any number of votes can settle it.
            min_response_threshold=(
                (0 if req.stop_when is not None else req.max_response_threshold)
                if req.min_response_threshold is None
                else req.min_response_threshold
            ),
            allow_ties=req.allow_ties,
            pair_selection=req.pair_selection,
            lease_seconds=req.lease_seconds if req.lease_seconds is not None else kind_of(req.kind).default_lease,
            drain_seconds=req.drain_seconds,
            render_markdown=req.render_markdown,
            gold_rate=req.gold_rate,
            validation_pairs=gold,
            kind=req.kind,
            categories=req.categories,
            starting_elo=req.starting_elo,
            validation_labels=gold_labels,
            rlhf=req.rlhf,
            stop_when=_stop_rule(req.stop_when),
            chat=req.chat,
            write=req.write,
            max_votes_per_annotator=req.max_votes_per_annotator,
            audiences=self.check_audiences(who, req.audiences),
            absolute=req.absolute,
            listwise=req.listwise,
        )
        cfg = with_settings(kind_of(req.kind).complete(cfg), flags)
        await self.check_config(cfg)
        self.check_links(who, cfg)
        now = self.clock.now()
        flow = FlowRecord(new_id("flow"), who.id, cfg, now, now, node=self.node)
        await self.store.write(
            [
                (
                    "INSERT INTO flows (id, owner, config, created_at, updated_at, node) VALUES (?,?,?,?,?,?)",
                    (flow.id, who.id, _json.encode(cfg).decode(), now, now, self.node),
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
        if "stop_when" in changes:
            changes["stop_when"] = _stop_rule(changes["stop_when"])
        if "audiences" in changes:
            changes["audiences"] = self.check_audiences(who, changes["audiences"])
        flags = changes.pop("settings", None)
        if flags is not None:
            try:
                flags = check_flags(flags)
            except ValueError as exc:
                raise Invalid(str(exc), field="settings") from None
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
            if flags is not None:
                cfg = with_settings(cfg, flags)
            await self.check_config(cfg)
            self.check_links(who, cfg)
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

    async def _check_gold(
        self,
        pairs: list[schemas.ValidationPair],
        labels: list[schemas.ValidationLabel],
        pairs_field: str = "pairs",
        labels_field: str = "labels",
    ) -> None:
        points: list[schemas.DatapointIn | schemas.ContextAsset] = [d for pair in pairs for d in (pair.a, pair.b)]
        points += [g.datapoint for g in labels] + [a for g in labels for a in g.datapoint.context_assets or ()]
        known = await self.media.resolve(d.media for d in points if d.media is not None)
        for i, pair in enumerate(pairs):
            content(pair.a, f"{pairs_field}[{i}].a", known)
            content(pair.b, f"{pairs_field}[{i}].b", known)
        for i, label in enumerate(labels):
            content(label.datapoint, f"{labels_field}[{i}].datapoint", known)
            if label.datapoint.context_assets:  # kept as annotators are shown them: kind, media type, URL
                label.datapoint.context_assets = [
                    build_asset(a, f"{labels_field}[{i}].datapoint.context_assets[{j}]", known)
                    for j, a in enumerate(label.datapoint.context_assets)
                ]

    def check_links(self, who: Principal, cfg: FlowConfig) -> None:
        """Every flow the config names (a write flow's review flow) exists, is this key's, and is of its kind."""
        for flow_id, kind, field in kind_of(cfg.kind).linked_flows(cfg):
            other = self.flows.get(flow_id)
            if other is None or other.owner != who.id:
                raise Invalid(f"No flow {flow_id!r} belongs to this API key.", field=field)
            if other.config.kind != kind:
                wanted = kind_of(kind)
                raise Invalid(
                    f"Flow {flow_id!r} is a {kind_of(other.config.kind).title} flow; {field} names a "
                    f"{wanted.title} flow (made with {wanted.create_call}).",
                    field=field,
                )

    async def check_config(self, cfg: FlowConfig) -> None:
        kind = kind_of(cfg.kind)
        for other in all_kinds():
            for name in other.owns if other is not kind else ():
                if name in kind.owns:
                    continue  # a field two kinds read (a ranking's stopping rule) belongs to each
                if getattr(cfg, name):
                    raise Invalid(
                        f"{name} is for {other.title} flows (made with {other.create_call}); this is a "
                        f"{kind.title} flow.",
                        field=name,
                    )
        kind.check_config(cfg)
        if cfg.max_votes_per_annotator is not None and cfg.max_votes_per_annotator < 1:
            raise Invalid(
                "max_votes_per_annotator is how many answers one person may give an item: at least 1, or leave it "
                "out for the kind's default.",
                field="max_votes_per_annotator",
            )
        await self._check_gold(cfg.validation_pairs, cfg.validation_labels, "validation_pairs", "validation_labels")
        check_thresholds(cfg, Invalid)
        if not 0 < cfg.lease_seconds <= MAX_LEASE:
            raise Invalid(f"lease_seconds must be in (0, {MAX_LEASE:.0f}].", field="lease_seconds")
        if cfg.drain_seconds is not None and cfg.drain_seconds < 0:
            raise Invalid("drain_seconds cannot be negative.", field="drain_seconds")
        if not 0.0 <= cfg.gold_rate <= 1.0:
            raise Invalid("gold_rate is a probability: give a number from 0 to 1.", field="gold_rate")
        if not cfg.ties_allowed and any(p.answer == "tie" for p in cfg.validation_pairs):
            raise Invalid(
                "A validation pair answers 'tie' but the flow does not allow ties; set allow_ties=True.",
                field="validation_pairs",
            )


def _record(row: Row, item_count: int) -> FlowRecord:
    return FlowRecord(
        row["id"],
        row["owner"],
        msgspec.json.decode(row["config"], type=FlowConfig),
        row["created_at"],
        row["updated_at"],
        ended_version=int(row.get("ended_version") or 0),
        item_count=item_count,
        node=row.get("node"),
    )


def with_settings(cfg: FlowConfig, flags: dict[str, str]) -> FlowConfig:
    """The flow with these settings (those that are flowlab options too turn them on while they are set:
    `FlowConfig.ties_allowed`, `FlowConfig.markdown`)."""
    return msgspec.structs.replace(cfg, settings=flags)


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


def _stop_rule(rule: schemas.StopWhen | None) -> schemas.StopWhen | None:
    """The rule as a flow keeps it: `never` is no rule."""
    return None if rule is None or rule.rule == "never" else rule
