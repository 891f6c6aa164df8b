"""Faults under load against real servers: a database that cannot be written for a while, and kill -9.

After each: every acknowledged vote is stored once, no vote answered 503 is counted anywhere, counts never go
backwards, and the server recovers by itself."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

import flowlab
from flowlab.server.app import create_app

from ._load import AnswerLoad
from .conftest import ADMIN_KEY, PostgresDatabase, ServerProcess, free_port, wait_for

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


def make_item(url: str, *, max_votes: int = 1_000_000, ttl: float = 120.0) -> str:
    flow = httpx.post(
        f"{url}/v1/flows",
        json={
            "name": "faults",
            "instruction": "Which?",
            "max_response_threshold": max_votes,
            "min_response_threshold": 1,
        },
        headers=AUTH,
    ).raise_for_status()
    item = httpx.post(
        f"{url}/v1/flows/{flow.json()['id']}/items",
        # 120 datapoints: 7,140 pairs, so a load of a few people never runs out of pairs they have not seen.
        json={"datapoints": [{"text": f"dp {i}"} for i in range(120)], "time_to_live": ttl},
        headers=AUTH,
    ).raise_for_status()
    return str(item.json()["id"])


def counted(url: str, item_id: str) -> int:
    status = httpx.get(f"{url}/v1/items/{item_id}", headers=AUTH, timeout=10).raise_for_status().json()
    matrix = httpx.get(f"{url}/v1/items/{item_id}/matrix", headers=AUTH, timeout=10).raise_for_status().json()
    assert sum(map(sum, matrix["counts"])) == matrix["response_count"] >= status["response_count"]
    return int(matrix["response_count"])


def health(url: str) -> dict:
    return httpx.get(f"{url}/v1/health", timeout=5).json()  # type: ignore[no-any-return]


def sqlite_votes(db: Path, item_id: str) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT task_id FROM votes WHERE item_id=?", (item_id,))]


def assert_exact(load: AnswerLoad, stored: list[str], now_counted: int, *, ambiguous_commits: bool = False) -> None:
    out = load.out
    assert len(stored) == len(set(stored)), "a vote is stored once"
    stored_set = set(stored)
    assert out.accepted <= stored_set, f"{len(out.accepted - stored_set)} acknowledged votes are not in the database"
    extra = stored_set - out.accepted - out.unknown
    if ambiguous_commits:
        # A connection cut during COMMIT leaves its outcome unknown to the server: such a vote may be stored
        # though it was answered 503 (it is then not counted, and its retry would count once).
        assert extra <= out.abandoned
    else:
        assert not extra, "votes answered 503 were stored"
    assert now_counted == len(out.accepted | (out.unknown & stored_set)), "the live count is the acknowledged votes"
    assert not (out.abandoned & out.accepted)


def test_sqlite_write_lock_past_the_busy_timeout(fresh_server: ServerProcess) -> None:
    url = fresh_server.url
    item = make_item(url)
    db = fresh_server.data_dir / "flowlab.sqlite3"
    with AnswerLoad(url, ADMIN_KEY, annotators=6, seed=1) as load:
        time.sleep(0.8)
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock, past the 5 s busy timeout
        try:
            wait_for(lambda: health(url)["status"] == "degraded", 9.0, "health to say degraded")
            state = health(url)
            assert "database" in state["reason"] and "locked" in state["reason"]
            refused = httpx.post(f"{url}/v1/flows", json={"name": "x", "instruction": "?"}, headers=AUTH)
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
            assert "retry" in refused.json()["detail"]
            with fresh_server.client() as client, pytest.raises(flowlab.Unavailable, match="retry"):
                client.flow.create_ranking_flow(name="x", instruction="?", max_response_threshold=5)
            t0 = time.monotonic()
            assert httpx.get(f"{url}/v1/items/{item}", headers=AUTH).status_code == 200, "reads keep working"
            assert time.monotonic() - t0 < 3.0, "a read never waits out the 5 s busy timeout"
            during = counted(url, item)
        finally:
            blocker.rollback()
            blocker.close()
        wait_for(lambda: health(url)["status"] == "ok", 10.0, "the server to recover by itself")
        recovered_at = time.monotonic()
        wait_for(
            lambda: any(t > recovered_at for t in list(load.out.after.values())),
            20.0,
            "votes acknowledged again after the outage",
        )
    assert load.out.unavailable > 0 and load.out.abandoned and load.out.retried
    final = counted(url, item)
    assert final >= during
    assert_exact(load, sqlite_votes(db, item), final)
    assert not load.out.unknown


@pytest.fixture
def in_process_server(tmp_path: Path) -> Iterator[tuple[str, object]]:
    """The real app on a real socket, in this process: the disk-full fault is injected on its store."""
    app = create_app(tmp_path, admin_key=ADMIN_KEY)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: server.started, 20.0, "the in-process server")
    try:
        yield url, app.state.service.store
    finally:
        server.should_exit = True
        thread.join(20)


def test_sqlite_disk_full(in_process_server: tuple[str, object], tmp_path: Path) -> None:
    url, store = in_process_server
    item = make_item(url)
    with AnswerLoad(url, ADMIN_KEY, annotators=6, seed=2) as load:
        time.sleep(0.5)
        # SQLite's own limit on the database's size: inserts fail with SQLITE_FULL, exactly as on a full disk.
        with store._lock:  # type: ignore[attr-defined]
            conn = store._conn  # type: ignore[attr-defined]
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count = {pages}")
        wait_for(lambda: load.out.unavailable >= 20, 10.0, "answers refused while the disk is full")
        during = counted(url, item)
        with store._lock:  # type: ignore[attr-defined]
            store._conn.execute("PRAGMA max_page_count = 1073741823")  # type: ignore[attr-defined]
        wait_for(lambda: health(url)["status"] == "ok", 10.0, "the server to recover by itself")
        wait_for(lambda: counted(url, item) > during, 20.0, "votes to count again once there is room")
    assert "full" in (store.degraded or "") or store.outages > 0  # type: ignore[attr-defined]
    final = counted(url, item)
    assert final > during
    assert_exact(load, sqlite_votes(tmp_path / "flowlab.sqlite3", item), final)


def test_postgres_backend_terminated_mid_load(pg_db: PostgresDatabase, tmp_path: Path) -> None:
    server = ServerProcess(data_dir=tmp_path, extra_args=["--db", pg_db.dsn])
    server.start()
    try:
        url = server.url
        item = make_item(url)
        with AnswerLoad(url, ADMIN_KEY, annotators=6, seed=3) as load:
            for _ in range(3):
                time.sleep(0.7)
                # Each cut once the server has sessions again (it reconnects by itself, sooner or later under load).
                wait_for(lambda: pg_db.terminate_server_sessions() >= 1, 10.0, "a session of the server's to cut")
            wait_for(lambda: health(url)["status"] == "ok", 10.0, "the server to reconnect by itself")
            reconnected_at = time.monotonic()
            wait_for(
                lambda: any(t > reconnected_at for t in list(load.out.after.values())),
                20.0,
                "votes acknowledged after the reconnection",
            )
        assert load.out.unavailable > 0, "the cut connections failed some commits"
        final = counted(url, item)
        stored = [r[0] for r in pg_db.query("SELECT task_id FROM votes WHERE item_id = %s", (item,))]
        assert_exact(load, stored, final, ambiguous_commits=True)
        server.restart()
        assert counted(url, item) >= final, "no count goes backwards across a restart"
    finally:
        server.stop()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_kill_9_under_load(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    extra = ["--db", request.getfixturevalue("pg_db").dsn] if backend == "postgres" else []
    server = ServerProcess(data_dir=tmp_path, extra_args=extra)
    server.start()
    try:
        item = make_item(server.url)
        seen: list[int] = []
        with AnswerLoad(server.url, ADMIN_KEY, annotators=6, seed=4) as load:
            for _ in range(6):
                time.sleep(0.25)
                seen.append(counted(server.url, item))
            server.stop(kill=True)
        server.start()
        after = counted(server.url, item)
        assert after >= max(seen), "no count goes backwards across a kill"
        if backend == "sqlite":
            stored = sqlite_votes(tmp_path / "flowlab.sqlite3", item)
        else:
            stored = [
                r[0]
                for r in request.getfixturevalue("pg_db").query("SELECT task_id FROM votes WHERE item_id = %s", (item,))
            ]
        assert len(load.out.accepted) > 50
        assert_exact(load, stored, after)
    finally:
        server.stop()
