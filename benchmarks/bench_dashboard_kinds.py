"""The workbench per kind: what one dashboard refresh and one FlowMonitor refresh cost for an item of each kind,
live and after the item has left the server's memory (its reads then come from the database).

A real `flowlab serve --retain-ended 0`; for each kind a flow and an item of 10 tasks (datapoints, RLHF tasks,
chat tasks, datapoints ranked four at a time, prompts to write for), answered by the simulated crowd (chat: two
models served from this process) while the item stays live (its maximum is out of the crowd's reach). With the
crowd stopped, each refresh is timed as a page sees it when the item has changed: the dashboard's
(`Dashboard.refresh()`: projects, the flow, its items, the kind's reads of the item and its figure update, every
fifth one the flows list and annotators too) and the monitor's (`FlowMonitor.refresh()`: the flow, its items, the
kind's reads, rows and figures). Then the item is stopped, and once it has left memory the same refreshes are
timed again.

Run: `python benchmarks/bench_dashboard_kinds.py` (about a minute).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import KEY, RESULTS_DIR, free_port, machine, pct

import flowlab
from flowlab.crowd import ChatScript, SimulatedCrowd

TASKS = 10
REFRESHES = 60  # timed per measure, after WARMUP untimed ones
WARMUP = 5
FORGETFUL = ["--retain-ended", "0"]  # an ended item leaves memory as soon as its final record is written


@dataclass
class Case:
    """A flow of one kind whose item the crowd answers without filling it, and how many answers to wait for."""

    create: Callable[[flowlab.Client], Any]
    batch: list[Any]
    answers: int
    annotators: int
    chat: bool = False


def _rlhf_task(i: int) -> dict[str, Any]:
    return {
        "id": f"t{i}",
        "prompt": f"Question {i}?",
        "responses": [
            {"source_id": "strong", "content": f"A careful answer to {i}.", "private_metadata": {"true_score": 2}},
            {"source_id": "weak", "content": f"no idea {i}", "private_metadata": {"true_score": -2}},
        ],
    }


CASES: dict[str, Case] = {
    "pairwise": Case(
        create=lambda c: c.flow.create_ranking_flow("bench pairwise", "Which is better?", max_response_threshold=9_000),
        batch=[
            {"id": f"d{i}", "text": f"answer {i}", "private_metadata": {"true_score": 0.3 * i}} for i in range(TASKS)
        ],
        answers=300,
        annotators=8,
    ),
    "classify": Case(
        create=lambda c: c.flow.create_classify_flow(
            "bench classify",
            "Which animal?",
            categories=["cat", "dog", "bird"],
            max_responses_per_datapoint=50,
            min_responses_per_datapoint=1,
        ),
        batch=[f"animal {i}" for i in range(TASKS)],
        answers=TASKS * 8,  # each of the 8 annotators answers each datapoint once
        annotators=8,
    ),
    "rlhf": Case(
        create=lambda c: c.flow.create_rlhf_flow("bench rlhf", "Which answer is better?", max_response_threshold=50),
        batch=[_rlhf_task(i) for i in range(TASKS)],
        answers=TASKS * 5,
        annotators=5,
    ),
    "chat": Case(
        create=lambda c: c.flow.create_chat_flow(
            "bench chat",
            "Chat.",
            models=["v1", "v2"],
            max_turns=1,
            dimensions=["helpfulness"],
            likert_scale=5,
            max_response_threshold=50,
        ),
        batch=[{"id": f"c{i}"} for i in range(TASKS)],
        answers=TASKS * 3,
        annotators=3,
        chat=True,
    ),
    "listwise": Case(
        create=lambda c: c.flow.create_listwise_flow(
            "bench listwise", "Order them, best first.", k=4, max_response_threshold=9_000
        ),
        batch=[
            {"id": f"d{i}", "text": f"answer {i}", "private_metadata": {"true_score": 0.3 * i}} for i in range(TASKS)
        ],
        answers=200,  # rankings of four: 1,200 implied pairs
        annotators=8,
    ),
    "write": Case(
        create=lambda c: c.flow.create_write_flow("bench write", "Answer the prompt.", max_response_threshold=50),
        batch=[{"id": f"w{i}", "prompt": f"Say something about {i}.", "guidance": "One sentence."} for i in range(10)],
        answers=TASKS * 5,  # each of the 5 annotators writes once for each prompt
        annotators=5,
    ),
}


@contextlib.contextmanager
def forgetful_server() -> Iterator[str]:
    """`flowlab serve` that lets an ended item leave memory as soon as its final record is written."""
    data_dir = Path(tempfile.mkdtemp(prefix="flowlab-bench-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(data_dir / "log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flowlab", "serve", "--port", str(port), "--data-dir", str(data_dir), *FORGETFUL],
            env={**os.environ, "FLOWLAB_API_KEY": KEY},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/v1/health").status_code == 200:
                    break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"server did not start:\n{(data_dir / 'log').read_text()}")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(15)


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def answer(url: str, flow: Any, item: Any, case: Case) -> None:
    """Let the crowd answer until the item holds `case.answers` (the chat crowd talks with two served models)."""
    with ExitStack() as stack:
        script = None
        if case.chat:
            script = ChatScript(turns=["Hello?"], edits=["Hi?"], judge=lambda reply, dims: {"helpfulness": 3})
            stack.enter_context(flow.serve_model(lambda m: "Short.", model="v1"))
            stack.enter_context(flow.serve_model(lambda m: "A longer reply.", model="v2"))
        stack.enter_context(SimulatedCrowd(url, KEY, annotators=case.annotators, rate=6000, seed=5, chat=script))
        wait_for(lambda: item.get_response_count() >= case.answers, "the crowd's answers")


def time_dashboard(url: str, flow_id: str) -> list[float]:
    """Milliseconds per `Dashboard.refresh()` that re-reads and redraws the item, as after it changed."""
    from flowlab_widgets.dashboard import Dashboard

    async def run() -> list[float]:
        board = Dashboard(url, KEY, flow_id=flow_id)
        times = []
        try:
            for n in range(WARMUP + REFRESHES):
                board._version = None  # the item changed since the last refresh: read and draw it again
                started = time.perf_counter()
                await board.refresh()
                if n >= WARMUP:
                    times.append((time.perf_counter() - started) * 1000)
            assert board.view is not None and not board.view.empty_panels(), "every panel shows something"
        finally:
            await board.client.aclose()
        return times

    return asyncio.run(run())


def time_monitor(flow: Any) -> list[float]:
    """Milliseconds per `FlowMonitor.refresh()` that re-reads and redraws the item."""
    from flowlab_widgets import FlowMonitor

    monitor = FlowMonitor(flow, live=False)
    times = []
    try:
        for n in range(WARMUP + REFRESHES):
            monitor.snapshot = None  # no reading to reuse: the item changed since the last refresh
            started = time.perf_counter()
            monitor.refresh()
            if n >= WARMUP:
                times.append((time.perf_counter() - started) * 1000)
        assert not monitor.view.empty_panels(), "every panel shows something"
    finally:
        monitor.close()
    return times


def fmt(times: list[float]) -> str:
    return f"{pct(times, 50):.1f} / {pct(times, 95):.1f}"


def main() -> None:
    measured: dict[str, dict[str, Any]] = {}
    with forgetful_server() as url, flowlab.Client(url=url, api_key=KEY) as client:
        for kind, case in CASES.items():
            flow = case.create(client)
            item = flow.create_new_flow_batch(case.batch, time_to_live=3600)
            answer(url, flow, item, case)
            answers = item.get_response_count()
            live = {"dashboard": time_dashboard(url, flow.id), "monitor": time_monitor(flow)}
            item.stop()
            wait_for(lambda: httpx.get(f"{url}/v1/health").json()["live_items"] == 0, "the item to leave memory")
            ended = {"dashboard": time_dashboard(url, flow.id), "monitor": time_monitor(flow)}
            measured[kind] = {"answers": answers, "live": live, "ended": ended}
            print(
                f"{kind}: {answers} answers; dashboard {fmt(live['dashboard'])} ms live, "
                f"{fmt(ended['dashboard'])} ms from the database",
                flush=True,
            )
    lines = [
        "### The workbench per kind: one refresh of an item of 10 tasks",
        "",
        f"Machine: {machine()}",
        "",
        "p50 / p95 ms over 60 refreshes that re-read and redraw the item (the client's reads and the figure "
        "update), live and after the item has left the server's memory (`--retain-ended 0`).",
        "",
        "| kind | answers | dashboard, live | dashboard, from the database | FlowMonitor, live | "
        "FlowMonitor, from the database |",
        "|---|---|---|---|---|---|",
    ]
    for kind, m in measured.items():
        lines.append(
            f"| {kind} | {m['answers']} | {fmt(m['live']['dashboard'])} | {fmt(m['ended']['dashboard'])} | "
            f"{fmt(m['live']['monitor'])} | {fmt(m['ended']['monitor'])} |"
        )
    text = "\n".join(lines) + "\n"
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "dashboard_kinds.md").write_text(text)
    summary = {
        kind: {
            "answers": m["answers"],
            **{
                f"{view}_{when}_p50_p95_ms": [round(pct(m[when][view], 50), 2), round(pct(m[when][view], 95), 2)]
                for when in ("live", "ended")
                for view in ("dashboard", "monitor")
            },
        }
        for kind, m in measured.items()
    }
    (RESULTS_DIR / "dashboard_kinds.json").write_text(json.dumps({"machine": machine(), "kinds": summary}, indent=1))
    print(text)


if __name__ == "__main__":
    main()
