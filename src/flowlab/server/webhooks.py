"""Results pushed, not only pulled: webhook endpoints, their signed deliveries, retries and delivery log.

Deliveries follow the Standard Webhooks scheme (standardwebhooks.com): each carries `webhook-id` (the same on
every retry, so a receiver can drop repeats), `webhook-timestamp` (Unix seconds of this attempt) and
`webhook-signature`, `v1,` then base64 HMAC-SHA256 over `id.timestamp.body` keyed by the endpoint's secret
(`whsec_` + base64 of the key bytes). A 2xx answer is delivered; anything else, or no answer within
`ATTEMPT_TIMEOUT`, is tried again after the next wait of `RETRY_SECONDS`, and after the last one the
delivery is marked failed.

A delivery row is written in the same commit as the event it reports (an item's final record, an answer), so
an acknowledged event is never lost across a crash and is never reported for something that did not land.
Memory holds the endpoints and the attempts in flight only: the pending deliveries and the log live in the
database, which is the worker's queue.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec

from flowlab import schemas
from flowlab.server.auth import Principal
from flowlab.server.clock import Clock
from flowlab.server.errors import Invalid, NotFound
from flowlab.server.model import Signal
from flowlab.server.people import new_id
from flowlab.server.store import Op, Row, Store
from flowlab.signing import sign_webhook

log = logging.getLogger("flowlab.webhooks")

# Standard Webhooks' suggested schedule: retries after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h.
RETRY_SECONDS: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
ATTEMPT_TIMEOUT = 10.0
MAX_IN_FLIGHT = 16
MAX_ENDPOINTS = 50  # per key
MAX_ERROR_CHARS = 500
EVENTS = schemas.WEBHOOK_EVENTS
TEST_EVENT = "webhook.test"

_encode = msgspec.json.Encoder().encode


@dataclass(slots=True)
class Endpoint:
    id: str
    owner: str
    url: str
    secret: str
    events: tuple[str, ...]
    flow_id: str | None
    description: str
    created_at: float

    def wants(self, event: str, owner: str, flow_id: str) -> bool:
        return self.owner == owner and event in self.events and self.flow_id in (None, flow_id)

    def info(self) -> schemas.Webhook:
        return schemas.Webhook(
            id=self.id,
            url=self.url,
            events=list(self.events),
            flow_id=self.flow_id,
            description=self.description,
            created_at=self.created_at,
        )


@dataclass(slots=True)
class Pending:
    """A delivery being attempted, read from its row."""

    id: str
    endpoint_id: str
    msg_id: str
    body: bytes
    attempts: int


# The database is the queue: the worker reads what is due, so memory holds only the attempts in flight however
# many deliveries wait (an endpoint down for a day while a busy flow pushes every answer).
DUE = (
    "SELECT id, endpoint_id, msg_id, payload, attempts FROM webhook_deliveries "
    "WHERE status = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?"
)
# In a cluster every process runs a worker: each claims the due rows it starts, moving them out of the others'
# sight for as long as an attempt may take; a process that dies mid-attempt leaves them to fall due again.
CLAIM = (
    "UPDATE webhook_deliveries SET next_attempt_at = ? WHERE id IN (SELECT id FROM webhook_deliveries "
    "WHERE status = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ? FOR UPDATE SKIP LOCKED) "
    "RETURNING id, endpoint_id, msg_id, payload, attempts"
)
NEXT_DUE = "SELECT min(next_attempt_at) AS t FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at > ?"


class Webhooks:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        retry_seconds: tuple[float, ...] = RETRY_SECONDS,
        attempt_timeout: float = ATTEMPT_TIMEOUT,
    ) -> None:
        self.store = store
        self.clock = clock
        self.retry_seconds = retry_seconds
        self.attempt_timeout = attempt_timeout
        self.endpoints: dict[str, Endpoint] = {}
        self._due = Signal()
        self._in_flight: dict[str, asyncio.Task[None]] = {}  # delivery id -> its attempt
        # Attempts that end while due rows are being read: those rows may predate their attempt's update.
        self._ended_during_read: set[str] | None = None
        self.shared = False  # several processes deliver from this database (a PostgreSQL cluster)

    # ------------------------------------------------------------ start-up

    def restore(self, endpoints: list[Row], *, every: bool = False) -> None:
        """Add these endpoints; with `every`, the rows are all there are (the others were removed elsewhere)."""
        if every:
            for gone in set(self.endpoints) - {r["id"] for r in endpoints}:
                del self.endpoints[gone]
        for r in endpoints:
            self.endpoints[r["id"]] = Endpoint(
                id=r["id"],
                owner=r["owner"],
                url=r["url"],
                secret=r["secret"],
                events=tuple(msgspec.json.decode(r["events"])),
                flow_id=r["flow_id"],
                description=r["description"],
                created_at=r["created_at"],
            )

    # ------------------------------------------------------------ endpoints

    async def add(self, who: Principal, req: schemas.WebhookCreate) -> schemas.WebhookCreated:
        parts = urlsplit(req.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Invalid(
                "A webhook URL is http:// or https:// with a host, e.g. https://example.org/hook.", field="url"
            )
        unknown = sorted(set(req.events) - set(EVENTS))
        if unknown or not req.events:
            raise Invalid(f"events are one or more of {list(EVENTS)}; {unknown or 'none'} given.", field="events")
        if sum(e.owner == who.id for e in self.endpoints.values()) >= MAX_ENDPOINTS:
            raise Invalid(f"A key has at most {MAX_ENDPOINTS} webhook endpoints; remove one first.", field="url")
        endpoint = Endpoint(
            id=new_id("wh"),
            owner=who.id,
            url=req.url,
            secret="whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
            events=tuple(dict.fromkeys(req.events)),
            flow_id=req.flow_id,
            description=req.description,
            created_at=self.clock.now(),
        )
        await self.store.write(
            [
                (
                    "INSERT INTO webhooks (id, owner, url, secret, events, flow_id, description, created_at) "
                    "VALUES (?,?,?,?,?,?,?,?)",
                    (
                        endpoint.id,
                        endpoint.owner,
                        endpoint.url,
                        endpoint.secret,
                        _encode(list(endpoint.events)).decode(),
                        endpoint.flow_id,
                        endpoint.description,
                        endpoint.created_at,
                    ),
                )
            ]
        )
        self.endpoints[endpoint.id] = endpoint
        return schemas.WebhookCreated(**msgspec.structs.asdict(endpoint.info()), secret=endpoint.secret)

    def listing(self, who: Principal) -> list[schemas.Webhook]:
        return [e.info() for e in self.endpoints.values() if e.owner == who.id]

    def get(self, who: Principal, endpoint_id: str) -> Endpoint:
        endpoint = self.endpoints.get(endpoint_id)
        if endpoint is None or endpoint.owner != who.id:
            raise NotFound(
                f"No webhook {endpoint_id!r} belongs to this API key; list yours with `flowlab webhooks list`."
            )
        return endpoint

    async def remove(self, who: Principal, endpoint_id: str) -> None:
        endpoint = self.get(who, endpoint_id)
        await self.store.write(_forget(endpoint.id))
        del self.endpoints[endpoint.id]  # an attempt already in flight finds it gone and drops its row

    def drop_flow(self, flow_id: str) -> list[Op]:
        """A flow is being deleted: forget the endpoints that watched only it; returns the rows to delete."""
        ops: list[Op] = []
        for endpoint in [e for e in self.endpoints.values() if e.flow_id == flow_id]:
            del self.endpoints[endpoint.id]
            ops += _forget(endpoint.id)
        return ops

    async def deliveries(self, who: Principal, endpoint_id: str, limit: int = 50) -> list[schemas.WebhookDelivery]:
        endpoint = self.get(who, endpoint_id)
        if not 1 <= limit <= 1000:
            raise Invalid("limit is 1 to 1000.", field="limit")
        rows = await self.store.aread(
            "SELECT * FROM webhook_deliveries WHERE endpoint_id=? ORDER BY created_at DESC, id DESC LIMIT ?",
            (endpoint.id, limit),
        )
        return [_delivery(r) for r in rows]

    async def test(self, who: Principal, endpoint_id: str) -> schemas.WebhookDelivery:
        """Send a `webhook.test` event to one endpoint now, whatever events it asked for."""
        endpoint = self.get(who, endpoint_id)
        now = self.clock.now()
        ((delivery_id, msg_id, op),) = self._deliveries([endpoint], TEST_EVENT, {"endpoint_id": endpoint.id}, now)
        await self.store.write([op])
        self.wake()
        return schemas.WebhookDelivery(
            id=delivery_id,
            msg_id=msg_id,
            event=TEST_EVENT,
            status="pending",
            attempts=0,
            created_at=now,
            next_attempt_at=now,
        )

    # ------------------------------------------------------------ events

    def event_ops(self, event: str, owner: str, flow_id: str, data: Any) -> list[Op]:
        """The rows recording `event` for every endpoint that wants it, to commit with the event itself; once
        they are durable, `wake` the worker."""
        wanting = [e for e in self.endpoints.values() if e.wants(event, owner, flow_id)]
        if not wanting:
            return []
        return [op for _, _, op in self._deliveries(wanting, event, data, self.clock.now())]

    def _deliveries(self, endpoints: list[Endpoint], event: str, data: Any, now: float) -> list[tuple[str, str, Op]]:
        """(delivery id, message id, the row's insert) for each endpoint: one body, due now."""
        stamp = datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z")
        text = _encode({"type": event, "timestamp": stamp, "data": data}).decode()
        out = []
        for endpoint in endpoints:
            delivery_id, msg_id = new_id("dl"), new_id("msg")
            op: Op = (
                "INSERT INTO webhook_deliveries (id, endpoint_id, msg_id, event, payload, status, attempts, "
                "created_at, next_attempt_at) VALUES (?,?,?,?,?,'pending',0,?,?)",
                (delivery_id, endpoint.id, msg_id, event, text, now, now),
            )
            out.append((delivery_id, msg_id, op))
        return out

    def wake(self) -> None:
        """New deliveries are durable: look for due ones now."""
        self._due.fire()

    # ------------------------------------------------------------ the worker

    async def run(self) -> None:
        """Make deliveries as they fall due, at most MAX_IN_FLIGHT at once, until cancelled."""
        limits = httpx.Limits(max_connections=MAX_IN_FLIGHT, max_keepalive_connections=MAX_IN_FLIGHT)
        async with httpx.AsyncClient(timeout=self.attempt_timeout, limits=limits, follow_redirects=False) as http:
            try:
                while True:
                    wait = 1.0
                    try:
                        wait = await self._start_due(http)
                    except Exception as exc:  # the database away: the deliveries wait in it
                        log.warning("could not read due webhook deliveries: %s", exc)
                    await self._due.wait(wait + 0.0005)
            finally:
                for task in list(self._in_flight.values()):
                    task.cancel()
                with contextlib.suppress(Exception):
                    await asyncio.gather(*self._in_flight.values(), return_exceptions=True)

    async def _start_due(self, http: httpx.AsyncClient) -> float:
        """Start the attempts that are due; returns how long to wait before looking again."""
        room = MAX_IN_FLIGHT - len(self._in_flight)
        if not self.endpoints or room <= 0:
            return 1.0  # an attempt that ends wakes the worker
        now = self.clock.now()
        self._ended_during_read = set()
        try:
            if self.shared:
                rows = await self.store.aread(CLAIM, (now + self.attempt_timeout + 30.0, now, room))
            else:
                rows = await self.store.aread(DUE, (now, room + len(self._in_flight)))
        finally:
            stale, self._ended_during_read = self._ended_during_read, None
        for r in rows:
            if r["id"] in self._in_flight or r["id"] in stale or room <= 0:
                continue
            p = Pending(r["id"], r["endpoint_id"], r["msg_id"], r["payload"].encode(), r["attempts"])
            task = asyncio.create_task(self._attempt(http, p))
            self._in_flight[p.id] = task
            task.add_done_callback(lambda t, key=p.id: self._attempt_done(key, t))
            room -= 1
        if room <= 0:
            return 1.0
        later = (await self.store.aread(NEXT_DUE, (now,)))[0]["t"]
        return 1.0 if later is None else min(1.0, max(0.0, later - self.clock.now()))

    def _attempt_done(self, delivery_id: str, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(delivery_id, None)
        if self._ended_during_read is not None:
            self._ended_during_read.add(delivery_id)
        if not task.cancelled() and task.exception() is not None:
            log.error("a webhook delivery failed unexpectedly: %s", task.exception())
        self._due.fire()

    async def _attempt(self, http: httpx.AsyncClient, p: Pending) -> None:
        endpoint = self.endpoints.get(p.endpoint_id)
        if endpoint is None and self.shared:  # added by another process a moment ago?
            self.restore(await self.store.aread("SELECT * FROM webhooks WHERE id=?", (p.endpoint_id,)))
            endpoint = self.endpoints.get(p.endpoint_id)
        if endpoint is None:  # removed (its log with it) while this row was being read
            await self.store.write([("DELETE FROM webhook_deliveries WHERE id=?", (p.id,))], retry=True)
            return
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "user-agent": "flowlab-webhooks",
            "webhook-id": p.msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign_webhook(endpoint.secret, p.msg_id, timestamp, p.body),
        }
        code: int | None = None
        error: str | None = None
        try:
            resp = await http.post(endpoint.url, content=p.body, headers=headers)
            code = resp.status_code
            if not 200 <= code < 300:
                error = f"HTTP {code}: {resp.text[:200]}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
        p.attempts += 1
        now = self.clock.now()
        if error is None:
            op: Op = (
                "UPDATE webhook_deliveries SET status='delivered', attempts=?, response_status=?, last_error=NULL, "
                "delivered_at=?, next_attempt_at=NULL WHERE id=?",
                (p.attempts, code, now, p.id),
            )
        elif p.attempts > len(self.retry_seconds):
            op = (
                "UPDATE webhook_deliveries SET status='failed', attempts=?, response_status=?, last_error=?, "
                "next_attempt_at=NULL WHERE id=?",
                (p.attempts, code, error, p.id),
            )
        else:
            op = (
                "UPDATE webhook_deliveries SET attempts=?, response_status=?, last_error=?, next_attempt_at=? "
                "WHERE id=?",
                (p.attempts, code, error, now + self.retry_seconds[p.attempts - 1], p.id),
            )
        try:
            await self.store.write([op], retry=True)
        except Exception as exc:  # the log entry is late, the delivery itself was made (or will be retried)
            log.warning("could not record webhook delivery %s: %s", p.id, exc)


def _forget(endpoint_id: str) -> list[Op]:
    return [
        ("DELETE FROM webhook_deliveries WHERE endpoint_id=?", (endpoint_id,)),
        ("DELETE FROM webhooks WHERE id=?", (endpoint_id,)),
    ]


def _delivery(r: Row) -> schemas.WebhookDelivery:
    return schemas.WebhookDelivery(
        id=r["id"],
        msg_id=r["msg_id"],
        event=r["event"],
        status=r["status"],
        attempts=r["attempts"],
        response_status=r["response_status"],
        last_error=r["last_error"],
        created_at=r["created_at"],
        delivered_at=r["delivered_at"],
        next_attempt_at=r["next_attempt_at"],
        payload=msgspec.json.decode(r["payload"]),
    )
