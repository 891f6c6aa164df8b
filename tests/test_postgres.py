"""The PostgreSQL store, against the server on 127.0.0.1:5432 (skipped, with the reason, where there is none)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import msgspec

from flowlab import FlowItemState
from flowlab.crowd import SimulatedCrowd

from .conftest import PostgresDatabase, ServerProcess, wait_for


def test_postgres_store_keeps_every_acknowledged_vote_across_a_kill(pg_dsn: str, tmp_path: Path) -> None:
    server = ServerProcess(data_dir=tmp_path, extra_args=["--db", pg_dsn])
    server.start()
    try:
        with server.client() as client:
            flow = client.flow.create_ranking_flow(
                name="pg", instruction="Which?", max_response_threshold=10_000, min_response_threshold=3
            )
            item = flow.create_new_flow_batch(datapoints=["a", "b", "c", "d"], time_to_live=6.0)
            crowd = SimulatedCrowd(server.url, server.api_key, annotators=6, rate=6000, seed=21).start()
            wait_for(lambda: crowd.stats.votes >= 3, 20.0, "the crowd's first votes")  # its minimum: it completes
            server.stop(kill=True)
            crowd.stop()
        assert crowd.stats.votes >= 3
        assert not (tmp_path / "flowlab.sqlite3").exists(), "nothing went to SQLite"
        time.sleep(max(0.0, item.last_status.deadline - time.time()) + 0.5)  # its deadline passes while down
        server.start()
        with server.client() as client:
            restored = client.flow.get_flow_by_id(flow.id).get_flow_item(item.id).get_progress()
            assert restored.response_count >= crowd.stats.votes
            assert restored.state == FlowItemState.COMPLETED
    finally:
        server.stop()


def test_the_new_kinds_tables_read_back_from_postgres_after_leaving_memory_and_a_restart(
    pg_db: PostgresDatabase, tmp_path: Path
) -> None:
    """Listwise rankings, the "both good / both bad" level of a vote and written demonstrations live in tables of
    their own (`rankings`, `votes.level`, `demonstrations`): on PostgreSQL they are stored, read back once the
    items leave memory, and again after a restart, field by field; and the rows are in PostgreSQL, not SQLite."""
    server = ServerProcess(data_dir=tmp_path, extra_args=["--db", pg_db.dsn, "--retain-ended", "0"])
    server.start()
    try:
        with server.client() as client:
            listwise = client.flow.create_listwise_flow("pg lw", "Best first.", k=4, max_response_threshold=24)
            absolute = client.flow.create_ranking_flow(
                name="pg abs", instruction="Which is better?", max_response_threshold=40, absolute=True
            )
            write = client.flow.create_write_flow("pg write", "Answer the prompt.", max_response_threshold=2)
            scored = [
                {"id": f"d{i}", "text": f"d{i}", "private_metadata": {"true_score": 3.0 - i, "acceptable_above": 1.0}}
                for i in range(6)
            ]
            items = {
                "listwise": listwise.create_new_flow_batch(datapoints=scored, time_to_live=60),
                "absolute": absolute.create_new_flow_batch(datapoints=scored, time_to_live=60),
                "write": write.create_new_flow_batch(
                    [
                        {"id": f"q{i}", "prompt": f"Question {i}?", "private_metadata": {"ideal": f"Answer {i}."}}
                        for i in range(3)
                    ],
                    time_to_live=60,
                ),
            }
            with SimulatedCrowd(server.url, server.api_key, annotators=6, rate=12000, seed=8, accuracy=0.95):
                first = {kind: item.get_results(timeout=60) for kind, item in items.items()}
            assert first["listwise"].total_votes == 24 and first["absolute"].total_votes == 40
            assert first["write"].total_responses == 6
            stored = {
                "rankings": _rows(server, f"/v1/items/{items['listwise'].id}/rankings"),
                "votes": _rows(server, f"/v1/items/{items['absolute'].id}/votes"),
                "demonstrations": [msgspec.to_builtins(d) for d in items["write"].get_demonstrations()],
            }
            assert len(stored["rankings"]) == 24 and len(stored["demonstrations"]) == 6
            assert {v["level"] for v in stored["votes"]} - {None}, "the crowd answered both good or both bad"
            counts = {
                table: pg_db.query(f"SELECT count(*) FROM {table}")[0][0]
                for table in ("rankings", "demonstrations", "votes")
            }
            assert counts == {"rankings": 24, "demonstrations": 6, "votes": 40}, counts
            assert pg_db.query("SELECT count(*) FROM votes WHERE level IS NOT NULL")[0][0] == sum(
                v["level"] is not None for v in stored["votes"]
            )
            wait_for(lambda: _live_items(server) == 0, 10.0, "the ended items leaving memory")
            _assert_same(server, items, first, stored)
        server.stop()
        server.start()
        with server.client() as client:
            reopened = {
                "listwise": client.flow.get_flow_by_id(listwise.id).get_flow_item(items["listwise"].id),
                "absolute": client.flow.get_flow_by_id(absolute.id).get_flow_item(items["absolute"].id),
                "write": client.flow.get_flow_by_id(write.id).get_flow_item(items["write"].id),
            }
            _assert_same(server, reopened, first, stored)
        assert not (tmp_path / "flowlab.sqlite3").exists(), "nothing went to SQLite"
    finally:
        server.stop()


def _rows(server: ServerProcess, path: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{server.url}{path}", headers={"Authorization": f"Bearer {server.api_key}"})
    assert r.status_code == 200, r.text
    return r.json()


def _live_items(server: ServerProcess) -> int:
    return int(httpx.get(f"{server.url}/v1/health").json()["live_items"])


def _assert_same(server: ServerProcess, items: dict[str, Any], first: dict[str, Any], stored: dict[str, Any]) -> None:
    for kind, item in items.items():
        assert msgspec.to_builtins(item.get_results()) == msgspec.to_builtins(first[kind]), kind
    assert _rows(server, f"/v1/items/{items['listwise'].id}/rankings") == stored["rankings"]
    assert _rows(server, f"/v1/items/{items['absolute'].id}/votes") == stored["votes"]
    assert [msgspec.to_builtins(d) for d in items["write"].get_demonstrations()] == stored["demonstrations"]
