"""PostgreSQL behind the same group-commit writer (psycopg 3), for servers whose data must live in Postgres."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from typing import Any

from flowlab.server.store import Fenced, Row, Snapshot, StoreUnavailable, schema
from flowlab.server.store._group_commit import GroupCommitStore

log = logging.getLogger("flowlab.store")

_IGNORE = re.compile(r"^INSERT OR IGNORE INTO", re.I)
CONNECT_TIMEOUT = 3
# A commit must not wait forever on another session's lock or on a peer gone silent: past these it fails as
# an outage (503 and reconnect), as SQLite's busy timeout does. TCP keepalives find a dead peer in ~25 s.
KEEPALIVES: dict[str, Any] = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}


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
        self._psycopg = psycopg
        self.dsn = dsn
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._conn = self._connect()
        self._conn.execute(schema.tables(real="DOUBLE PRECISION", serial="BIGSERIAL PRIMARY KEY"))
        added = schema.migrate(self._columns_of, self._conn.execute, real="DOUBLE PRECISION")
        if added:
            log.warning("database upgraded: added %s", ", ".join(f"{t}.{c}" for t, c in added))
        self._reader = self._connect()
        # In a cluster, the `nodes` row of this process: every transaction first takes a share lock on it,
        # so a takeover (which deletes the row) waits for commits in flight, and none lands after it.
        self.fence_node: str | None = None

    def _connect(self) -> Any:
        # Named, so an operator (or a fault test) can find this server's sessions in pg_stat_activity.
        named: dict[str, Any] = {} if "application_name" in self.dsn else {"application_name": "flowlab"}
        conn = self._psycopg.connect(self.dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT, **KEEPALIVES, **named)
        conn.execute("SELECT set_config('lock_timeout', '5s', false), set_config('statement_timeout', '30s', false)")
        return conn

    def _columns_of(self, table: str) -> set[str]:
        rows = self._conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
            "AND table_schema = current_schema()",
            (table,),
        ).fetchall()
        return {r[0] for r in rows}

    def _commit(self, batches: list[Sequence[Any]]) -> None:
        with self._lock, self._conn.transaction(), self._conn.cursor() as cur:
            node = self.fence_node
            if (
                node is not None
                and cur.execute("SELECT 1 FROM nodes WHERE id=%s FOR SHARE", (node,)).fetchone() is None
            ):
                raise Fenced(
                    f"this process (cluster node {node}) lost its database session and the other processes took "
                    "over its flows; it stops so that nothing is counted twice (start it again to rejoin)"
                )
            # Pipelined: the statements go out without waiting for each one's reply, so a group of thousands
            # of answers costs a few round trips rather than one each.
            with self._conn.pipeline():
                for ops in batches:
                    for sql, params in ops:
                        cur.execute(translate(sql), params)

    def _probe(self) -> None:
        with self._lock:
            if self._conn.closed or self._conn.broken:
                self._conn.close()
                self._conn = self._connect()
            self._conn.execute("SELECT 1")

    def _transient(self, exc: BaseException) -> bool:
        # A lost or refused connection (a terminated backend, a restart, a network cut): reconnect and go on.
        # Constraint and syntax errors are the statements' own.
        return isinstance(exc, self._psycopg.OperationalError | self._psycopg.InterfaceError)

    def _close_connections(self) -> None:
        with self._lock:
            self._conn.close()
        with self._read_lock:
            self._reader.close()

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        from psycopg.rows import dict_row

        with self._read_lock:
            for attempt in range(2):
                try:
                    if self._reader.closed or self._reader.broken:
                        self._reader = self._connect()
                    with self._reader.cursor(row_factory=dict_row) as cur:
                        return list(cur.execute(translate(sql), params).fetchall())
                except (self._psycopg.OperationalError, self._psycopg.InterfaceError) as exc:
                    self._reader.close()
                    if attempt:
                        raise StoreUnavailable(f"the database cannot be read just now ({exc})") from exc
        raise AssertionError("unreachable")

    def load(self, *, items: bool = True) -> Snapshot:
        return schema.load(self.read, items=items)

    def count_votes(self) -> int:
        return int(self.read("SELECT count(*) AS n FROM votes")[0]["n"])
