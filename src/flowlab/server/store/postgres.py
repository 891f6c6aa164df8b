"""PostgreSQL behind the same group-commit writer (psycopg 3), for servers whose data must live in Postgres."""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from typing import Any

from flowlab.server.store import Op, Snapshot
from flowlab.server.store._group_commit import GroupCommitStore
from flowlab.server.store.sqlite import LOAD_QUERIES

SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, key_hash TEXT NOT NULL UNIQUE,
    admin INTEGER NOT NULL, created_at DOUBLE PRECISION NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS annotators (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE, owner TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS flows (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, config TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY, flow_id TEXT NOT NULL, body TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL,
    state TEXT NOT NULL, started_at DOUBLE PRECISION, ended_at DOUBLE PRECISION, reason TEXT);
CREATE INDEX IF NOT EXISTS items_flow ON items(flow_id);
CREATE TABLE IF NOT EXISTS votes (
    seq BIGSERIAL PRIMARY KEY, task_id TEXT NOT NULL UNIQUE, item_id TEXT NOT NULL,
    annotator_id TEXT NOT NULL, winner INTEGER NOT NULL, loser INTEGER NOT NULL, tie INTEGER NOT NULL,
    created_at DOUBLE PRECISION NOT NULL);
CREATE INDEX IF NOT EXISTS votes_item ON votes(item_id);
CREATE TABLE IF NOT EXISTS gold_answers (
    task_id TEXT PRIMARY KEY, annotator_id TEXT NOT NULL, flow_id TEXT NOT NULL,
    correct INTEGER NOT NULL, created_at DOUBLE PRECISION NOT NULL);
CREATE TABLE IF NOT EXISTS media (
    sha256 TEXT PRIMARY KEY, media_type TEXT NOT NULL, kind TEXT NOT NULL, size INTEGER NOT NULL,
    created_at DOUBLE PRECISION NOT NULL);
"""

_IGNORE = re.compile(r"^INSERT OR IGNORE INTO", re.I)


def translate(sql: str) -> str:
    """The service writes SQLite's dialect; these are the only two differences it uses."""
    if _IGNORE.match(sql):
        sql = _IGNORE.sub("INSERT INTO", sql) + " ON CONFLICT DO NOTHING"
    return sql.replace("?", "%s")


class PostgresStore(GroupCommitStore):
    def __init__(self, dsn: str, *, max_batch: int = 4096) -> None:
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise RuntimeError("PostgreSQL storage needs the postgres extra: pip install 'flowlab[postgres]'") from exc
        super().__init__(max_batch=max_batch)
        self.dsn = dsn
        self._lock = threading.Lock()
        self._conn = psycopg.connect(dsn, autocommit=True)
        self._conn.execute(SCHEMA)

    def _commit(self, batches: list[Sequence[Op]]) -> None:
        with self._lock, self._conn.transaction(), self._conn.cursor() as cur:
            for ops in batches:
                for sql, params in ops:
                    cur.execute(translate(sql), params)

    def _close_connections(self) -> None:
        with self._lock:
            self._conn.close()

    def load(self) -> Snapshot:
        from psycopg.rows import dict_row

        with self._lock, self._conn.cursor(row_factory=dict_row) as cur:

            def rows(sql: str) -> list[dict[str, Any]]:
                return list(cur.execute(sql).fetchall())

            return Snapshot(**{name: rows(sql) for name, sql in LOAD_QUERIES.items()})

    def count_votes(self) -> int:
        with self._lock:
            row = self._conn.execute("SELECT count(*) FROM votes").fetchone()
            return int(row[0]) if row else 0
