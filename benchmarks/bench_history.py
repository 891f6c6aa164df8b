"""The core that lasts: start-up and memory with a long history, memory of a busy live item, reads of ended items.

The history (20M votes in ended items) is written straight into an SQLite file by this script — what is
measured is start-up and memory, not ingest — with final records made by the server's own finalisation code.
Run: `python benchmarks/bench_history.py` (about 4 minutes and 4 GB of temporary disk).
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import msgspec
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import KEY, RawHTTP, Server, annotator_tokens, free_port, pct, write_table

from flowlab import Client, schemas
from flowlab.server.auth import digest
from flowlab.server.history import encode_record
from flowlab.server.items import ItemBody
from flowlab.server.kinds.pairwise import PAIRWISE
from flowlab.server.model import FlowConfig, FlowRecord, ItemRecord
from flowlab.server.store.sqlite import SQLiteStore

FLOWS, ITEMS_PER_FLOW, VOTES_PER_ITEM, N = 20, 100, 10_000, 20  # 20M votes in 2,000 ended items
LIVE_VOTES = 1_000_000


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def build_history(db: Path) -> list[tuple[str, str]]:
    """Write keys, an annotator, flows and ended items with their votes and final records; returns
    (flow id, item id) of every item."""
    SQLiteStore(db)._close_connections()  # the server's own schema
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-400000")
    now = time.time() - 86_400
    conn.execute("BEGIN")
    conn.execute(
        "INSERT INTO keys (id, name, key_hash, admin, created_at) VALUES ('key_bench', 'admin', ?, 1, ?)",
        (digest(KEY), now),
    )
    annotators = [f"ann_{i:04d}" for i in range(50)]
    for a in annotators:
        conn.execute(
            "INSERT INTO annotators (id, name, token_hash, owner, created_at, votes) VALUES (?,?,?,?,?,?)",
            (a, a, secrets.token_hex(16), "key_bench", now, FLOWS * ITEMS_PER_FLOW * VOTES_PER_ITEM // 50),
        )
    rng = np.random.default_rng(0)
    made: list[tuple[str, str]] = []
    seq = 0
    for f in range(FLOWS):
        cfg = FlowConfig(
            name=f"run {f}", instruction="Which?", max_response_threshold=VOTES_PER_ITEM, min_response_threshold=1
        )
        flow_id = f"flow_{f:04d}"
        flow = FlowRecord(flow_id, "key_bench", cfg, now, now)
        ended_version = 0
        for k in range(ITEMS_PER_FLOW):
            item_id = f"item_{f:04d}_{k:04d}"
            body = ItemBody(
                config=cfg,
                datapoints=[
                    msgspec.convert(
                        {"index": i, "key": f"dp {i}", "kind": "text", "text": f"completion {i}"},
                        type=schemas.Datapoint,
                    )
                    for i in range(N)
                ],
                context=None,
                context_assets=[],
                private_metadata=None,
                ttl=600.0,
            )
            item = ItemRecord(
                id=item_id,
                flow=flow,
                kind=PAIRWISE,
                config=cfg,
                datapoints=body.datapoints,
                context=None,
                context_assets=[],
                private_metadata=None,
                ttl=600.0,
                created_at=now + k,
                seed=0.0,
            )
            a = rng.integers(0, N, VOTES_PER_ITEM)
            b = (a + rng.integers(1, N, VOTES_PER_ITEM)) % N
            win = np.where(rng.random(VOTES_PER_ITEM) < 0.5 + 0.02 * (a - b), a, b)
            lose = np.where(win == a, b, a)
            np.add.at(item.tally.wins, (win, lose), 1.0)
            rows = [
                (s, f"task_{s:016x}", item_id, annotators[s % 50], w, lo, 0, now + k)
                for s, w, lo in zip(range(seq, seq + VOTES_PER_ITEM), win.tolist(), lose.tolist(), strict=True)
            ]
            seq += VOTES_PER_ITEM
            item.response_count = VOTES_PER_ITEM
            item.state, item.started_at, item.ended_at = "Completed", now + k, now + k + 60
            results, matrix = PAIRWISE.final(item)
            status = schemas.ItemStatus(
                id=item_id, flow_id=flow_id, state="Completed", response_count=VOTES_PER_ITEM,
                min_response_threshold=1, max_response_threshold=VOTES_PER_ITEM, instruction="Which?",
                config_version=1, context=None, n_datapoints=N, keys=item.keys, created_at=now + k,
                started_at=now + k, deadline=now + k + 600, ended_at=now + k + 60, time_to_live=600.0,
                leases_out=0, version=item.version, server_time=0.0,
            )  # fmt: skip
            conn.execute(
                "INSERT INTO items (id, flow_id, body, created_at, state, started_at, ended_at, final, ended_status) "
                "VALUES (?,?,?,?,?,?,?,?,?)",
                (item_id, flow_id, msgspec.json.encode(body).decode(), now + k, "Completed", now + k, now + k + 60,
                 encode_record("pairwise", status, results, matrix), msgspec.json.encode(status).decode()),
            )  # fmt: skip
            conn.executemany("INSERT INTO votes VALUES (?,?,?,?,?,?,?,?)", rows)
            ended_version += item.flow_share
            made.append((flow_id, item_id))
        conn.execute(
            "INSERT INTO flows (id, owner, config, created_at, updated_at, ended_version) VALUES (?,?,?,?,?,?)",
            (flow_id, "key_bench", msgspec.json.encode(cfg).decode(), now, now, ended_version),
        )
        print(f"  history: {seq:,} votes written", flush=True)
    conn.execute("COMMIT")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    return made


def drop_page_cache() -> bool:
    """Empty the kernel's page cache (root only), so the next start reads everything from disk."""
    subprocess.run(["sync"], check=False)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def start_server(data_dir: Path, port: int) -> tuple[subprocess.Popen[bytes], float]:
    env = {**os.environ, "FLOWLAB_API_KEY": KEY}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowlab", "serve", "--port", str(port), "--data-dir", str(data_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).status_code == 200:
                return proc, time.perf_counter() - t0
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.perf_counter() - t0 > 120:
            raise RuntimeError("server did not start")
        time.sleep(0.01)


def bench_long_history(rows: list[tuple[str, str, str, str]]) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="flowlab-history-"))
    try:
        t0 = time.perf_counter()
        made = build_history(data_dir / "flowlab.sqlite3")
        size_gb = (data_dir / "flowlab.sqlite3").stat().st_size / 2**30
        print(f"  built in {time.perf_counter() - t0:.0f} s ({size_gb:.1f} GB)", flush=True)
        port = free_port()
        empty = Path(tempfile.mkdtemp(prefix="flowlab-empty-"))
        baseline = []
        for _ in range(3):  # the same server on an empty database: what start-up costs without any history
            proc, took = start_server(empty, port)
            baseline.append(took)
            proc.terminate()
            proc.wait(15)
        shutil.rmtree(empty, ignore_errors=True)
        cold = drop_page_cache()
        starts = []
        for i in range(3):  # each start is a fresh process; the first one reads from a cold page cache
            proc, took = start_server(data_dir, port)
            starts.append(took)
            if i < 2:
                proc.terminate()
                proc.wait(15)
        rss_start = rss_mb(proc.pid)
        url = f"http://127.0.0.1:{port}"
        picks = random.Random(1).sample(made, 200)
        latencies: dict[str, list[float]] = {"results": [], "matrix": []}
        with Client(url=url, api_key=KEY) as client:
            for flow_id, item_id in picks:
                item = client.flow.get_flow_by_id(flow_id).get_flow_item(item_id)
                t = time.perf_counter()
                results = item.get_results()
                latencies["results"].append((time.perf_counter() - t) * 1000)
                assert results.total_votes == VOTES_PER_ITEM
                t = time.perf_counter()
                matrix = item.get_win_loss_matrix()
                latencies["matrix"].append((time.perf_counter() - t) * 1000)
                assert matrix.to_numpy().sum() == VOTES_PER_ITEM
            listed = client.flow.get_flow_by_id(made[0][0]).get_flow_items(amount=None)
            assert len(listed) == ITEMS_PER_FLOW
        rss_reads = rss_mb(proc.pid)
        proc.terminate()
        proc.wait(15)
        votes = FLOWS * ITEMS_PER_FLOW * VOTES_PER_ITEM
        rows += [
            (
                f"{votes / 1e6:.0f}M votes of history in {len(made):,} ended items (SQLite, {size_gb:.1f} GB): "
                "restart to healthy (warm page cache, worst of 2)",
                f"{max(starts[1:]):.2f} s",
                "≤ 2 s",
                "yes" if max(starts[1:]) <= 2 else "no",
            ),
            (
                "  … the same, first start after "
                + ("dropping the page cache (Python's own files read from disk too)" if cold else "the build")
                + f"; an empty database, for comparison: {min(baseline):.2f} s",
                f"{starts[0]:.2f} s",
                "(informational)",
                "-",
            ),
            (
                "  … server RSS after start-up / after reading 200 ended items' results and matrices",
                f"{rss_start:.0f} / {rss_reads:.0f} MB",
                "≤ 300 MB",
                "yes" if max(rss_start, rss_reads) <= 300 else "no",
            ),
            (
                "get_results() of an ended item, from the database (SDK, 200 items, cache cold): p50 / p95",
                f"{pct(latencies['results'], 50):.1f} / {pct(latencies['results'], 95):.1f} ms",
                "p50 ≤ 20 ms",
                "yes" if pct(latencies["results"], 50) <= 20 else "no",
            ),
            (
                "get_win_loss_matrix() of an ended item, from the database: p50 / p95",
                f"{pct(latencies['matrix'], 50):.1f} / {pct(latencies['matrix'], 95):.1f} ms",
                "p50 ≤ 20 ms",
                "yes" if pct(latencies["matrix"], 50) <= 20 else "no",
            ),
        ]
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


async def _bulk(port: int, tokens: list[str], target: int) -> int:
    done = 0

    async def annotator(token: str) -> None:
        nonlocal done
        http = RawHTTP(port, token)
        await http.connect()
        request = msgspec.json.encode({"n": 500})
        while done < target:
            _, body = await http.post("/v1/tasks/next-batch", request)
            tasks = msgspec.json.decode(body)["tasks"]
            if not tasks:
                await asyncio.sleep(0.01)
                continue
            answers = msgspec.json.encode({"answers": [{"task_id": t["task_id"], "choice": "a"} for t in tasks]})
            _, body = await http.post("/v1/tasks/answers", answers)
            done += sum(1 for r in msgspec.json.decode(body)["results"] if r["status"] == "accepted")
        http.close()

    await asyncio.gather(*(annotator(t) for t in tokens))
    return done


def bench_live_item(rows: list[tuple[str, str, str, str]]) -> None:
    with Server() as server:
        assert server.proc is not None
        h = {"Authorization": f"Bearer {KEY}"}
        flow = httpx.post(
            f"{server.url}/v1/flows",
            headers=h,
            json={"name": "live", "instruction": "Which?", "max_response_threshold": 10_000_000, "lease_seconds": 60},
        ).json()
        item = httpx.post(
            f"{server.url}/v1/flows/{flow['id']}/items",
            headers=h,
            json={"datapoints": [{"text": f"datapoint {i}"} for i in range(100)], "time_to_live": 7 * 86_400},
        ).json()
        tokens = annotator_tokens(server.url, 8)
        asyncio.run(_bulk(server.port, tokens, 20_000))  # warm every path first
        before = rss_mb(server.proc.pid)
        t0 = time.perf_counter()
        asyncio.run(_bulk(server.port, tokens, LIVE_VOTES))
        took = time.perf_counter() - t0
        after = rss_mb(server.proc.pid)
        status = httpx.get(f"{server.url}/v1/items/{item['id']}", headers=h).json()
        assert status["state"] == "Running" and status["response_count"] >= LIVE_VOTES
        stored = server.db_votes()
        rows.append(
            (
                f"a live item (100 datapoints) receiving {status['response_count'] - 20_000:,} more votes "
                f"(bulk, {took:.0f} s): server RSS {before:.0f} → {after:.0f} MB",
                f"+{after - before:.0f} MB",
                "≤ +100 MB",
                "yes" if after - before <= 100 else "no",
            )
        )
        assert stored >= status["response_count"]


def main() -> None:
    rows: list[tuple[str, str, str, str]] = []
    bench_live_item(rows)
    bench_long_history(rows)
    write_table("history", "Memory follows live work, history in the database", rows)


if __name__ == "__main__":
    main()
