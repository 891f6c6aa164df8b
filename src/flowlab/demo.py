"""`flowlab demo`: a server, a simulated crowd and a flow with a few batches, with live progress."""

from __future__ import annotations

import random
import sys
import time
from typing import Any

from flowlab import Client
from flowlab.crowd import SimulatedCrowd
from flowlab.ranking import elo_from_scores

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


QUALITY = {
    "concise and correct": 2.0,
    "careful, with an example": 2.5,
    "friendly and accurate": 1.5,
    "accurate with a small slip": 0.8,
    "terse": 0.3,
    "rambling": -0.5,
    "off-topic": -2.0,
    "wrong but confident": -1.5,
}
YOUR_TURN_SECONDS = 600.0  # how long the batch left for you to vote on stays open


def _rollouts(prompt: str, rng: random.Random) -> list[dict[str, Any]]:
    """Eight fake generations whose hidden quality the simulated crowd can sense."""
    return [
        {
            "id": f"sample-{i}",
            "text": f"[{style}] answer to: {prompt}",
            "private_metadata": {"true_score": QUALITY[style] + rng.gauss(0, 0.1), "style": style},
        }
        for i, style in enumerate(STYLES)
    ]


def _bar(done: int, total: int, width: int = 24) -> str:
    filled = int(width * min(done, total) / max(total, 1))
    return "#" * filled + "-" * (width - filled)


def _progress_line(s: Any) -> str:
    return (
        f"  {s.id}  [{_bar(s.response_count, s.max_response_threshold)}] "
        f"{s.response_count:4d}/{s.max_response_threshold}  {s.state.value:<10} {s.time_left:5.1f}s left"
    )


def _watch(items: list[Any], out: Any) -> None:
    """Live progress until every item ends: redrawn in place on a terminal, a line per change otherwise
    (a log file or a notebook cell gets no cursor codes)."""
    live = out.isatty()
    lines, last = 0, None
    while True:
        statuses = [i.get_progress() for i in items]
        if live:
            if lines:
                out.write(f"\x1b[{lines}A")
            out.write("".join(f"\r{_progress_line(s)}\x1b[K\n" for s in statuses))
            lines = len(statuses)
        else:
            summary = [(s.response_count // 40, s.state) for s in statuses]
            if summary != last:
                out.write("".join(_progress_line(s) + "\n" for s in statuses) + "\n")
                last = summary
        out.flush()
        if all(s.is_terminal for s in statuses):
            return
        time.sleep(0.2)


def _report(item: Any, datapoints: list[dict[str, Any]], starting_elo: float) -> str:
    """The winner on the Elo scale with its interval on that scale, against the truth the crowd sensed."""
    res = item.get_results()
    best = res.details[0]
    low, high = elo_from_scores([best.ci_low, best.ci_high], starting_elo)
    truth = max(datapoints, key=lambda d: d["private_metadata"]["true_score"])
    verdict = (
        "right" if truth["id"] == best.key else f"truly best: {truth['id']} ({truth['private_metadata']['style']})"
    )
    style = next(d["private_metadata"]["style"] for d in datapoints if d["id"] == best.key)
    return (
        f"  {item.id}: {res.state.value} with {res.total_votes} votes\n"
        f"    best: {best.key} ({style}), Elo {best.elo:.0f} (95% interval {low:.0f}–{high:.0f}), "
        f"ranks {best.rank_low}–{best.rank_high} plausible; {verdict}"
    )


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
    print(f"  flow:          {flow.id}\n")
    pushed = [(_rollouts(p, rng), p) for p in PROMPTS[:batches]]
    items = [flow.create_new_flow_batch(datapoints=d, context=p, time_to_live=ttl) for d, p in pushed]
    with SimulatedCrowd(client.url, client.api_key, annotators=20, rate=rate, seed=1):
        _watch(items, sys.stdout)
    print()
    for item, (datapoints, _) in zip(items, pushed, strict=True):
        print(_report(item, datapoints, flow.config.starting_elo))
    print("\nThe win-loss matrix of the first batch (row beat column):")
    print(items[0].get_win_loss_matrix().to_string())
    # The crowd has gone home: one more batch waits for a person, long enough to open the page and vote.
    prompt = PROMPTS[batches % len(PROMPTS)]
    yours = flow.create_new_flow_batch(
        datapoints=_rollouts(prompt, rng), context=prompt, time_to_live=YOUR_TURN_SECONDS
    )
    person = client.annotators.create("you (demo)")
    print(
        f"\nYour turn: a batch ({yours.id}) waits for your votes for {YOUR_TURN_SECONDS / 60:.0f} minutes at\n"
        f"  {person.join_url}\n"
        f"The server keeps running for your notebooks (`make lab`); `flowlab local stop` stops it."
    )
    client.close()
    return 0
