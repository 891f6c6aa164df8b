"""The flow service: one object that wires the concepts together for the routes. Each concept has its own
module — people (keys, annotators), flows, items (lifecycle, ended items), leases, answers (the annotator
protocol), media — and each task kind its own under `kinds/`."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from flowlab import ranking, schemas
from flowlab.server.answers import Answers
from flowlab.server.audiences import Audiences
from flowlab.server.auth import Principal
from flowlab.server.clock import Clock
from flowlab.server.errors import Invalid, NotFound
from flowlab.server.evals import Evals
from flowlab.server.flows import Flows
from flowlab.server.history import History
from flowlab.server.items import RETAIN_ENDED, Items
from flowlab.server.leases import LeaseBook
from flowlab.server.media import MediaCatalog, MediaStore, classify
from flowlab.server.model import SharedSignal, Signal
from flowlab.server.people import People
from flowlab.server.projects import Projects
from flowlab.server.qualification import Qualifications
from flowlab.server.relay import Relay
from flowlab.server.reports import Reports
from flowlab.server.store import Op, Store, StoreUnavailable
from flowlab.server.webhooks import RETRY_SECONDS, Webhooks

HOT_SECONDS = 600.0


class FlowService:
    """Every method is non-blocking; the database is the truth for everything but leases and live counters."""

    def __init__(
        self,
        store: Store,
        media: MediaStore,
        clock: Clock,
        *,
        seed: int | None = None,
        retain_ended: float = RETAIN_ENDED,
        webhook_retry_seconds: tuple[float, ...] = RETRY_SECONDS,
    ) -> None:
        self.store = store
        self.media = media
        self.clock = clock
        self.rng = random.Random(seed)
        self.work = SharedSignal()  # idle annotators wait on this (in a cluster, on any process)
        self.wakeup = Signal()  # the lifecycle ticker waits on this
        self.hot_until = 0.0
        self.annotator_listeners = 0
        self.catalog = MediaCatalog(store)
        self.people = People(store, clock)
        self.flows = Flows(store, clock, self.catalog)
        self.audiences = Audiences(store, clock, self.people)
        self.flows.check_audiences = self.audiences.check
        self.qualifications = Qualifications(store, clock, self.audiences)
        self.leases = LeaseBook(clock)
        self.history = History(store)
        self.reports = Reports(store)
        self.webhooks = Webhooks(store, clock, retry_seconds=webhook_retry_seconds)
        self.items = Items(
            store,
            clock,
            self.flows,
            self.leases,
            self.history,
            self.catalog,
            self.rng,
            self.work,
            self.wakeup,
            self.webhooks,
            retain_ended=retain_ended,
        )
        self.projects = Projects(store, clock, self.flows, self.items, self.webhooks)
        self.evals = Evals(store, clock, self.flows, self.items, self.history, self.webhooks)
        self.answers = Answers(
            store,
            clock,
            self.items,
            self.leases,
            self.people,
            self.history,
            self.rng,
            self.work,
            self.webhooks,
            self.audiences,
            self.qualifications,
        )
        self.relay = Relay(clock, self.leases)
        self.auth = self.people.auth

    # ------------------------------------------------------------ start-up

    def bootstrap(self, data_dir: Path, env_key: str | None, *, items: bool = True) -> str | None:
        """Load live state; on an empty database make the first admin key. Returns a newly generated key.
        A process of a cluster loads no items (nor projects): it reads back those of the flows it serves once it
        knows which (`Cluster.adopt`)."""
        snap = self.store.load(items=items)
        self.people.restore(snap.keys, snap.annotators)
        self.audiences.restore()
        self.qualifications.restore()
        self.flows.restore(snap.flows, snap.item_counts)
        if items:
            self.projects.restore()  # before the items, which rejoin their projects
            self.items.restore(snap.items, snap.votes, self.people.suspended())
            self.evals.restore()
        self.webhooks.restore(snap.webhooks)
        return self.people.ensure_admin(data_dir, env_key)

    def revoked_elsewhere(self, principal: Principal) -> None:
        """Another process of the cluster revoked this annotator: its tasks here go back to the queue too."""
        self._take_back(principal.id)
        Signal.fire(self.work)  # here only: the process that revoked it tells the others itself

    def resume(self) -> None:
        """Once the writer runs: finish what a previous process left half done."""
        self.items.resume()

    # ------------------------------------------------------------ flows

    async def delete_flow(self, who: Principal, flow_id: str) -> None:
        flow = self.flows.get(who, flow_id)
        if self.store.degraded is not None:  # refuse now rather than forget a flow the database still holds
            raise StoreUnavailable(f"the database cannot be written just now ({self.store.degraded})")
        # Gone from memory first: a concurrent delete then gets a 404, and a concurrent create notices. The
        # writer keeps the deletion through an outage that starts meanwhile, so it lands all the same.
        del self.flows.flows[flow.id]
        self.flows.forget(flow.id)
        self.relay.forget_flow(flow.id)
        self.items.drop_flow(flow)
        flow.touch()
        ops: list[Op] = [
            ("DELETE FROM votes WHERE item_id IN (SELECT id FROM items WHERE flow_id=?)", (flow.id,)),
            ("DELETE FROM labels WHERE item_id IN (SELECT id FROM items WHERE flow_id=?)", (flow.id,)),
            ("DELETE FROM annotations WHERE item_id IN (SELECT id FROM items WHERE flow_id=?)", (flow.id,)),
            ("DELETE FROM gold_answers WHERE flow_id=?", (flow.id,)),
            ("DELETE FROM items WHERE flow_id=?", (flow.id,)),
            ("DELETE FROM flows WHERE id=?", (flow.id,)),
            *self.webhooks.drop_flow(flow.id),
            *self.projects.drop_flow(flow.id),
            *self.evals.drop_flow(flow.id),
        ]
        await self.store.write(ops, retry=True)

    async def create_item(self, who: Principal, flow_id: str, req: schemas.ItemCreate) -> schemas.ItemStatus:
        return await self.items.create(who, self.flows.get(who, flow_id), req)

    async def list_items(
        self, who: Principal, flow_id: str, *, limit: int | None = None, offset: int = 0, order: str = "oldest"
    ) -> list[schemas.ItemStatus]:
        if order not in ("oldest", "newest"):
            raise Invalid("order is 'oldest' or 'newest'.", field="order")
        if (limit is not None and limit < 1) or offset < 0:
            raise Invalid("limit must be at least 1 and offset at least 0.", field="limit" if offset >= 0 else "offset")
        statuses = await self.items.statuses(self.flows.get(who, flow_id))
        if order == "newest":
            statuses.reverse()
        return statuses[offset : None if limit is None else offset + limit]

    # ------------------------------------------------------------ annotators

    async def revoke_annotator(self, who: Principal, annotator_id: str) -> None:
        info = self.people.owned_annotator(who, annotator_id)
        await self.store.write([("UPDATE annotators SET revoked=1 WHERE id=?", (annotator_id,))])
        info.principal.revoked = True
        self._take_back(annotator_id)
        self.work.fire()

    async def create_audience(self, who: Principal, req: schemas.AudienceCreate) -> schemas.Audience:
        async def load(
            who: Principal, set_id: str
        ) -> tuple[list[schemas.ValidationPair], list[schemas.ValidationLabel]]:
            _, pairs, labels = await self.flows.validation_set(who, set_id)
            return pairs, labels

        quiz = await self.qualifications.check(who, req.qualification, load)
        made = await self.audiences.create(who, req)
        if quiz is not None:
            self.qualifications.quizzes[made.id] = quiz
        return made

    async def delete_audience(self, who: Principal, audience_id: str) -> None:
        named_by = [f.id for f in self.flows.flows.values() if f.owner == who.id and audience_id in f.config.audiences]
        await self.audiences.delete(who, audience_id, named_by)
        for info in self.audiences.members(audience_id):
            self._take_back(info.principal.id)
        self.work.fire()

    def _take_back(self, annotator_id: str) -> None:
        """A revoked annotator's tasks go back to the queue (those whose answer is committing land first)."""
        for lease in self.leases.of_annotator(annotator_id):
            if lease.committing is None:
                self.leases.release(lease, "revoked", requeue=True)

    @property
    def poll_interval(self) -> float:
        return 0.05 if self.clock.now() < self.hot_until else 1.0

    # ------------------------------------------------------------ the lifecycle

    def tick(self) -> float:
        """Expire leases and move items along their lifecycle; returns when something next needs doing."""
        if self.leases.expire(self.clock.now()):
            self.work.fire()
        wake = self.items.tick()
        self.projects.tick()
        at = self.leases.next_expiry()
        return wake if at is None else min(wake, at)

    async def preheat(self) -> schemas.Preheated:
        t0 = time.perf_counter()
        # Touch every path the first batch will take: a durable commit, a fit, the JSON encoder.
        await self.store.write([])
        demo = np.random.default_rng(0).integers(0, 3, size=(8, 8)).astype(float)
        np.fill_diagonal(demo, 0.0)
        ranking.fit_bradley_terry(demo, 8)
        self.people.list_annotators(Principal("warm", "warm", "admin"))
        self.hot_until = self.clock.now() + HOT_SECONDS
        self.work.fire()
        return schemas.Preheated(
            warm_ms=(time.perf_counter() - t0) * 1000,
            annotators_notified=self.annotator_listeners,
            hot_until=self.hot_until,
        )

    def health(self) -> dict[str, Any]:
        degraded = getattr(self.store, "degraded", None)
        live = {"live_items": len(self.items.live), "leases_out": len(self.leases.tasks)}
        if degraded is None:
            return {"status": "ok", **live}
        return {
            **live,
            "status": "degraded",
            "reason": f"the database cannot be written ({degraded}); writes answer 503 until it is back, "
            "reads of live items keep working",
            "since": getattr(self.store, "degraded_since", None),
        }

    # ------------------------------------------------------------ media

    async def put_media(self, data: bytes, content_type: str | None, filename: str | None) -> schemas.MediaRef:
        if not data:
            raise Invalid("The upload is empty; send the file's bytes as the request body.", field="body")
        media_type, kind = classify(data, content_type, filename)
        sha = await asyncio.to_thread(self.media.put, data)
        if not await self.catalog.resolve([sha]):
            await self.store.write(
                [
                    (
                        "INSERT OR IGNORE INTO media (sha256, media_type, kind, size, created_at) VALUES (?,?,?,?,?)",
                        (sha, media_type, kind, len(data), self.clock.now()),
                    )
                ]
            )
            self.catalog.add(sha, media_type, kind, len(data))
        return schemas.MediaRef(sha256=sha, media_type=media_type, kind=kind, size=len(data))  # type: ignore[arg-type]

    async def media_file(self, sha256: str) -> tuple[Path, str]:
        known = (await self.catalog.resolve([sha256])).get(sha256)
        if known is None:
            raise NotFound(f"No uploaded file has sha256 {sha256!r}.")
        return self.media.path(sha256), known[0]
