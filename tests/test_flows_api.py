"""The Flows API end to end: a real `flowlab serve` process, a simulated crowd, and only the SDK."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import time

import httpx
import msgspec
import numpy as np
import pytest

import flowlab
from flowlab import AsyncClient, Client, FlowItemState, schemas
from flowlab.client._embedded import stop_local_server
from flowlab.client._sse import SSEParser
from flowlab.crowd import SimulatedCrowd

from .conftest import ServerProcess, wait_for


def scored(n: int, prefix: str = "dp", spread: float = 1.5) -> list[dict[str, object]]:
    """Datapoints whose hidden quality rises with their index, so the crowd's ranking is checkable."""
    return [
        {"id": f"{prefix}{i}", "text": f"{prefix} answer {i}", "private_metadata": {"true_score": i * spread}}
        for i in range(n)
    ]


def test_seed_scenario_verbatim(client: Client, flowlab_server: ServerProcess) -> None:
    client.flow.preheat()
    flow = client.flow.create_ranking_flow(
        name="Image Quality Ranking",
        instruction="Which image looks better?",
        max_response_threshold=40,
        min_response_threshold=10,
    )
    # 40 votes over 10 pairs is four a pair, and which pairs get them depends on timing; a wide spread and an
    # attentive crowd make "a top-two datapoint ranks first" all but certain (the odds of dp2 beating dp3 are 95 %).
    rollouts = scored(5, spread=3.0)
    crowd = SimulatedCrowd(flowlab_server.url, flowlab_server.api_key, annotators=8, rate=3000, accuracy=1.0, seed=3)
    with crowd:
        flow_item = flow.create_new_flow_batch(
            datapoints=rollouts,  # urls, paths, or text
            context="generations from step 12k",
            time_to_live=300,  # seconds
        )
        status = flow_item.get_progress()
        assert status.state in (FlowItemState.PENDING, FlowItemState.RUNNING)
        results = flow_item.get_results(timeout=60)
    matrix = flow_item.get_win_loss_matrix()
    count = flow_item.get_response_count()

    assert results.state == FlowItemState.COMPLETED
    assert count == results.total_votes == 40
    assert matrix.to_numpy().sum() == count
    assert list(matrix.index) == [f"dp{i}" for i in range(5)]
    assert sum(d.votes for d in results.details) == 2 * count
    assert results.details[0].rank == 1
    assert results.ranking[0] in ("dp4", "dp3"), "the crowd's oracle favours higher true scores"
    for d in results.details:
        assert d.ci_low <= d.score <= d.ci_high
    assert abs(sum(d.score for d in results.details)) < 1e-6

    flow.update_config(instruction="Which image has higher visual quality?")
    assert flow.instruction == "Which image has higher visual quality?"
    assert flow_item.get_progress().instruction == "Which image looks better?"

    same = client.flow.get_flow_by_id(flow.id)
    assert same.id == flow.id and same.instruction == "Which image has higher visual quality?"
    recent = client.flow.find_flows(amount=10)
    assert recent[0].id == flow.id
    all_items = flow.get_flow_items()
    assert [i.id for i in all_items] == [flow_item.id]
    flow.delete()
    with pytest.raises(flowlab.NotFound):
        client.flow.get_flow_by_id(flow.id)
    with pytest.raises(flowlab.NotFound):
        flow_item.get_progress()


def test_ttl_expiry_into_completed_and_incomplete(client: Client, flowlab_server: ServerProcess) -> None:
    flow = client.flow.create_ranking_flow(
        name="ttl", instruction="Which?", max_response_threshold=10_000, min_response_threshold=15
    )
    with SimulatedCrowd(flowlab_server.url, flowlab_server.api_key, annotators=6, rate=3000, seed=4):
        enough = flow.create_new_flow_batch(datapoints=scored(4), time_to_live=2.0)
        enough.get_results(timeout=30)
    flow.update_config(min_response_threshold=1_000)
    starved = flow.create_new_flow_batch(datapoints=scored(4), time_to_live=1.0)  # no crowd now
    started = time.monotonic()
    result = starved.get_results(timeout=30)
    assert time.monotonic() - started < 5
    assert enough.get_progress().state == FlowItemState.COMPLETED
    assert enough.get_response_count() >= 15
    assert result.state == FlowItemState.INCOMPLETE and result.total_votes == 0


def test_get_results_timeout_and_partial(client: Client) -> None:
    flow = client.flow.create_ranking_flow(name="partial", instruction="Which?", max_response_threshold=5)
    item = flow.create_new_flow_batch(datapoints=["a", "b", "c"], time_to_live=60)
    with pytest.raises(flowlab.Timeout, match="partial=True"):
        item.get_results(timeout=0.3)
    partial = item.get_results(timeout=0.1, partial=True)
    assert partial.partial and partial.total_votes == 0 and partial.state == FlowItemState.PENDING
    stopped = item.stop()
    assert stopped.state == FlowItemState.STOPPED
    assert item.get_results(timeout=5).state == FlowItemState.STOPPED


def test_update_config_only_new_items_pick_it_up(researcher: Client) -> None:
    # A researcher of its own: their annotator is handed these two items' tasks, not those of items other tests
    # left running on the shared server.
    flow = researcher.flow.create_ranking_flow(name="cfg", instruction="Old question?", max_response_threshold=8)
    # Four datapoints: a person is never shown the same pair of an item twice, skipped or not.
    old = flow.create_new_flow_batch(datapoints=["x", "y", "z", "w"], time_to_live=60)
    flow.update_config(instruction="New question?", max_response_threshold=12, min_response_threshold=4)
    new = flow.create_new_flow_batch(datapoints=["x", "y", "z", "w"], time_to_live=60)
    o, n = old.get_progress(), new.get_progress()
    assert (o.instruction, o.max_response_threshold, o.min_response_threshold) == ("Old question?", 8, 8)
    assert (n.instruction, n.max_response_threshold, n.min_response_threshold) == ("New question?", 12, 4)
    assert n.config_version == o.config_version + 1
    annotator = researcher.annotators.create("reader")
    http = httpx.Client(base_url=researcher.url, headers={"Authorization": f"Bearer {annotator.token}"})
    seen = {}
    for _ in range(4):
        task = http.post("/v1/tasks/next", json={}).json()
        seen[task["item_id"]] = task["instruction"]
        http.post(f"/v1/tasks/{task['task_id']}/answer", json={"choice": "skip"})
    old.stop()
    task = http.post("/v1/tasks/next", json={}).json()
    seen[task["item_id"]] = task["instruction"]
    assert seen[old.id] == "Old question?" and seen[new.id] == "New question?"
    new.stop()


def test_concurrent_annotators_never_over_serve_an_item(researcher: Client) -> None:
    # A researcher of its own: the crowd's votes all go to these items, never to ones other tests left running.
    flow = researcher.flow.create_ranking_flow(name="race", instruction="Which?", max_response_threshold=25)
    items = [flow.create_new_flow_batch(datapoints=scored(6, f"i{k}-"), time_to_live=60) for k in range(3)]
    with SimulatedCrowd(researcher.url, researcher.api_key, annotators=40, rate=20_000, seed=5) as crowd:
        for item in items:
            item.get_results(timeout=60)
        time.sleep(0.3)  # let in-flight answers land: they must all be refused
    for item in items:
        assert item.get_response_count() == 25
        assert item.get_win_loss_matrix().to_numpy().sum() == 25
        assert len(item.get_votes()) == 25
    assert crowd.stats.votes == 75


def test_restart_keeps_every_acknowledged_vote(fresh_server: ServerProcess) -> None:
    with fresh_server.client() as client:
        flow = client.flow.create_ranking_flow(
            name="durable", instruction="Which?", max_response_threshold=10_000, min_response_threshold=5
        )
        item = flow.create_new_flow_batch(datapoints=scored(5), time_to_live=6.0)
        later = flow.create_new_flow_batch(datapoints=scored(3), time_to_live=600)
        crowd = SimulatedCrowd(fresh_server.url, fresh_server.api_key, annotators=10, rate=6000, seed=6).start()
        # The item is served first (nearest deadline) until its minimum of 5: it ends Completed.
        wait_for(lambda: crowd.stats.votes >= 10, 20, "the crowd's first votes")
        fresh_server.stop(kill=True)  # SIGKILL: no chance to flush anything
        crowd.stop()
    acknowledged = crowd.stats.votes
    assert acknowledged >= 10
    time.sleep(max(0.0, item.last_status.deadline - time.time()) + 0.5)  # its deadline passes while the server is down
    with sqlite3.connect(fresh_server.data_dir / "flowlab.sqlite3") as db:
        stored = db.execute("SELECT count(*) FROM votes").fetchone()[0]
    assert stored >= acknowledged, "every acknowledged vote is in the database"
    fresh_server.start()
    with fresh_server.client() as client:
        flow2 = client.flow.get_flow_by_id(flow.id)
        items = {i.id: i for i in flow2.get_flow_items()}
        restored = items[item.id].get_progress()
        assert restored.response_count + items[later.id].get_response_count() == stored
        assert restored.state == FlowItemState.COMPLETED
        assert items[later.id].get_progress().state in (FlowItemState.PENDING, FlowItemState.RUNNING)
        assert items[item.id].get_win_loss_matrix().to_numpy().sum() == restored.response_count


def test_watch_streams_live_counts_and_resumes(client: Client, flowlab_server: ServerProcess) -> None:
    flow = client.flow.create_ranking_flow(name="watch", instruction="Which?", max_response_threshold=30)
    item = flow.create_new_flow_batch(datapoints=scored(4), time_to_live=60)
    rebuilt = np.zeros((4, 4))
    events = []
    with SimulatedCrowd(flowlab_server.url, flowlab_server.api_key, annotators=6, rate=3000, seed=8):
        for event in item.watch():
            events.append(event)
            if event.full:  # a first message carries the matrix so far, never the vote history
                assert event.counts is not None and not event.delta
                rebuilt = np.array(event.counts)
            for w, lo, tie in event.delta:
                rebuilt[w, lo] += 0.5 if tie else 1.0
                rebuilt[lo, w] += 0.5 if tie else 0.0
    assert events[-1].state == "Completed" and events[-1].response_count == 30
    assert [e.version for e in events] == sorted({e.version for e in events}), "versions only grow"
    assert np.array_equal(rebuilt, item.get_win_loss_matrix().to_numpy())
    # Resuming from a mid-stream id replays exactly the votes after it.
    mid = events[len(events) // 2]
    with httpx.stream(
        "GET",
        f"{client.url}/v1/items/{item.id}/events",
        headers={"Authorization": f"Bearer {client.api_key}", "Last-Event-ID": str(mid.version)},
    ) as r:
        parser = SSEParser()
        messages = [parser.feed_line(line) for line in r.iter_lines()]
    resumed = [msgspec.json.decode(m.data, type=schemas.ItemEvent) for m in messages if m and m.event == "item"]
    assert not resumed[0].full
    assert sum(len(e.delta) for e in resumed) == 30 - mid.response_count


def test_async_client_twin(flowlab_server: ServerProcess) -> None:
    async def main() -> None:
        async with AsyncClient(url=flowlab_server.url, api_key=flowlab_server.api_key) as client:
            await client.flow.preheat()
            flow = await client.flow.create_ranking_flow(
                name="async", instruction="Which?", max_response_threshold=12, min_response_threshold=3
            )
            item = await flow.create_new_flow_batch(datapoints=scored(3), context="ctx", time_to_live=60)
            crowd = SimulatedCrowd(flowlab_server.url, flowlab_server.api_key, annotators=4, rate=3000, seed=2)
            stop = asyncio.Event()
            runner = asyncio.create_task(crowd.arun(stop))
            states = [e.state async for e in item.watch()]
            stop.set()
            await runner
            assert states[-1] == "Completed"
            results = await item.get_results(timeout=10)
            assert results.total_votes == 12 == await item.get_response_count()
            matrix = await item.get_win_loss_matrix()
            assert matrix.to_numpy().sum() == 12
            await flow.update_config(instruction="Changed?")
            assert (await client.flow.get_flow_by_id(flow.id)).instruction == "Changed?"
            assert [i.id for i in await flow.get_flow_items()] == [item.id]
            assert flow.id in [f.id for f in await client.flow.find_flows(amount=5)]
            await flow.delete()

    asyncio.run(main())


def test_embedded_server_is_started_once_and_reused(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("FLOWLAB_HOME", str(tmp_path))
    first = Client()
    try:
        flow = first.flow.create_ranking_flow(name="local", instruction="Which?", max_response_threshold=3)
        second = Client()
        assert second.url == first.url
        assert second.flow.get_flow_by_id(flow.id).name == "local"
        status = subprocess.run(
            [sys.executable, "-m", "flowlab", "local", "status"],
            capture_output=True,
            text=True,
            env={**os.environ, "FLOWLAB_HOME": str(tmp_path)},
        )
        assert first.url in status.stdout
    finally:
        assert stop_local_server()


def test_a_long_poll_that_hung_up_is_not_handed_a_task(fresh_server: ServerProcess) -> None:
    # A server of its own: on the shared one, an item another test left waiting for other people has work for
    # any new annotator, and the first long poll would be answered at once.
    flowlab_server = fresh_server
    client = fresh_server.client()
    gone = client.annotators.create("gone").token
    present = client.annotators.create("present").token
    # The first annotator waits for work, then gives up (its connection closes) before any arrives.
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{flowlab_server.url}/v1/tasks/next",
            json={"wait": 20},
            headers={"Authorization": f"Bearer {gone}"},
            timeout=0.5,
        )
    time.sleep(0.2)
    flow = client.flow.create_ranking_flow(name="hangup", instruction="Which?", max_response_threshold=1)
    item = flow.create_new_flow_batch(datapoints=["a", "b"], time_to_live=60)
    r = httpx.post(
        f"{flowlab_server.url}/v1/tasks/next", json={"wait": 2}, headers={"Authorization": f"Bearer {present}"}
    )
    assert r.status_code == 200 and r.json()["item_id"] == item.id, "the only slot went to the one still asking"
    item.stop()


def test_watch_reconnects_and_resumes_across_a_server_restart(fresh_server: ServerProcess) -> None:
    with fresh_server.client() as client:
        flow = client.flow.create_ranking_flow(name="resume", instruction="Which?", max_response_threshold=40)
        item = flow.create_new_flow_batch(datapoints=scored(4), time_to_live=120)
        # Ten people: nobody compares a pair of the item twice, and 4 datapoints make 6 pairs.
        crowd = SimulatedCrowd(fresh_server.url, fresh_server.api_key, annotators=10, rate=1500, seed=9).start()
        rebuilt = np.zeros((4, 4))
        restarted = False
        last = None
        for event in item.watch():
            for w, lo, _tie in event.delta:
                rebuilt[w, lo] += 1.0
            last = event
            if not restarted and event.response_count >= 10:
                restarted = True
                crowd.stop()
                fresh_server.restart()
                crowd = SimulatedCrowd(fresh_server.url, fresh_server.api_key, annotators=10, rate=3000, seed=10)
                crowd.start()
        crowd.stop()
        assert restarted and last is not None and last.state == "Completed"
        # Nothing was missed or counted twice across the reconnect.
        assert np.array_equal(rebuilt, item.get_win_loss_matrix().to_numpy())
        assert rebuilt.sum() == 40


def test_server_generates_and_saves_an_admin_key_when_none_is_given(tmp_path) -> None:
    import os
    import subprocess
    import sys

    from .conftest import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "FLOWLAB_API_KEY"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowlab", "serve", "--port", str(port), "--data-dir", str(tmp_path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        printed = [proc.stdout.readline() for _ in range(2)]
        key = (tmp_path / "admin_key").read_text().strip()
        assert key.startswith("fl_key_") and key in "".join(printed)
        assert oct((tmp_path / "admin_key").stat().st_mode)[-3:] == "600"
        for _ in range(100):
            try:
                with Client(url=f"http://127.0.0.1:{port}", api_key=key) as client:
                    assert client.me().role == "admin"
                break
            except flowlab.ConnectError:
                time.sleep(0.1)
        else:
            raise AssertionError("server never answered")
    finally:
        proc.terminate()
        proc.wait(10)


def test_exports_preference_pairs_and_rlhf_task_records(client: Client, flowlab_server: ServerProcess) -> None:
    flow = client.flow.create_ranking_flow(
        name="export", instruction="Which is more helpful?", max_response_threshold=20
    )
    item = flow.create_new_flow_batch(datapoints=scored(3), context="What is 2 + 2?", time_to_live=60)
    # Three datapoints make three pairs, and nobody compares a pair twice: eight people for 20 votes.
    with SimulatedCrowd(flowlab_server.url, flowlab_server.api_key, annotators=8, rate=6000, seed=12):
        results = item.get_results(timeout=60)
    pairs = item.to_preference_pairs()
    assert len(pairs) == 20 and all(p["prompt"] == "What is 2 + 2?" for p in pairs)
    assert all(p["chosen"] != p["rejected"] for p in pairs)
    votes = item.get_votes()
    assert [p["chosen_key"] for p in pairs] == list(votes["winner_key"])
    task = item.to_rlhf_task()
    assert task["messages"][0] == {"role": "user", "content": "What is 2 + 2?"}
    assert [m["source_id"] for m in task["messages"][1:]] == ["dp0", "dp1", "dp2"]
    assert task["annotations"]["selected_model_id"] == results.ranking[0]
    assert task["annotations"]["instruction"] == "Which is more helpful?"


def test_active_pair_selection_serves_and_covers_every_datapoint(client: Client, flowlab_server: ServerProcess) -> None:
    flow = client.flow.create_ranking_flow(
        name="active", instruction="Which?", max_response_threshold=80, pair_selection="active"
    )
    assert flow.config.pair_selection == "active"
    item = flow.create_new_flow_batch(datapoints=scored(10), time_to_live=60)
    with SimulatedCrowd(flowlab_server.url, flowlab_server.api_key, annotators=6, rate=12_000, seed=13):
        results = item.get_results(timeout=60)
    assert results.total_votes == 80
    assert all(d.votes > 0 for d in results.details), "every datapoint is compared"
    assert results.ranking.index("dp9") < 4, "the best datapoint ranks near the top"
