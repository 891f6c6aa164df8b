"""Hostile and heavy clients: many subscribers that never read, many long polls, a flood of large
unauthenticated bodies, and a schemathesis run against the served OpenAPI document.

Run: `python benchmarks/bench_hardening.py` (about two minutes).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import KEY, Server, pct, write_table

from flowlab import Client
from flowlab.crowd import SimulatedCrowd

REPO = Path(__file__).resolve().parents[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def silent_subscriber(port: int, path: str) -> socket.socket:
    """A client that opens an event stream and never reads from it."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(
        f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    return s


async def health_times(url: str, seconds: float) -> list[float]:
    times = []
    async with httpx.AsyncClient(timeout=30) as http:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            started = time.perf_counter()
            await http.get(f"{url}/v1/health")
            times.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.05)
    return times


async def long_polls(url: str, item_id: str, n: int, seconds: float) -> None:
    limits = httpx.Limits(max_connections=n + 10)
    async with httpx.AsyncClient(timeout=seconds + 30, limits=limits) as http:
        await asyncio.gather(
            *(
                http.get(
                    f"{url}/v1/items/{item_id}/wait",
                    params={"since": 10**9, "timeout": seconds},
                    headers={"Authorization": f"Bearer {KEY}"},
                )
                for _ in range(n)
            ),
            return_exceptions=True,
        )


def bench_subscribers(rows: list[tuple[str, str, str, str]]) -> None:
    with Server() as server, Client(url=server.url, api_key=KEY) as client:
        assert server.proc is not None
        flow = client.flow.create_ranking_flow("subscribers", "Which?", max_response_threshold=1_000_000)
        item = flow.create_new_flow_batch([f"text {i}" for i in range(50)], data_type="text", time_to_live=3600)

        async def crowd_alone() -> list[float]:
            with SimulatedCrowd(server.url, KEY, annotators=40, rate=60_000, bulk=True, seed=2):
                return await health_times(server.url, 10)

        alone = asyncio.run(crowd_alone())
        before = rss_mb(server.proc.pid)
        sockets = [silent_subscriber(server.port, f"/v1/items/{item.id}/events") for _ in range(500)]
        sockets += [silent_subscriber(server.port, f"/v1/flows/{flow.id}/events") for _ in range(500)]

        async def load() -> list[float]:
            polls = asyncio.create_task(long_polls(server.url, item.id, 500, 20))
            with SimulatedCrowd(server.url, KEY, annotators=40, rate=60_000, bulk=True, seed=1):
                times = await health_times(server.url, 20)
            await polls
            return times

        times = asyncio.run(load())
        during = rss_mb(server.proc.pid)
        votes = item.get_response_count()
        for s in sockets:
            s.close()
        time.sleep(2)
        after = rss_mb(server.proc.pid)
    rows.append(
        (
            f"1,000 event-stream subscribers that never read + 500 long polls, while a bulk crowd casts {votes:,} "
            f"votes (20 s): server RSS before / during / after they left",
            f"{before:.0f} / {during:.0f} / {after:.0f} MB",
            "≤ +300 MB during",
            "yes" if during - before <= 300 else "no",
        )
    )
    rows.append(
        (
            "… meanwhile GET /v1/health: p50 / p99 / max (the same crowd alone, no subscribers: p50 / p99 "
            f"{statistics.median(alone):.1f} / {pct(alone, 99):.1f} ms)",
            f"{statistics.median(times):.1f} / {pct(times, 99):.1f} / {max(times):.1f} ms",
            "p99 ≤ 1 s",
            "yes" if pct(times, 99) <= 1000 else "no",
        )
    )


def bench_flood(rows: list[tuple[str, str, str, str]]) -> None:
    body = b"x" * (63 * 2**20)

    async def flood(url: str) -> list[int]:
        async with httpx.AsyncClient(timeout=60) as http:
            replies = await asyncio.gather(
                *(
                    http.post(f"{url}/v1/media", content=body, headers={"Authorization": "Bearer nope"})
                    for _ in range(8)
                ),
                return_exceptions=True,
            )
        return [r.status_code if isinstance(r, httpx.Response) else 0 for r in replies]

    with Server() as server:
        assert server.proc is not None
        before = rss_mb(server.proc.pid)

        async def run() -> tuple[list[int], list[float]]:
            task = asyncio.create_task(flood(server.url))
            times = await health_times(server.url, 3)
            return await task, times

        statuses, times = asyncio.run(run())
        peak = rss_mb(server.proc.pid)
    rows.append(
        (
            "8 concurrent unauthenticated 63 MB uploads: answers, server RSS before / after, health max",
            f"{sorted(set(statuses))} / {before:.0f} → {peak:.0f} MB / {max(times):.0f} ms",
            "401, ≤ +50 MB",
            "yes" if set(statuses) <= {401, 0} and peak - before <= 50 else "no",
        )
    )


def bench_schemathesis(rows: list[tuple[str, str, str, str]]) -> None:
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or "st"
    config = REPO / "tests" / "schemathesis"
    with Server() as server:
        started = time.monotonic()
        run = subprocess.run(
            [
                st,
                "--config-file",
                str(config / "schemathesis.toml"),
                "run",
                f"{server.url}/schema/openapi.json",
                "-H",
                f"Authorization: Bearer {KEY}",
                "-n",
                "40",
                "--request-timeout",
                "20",
                "--exclude-path-regex",
                r"^/v1/keys/|/events$|/wait$",
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "SCHEMATHESIS_HOOKS": "hooks", "PYTHONPATH": str(config)},
            timeout=900,
        )
        elapsed = time.monotonic() - started
    out = run.stdout + run.stderr
    found = re.search(r"(\d+) generated, (\d+) (passed|found (\d+) unique failures?)", out)
    generated = int(found.group(1)) if found else 0
    failures = int(found.group(4)) if found and found.group(4) else 0
    rows.append(
        (
            f"schemathesis, all phases, 40 examples an operation, admin key ({elapsed:.0f} s): cases / failures",
            f"{generated:,} / {failures}",
            "0 failures",
            "yes" if run.returncode == 0 and failures == 0 else "no",
        )
    )


def main() -> None:
    rows: list[tuple[str, str, str, str]] = []
    bench_flood(rows)
    bench_subscribers(rows)
    bench_schemathesis(rows)
    write_table("hardening", "Hostile and heavy clients", rows)


if __name__ == "__main__":
    main()
