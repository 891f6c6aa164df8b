"""Heavy and hostile clients cannot take the server's memory or its answers: subscribers that never read,
many long polls, and large unauthenticated bodies, against a real server process. (The bounds here are loose
on purpose; benchmarks/bench_hardening.py measures the real figures at ten times the load.)"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import httpx

from flowlab.crowd import SimulatedCrowd

from .conftest import ServerProcess


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def silent_subscriber(server: ServerProcess, path: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", server.port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    request = f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.api_key}\r\n\r\n"
    s.sendall(request.encode())
    return s


async def health_max_ms(url: str, seconds: float) -> float:
    worst = 0.0
    async with httpx.AsyncClient(timeout=30) as http:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            started = time.perf_counter()
            assert (await http.get(f"{url}/v1/health")).status_code == 200
            worst = max(worst, (time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.05)
    return worst


def test_silent_subscribers_and_long_polls_do_not_take_the_server(fresh_server: ServerProcess) -> None:
    assert fresh_server.proc is not None
    with fresh_server.client() as client:
        flow = client.flow.create_ranking_flow("subscribers", "Which?", max_response_threshold=1_000_000)
        item = flow.create_new_flow_batch([f"text {i}" for i in range(30)], data_type="text", time_to_live=600)
        before = rss_mb(fresh_server.proc.pid)
        sockets = [silent_subscriber(fresh_server, f"/v1/items/{item.id}/events") for _ in range(150)]
        sockets += [silent_subscriber(fresh_server, f"/v1/flows/{flow.id}/events") for _ in range(50)]

        async def load() -> float:
            async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=150)) as http:
                polls = [
                    http.get(
                        f"{fresh_server.url}/v1/items/{item.id}/wait",
                        params={"since": 10**9, "timeout": 6},
                        headers={"Authorization": f"Bearer {fresh_server.api_key}"},
                    )
                    for _ in range(100)
                ]
                with SimulatedCrowd(fresh_server.url, fresh_server.api_key, annotators=20, rate=60_000, bulk=True):
                    worst, *answers = await asyncio.gather(health_max_ms(fresh_server.url, 6), *polls)
            assert all(r.status_code == 200 for r in answers)
            return worst

        worst = asyncio.run(load())
        during = rss_mb(fresh_server.proc.pid)
        assert item.get_response_count() > 1000, "the crowd kept voting meanwhile"
        for s in sockets:
            s.close()
    assert during - before < 250, f"RSS {before:.0f} → {during:.0f} MB"
    assert worst < 2000, f"health took {worst:.0f} ms"


def test_large_unauthenticated_bodies_are_never_held(fresh_server: ServerProcess) -> None:
    assert fresh_server.proc is not None
    body = b"x" * (40 * 2**20)
    before = rss_mb(fresh_server.proc.pid)

    async def flood() -> list[int]:
        async with httpx.AsyncClient(timeout=60) as http:
            replies = await asyncio.gather(
                *(
                    http.post(f"{fresh_server.url}/v1/media", content=body, headers={"Authorization": "Bearer nope"})
                    for _ in range(4)
                ),
                return_exceptions=True,
            )
        return [r.status_code if isinstance(r, httpx.Response) else 0 for r in replies]

    statuses = asyncio.run(flood())
    assert set(statuses) <= {401, 0} and 401 in statuses, statuses  # 0: the server hung up on the rest of it
    assert rss_mb(fresh_server.proc.pid) - before < 60
    assert httpx.get(f"{fresh_server.url}/v1/health").status_code == 200
