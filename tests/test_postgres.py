"""The PostgreSQL store, against the server on 127.0.0.1:5432 (skipped, with the reason, where there is none)."""

from __future__ import annotations

import time
from pathlib import Path

from flowlab import FlowItemState
from flowlab.crowd import SimulatedCrowd

from .conftest import ServerProcess, wait_for


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
