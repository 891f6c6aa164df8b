"""Classify flows: the single-answer path's throughput, and how right the majority of a crowd is.

Run: `python benchmarks/bench_classify.py` (about a minute).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import KEY, Server, annotator_tokens, pct, write_table
from bench_service import DURATION, single_vote_load

from flowlab import Client
from flowlab.crowd import SimulatedCrowd

CATEGORIES = ["cat", "dog", "bird"]


def setup_classify(url: str, *, items: int, n: int, max_answers: int) -> list[str]:
    h = {"Authorization": f"Bearer {KEY}"}
    flow = httpx.post(
        f"{url}/v1/flows",
        headers=h,
        json={
            "name": "bench",
            "instruction": "Which animal?",
            "kind": "classify",
            "categories": [{"label": c.title(), "value": c} for c in CATEGORIES],
            "max_response_threshold": max_answers,
            "min_response_threshold": 1,
            "lease_seconds": 30,
        },
    ).json()
    return [
        httpx.post(
            f"{url}/v1/flows/{flow['id']}/items",
            headers=h,
            json={"datapoints": [{"text": f"item {k} datapoint {i}"} for i in range(n)], "time_to_live": 3600},
        ).json()["id"]
        for k in range(items)
    ]


def bench_answers(rows: list[tuple[str, str, str, str]]) -> None:
    for fetch_next, label in ((False, "fetch + answer"), (True, "answer with fetch_next")):
        with Server() as server:
            setup_classify(server.url, items=4, n=500, max_answers=1000)
            tokens = annotator_tokens(server.url, 64)
            acked, lat, secs = asyncio.run(
                single_vote_load(server.port, tokens, fetch_next=fetch_next, duration=DURATION, choice="dog")
            )
            import sqlite3

            with sqlite3.connect(server.data_dir / "flowlab.sqlite3") as db:
                stored = int(db.execute("SELECT count(*) FROM labels").fetchone()[0])
        got = acked / secs
        rows.append(
            (
                f"classify, single-answer path, 64 annotators, {label}, saturated: acknowledged answers/s "
                f"(p50 / p99 {pct(lat, 50):.1f} / {pct(lat, 99):.1f} ms; {stored:,} of {acked:,} in SQLite)",
                f"{got:,.0f}",
                "≥ 2,000",
                "yes" if got >= 2000 and stored >= acked else "no",
            )
        )


def bench_majority(rows: list[tuple[str, str, str, str]]) -> None:
    """A crowd at 80 % accuracy (a wrong answer is one of the other two categories), 300 datapoints with a
    known category each, for several numbers of answers per datapoint."""
    n = 300
    with Server() as server, Client(url=server.url, api_key=KEY) as client:
        results = {}
        for m in (1, 3, 5, 9, 15):
            flow = client.flow.create_classify_flow(
                name=f"m{m}",
                instruction="Which animal?",
                categories=CATEGORIES,
                max_responses_per_datapoint=m,
                min_responses_per_datapoint=m,
            )
            truth = [CATEGORIES[(7 * i) % 3] for i in range(n)]
            item = flow.create_new_flow_batch(
                [f"animal {i}" for i in range(n)],
                data_type="text",
                private_metadata=[{"true_category": t} for t in truth],
                time_to_live=600,
            )
            with SimulatedCrowd(server.url, KEY, annotators=24, rate=60_000, accuracy=0.8, seed=m):
                res = item.get_results(timeout=300)
            majority = sum(r.majority_value == t for r, t in zip(res.datapoints.values(), truth, strict=True)) / n
            weighted = sum(r.weighted_value == t for r, t in zip(res.datapoints.values(), truth, strict=True)) / n
            results[m] = (majority, weighted)
    for m, (majority, weighted) in results.items():
        rows.append(
            (
                f"classify, 3 categories, crowd at 80 % accuracy, {m} answers per datapoint ({n} datapoints): "
                "majority right / reliability-weighted right (a tie counts as wrong)",
                f"{majority:.1%} / {weighted:.1%}",
                "(informational)",
                "-",
            )
        )


def bench_gold(rows: list[tuple[str, str, str, str]]) -> None:
    """A crowd with 40 % spammers (random answers) and careful annotators at 90 %, 3 answers per datapoint
    from 40 annotators (so each gives only a few): the reliability-weighted consensus from agreement alone,
    and with a gold set mixed in at 30 %."""
    n, m = 120, 3
    truth = [CATEGORIES[(7 * i) % 3] for i in range(n)]
    with Server() as server, Client(url=server.url, api_key=KEY) as client:
        gold = client.validation.create_classification_set(
            "gold",
            "Which animal?",
            CATEGORIES,
            [f"gold animal {i}" for i in range(30)],
            [[CATEGORIES[i % 3]] for i in range(30)],
            data_type="text",
        )
        for label, set_id in (("agreement only", None), ("agreement + gold at 30 %", gold.id)):
            flow = client.flow.create_classify_flow(
                f"gold {label}", "Which animal?", CATEGORIES, m, m, set_id, gold_rate=0.3 if set_id else 0.0
            )
            item = flow.create_new_flow_batch(
                [f"animal {i}" for i in range(n)],
                data_type="text",
                private_metadata=[{"true_category": t} for t in truth],
                time_to_live=600,
            )
            crowd = SimulatedCrowd(
                server.url,
                KEY,
                annotators=20,
                rate=60_000,
                accuracy=0.9,
                spammer_fraction=0.4,
                seed=11,
                name=f"g{bool(set_id):d}",
            )
            with crowd:
                res = item.get_results(timeout=300)
            values = list(res.datapoints.values())
            majority = sum(r.majority_value == t for r, t in zip(values, truth, strict=True)) / n
            weighted = sum(r.weighted_value == t for r, t in zip(values, truth, strict=True)) / n
            rows.append(
                (
                    f"classify, 40 annotators (40 % spammers, the rest at 90 %), {m} answers per datapoint ({n} "
                    f"datapoints), {label}: majority right / reliability-weighted right",
                    f"{majority:.1%} / {weighted:.1%}",
                    "(informational)",
                    "-",
                )
            )


def main() -> None:
    rows: list[tuple[str, str, str, str]] = []
    bench_answers(rows)
    bench_majority(rows)
    bench_gold(rows)
    write_table("classify", "Classify flows", rows)


if __name__ == "__main__":
    main()
