"""Shared benchmark plumbing: a real server process, a lean HTTP/1.1 load client, and table output."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from flowlab.crowd._wire import KeepAliveHTTP

RESULTS_DIR = Path(__file__).resolve().parent / "results"
KEY = "fl_key_benchmark_admin_key_000000"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, Python {platform.python_version()}, {platform.system()}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    data_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="flowlab-bench-")))
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    db: str | None = None  # postgresql://… to share one database (a cluster); else SQLite in data_dir
    args: list[str] = field(default_factory=list)  # more `flowlab serve` options

    def __enter__(self) -> Server:
        env = {**os.environ, "FLOWLAB_API_KEY": KEY}
        db = [] if self.db is None else ["--db", self.db]
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flowlab",
                "serve",
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data_dir),
                *db,
                *self.args,
            ],
            env=env,
            stdout=open(self.data_dir / "log", "ab"),  # the server log, beside its data
            stderr=subprocess.STDOUT,
        )
        for _ in range(300):
            try:
                if httpx.get(f"{self.url}/v1/health").status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("server did not start")

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait(15)

    def db_votes(self) -> int:
        import sqlite3

        with sqlite3.connect(self.data_dir / "flowlab.sqlite3") as db:
            return int(db.execute("SELECT count(*) FROM votes").fetchone()[0])


class RawHTTP:
    """A minimal keep-alive HTTP/1.1 client (the crowd's own): the load generator must cost far less than the
    server it loads."""

    def __init__(self, port: int, token: str) -> None:
        self._conn = KeepAliveHTTP(f"http://127.0.0.1:{port}", token)

    async def connect(self) -> None:
        await self._conn.connect()

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        r = await self._conn.post(path, body)
        return r.status, r.body

    def close(self) -> None:
        self._conn.close()


def setup_flow(
    client_url: str, *, items: int = 4, n: int = 50, ttl: float = 3600, max_votes: int = 1_000_000
) -> tuple[str, list[str]]:
    h = {"Authorization": f"Bearer {KEY}"}
    flow = httpx.post(
        f"{client_url}/v1/flows",
        headers=h,
        json={"name": "bench", "instruction": "Which?", "max_response_threshold": max_votes, "lease_seconds": 30},
    ).json()
    ids = []
    for k in range(items):
        r = httpx.post(
            f"{client_url}/v1/flows/{flow['id']}/items",
            headers=h,
            json={"datapoints": [{"text": f"item {k} datapoint {i}"} for i in range(n)], "time_to_live": ttl},
        )
        ids.append(r.json()["id"])
    return flow["id"], ids


def annotator_tokens(url: str, count: int) -> list[str]:
    h = {"Authorization": f"Bearer {KEY}"}
    return [
        httpx.post(f"{url}/v1/annotators", headers=h, json={"name": f"bench-{i}"}).json()["token"] for i in range(count)
    ]


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def write_table(name: str, title: str, rows: list[tuple[str, str, str, str]]) -> str:
    lines = [
        f"### {title}",
        "",
        f"Machine: {machine()}",
        "",
        "| measure | result | target | met |",
        "|---|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    text = "\n".join(lines) + "\n"
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / f"{name}.md").write_text(text)
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))
    print(text)
    return text
