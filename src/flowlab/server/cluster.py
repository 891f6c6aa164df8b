"""Several `flowlab serve` processes on one PostgreSQL database, any of which may die.

Each flow is served by one process of the cluster, its *node* (`flows.node`): that process holds the flow's
live items, leases and tallies in memory, runs their lifecycle, and takes every request about them; any other
process forwards such a request to it (`routing`). Every process knows every flow (for listings, and to know
where to send a request) and every key and annotator; what changes elsewhere reaches it by `LISTEN/NOTIFY`.

Membership lives in the database. A process joins with a `nodes` row and holds an advisory lock on its
listening connection for as long as it lives: a process killed outright loses its session, so its lock.
Every process sweeps twice a second: it stamps its own row, and a node whose lock is gone and whose stamp is
older than `GRACE` is dead. The first survivor to see it deletes its row and takes its flows in one
transaction, then reads their live items and durable answers back from the database, as a restarted server
would (leases the dead process held are forgotten, so their tasks are served again at once).

A process declared dead that is in fact still running (its listening connection cut, say) is fenced off:
every commit first takes a share lock on the process's own `nodes` row, so the takeover waits for commits in
flight, and a commit after it finds no row and fails (`Fenced`); the process then exits, and nothing it
counted after the takeover ever lands.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import time
from typing import TYPE_CHECKING, Any

import httpx

from flowlab.server.model import Signal
from flowlab.server.store import Fenced, schema

if TYPE_CHECKING:
    from flowlab.server.service import FlowService
    from flowlab.server.store.postgres import PostgresStore

log = logging.getLogger("flowlab.cluster")
logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per forwarded request

CHANNEL = "flowlab"
NAMESPACE = 0x466C6F77  # the advisory-lock space of flowlab's nodes ('Flow')
SWEEP_SECONDS = 0.5
GRACE = 2.0  # a node without its session whose stamp is this old is dead (a database restart is not death)
FLUSH_SECONDS = 0.05  # notifications are coalesced this long: one per kind per batch, not per vote
MAX_PAYLOAD = 7000  # bytes; PostgreSQL allows 8000 per notification
FENCED_EXIT = 75
NOW = "extract(epoch from clock_timestamp())"  # the database's clock: the nodes' own clocks may disagree
NODE_ID = re.compile(r"n[0-9a-f]{8}")
ORPHANED = "-"  # the node of a flow that none serves for the moment


def task_node(task_id: str) -> str | None:
    """The node that leased a task, from its id (`task_<node>_<random>`); None for a task of a lone server."""
    parts = task_id.split("_")
    return parts[1] if len(parts) == 3 and NODE_ID.fullmatch(parts[1]) else None


class Cluster:
    """This process's membership of the cluster: its `nodes` row and lock, its view of the others, the
    notifications it sends and acts on, and the takeover of dead nodes' flows."""

    def __init__(self, service: FlowService, store: PostgresStore, url: str) -> None:
        self.service = service
        self.store = store
        self.url = url.rstrip("/")
        self.id = "n" + secrets.token_hex(4)
        self.lock_key = secrets.randbelow(2**31 - 2) + 1
        self.peers: dict[str, str] = {}  # the other live nodes: id -> URL
        self._psycopg: Any = None
        self._listener: Any = None
        self._ctl: Any = None
        self._ctl_lock = asyncio.Lock()
        self._outbox: dict[str, set[str] | None] = {}
        self._inbox: dict[str, set[str] | None] = {}
        self._inbox_signal = Signal()
        self._flush_signal = Signal()
        self._poke = Signal()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._adopting = asyncio.Lock()
        self._last_sweep = float("-inf")  # monotonic time of the last sweep that could stamp this node's row
        self._flow_of: dict[tuple[str, str], str] = {}  # (items|projects|evals, id) -> flow id: they never move
        # Forwarding: no read timeout (long polls and event streams last as long as they do).
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(connect=3.0, read=None, write=30.0, pool=30.0),
            limits=httpx.Limits(max_connections=512, max_keepalive_connections=64),
        )

    # ------------------------------------------------------------ joining and leaving

    async def start(self) -> None:
        """Join: row, lock, the first sweep (which takes every flow no live node serves), then the loops."""
        import psycopg

        self._psycopg = psycopg
        self.store.fence_node = self.id
        self.store.on_fenced = self._fenced
        self.service.flows.node = self.id
        self.service.answers.task_prefix = f"task_{self.id}"
        self.service.webhooks.shared = True
        self.service.auth.on_miss = self.service.people.look_up
        self._ctl = await self._connect()
        await self._ctl.execute(
            f"INSERT INTO nodes (id, url, lock_key, started_at, seen_at) VALUES (%s, %s, %s, {NOW}, {NOW})",
            (self.id, self.url, self.lock_key),
        )
        self._listener = await self._listen()
        await self._sweep()
        log.warning("cluster node %s serving at %s (%d other nodes)", self.id, self.url, len(self.peers))
        self._tasks = [
            asyncio.create_task(self._listen_loop(), name="flowlab-cluster-listen"),
            asyncio.create_task(self._sweep_loop(), name="flowlab-cluster-sweep"),
            asyncio.create_task(self._flush_loop(), name="flowlab-cluster-notify"),
            asyncio.create_task(self._apply_loop(), name="flowlab-cluster-apply"),
        ]
        self.service.work.echo = lambda: self.announce("work")

    async def close(self) -> None:
        """Leave: hand this node's flows back (the others' next sweep takes them) and drop the row."""
        self._closing = True
        self.service.work.echo = None
        for task in self._tasks:
            task.cancel()
        if self._tasks:  # bounded: a loop caught in a reconnect must not hold the shutdown up
            await asyncio.wait(self._tasks, timeout=2.0)
        with contextlib.suppress(Exception):
            async with self._ctl_lock, self._ctl.transaction():
                await self._ctl.execute("DELETE FROM nodes WHERE id=%s", (self.id,))
                await self._ctl.execute("UPDATE flows SET node=NULL WHERE node=%s", (self.id,))
                await self._ctl.execute("SELECT pg_notify(%s, %s)", (CHANNEL, _payload(self.id, "orphans", None)))
        await self.http.aclose()
        for conn in (self._listener, self._ctl):
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()

    async def _connect(self) -> Any:
        dsn = self.store.dsn
        named = {} if "application_name" in dsn else {"application_name": f"flowlab-{self.id}"}
        return await self._psycopg.AsyncConnection.connect(dsn, autocommit=True, connect_timeout=5, **named)

    async def _listen(self) -> Any:
        conn = await self._connect()
        await conn.execute(f"LISTEN {CHANNEL}")
        await conn.execute("SELECT pg_advisory_lock(%s, %s)", (NAMESPACE, self.lock_key))
        return conn

    def _fenced(self, exc: Fenced) -> None:
        if not self._closing:
            _exit_fenced(exc)

    # ------------------------------------------------------------ who is alive, and the takeover

    async def _sweep_loop(self) -> None:
        while True:
            await self._poke.wait(SWEEP_SECONDS)
            try:
                await self._sweep()
            except self._psycopg.Error as exc:
                log.warning("cluster sweep failed (%s); retrying", exc)
                await self._reconnect_ctl()
            except Exception:
                log.exception("cluster sweep failed")

    async def _reconnect_ctl(self) -> None:
        with contextlib.suppress(Exception):
            await self._ctl.close()
        try:
            self._ctl = await self._connect()
        except Exception as exc:
            log.warning("cluster: cannot reach the database (%s)", exc)
            await asyncio.sleep(SWEEP_SECONDS)

    async def _sweep(self) -> None:
        async with self._ctl_lock:
            stamped = await self._ctl.execute(f"UPDATE nodes SET seen_at = {NOW} WHERE id=%s RETURNING id", (self.id,))
            if await stamped.fetchone() is None:
                self._fenced(Fenced(f"cluster node {self.id} was declared dead by the others"))
                return
            # Only a node that has stamped all along may judge the others by their stamps: after a gap of its
            # own (a database restart, say) the others need as long again to reconnect and stamp.
            now = time.monotonic()
            steady, self._last_sweep = now - self._last_sweep <= GRACE, now
            rows = await (
                await self._ctl.execute(
                    f"SELECT n.id, n.url, n.seen_at < {NOW} - %s AS stale, EXISTS (SELECT 1 FROM pg_locks l "
                    "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 AND l.classid = %s "
                    "AND l.objid::bigint = n.lock_key "
                    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())) AS held "
                    "FROM nodes n WHERE n.id <> %s",
                    (GRACE, NAMESPACE, self.id),
                )
            ).fetchall()
            # Without its session, a node is dead once its stamp is old, or at once if it had this node's
            # address (this is it, restarted: a live one would hold the port).
            dead = [r[0] for r in rows if not r[3] and ((r[2] and steady) or r[1] == self.url)]
            self.peers = {r[0]: r[1] for r in rows if r[0] not in dead}
            orphaned = await (
                await self._ctl.execute(
                    "SELECT EXISTS (SELECT 1 FROM flows WHERE node IS NULL OR node <> ALL(%s))",
                    ([self.id, *self.peers],),
                )
            ).fetchone()
            if not dead and not orphaned[0]:
                return
            async with self._ctl.transaction():
                # The delete waits for the dead node's commits in flight (they hold its row FOR SHARE).
                await self._ctl.execute("DELETE FROM nodes WHERE id = ANY(%s)", (dead,))
                taken = await (
                    await self._ctl.execute(
                        "UPDATE flows SET node=%s WHERE node IS NULL OR node NOT IN (SELECT id FROM nodes) "
                        "RETURNING id",
                        (self.id,),
                    )
                ).fetchall()
        if dead:
            log.warning("cluster: node(s) %s died; this node (%s) takes their flows", ", ".join(dead), self.id)
        ids = {r[0] for r in taken}
        if ids:
            await self.adopt(ids)
            self.announce("flows", ids)

    async def adopt(self, flow_ids: set[str]) -> None:
        """Serve these flows from now on: their rows, live items and durable answers, read back."""
        service = self.service
        async with self._adopting:
            rows = await asyncio.to_thread(_flow_rows, self.store, flow_ids)
            service.flows.refresh(*rows, flow_ids)
            mine = {f for f in flow_ids if f in service.flows.flows and service.flows.mine(service.flows.flows[f])}
            items, answers = await asyncio.to_thread(schema.load_items, self.store.read, sorted(mine))
            service.projects.restore(mine)
            service.items.restore(items, answers, service.people.suspended())
            service.evals.restore(mine)
            service.items.resume()
        log.warning("cluster node %s now serves %d more flow(s), %d live item(s)", self.id, len(mine), len(items))
        Signal.fire(service.work)
        service.wakeup.fire()

    # ------------------------------------------------------------ notifications

    def announce(self, kind: str, ids: set[str] | None = None) -> None:
        """Tell the other nodes, within FLUSH_SECONDS, that something of `kind` changed (these ids, or any)."""
        if self._closing:
            return
        _merge(self._outbox, kind, ids)
        self._flush_signal.fire()

    async def _flush_loop(self) -> None:
        while True:
            if not self._outbox:
                await self._flush_signal.wait(3600)
            await asyncio.sleep(FLUSH_SECONDS)
            outbox, self._outbox = self._outbox, {}
            try:
                async with self._ctl_lock:
                    for kind, ids in outbox.items():
                        for payload in _payloads(self.id, kind, ids):
                            await self._ctl.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
            except self._psycopg.Error as exc:
                log.warning("cluster: could not notify the other nodes (%s); retrying", exc)
                for kind, ids in outbox.items():
                    _merge(self._outbox, kind, ids)
                await self._reconnect_ctl()

    async def _listen_loop(self) -> None:
        while not self._closing:
            try:
                async for note in self._listener.notifies():
                    self._received(note.payload)
            except self._psycopg.Error as exc:
                if self._closing:  # psycopg reports a cancelled wait as an error of its own
                    return
                log.warning("cluster: the listening connection was lost (%s); reconnecting", exc)
            await self._relisten()

    async def _relisten(self) -> None:
        with contextlib.suppress(Exception):
            await self._listener.close()
        while not self._closing:
            try:
                self._listener = await self._listen()
                break
            except self._psycopg.Error as exc:
                log.warning("cluster: cannot listen yet (%s)", exc)
                await asyncio.sleep(SWEEP_SECONDS)
        # What was said while this node was not listening is lost: catch up on everything.
        for kind in ("flows", "people", "webhooks", "work"):
            _merge(self._inbox, kind, None)
        self._inbox_signal.fire()
        self._poke.fire()

    def _received(self, payload: str) -> None:
        try:
            note = json.loads(payload)
            sender, kind, ids = note["node"], note["kind"], note.get("ids")
        except (ValueError, KeyError, TypeError):
            return
        if sender == self.id:
            return
        if kind == "work":
            Signal.fire(self.service.work)  # locally only: not echoed back
        elif kind == "orphans":
            self._poke.fire()
        else:
            _merge(self._inbox, kind, None if ids is None else set(ids))
            self._inbox_signal.fire()

    async def _apply_loop(self) -> None:
        """Bring this node's copies of what other nodes changed up to date, a batch at a time."""
        while True:
            if not self._inbox:
                await self._inbox_signal.wait(3600)
            inbox, self._inbox = self._inbox, {}
            try:
                await self._apply(inbox)
            except Exception as exc:
                log.warning("cluster: could not catch up with the other nodes (%s); retrying", exc)
                for kind, ids in inbox.items():
                    _merge(self._inbox, kind, ids)
                await asyncio.sleep(SWEEP_SECONDS)

    async def _apply(self, inbox: dict[str, set[str] | None]) -> None:
        service = self.service
        read = self.store.read
        if "flows" in inbox:
            ids = inbox["flows"]
            async with self._adopting:
                rows, counts = await asyncio.to_thread(_flow_rows, self.store, ids)
                adopted = service.flows.refresh(rows, counts, ids)
            if adopted:  # served here now, but not yet read back (a takeover this node did not see finish)
                await self.adopt(set(adopted))
        if "people" in inbox:
            keys = await asyncio.to_thread(read, "SELECT * FROM keys")
            annotators = await asyncio.to_thread(read, "SELECT * FROM annotators")
            for principal in service.people.restore(keys, annotators):
                service.revoked_elsewhere(principal)
        if "webhooks" in inbox:
            endpoints = await asyncio.to_thread(read, "SELECT * FROM webhooks ORDER BY created_at")
            service.webhooks.restore(endpoints, every=True)
        if "work" in inbox:
            Signal.fire(service.work)

    # ------------------------------------------------------------ where requests go

    def node_of_flow(self, flow_id: str) -> str | None:
        """The node serving the flow; None for a flow this node does not know, ORPHANED for one between
        nodes (its node stopped a moment ago and another is taking it)."""
        flow = self.service.flows.flows.get(flow_id)
        if flow is None:
            return None
        return flow.node if flow.node is not None else ORPHANED

    def in_between(self, node: str | None) -> bool:
        """Whether what `node` served is being taken over just now (it left, or died)."""
        return node is not None and node != self.id and node not in self.peers

    def url_of(self, node: str | None) -> str | None:
        """Where to forward a request for what `node` serves: None when that is this node (or unknown)."""
        if node is None or node == self.id:
            return None
        return self.peers.get(node)

    async def learn_flow(self, flow_id: str) -> None:
        """A flow this node has not heard of: if it exists, know it now rather than once its notification
        arrives (a client may make a flow through one node and use it through another at once)."""
        async with self._adopting:
            rows, counts = await asyncio.to_thread(_flow_rows, self.store, {flow_id})
            if rows and flow_id not in self.service.flows.flows:
                self.service.flows.refresh(rows, counts, {flow_id})

    async def node_of_row(self, table: str, row_id: str) -> str | None:
        """The node serving the flow of an item or project this node does not hold (ended, or another's)."""
        flow_id = self._flow_of.get((table, row_id))
        if flow_id is None:
            rows = await asyncio.to_thread(self.store.read, f"SELECT flow_id FROM {table} WHERE id=?", (row_id,))
            if not rows:
                return None
            if len(self._flow_of) > 100_000:
                self._flow_of.clear()
            flow_id = self._flow_of[(table, row_id)] = rows[0]["flow_id"]
        if flow_id not in self.service.flows.flows:
            await self.learn_flow(flow_id)
        return self.node_of_flow(flow_id)

    def poke(self) -> None:
        """A peer did not answer: look at who is alive now rather than in a moment."""
        self._poke.fire()


def _exit_fenced(exc: Fenced) -> None:
    log.critical("%s; exiting", exc)
    logging.shutdown()
    os._exit(FENCED_EXIT)


def _merge(box: dict[str, set[str] | None], kind: str, ids: set[str] | None) -> None:
    if kind not in box:
        box[kind] = None if ids is None else set(ids)
    elif box[kind] is not None:
        if ids is None:
            box[kind] = None
        else:
            box[kind] |= ids  # type: ignore[operator]


def _payload(node: str, kind: str, ids: list[str] | None) -> str:
    return json.dumps({"node": node, "kind": kind, "ids": ids}, separators=(",", ":"))


def _payloads(node: str, kind: str, ids: set[str] | None) -> list[str]:
    """One notification per batch of ids that fits; none at all (meaning: any) for very many."""
    if ids is None or len(ids) > 500:
        return [_payload(node, kind, None)]
    out, chunk = [], []
    for i in sorted(ids):
        chunk.append(i)
        if len(chunk) * 24 > MAX_PAYLOAD:
            out.append(_payload(node, kind, chunk))
            chunk = []
    if chunk or not out:
        out.append(_payload(node, kind, chunk))
    return out


def _flow_rows(store: PostgresStore, ids: set[str] | None) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The rows of these flows (or of all) and their item counts."""
    if ids is None:
        rows = store.read("SELECT * FROM flows ORDER BY created_at")
        counts = store.read("SELECT flow_id, count(*) AS n FROM items GROUP BY flow_id")
    else:
        listed = sorted(ids)
        rows = store.read("SELECT * FROM flows WHERE id = ANY(?) ORDER BY created_at", (listed,))
        counts = store.read(
            "SELECT flow_id, count(*) AS n FROM items WHERE flow_id = ANY(?) GROUP BY flow_id", (listed,)
        )
    return rows, {r["flow_id"]: int(r["n"]) for r in counts}
