"""Chat relay overhead: how long after a Python-served model yields a chunk the page has it.

A real `flowlab serve`; a model served by `flow.serve_model()` in this process (one worker) that stamps the
moment it yields each chunk; an annotator client (the page's protocol: `POST /v1/tasks/{id}/generate`, one JSON
object a line) in this process too, so both ends read the same clock. 300 replies of 8 chunks, 20 ms apart;
the first chunk's latency (the issue's measure) and every later chunk's, on loopback.

Run: `python benchmarks/bench_chat.py` (about half a minute).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import KEY, Server, annotator_tokens, pct, write_table

import flowlab

REPLIES = 300
CHUNKS = 8
GAP = 0.02


def main() -> None:
    yielded: dict[str, list[float]] = {}
    with Server() as server:
        client = flowlab.Client(url=server.url, api_key=KEY)
        flow = client.flow.create_chat_flow("bench chat", "Chat.", dimensions=["helpfulness"], max_turns=50)
        flow.create_new_flow_batch([{"id": "c"}], time_to_live=3600)

        def model(messages: list[dict[str, str]]) -> Iterator[str]:
            stamps = yielded.setdefault(messages[-1]["content"], [])
            for k in range(CHUNKS):
                if k:
                    time.sleep(GAP)
                stamps.append(time.perf_counter())
                yield f"chunk {k} "

        handle = flow.serve_model(model)
        [token] = annotator_tokens(server.url, 1)
        page = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        task = page.post("/v1/tasks/next", json={"wait": 5}).json()
        time.sleep(0.5)  # the worker's first long poll is open
        first: list[float] = []
        later: list[float] = []
        wall = time.perf_counter()
        for n in range(REPLIES):
            ask = f"message {n}"
            arrived: list[float] = []
            with page.stream(
                "POST", f"/v1/tasks/{task['task_id']}/generate", json={"messages": [{"role": "user", "content": ask}]}
            ) as r:
                for line in r.iter_lines():
                    if line and msgspec.json.decode(line)["type"] == "chunk":
                        arrived.append(time.perf_counter())
            stamps = yielded[ask]
            assert len(arrived) == len(stamps) == CHUNKS, (len(arrived), len(stamps))
            first.append(arrived[0] - stamps[0])
            later += [a - s for a, s in zip(arrived[1:], stamps[1:], strict=True)]
        wall = time.perf_counter() - wall
        handle.stop()
    rows = [
        (
            f"first streamed chunk: model yields → page has it, {REPLIES} replies (p50 / p95 / p99)",
            f"{pct(first, 50) * 1000:.1f} / {pct(first, 95) * 1000:.1f} / {pct(first, 99) * 1000:.1f} ms",
            "p95 ≤ 100 ms",
            "yes" if pct(first, 95) <= 0.1 else "no",
        ),
        (
            f"later chunks ({CHUNKS - 1} a reply, {GAP * 1000:.0f} ms apart): yield → page (p50 / p95 / p99)",
            f"{pct(later, 50) * 1000:.1f} / {pct(later, 95) * 1000:.1f} / {pct(later, 99) * 1000:.1f} ms",
            "—",
            "—",
        ),
        (
            "replies relayed (ask → last chunk, including the model's own 140 ms)",
            f"{REPLIES / wall:.1f} replies/s, {wall / REPLIES * 1000:.0f} ms each",
            "—",
            "—",
        ),
    ]
    write_table("chat", "Chat relay: a Python-served model's chunks on the page", rows)


if __name__ == "__main__":
    main()
