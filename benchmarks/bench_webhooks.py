"""Webhook delivery latency: how long after an event its signed delivery reaches a receiver.

- item.completed: 200 items, each stopped by the SDK's call; latency from sending the stop to the delivery's
  arrival (the item's final record is written first, in the same commit as the delivery row).
- answer.created under load: a simulated crowd votes at 300 votes/s with an endpoint taking every answer;
  latency from the event's timestamp (when the answer was checked) to arrival, and whether every answer came.

The receiver is a keep-alive HTTP/1.1 server in this process that verifies every signature.
Run: `python benchmarks/bench_webhooks.py` (about a minute).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import KEY, Server, free_port, pct, write_table

from flowlab import verify_webhook
from flowlab.crowd import SimulatedCrowd

H = {"Authorization": f"Bearer {KEY}"}


class Receiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.secret = ""
        self.arrivals: list[tuple[float, dict, bool]] = []  # type: ignore[type-arg]
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                at = time.time()
                ok = verify_webhook(receiver.secret, self.headers, body)
                receiver.arrivals.append((at, json.loads(body), ok))
                self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def wait(self, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.arrivals) < n and time.monotonic() < deadline:
            time.sleep(0.01)


def _hook(url: str, receiver: Receiver, events: list[str], flow_id: str) -> None:
    r = httpx.post(f"{url}/v1/webhooks", headers=H, json={"url": receiver.url, "events": events, "flow_id": flow_id})
    r.raise_for_status()
    receiver.secret = r.json()["secret"]


def item_completed(url: str) -> tuple[list[float], bool]:
    receiver = Receiver()
    flow = httpx.post(f"{url}/v1/flows", headers=H, json={"name": "hooks", "instruction": "Which?"}).json()
    _hook(url, receiver, ["item.completed"], flow["id"])
    sent: dict[str, float] = {}
    with httpx.Client(headers=H) as http:
        for k in range(200):
            item = http.post(
                f"{url}/v1/flows/{flow['id']}/items",
                json={"datapoints": [{"text": f"{k}-{i}"} for i in range(4)], "time_to_live": 600},
            ).json()
            sent[item["id"]] = time.time()
            http.post(f"{url}/v1/items/{item['id']}/stop").raise_for_status()
            time.sleep(0.02)
    receiver.wait(len(sent))
    latencies = [at - sent[e["data"]["item"]["id"]] for at, e, _ in receiver.arrivals]
    all_ok = len(latencies) == len(sent) and all(ok for *_, ok in receiver.arrivals)
    receiver.server.shutdown()
    return latencies, all_ok


def answer_created(url: str, seconds: float = 20.0, rate: float = 300.0) -> tuple[list[float], int, int, bool]:
    receiver = Receiver()
    flow = httpx.post(
        f"{url}/v1/flows", headers=H, json={"name": "answers", "instruction": "Which?", "max_response_threshold": 10**6}
    ).json()
    _hook(url, receiver, ["answer.created"], flow["id"])
    item = httpx.post(
        f"{url}/v1/flows/{flow['id']}/items",
        headers=H,
        json={"datapoints": [{"text": f"d{i}"} for i in range(30)], "time_to_live": 3600},
    ).json()
    with SimulatedCrowd(url, KEY, annotators=20, rate=rate * 60, seed=1, name="hookload") as crowd:
        time.sleep(seconds)
    votes = crowd.stats.votes
    receiver.wait(votes, timeout=30)
    count = httpx.get(f"{url}/v1/items/{item['id']}", headers=H).json()["response_count"]
    latencies = [at - datetime.fromisoformat(e["timestamp"]).timestamp() for at, e, _ in receiver.arrivals]
    all_ok = all(ok for *_, ok in receiver.arrivals)
    receiver.server.shutdown()
    distinct = len({e["data"]["task_id"] for _, e, _ in receiver.arrivals})
    return latencies, count, distinct, all_ok and distinct == len(receiver.arrivals)


def main() -> None:
    with Server() as server:
        done, done_ok = item_completed(server.url)
        answers, counted, pushed, answers_ok = answer_created(server.url)
    rows = [
        (
            "item.completed: stop → signed delivery received, 200 items (p50 / p95 / max)",
            f"{pct(done, 50) * 1000:.1f} / {pct(done, 95) * 1000:.1f} / {max(done) * 1000:.1f} ms"
            f"{'' if done_ok else ' (some missing or unsigned)'}",
            "p95 ≤ 1 s",
            "yes" if done_ok and pct(done, 95) <= 1.0 else "no",
        ),
        (
            "answer.created, a crowd asked for 300 votes/s: answer checked → delivery received (p50 / p95 / max)",
            f"{pct(answers, 50) * 1000:.1f} / {pct(answers, 95) * 1000:.1f} / {max(answers) * 1000:.1f} ms",
            "p95 ≤ 1 s",
            "yes" if pct(answers, 95) <= 1.0 else "no",
        ),
        (
            "answer.created: deliveries received / answers counted",
            f"{pushed:,} / {counted:,} ({counted / 20:,.0f} votes/s reached)"
            f"{', all signatures valid, none twice' if answers_ok else ', bad signatures or repeats'}",
            "every counted answer, once",
            "yes" if pushed == counted and answers_ok else "no",
        ),
    ]
    print(write_table("webhooks", "Webhook delivery", rows))


if __name__ == "__main__":
    main()
