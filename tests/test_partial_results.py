"""`get_results(partial=True)` answers at once, for every kind and both twins; with a `timeout` it waits up to it
for the item to end; `wait()` still waits. A real server of the module's own, so the one annotator here is handed
only these items' tasks."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

import flowlab
from flowlab import FlowItemState

from .conftest import ServerProcess

KINDS = ["pairwise", "classify", "rlhf"]
TTL = 600.0  # far longer than any test here: an item ends only when a test stops it
AT_ONCE = 10.0  # seconds: a loaded machine's round trips, never the item's time-to-live
RUNNING = (FlowItemState.PENDING, FlowItemState.RUNNING)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    own = ServerProcess(data_dir=tmp_path_factory.mktemp("partial-data"))
    own.start()
    yield own
    own.stop()


def make_item(client: flowlab.Client, kind: str) -> Any:
    """A running item of `kind` that nobody has answered yet; it needs more answers than any test gives."""
    if kind == "pairwise":
        flow: Any = client.flow.create_ranking_flow("partial pairs", "Which?", max_response_threshold=50)
        return flow.create_new_flow_batch(datapoints=["a", "b", "c", "d"], time_to_live=TTL)
    if kind == "classify":
        flow = client.flow.create_classify_flow(
            "classify", "Safe?", ["safe", "unsafe"], max_responses_per_datapoint=10, min_responses_per_datapoint=5
        )
        return flow.create_new_flow_batch(["one reply", "another reply"], time_to_live=TTL)
    flow = client.flow.create_rlhf_flow(
        "partial rlhf",
        "Which is better?",
        dimensions=[{"key": "ok", "type": "boolean"}],
        rewrite="off",
        likert_scale=0,
        justification="off",
        max_response_threshold=5,
    )
    responses = [{"source_id": "m1", "content": "x"}, {"source_id": "m2", "content": "y"}]
    task = {"id": "q", "prompt": "Why?", "responses": responses}
    return flow.create_new_flow_batch([task], time_to_live=TTL)


def answer_one(server: ServerProcess, client: flowlab.Client, item_id: str) -> None:
    """One new annotator answers one task of the item (the module's items are the only live ones)."""
    token = client.annotators.create("partial").token
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        task = http.post("/v1/tasks/next", json={}).json()
        assert task["item_id"] == item_id, "another test's item is still live"
        if task["kind"] == "pairwise":
            body: dict[str, Any] = {"choice": "a"}
        elif task["kind"] == "classify":
            body = {"choice": task["categories"][0]["value"]}
        else:
            body = {"choice": "submit", "rlhf": {"ratings": [{"ok": True}, {"ok": False}], "selected": 0}}
        r = http.post(f"/v1/tasks/{task['task_id']}/answer", json=body)
        assert r.status_code == 200, r.text


def answers(results: Any) -> int:
    return results.total_votes if hasattr(results, "total_votes") else results.total_responses


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    out = call()
    return out, time.monotonic() - started


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", KINDS)
def test_partial_results_come_at_once_and_a_timeout_waits_for_the_end(server: ServerProcess, kind: str) -> None:
    with server.client() as client:
        item = make_item(client, kind)
        try:
            now, took = timed(lambda: item.get_results(partial=True))
            assert took < AT_ONCE, f"partial=True without a timeout waited {took:.1f} s"
            assert now.partial and now.state in RUNNING and answers(now) == 0

            answer_one(server, client, item.id)
            now, took = timed(lambda: item.get_results(partial=True))
            assert took < AT_ONCE and now.partial and answers(now) == 1, "what has arrived, at once"

            waited, took = timed(lambda: item.get_results(timeout=0.5, partial=True))
            assert took >= 0.5, "a timeout with partial=True waits for the item to end, up to the timeout"
            assert waited.partial and waited.state in RUNNING and answers(waited) == 1
            with pytest.raises(flowlab.Timeout, match="partial=True"):
                item.get_results(timeout=0.2)

            threading.Timer(0.5, item.stop).start()  # the item ends while the call below waits
            ended, took = timed(lambda: item.get_results(timeout=60, partial=True))
            assert took < 60 - AT_ONCE, "it returns when the item ends, not at the timeout"
            assert not ended.partial and ended.state == FlowItemState.STOPPED and answers(ended) == 1
            assert not item.get_results(partial=True).partial
        finally:
            item.stop()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", KINDS)
def test_wait_still_waits_for_the_end(server: ServerProcess, kind: str) -> None:
    with server.client() as client:
        item = make_item(client, kind)
        try:
            status, took = timed(lambda: item.wait(timeout=0.5))
            assert took >= 0.5 and status.state in RUNNING
            threading.Timer(0.5, item.stop).start()
            status, took = timed(item.wait)
            assert status.state == FlowItemState.STOPPED and item.last_status is status
            assert took >= 0.4, "wait() returned before the item ended"
        finally:
            item.stop()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", KINDS)
def test_the_async_twin_answers_partial_results_at_once(server: ServerProcess, kind: str) -> None:
    async def run() -> None:
        async with flowlab.AsyncClient(url=server.url, api_key=server.api_key) as aclient:
            flow = await aclient.flow.get_flow_by_id(made.flow_id)
            item = await flow.get_flow_item(made.id)
            started = time.monotonic()
            now = await item.get_results(partial=True)
            assert time.monotonic() - started < AT_ONCE and now.partial and now.state in RUNNING
            started = time.monotonic()
            waited = await item.get_results(timeout=0.5, partial=True)
            assert time.monotonic() - started >= 0.5 and waited.partial
            assert (await item.wait(timeout=0.3)).state in RUNNING

            async def stop_soon() -> None:
                await asyncio.sleep(0.5)
                await item.stop()

            stopping = asyncio.create_task(stop_soon())
            ended = await item.get_results(timeout=60, partial=True)
            await stopping
            assert not ended.partial and ended.state == FlowItemState.STOPPED
            assert (await item.wait()).state == FlowItemState.STOPPED

    with server.client() as client:
        made = make_item(client, kind)
        try:
            asyncio.run(run())
        finally:
            made.stop()
