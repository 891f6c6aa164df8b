"""The PostgreSQL store, against the server on 127.0.0.1:5432 (skipped, with the reason, where there is none)."""

from __future__ import annotations

import time
from pathlib import Path

from flowlab import FlowItemState
from flowlab.crowd import SimulatedCrowd

from .conftest import ServerProcess


def test_postgres_store_keeps_every_acknowledged_vote_across_a_kill(pg_dsn: str, tmp_path: Path) -> None:
    server = ServerProcess(data_dir=tmp_path, extra_args=["--db", pg_dsn])
    server.start()
    try:
        with server.client() as client:
            flow = client.flow.create_ranking_flow(
                name="pg", instruction="Which?", max_response_threshold=10_000, min_response_threshold=3
            )
            item = flow.create_new_flow_batch(datapoints=["a", "b", "c", "d"], time_to_live=2.0)
            crowd = SimulatedCrowd(server.url, server.api_key, annotators=6, rate=6000, seed=21).start()
            time.sleep(1.0)
            server.stop(kill=True)
            crowd.stop()
        assert crowd.stats.votes > 0
        assert not (tmp_path / "flowlab.sqlite3").exists(), "nothing went to SQLite"
        time.sleep(1.5)
        server.start()
        with server.client() as client:
            restored = client.flow.get_flow_by_id(flow.id).get_flow_item(item.id).get_progress()
            assert restored.response_count >= crowd.stats.votes
            assert restored.state == FlowItemState.COMPLETED
    finally:
        server.stop()
