"""Every kind's results, read live and read back from the database once the item left memory.

For each kind, five items of 10 tasks are answered by the simulated crowd on a server that keeps ended items in
memory; their results are read there (the live path), then the server restarts, so every read comes from the
items' final records in the database: the first read of each item (its record decoded from the database) and
later ones (the bounded cache of ended items).
Run: `python benchmarks/bench_kinds.py` (about a minute), or `python benchmarks/bench_kinds.py write` for one
kind's row, printed only.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import KEY, Server, pct, write_table

from flowlab import Client
from flowlab.crowd import ChatScript, SimulatedCrowd

ITEMS, TASKS, READS = 5, 10, 200
RATING = {"key": "helpful", "type": "scale", "min": 1, "max": 5, "label": "Helpful"}


@contextlib.contextmanager
def _models(flow: Any) -> Iterator[None]:
    with (
        flow.serve_model(lambda m: "Your order ships tomorrow.", model="a"),
        flow.serve_model(lambda m: "It left the warehouse today.", model="b"),
    ):
        yield


def _nothing(flow: Any) -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext()


# kind -> (make the flow, one item's datapoints, what serves it, the crowd's chat script)
KINDS: dict[str, tuple[Callable[[Client], Any], Callable[[int], list[Any]], Any, ChatScript | None]] = {
    "pairwise": (
        lambda c: c.flow.create_ranking_flow("bench pairs", "Which is better?", max_response_threshold=TASKS),
        lambda k: [f"item {k} answer {i}" for i in range(TASKS)],
        _nothing,
        None,
    ),
    "classify": (
        lambda c: c.flow.create_classify_flow("bench labels", "Which?", ["yes", "no"], 2, 2),
        lambda k: [f"item {k} text {i}" for i in range(TASKS)],
        _nothing,
        None,
    ),
    "rlhf": (
        lambda c: c.flow.create_rlhf_flow("bench rlhf", "Rate.", dimensions=[RATING], max_response_threshold=2),
        lambda k: [
            {
                "id": f"p{i}",
                "prompt": f"question {k}.{i}",
                "responses": [{"source_id": "x", "content": "yes"}, {"source_id": "y", "content": "no"}],
            }
            for i in range(TASKS)
        ],
        _nothing,
        None,
    ),
    "chat": (
        lambda c: c.flow.create_chat_flow(
            "bench chat", "Chat.", models=["a", "b"], dimensions=[RATING], max_turns=1, max_response_threshold=1
        ),
        lambda k: [{"id": f"c{i}", "messages": [{"role": "assistant", "content": "Hello!"}]} for i in range(TASKS)],
        _models,
        ChatScript(turns=["Where is my order?"], judge=lambda reply, dims: {"helpful": 4}),
    ),
    "listwise": (  # ten datapoints, ranked four at a time, ten rankings an item
        lambda c: c.flow.create_listwise_flow("bench listwise", "Order them.", k=4, max_response_threshold=TASKS),
        lambda k: [f"item {k} answer {i}" for i in range(TASKS)],
        _nothing,
        None,
    ),
    "write": (
        lambda c: c.flow.create_write_flow("bench write", "Answer the question.", max_response_threshold=2),
        lambda k: [{"id": f"w{i}", "prompt": f"question {k}.{i}", "guidance": "One sentence."} for i in range(TASKS)],
        _nothing,
        None,
    ),
}


def _timed_reads(http: httpx.Client, item_ids: list[str], reads: int) -> list[float]:
    out = []
    for i in range(reads):
        t = time.perf_counter()
        r = http.get(f"/v1/items/{item_ids[i % len(item_ids)]}/results")
        out.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, r.text
    return out


def main(kinds: list[str]) -> None:
    """Every kind (no names) and the results table; or the named kinds' rows only, printed, the table left as it
    is (`python benchmarks/bench_kinds.py write`)."""
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise SystemExit(f"bench_kinds: no kind {sorted(unknown)}; the kinds are {', '.join(KINDS)}")
    rows = []
    for kind in kinds or list(KINDS):
        make, datapoints, serve, script = KINDS[kind]
        server = Server(args=["--retain-ended", "3600"])
        with server:
            client = Client(url=server.url, api_key=KEY)
            flow = make(client)
            items = [flow.create_new_flow_batch(datapoints(k), time_to_live=600) for k in range(ITEMS)]
            with serve(flow), SimulatedCrowd(server.url, KEY, annotators=8, seed=1, chat=script):
                for item in items:
                    item.get_results(timeout=300)
            ids = [item.id for item in items]
            http = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"})
            assert httpx.get(f"{server.url}/v1/health").json()["live_items"] == ITEMS
            live = _timed_reads(http, ids, READS)
            server.__exit__()
            server.port = server.port  # the same port and data: a restart
            server.__enter__()
            assert httpx.get(f"{server.url}/v1/health").json()["live_items"] == 0
            first = _timed_reads(http, ids, ITEMS)  # each item's record from the database, once
            cached = _timed_reads(http, ids, READS)
            http.close()
        rows.append(
            (
                f"{kind}: results of an ended item of {TASKS} tasks, p50 ms — in memory / from the database "
                "(first read) / from the database (cached)",
                f"{pct(live, 50):.2f} / {pct(first, 50):.2f} / {pct(cached, 50):.2f}",
                "—",
                "—",
            )
        )
        print(rows[-1], flush=True)
    if not kinds:
        write_table("kinds", "Every kind read back: results live and from the database", rows)


if __name__ == "__main__":
    main(sys.argv[1:])
