"""The service's own overhead, measured against a real `flowlab serve` process on this machine.

Server and load share the box (2 cores here), as the issue asks. Run: `python benchmarks/bench_service.py`.
"""

from __future__ import annotations

import asyncio
import random
import sys
import threading
import time
from pathlib import Path

import httpx
import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import KEY, RawHTTP, Server, annotator_tokens, pct, setup_flow, write_table

from flowlab import Client

DURATION = 10.0


async def single_vote_load(
    port: int | list[int],
    tokens: list[str],
    *,
    fetch_next: bool,
    duration: float,
    rate: float | None = None,
    choice: str = "a",
) -> tuple[int, list[float], float]:
    """Each annotator: fetch a task, answer it, repeat; paced so the crowd offers `rate` votes/s in all (open
    loop, like people), or as fast as the server answers when `rate` is None (closed loop, saturation).
    With several ports (a cluster's processes) annotator i talks to the i-th, in turn.
    Returns (acknowledged, answer latencies in ms, seconds)."""
    ports = [port] if isinstance(port, int) else port
    acknowledged = 0
    latencies: list[float] = []
    stop_at = time.perf_counter() + duration
    answer_body = msgspec.json.encode({"choice": choice, "fetch_next": True} if fetch_next else {"choice": choice})

    async def annotator(token: str, offset: float, port: int) -> None:
        nonlocal acknowledged
        http = RawHTTP(port, token)
        await http.connect()
        task = None
        interval = len(tokens) / rate if rate else 0.0
        # Poisson arrivals: people do not vote in lockstep, and a fixed period would synchronise the crowd.
        rng = random.Random(offset)
        next_at = time.perf_counter() + rng.expovariate(1 / interval) if interval else 0.0
        while time.perf_counter() < stop_at:
            if interval:
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                next_at += rng.expovariate(1 / interval)
            if task is None:
                status, body = await http.post("/v1/tasks/next", b"{}")
                if status != 200:
                    await asyncio.sleep(0.01)
                    continue
                task = msgspec.json.decode(body)
            t0 = time.perf_counter()
            status, body = await http.post(f"/v1/tasks/{task['task_id']}/answer", answer_body)
            latencies.append((time.perf_counter() - t0) * 1000)
            ack = msgspec.json.decode(body)
            task = ack.get("next") if fetch_next else None
            if status == 200 and ack["status"] == "accepted":
                acknowledged += 1
        http.close()

    started = time.perf_counter()
    await asyncio.gather(*(annotator(t, i / len(tokens), ports[i % len(ports)]) for i, t in enumerate(tokens)))
    return acknowledged, latencies, time.perf_counter() - started


async def bulk_load(port: int | list[int], tokens: list[str], *, batch: int, duration: float) -> tuple[int, float]:
    ports = [port] if isinstance(port, int) else port
    acknowledged = 0
    stop_at = time.perf_counter() + duration

    async def annotator(token: str, port: int) -> None:
        nonlocal acknowledged
        http = RawHTTP(port, token)
        await http.connect()
        request = msgspec.json.encode({"n": batch})
        while time.perf_counter() < stop_at:
            _, body = await http.post("/v1/tasks/next-batch", request)
            tasks = msgspec.json.decode(body)["tasks"]
            if not tasks:
                continue
            answers = msgspec.json.encode({"answers": [{"task_id": t["task_id"], "choice": "b"} for t in tasks]})
            _, body = await http.post("/v1/tasks/answers", answers)
            acknowledged += sum(1 for a in msgspec.json.decode(body)["results"] if a["status"] == "accepted")
        http.close()

    started = time.perf_counter()
    await asyncio.gather(*(annotator(t, ports[i % len(ports)]) for i, t in enumerate(tokens)))
    return acknowledged, time.perf_counter() - started


def bench_votes(rows: list[tuple[str, str, str, str]]) -> None:
    cases = [
        (False, 2100.0, "fetch + answer, Poisson arrivals at 2,100 votes/s"),
        (False, None, "fetch + answer, saturated"),
        (True, None, "answer with fetch_next, saturated"),
    ]
    for fetch_next, rate, label in cases:
        with Server() as server:
            setup_flow(server.url, items=4, n=50)
            tokens = annotator_tokens(server.url, 64)
            acked, lat, secs = asyncio.run(
                single_vote_load(server.port, tokens, fetch_next=fetch_next, duration=DURATION, rate=rate)
            )
            stored = server.db_votes()
        got = acked / secs
        rows.append(
            (
                f"single-vote path, 64 annotators, {label}: acknowledged votes/s",
                f"{got:,.0f}",
                "≥ 2,000",
                "yes" if got >= 1950 else "no",
            )
        )
        target_met = "yes" if pct(lat, 99) <= 50 else "no"
        rows.append(
            (
                f"single-vote path, {label}: answer latency p50 / p99",
                f"{pct(lat, 50):.1f} / {pct(lat, 99):.1f} ms",
                "p99 ≤ 50 ms" if rate else "(saturation)",
                target_met if rate else "-",
            )
        )
        rows.append(
            (
                f"single-vote path, {label}: acknowledged votes found in SQLite",
                f"{stored:,} of {acked:,}",
                "all",
                "yes" if stored >= acked else "no",
            )
        )
    with Server() as server:
        setup_flow(server.url, items=4, n=200)
        tokens = annotator_tokens(server.url, 8)
        acked, secs = asyncio.run(bulk_load(server.port, tokens, batch=500, duration=DURATION))
        stored = server.db_votes()
    rate = acked / secs
    rows.append(
        (
            "bulk path (8 annotators × 500-task batches): acknowledged votes/s",
            f"{rate:,.0f}",
            "≥ 20,000",
            "yes" if rate >= 20_000 else "no",
        )
    )
    rows.append(
        (
            "bulk path: acknowledged votes found in SQLite",
            f"{stored:,} of {acked:,}",
            "all",
            "yes" if stored >= acked else "no",
        )
    )


def bench_create_and_first_task(rows: list[tuple[str, str, str, str]]) -> None:
    with Server() as server:
        h = {"Authorization": f"Bearer {KEY}"}
        token = annotator_tokens(server.url, 1)[0]
        research = httpx.Client(base_url=server.url, headers=h)
        annotator = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"})
        flow = research.post(
            "/v1/flows", json={"name": "b", "instruction": "Which?", "max_response_threshold": 100}
        ).json()
        datapoints = {"datapoints": [{"text": f"generation number {i} " * 8} for i in range(100)], "time_to_live": 300}
        times = []
        for _ in range(200):
            t0 = time.perf_counter()
            item = research.post(f"/v1/flows/{flow['id']}/items", json=datapoints).json()
            task = annotator.post("/v1/tasks/next", json={}).json()
            times.append((time.perf_counter() - t0) * 1000)
            assert task["item_id"] == item["id"]
            research.post(f"/v1/items/{item['id']}/stop")
    rows.append(
        (
            "create a 100-datapoint text batch + serve its first task: p50 / p95",
            f"{pct(times, 50):.1f} / {pct(times, 95):.1f} ms",
            "p50 ≤ 20 ms",
            "yes" if pct(times, 50) <= 20 else "no",
        )
    )


def bench_sse(rows: list[tuple[str, str, str, str]]) -> None:
    with Server() as server:
        # One annotator gives 300 votes: 30 datapoints make 435 pairs, so none is shown to them twice.
        _, (item_id,) = setup_flow(server.url, items=1, n=30)
        token = annotator_tokens(server.url, 1)[0]
        acked_at: dict[int, float] = {}
        seen_at: dict[int, float] = {}
        ready = threading.Event()

        def subscribe() -> None:
            with httpx.stream(
                "GET", f"{server.url}/v1/items/{item_id}/events", timeout=60, headers={"Authorization": f"Bearer {KEY}"}
            ) as r:
                ready.set()
                for line in r.iter_lines():
                    if line.startswith("data:"):
                        count = msgspec.json.decode(line[5:])["response_count"]
                        seen_at.setdefault(count, time.perf_counter())
                        if count >= 300:
                            return

        t = threading.Thread(target=subscribe)
        t.start()
        ready.wait(10)
        annotator = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"})
        rng = random.Random(0)
        for count in range(1, 301):
            task = annotator.post("/v1/tasks/next", json={}).json()
            annotator.post(f"/v1/tasks/{task['task_id']}/answer", json={"choice": "a"})
            acked_at[count] = time.perf_counter()
            time.sleep(rng.uniform(0.0, 0.06))  # votes arrive irregularly, sometimes inside one coalescing window
        t.join(30)
    # A vote reaches the subscriber with the first message whose count includes it.
    delays = []
    for count, at in acked_at.items():
        arrivals = [s for c, s in seen_at.items() if c >= count]
        if arrivals:
            delays.append((min(arrivals) - at) * 1000)
    rows.append(
        (
            "a vote reaching an SSE subscriber (coalesced at 10 msg/s): p50 / p95",
            f"{pct(delays, 50):.0f} / {pct(delays, 95):.0f} ms",
            "p95 ≤ 150 ms",
            "yes" if pct(delays, 95) <= 150 else "no",
        )
    )


def bench_results_after_deadline(rows: list[tuple[str, str, str, str]]) -> None:
    with Server() as server, Client(url=server.url, api_key=KEY) as client:
        flow = client.flow.create_ranking_flow(name="ttl", instruction="Which?", max_response_threshold=10)
        late = []
        for i in range(20):
            item = flow.create_new_flow_batch(datapoints=["a", "b", "c"], time_to_live=0.5 + 0.05 * i)
            deadline = item.last_status.deadline
            item.get_results(timeout=30)
            late.append((time.time() - deadline) * 1000)
    rows.append(
        (
            "get_results() returning after an item's deadline: median / max lateness",
            f"{pct(late, 50):.0f} / {max(late):.0f} ms",
            "≤ 250 ms",
            "yes" if max(late) <= 250 else "no",
        )
    )


def main() -> None:
    rows: list[tuple[str, str, str, str]] = []
    bench_votes(rows)
    bench_create_and_first_task(rows)
    bench_sse(rows)
    bench_results_after_deadline(rows)
    write_table("service", "Flow service", rows)


if __name__ == "__main__":
    main()
