"""The embedded store: raw sqlite3 in WAL mode behind the group-commit writer."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flowlab.server.store import Row, Snapshot, StoreUnavailable, schema
from flowlab.server.store._group_commit import GroupCommitStore

log = logging.getLogger("flowlab.store")

BUSY_TIMEOUT = 5.0  # seconds a commit waits on another writer's lock before the store counts as unavailable


class SQLiteStore(GroupCommitStore):
    """`synchronous=FULL` makes every commit durable against power loss, not just a crash of this process;
    the fsync is paid once per group, so throughput comes from batching rather than from weaker durability."""

    def __init__(
        self, path: Path, *, max_batch: int = 4096, checkpoint_every: float = 1.0, busy_timeout: float = BUSY_TIMEOUT
    ) -> None:
        super().__init__(max_batch=max_batch)
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.checkpoint_every = checkpoint_every
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._closing = threading.Event()
        self._checkpointer: threading.Thread | None = None
        self._conn = self._connect()
        # Reads of ended items go through their own connection: WAL lets them run beside the writer, and
        # even while another process holds the write lock.
        self._reader = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._reader.row_factory = sqlite3.Row

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            # Private from the first byte: the database holds key hashes and everything annotators wrote.
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=self.busy_timeout)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        # Checkpoints run on their own thread and connection (below), never inside a commit that someone's
        # acknowledgement is waiting for.
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.executescript(schema.tables(real="REAL", serial="INTEGER PRIMARY KEY"))
        added = schema.migrate(
            lambda table: {row[1] for row in conn.execute(f"PRAGMA table_info({table})")},
            conn.execute,
            real="REAL",
        )
        if added:
            log.warning("database upgraded: added %s", ", ".join(f"{t}.{c}" for t, c in added))
        return conn

    async def start(self) -> None:
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="flowlab-checkpoint", daemon=True)
        self._checkpointer.start()
        await super().start()

    def _checkpoint_loop(self) -> None:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            while not self._closing.wait(self.checkpoint_every):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.OperationalError as exc:  # busy: try again next round
                    log.debug("checkpoint skipped: %s", exc)
            with contextlib.suppress(sqlite3.OperationalError):
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()

    def _commit(self, batches: list[Sequence[Any]]) -> None:
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                for ops in batches:
                    for sql, params in ops:
                        cur.execute(sql, params)
                cur.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.rollback()
                raise

    def _probe(self) -> None:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.rollback()

    def _transient(self, exc: BaseException) -> bool:
        # Locked, busy, full, I/O errors: the database's condition, not the statement's.
        return isinstance(exc, sqlite3.OperationalError)

    def _close_connections(self) -> None:
        self._closing.set()
        if self._checkpointer is not None:
            self._checkpointer.join(10)
        with self._lock:
            self._conn.close()
        with self._read_lock:
            self._reader.close()

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with self._read_lock:
            try:
                return [dict(r) for r in self._reader.execute(sql, params)]
            except sqlite3.OperationalError as exc:
                raise StoreUnavailable(f"the database cannot be read just now ({exc})") from exc

    def load(self, *, items: bool = True) -> Snapshot:
        return schema.load(self.read, items=items)

    def count_votes(self) -> int:
        return int(self.read("SELECT count(*) AS n FROM votes")[0]["n"])
