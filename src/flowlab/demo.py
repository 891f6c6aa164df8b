"""`flowlab demo`: a server, a simulated crowd and a flow with a few batches, with live progress."""

from __future__ import annotations

import random
import sys
import time
from typing import Any

from flowlab import Client
from flowlab.crowd import SimulatedCrowd

PROMPTS = [
    "Explain why the sky is blue to a ten-year-old.",
    "Write a haiku about gradient descent.",
    "Summarise the causes of the 2008 financial crisis in two sentences.",
]
STYLES = [
    "concise and correct",
    "rambling",
    "wrong but confident",
    "careful, with an example",
    "terse",
    "friendly and accurate",
    "off-topic",
    "accurate with a small slip",
]


def _rollouts(prompt: str, rng: random.Random) -> list[dict[str, Any]]:
    """Eight fake generations whose hidden quality the simulated crowd can sense."""
    out = []
    for i, style in enumerate(STYLES):
        quality = {
            "concise and correct": 2.0,
            "careful, with an example": 2.5,
            "friendly and accurate": 1.5,
            "accurate with a small slip": 0.8,
            "terse": 0.3,
            "rambling": -0.5,
            "off-topic": -2.0,
            "wrong but confident": -1.5,
        }[style]
        out.append(
            {
                "id": f"sample-{i}",
                "text": f"[{style}] answer to: {prompt}",
                "private_metadata": {"true_score": quality + rng.gauss(0, 0.1)},
            }
        )
    return out


def _bar(done: int, total: int, width: int = 24) -> str:
    filled = int(width * min(done, total) / max(total, 1))
    return "#" * filled + "-" * (width - filled)


def run_demo(
    url: str | None = None, api_key: str | None = None, *, batches: int = 3, ttl: float = 20.0, rate: float = 6000.0
) -> int:
    rng = random.Random(7)
    client = Client(url=url, api_key=api_key)
    print(f"flowlab demo — server {client.url}")
    print(f"  API docs:      {client.url}/schema/swagger")
    client.flow.preheat()
    flow = client.flow.create_ranking_flow(
        name="Demo: answer quality",
        instruction="Which answer is more helpful and correct?",
        max_response_threshold=120,
        min_response_threshold=40,
    )
    person = client.annotators.create("you (demo)")
    print(f"  vote yourself: {person.join_url}")
    print(f"  flow:          {flow.id}\n")
    items = [
        flow.create_new_flow_batch(datapoints=_rollouts(p, rng), context=p, time_to_live=ttl) for p in PROMPTS[:batches]
    ]
    with SimulatedCrowd(client.url, client.api_key, annotators=20, rate=rate, seed=1):
        lines = 0
        while True:
            statuses = [i.get_progress() for i in items]
            if lines:
                sys.stdout.write(f"\x1b[{lines}A")
            for s in statuses:
                sys.stdout.write(
                    f"\r  {s.id}  [{_bar(s.response_count, s.max_response_threshold)}] "
                    f"{s.response_count:4d}/{s.max_response_threshold}  {s.state.value:<10} "
                    f"{s.time_left:5.1f}s left\x1b[K\n"
                )
            lines = len(statuses)
            sys.stdout.flush()
            if all(s.is_terminal for s in statuses):
                break
            time.sleep(0.2)
    print()
    for item in items:
        res = item.get_results()
        best = res.details[0]
        print(
            f"  {item.id}: {res.state.value} with {res.total_votes} votes; best: {best.key} "
            f"(Elo {best.elo:.0f}, 95% CI {best.ci_low:+.2f}..{best.ci_high:+.2f})"
        )
    print("\nThe win-loss matrix of the first batch (row beat column):")
    print(items[0].get_win_loss_matrix().to_string())
    print("\nThe server keeps running for your notebooks (`make lab`); `flowlab local stop` stops it.")
    client.close()
    return 0
