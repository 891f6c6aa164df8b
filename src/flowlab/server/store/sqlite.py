"""The embedded store: raw sqlite3 in WAL mode behind the group-commit writer."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flowlab.server.store import Op, Snapshot
from flowlab.server.store._group_commit import GroupCommitStore

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

LOAD_QUERIES = {
    "keys": "SELECT * FROM keys",
    "annotators": "SELECT * FROM annotators",
    "flows": "SELECT * FROM flows ORDER BY created_at",
    "items": "SELECT * FROM items ORDER BY created_at",
    "votes": "SELECT item_id, task_id, annotator_id, winner, loser, tie, created_at FROM votes ORDER BY seq",
    "gold_answers": "SELECT * FROM gold_answers",
    "media": "SELECT * FROM media",
}


class SQLiteStore(GroupCommitStore):
    """`synchronous=FULL` makes every commit durable against power loss, not just a crash of this process;
    the fsync is paid once per group, so throughput comes from batching rather than from weaker durability."""

    def __init__(self, path: Path, *, max_batch: int = 4096, checkpoint_every: float = 1.0) -> None:
        super().__init__(max_batch=max_batch)
        self.path = Path(path)
        self.checkpoint_every = checkpoint_every
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._checkpointer: threading.Thread | None = None
        self._conn = self._connect()

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        # Checkpoints run on their own thread and connection (below), never inside a commit that someone's
        # acknowledgement is waiting for.
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.executescript(SCHEMA)
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
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()

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

    def _close_connections(self) -> None:
        self._closing.set()
        if self._checkpointer is not None:
            self._checkpointer.join(10)
        with self._lock:
            self._conn.close()

    def load(self) -> Snapshot:
        with self._lock:
            self._conn.row_factory = sqlite3.Row
            try:

                def rows(sql: str) -> list[dict[str, Any]]:
                    return [dict(r) for r in self._conn.execute(sql)]

                return Snapshot(**{name: rows(sql) for name, sql in LOAD_QUERIES.items()})
            finally:
                self._conn.row_factory = None

    def count_votes(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM votes").fetchone()[0])
