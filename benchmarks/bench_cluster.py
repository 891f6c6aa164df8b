"""Several `flowlab serve` processes on one PostgreSQL database, all on this machine.

The processes, PostgreSQL and the load generator share the box. Each process serves one flow, made through it;
the annotators are spread over the processes, as a balancer would spread them. Needs the PostgreSQL server at
127.0.0.1:5432 (trust auth, database `test`); each run has a schema of its own.
Run: `python benchmarks/bench_cluster.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import KEY, RawHTTP, Server, annotator_tokens, pct, setup_flow, write_table
from bench_service import bulk_load, single_vote_load

BASE_DSN = "postgresql://postgres@127.0.0.1:5432/test"
DURATION = 8.0
AUTH = {"Authorization": f"Bearer {KEY}"}


@contextlib.contextmanager
def cluster(n: int) -> Iterator[tuple[list[Server], str]]:
    """n processes on a fresh schema, started one by one; yields them and the schema's DSN."""
    import psycopg

    schema = f"flowlab_bench_{secrets.token_hex(4)}"
    with psycopg.connect(BASE_DSN, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        dsn = f"{BASE_DSN}?options=-csearch_path%3D{schema}"
        servers: list[Server] = []
        try:
            for _ in range(n):
                servers.append(Server(db=dsn).__enter__())
            time.sleep(0.8)  # a sweep: each has seen the others
            yield servers, dsn
        finally:
            for s in servers:
                if s.proc is not None and s.proc.poll() is None:
                    s.__exit__()
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def stored_votes(dsn: str) -> int:
    import psycopg

    with psycopg.connect(dsn) as conn:
        return int(conn.execute("SELECT count(*) FROM votes").fetchone()[0])  # type: ignore[index]


def bench_throughput(rows: list[tuple[str, str, str, str]]) -> None:
    single: dict[int, float] = {}
    bulk: dict[int, float] = {}
    for n in (1, 2, 3):
        with cluster(n) as (servers, dsn):
            for s in servers:
                setup_flow(s.url, items=4, n=50)
            tokens = annotator_tokens(servers[0].url, 64)
            ports = [s.port for s in servers]
            acked, _, secs = asyncio.run(single_vote_load(ports, tokens, fetch_next=False, duration=DURATION))
            single[n] = acked / secs
            assert stored_votes(dsn) >= acked, "every acknowledged vote is in PostgreSQL"
        with cluster(n) as (servers, dsn):
            for s in servers:
                setup_flow(s.url, items=4, n=200)
            tokens = annotator_tokens(servers[0].url, 8)
            acked, secs = asyncio.run(bulk_load([s.port for s in servers], tokens, batch=500, duration=DURATION))
            bulk[n] = acked / secs
            assert stored_votes(dsn) >= acked, "every acknowledged vote is in PostgreSQL"
    rows.append(
        (
            "single-vote path (64 annotators, fetch + answer, saturated), 1 / 2 / 3 processes: acknowledged votes/s",
            " / ".join(f"{single[n]:,.0f}" for n in (1, 2, 3)),
            "(measured)",
            "-",
        )
    )
    rows.append(
        (
            "bulk path (8 annotators × 500-task batches), 1 / 2 / 3 processes: acknowledged votes/s",
            " / ".join(f"{bulk[n]:,.0f}" for n in (1, 2, 3)),
            "(measured)",
            "-",
        )
    )


def _item_on(url: str, points: int = 30) -> str:  # 435 pairs: one annotator's 300 votes, no pair twice
    flow = httpx.post(
        f"{url}/v1/flows", headers=AUTH, json={"name": "sse", "instruction": "Which?", "max_response_threshold": 10**6}
    ).json()["id"]
    body = {"datapoints": [{"text": str(i)} for i in range(points)], "time_to_live": 600}
    return str(httpx.post(f"{url}/v1/flows/{flow}/items", headers=AUTH, json=body).json()["id"])


def _sse_latencies(watch_url: str, vote_url: str, item: str, votes: int = 300) -> list[float]:
    """One annotator votes ~60 times a second through `vote_url`; a subscriber on `watch_url` notes when each
    vote's count arrives. Returns ms from sending each answer to seeing it."""
    sent: dict[int, float] = {}
    seen: dict[int, float] = {}
    ready = threading.Event()

    def watch() -> None:
        with httpx.stream("GET", f"{watch_url}/v1/items/{item}/events", headers=AUTH, timeout=60) as r:
            ready.set()
            last = 0
            for line in r.iter_lines():
                if not line.startswith("data:"):
                    continue
                count = msgspec.json.decode(line[5:]).get("response_count", 0)
                now = time.perf_counter()
                for c in range(last + 1, count + 1):
                    seen[c] = now
                last = max(last, count)
                if last >= votes:
                    return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    ready.wait(10)
    time.sleep(0.3)
    (token,) = annotator_tokens(vote_url, 1)

    async def vote() -> None:
        http = RawHTTP(int(vote_url.rsplit(":", 1)[1]), token)
        await http.connect()
        for i in range(1, votes + 1):
            _, body = await http.post("/v1/tasks/next", b"{}")
            task = msgspec.json.decode(body)
            sent[i] = time.perf_counter()
            await http.post(f"/v1/tasks/{task['task_id']}/answer", b'{"choice":"a"}')
            await asyncio.sleep(1 / 60)
        http.close()

    asyncio.run(vote())
    watcher.join(30)
    httpx.post(f"{vote_url}/v1/items/{item}/stop", headers=AUTH)  # the next measurement's votes go to its own item
    return [(seen[i] - sent[i]) * 1000 for i in sent if i in seen]


def bench_sse(rows: list[tuple[str, str, str, str]]) -> None:
    with cluster(3) as (servers, _):
        a, b, c = (s.url for s in servers)
        other = _sse_latencies(b, c, _item_on(a))  # served by a, watched on b, voted on c
        same = _sse_latencies(a, a, _item_on(a))
    rows.append(
        (
            "vote → SSE subscriber on another process (flow on A, watched on B, voted on C): p50 / p95",
            f"{pct(other, 50):.1f} / {pct(other, 95):.1f} ms",
            "(measured)",
            "-",
        )
    )
    rows.append(
        (
            "… the same, all on one process: p50 / p95",
            f"{pct(same, 50):.1f} / {pct(same, 95):.1f} ms",
            "(measured)",
            "-",
        )
    )


def _takeover_once() -> float:
    """Kill -9 the process serving an item while annotators work through the others; seconds until one of
    them has an answer accepted on that item again."""
    with cluster(3) as (servers, _):
        victim, survivors = servers[1], [servers[0], servers[2]]
        item = _item_on(victim.url, points=40)
        tokens = annotator_tokens(survivors[0].url, 4)
        killed_at: list[float] = []
        first: list[float] = []

        async def annotate(token: str, url: str) -> None:
            async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}) as http:
                while not first:
                    try:
                        r = await http.post("/v1/tasks/next", json={"wait": 0.2})
                        if r.status_code != 200:
                            await asyncio.sleep(0.02)
                            continue
                        task, leased = r.json(), time.perf_counter()
                        r = await http.post(f"/v1/tasks/{task['task_id']}/answer", json={"choice": "a"})
                    except httpx.HTTPError:
                        await asyncio.sleep(0.02)
                        continue
                    accepted = r.status_code == 200 and r.json()["status"] == "accepted"
                    if accepted and killed_at and leased > killed_at[0] and task["item_id"] == item:
                        first.append(time.perf_counter())

        async def run() -> None:
            workers = [asyncio.ensure_future(annotate(t, survivors[i % 2].url)) for i, t in enumerate(tokens)]
            await asyncio.sleep(1.0)
            assert victim.proc is not None
            os.kill(victim.proc.pid, signal.SIGKILL)
            killed_at.append(time.perf_counter())
            await asyncio.wait_for(asyncio.gather(*workers), 30)

        asyncio.run(run())
        return first[0] - killed_at[0]


def bench_takeover(rows: list[tuple[str, str, str, str]], trials: int = 3) -> None:
    gaps = sorted(_takeover_once() for _ in range(trials))
    rows.append(
        (
            f"kill -9 of the process serving an item, until a survivor serves it again (median of {trials}; max)",
            f"{gaps[len(gaps) // 2]:.2f} s; {gaps[-1]:.2f} s",
            "(measured)",
            "-",
        )
    )


def main() -> None:
    rows: list[tuple[str, str, str, str]] = []
    bench_throughput(rows)
    bench_sse(rows)
    bench_takeover(rows)
    write_table("cluster", "Several processes on one PostgreSQL database", rows)


if __name__ == "__main__":
    main()
