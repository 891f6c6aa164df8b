"""The embedded store: raw sqlite3 in WAL mode, with one writer thread doing group commit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from flowlab.server.store import Op, Snapshot, StoreFailed

log = logging.getLogger("flowlab.store")

SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, key_hash TEXT NOT NULL UNIQUE,
    admin INTEGER NOT NULL, created_at REAL NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS annotators (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE, owner TEXT NOT NULL,
    created_at REAL NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS flows (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, config TEXT NOT NULL, created_at REAL NOT NULL,
    updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY, flow_id TEXT NOT NULL, body TEXT NOT NULL, created_at REAL NOT NULL,
    state TEXT NOT NULL, started_at REAL, ended_at REAL, reason TEXT);
CREATE INDEX IF NOT EXISTS items_flow ON items(flow_id);
CREATE TABLE IF NOT EXISTS votes (
    seq INTEGER PRIMARY KEY, task_id TEXT NOT NULL UNIQUE, item_id TEXT NOT NULL,
    annotator_id TEXT NOT NULL, winner INTEGER NOT NULL, loser INTEGER NOT NULL, tie INTEGER NOT NULL,
    created_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS votes_item ON votes(item_id);
CREATE TABLE IF NOT EXISTS gold_answers (
    task_id TEXT PRIMARY KEY, annotator_id TEXT NOT NULL, flow_id TEXT NOT NULL,
    correct INTEGER NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS media (
    sha256 TEXT PRIMARY KEY, media_type TEXT NOT NULL, kind TEXT NOT NULL, size INTEGER NOT NULL,
    created_at REAL NOT NULL);
"""


class SQLiteStore:
    """Group commit: writes queue up while the previous transaction syncs, then share the next one.

    `synchronous=FULL` makes every commit durable against power loss, not just a crash of this process; the
    fsync that costs is paid once per batch, so throughput comes from batching rather than from weakening
    durability.
    """

    def __init__(self, path: Path, *, max_batch: int = 4096, checkpoint_every: float = 1.0) -> None:
        self.path = Path(path)
        self.max_batch = max_batch
        self.checkpoint_every = checkpoint_every
        self._closing = threading.Event()
        self._checkpointer: threading.Thread | None = None
        self._conn = self._connect()
        self._pending: deque[tuple[Sequence[Op], asyncio.Future[None]]] = deque()
        self._wake: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flowlab-writer")
        self._lock = threading.Lock()
        self._failed: BaseException | None = None
        self.commits = 0

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=OFF")
        # Checkpoints run on their own thread and connection (below), never inside a commit that someone's
        # acknowledgement is waiting for.
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.executescript(SCHEMA)
        return conn

    def _checkpoint_loop(self) -> None:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            while not self._closing.wait(self.checkpoint_every):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.OperationalError as exc:  # busy: try again next round
                    log.debug("checkpoint skipped: %s", exc)
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()

    async def start(self) -> None:
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="flowlab-checkpoint", daemon=True)
        self._checkpointer.start()
        self._wake = asyncio.Event()
        self._writer = asyncio.create_task(self._run(), name="flowlab-group-commit")

    async def close(self) -> None:
        if self._writer is not None:
            # Let queued writes finish: they may already be promised to someone.
            while self._pending and self._failed is None:
                await asyncio.sleep(0.005)
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        self._thread.shutdown(wait=True)
        self._closing.set()
        if self._checkpointer is not None:
            self._checkpointer.join(10)
        with self._lock:
            self._conn.close()

    async def write(self, ops: Sequence[Op]) -> None:
        await self.submit(ops)

    def submit(self, ops: Sequence[Op]) -> asyncio.Future[None]:
        """Queue ops for the next commit, in call order; the future resolves once they are durable."""
        if self._failed is not None:
            raise StoreFailed(f"the store stopped after a failed commit: {self._failed}")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((ops, fut))
        assert self._wake is not None, "SQLiteStore.start() was not called"
        self._wake.set()
        return fut

    async def _run(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, n_ops = [], 0
                while self._pending and n_ops < self.max_batch:
                    ops, fut = self._pending.popleft()
                    batch.append((ops, fut))
                    n_ops += len(ops)
                try:
                    await loop.run_in_executor(self._thread, self._commit, [ops for ops, _ in batch])
                except BaseException as exc:
                    log.exception("commit failed; refusing further writes")
                    self._failed = exc
                    err = StoreFailed(f"the store could not commit: {exc}")
                    for _, fut in [*batch, *self._pending]:
                        if not fut.done():
                            fut.set_exception(err)
                    self._pending.clear()
                    return
                for _, fut in batch:
                    if not fut.done():
                        fut.set_result(None)

    def _commit(self, batches: list[Sequence[Op]]) -> None:
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                for ops in batches:
                    for sql, params in ops:
                        cur.execute(sql, params)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            self.commits += 1

    def write_now(self, ops: Sequence[Op]) -> None:
        """Synchronous write for start-up work that happens before the event loop serves anyone."""
        self._commit([ops])

    def load(self) -> Snapshot:
        with self._lock:
            self._conn.row_factory = sqlite3.Row
            try:

                def rows(sql: str) -> list[dict[str, Any]]:
                    return [dict(r) for r in self._conn.execute(sql)]

                return Snapshot(
                    keys=rows("SELECT * FROM keys"),
                    annotators=rows("SELECT * FROM annotators"),
                    flows=rows("SELECT * FROM flows ORDER BY created_at"),
                    items=rows("SELECT * FROM items ORDER BY created_at"),
                    votes=rows(
                        "SELECT item_id, task_id, annotator_id, winner, loser, tie, created_at FROM votes ORDER BY seq"
                    ),
                    gold_answers=rows("SELECT * FROM gold_answers"),
                    media=rows("SELECT * FROM media"),
                )
            finally:
                self._conn.row_factory = None

    def count_votes(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM votes").fetchone()[0])
