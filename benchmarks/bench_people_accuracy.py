"""How right a flow's results are when a fifth of the people who enroll through a Prolific-style link are
spammers, with and without the audience's qualification quiz and continuous-gold suspension: the Kendall τ of a
ranking item's order to the truth, and the share of a classify item's datapoints whose majority is right.

Each setting gets an audience of its own, a link, a ranking flow and a classify flow restricted to it (the
ranking flow carries gold pairs in every setting, so the work asked is the same; only "suspension" acts on them),
and a simulated crowd of 40 enrolling through the link. Run: `python benchmarks/bench_people_accuracy.py`
(a few minutes).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import KEY, Server, write_table

from flowlab import Client
from flowlab.crowd import SimulatedCrowd, content_utility
from flowlab.crowd._oracle import true_category

PEOPLE = 40
SPAMMERS = 0.2
SEEDS = tuple(range(1, 9))
RANKED = 12  # datapoints of the ranking item
VOTES = 300
LABELLED = 20  # datapoints of the classify item
LABELS = 5  # answers per datapoint
CATEGORIES = ["red", "green", "blue"]
SETTINGS = {
    "none": {},
    "quiz only": {"quiz": True},
    "suspension only": {"suspend": True},
    "both": {"quiz": True, "suspend": True},
}


def quiz_set(c: Client, n: int = 12) -> str:
    return c.validation.create_compare_set(
        name="quiz",
        instruction="Which sum is right?",
        datapoints=[[f"{i} + {i} = {2 * i}", f"{i} + {i} = {2 * i + 1}"] for i in range(n)],
        truths=[f"{i} + {i} = {2 * i}" for i in range(n)],
    ).id


def one_run(c: Client, url: str, setting: str, seed: int) -> tuple[float, float, float]:
    """(Kendall τ, share right, seconds) of one setting and seed."""
    opts = SETTINGS[setting]
    audience = c.audiences.create(
        f"{setting} {seed}",
        qualification=(
            {"validation_set_id": quiz_set(c), "questions": 8, "pass_mark": 0.75} if opts.get("quiz") else None
        ),
        suspend_below=0.7 if opts.get("suspend") else None,
        min_gold=4,
    )
    link = audience.enrollment_link(platform="prolific", completion_code="DONE", screen_out_code="OUT")
    gold = [{"a": {"text": f"check {i}: right"}, "b": {"text": f"check {i}: wrong"}, "answer": "a"} for i in range(10)]
    ranking = c.flow.create_ranking_flow(
        name=f"rank {setting} {seed}",
        instruction="Which is better?",
        audiences=[audience],
        validation_pairs=gold,
        gold_rate=0.3,
        max_response_threshold=VOTES,
    )
    classify = c.flow.create_classify_flow(
        name=f"classify {setting} {seed}",
        instruction="Which colour?",
        categories=CATEGORIES,
        max_responses_per_datapoint=LABELS,
        min_responses_per_datapoint=1,
        audiences=[audience],
    )
    ranked = [f"run {setting} {seed} option {i}" for i in range(RANKED)]
    labelled = [f"run {setting} {seed} thing {i}" for i in range(LABELLED)]
    r_item = ranking.create_new_flow_batch(datapoints=ranked, time_to_live=600)
    c_item = classify.create_new_flow_batch(datapoints=labelled, time_to_live=600)
    crowd = SimulatedCrowd(
        url, KEY, annotators=PEOPLE, spammer_fraction=SPAMMERS, rate=30000, seed=seed, enroll=link, accuracy=0.9
    )
    started = time.perf_counter()
    with crowd:
        r_res = r_item.get_results(timeout=300)
        c_res = c_item.get_results(timeout=300)
    took = time.perf_counter() - started
    truth = [content_utility(d) for d in ranked]
    tau = stats.kendalltau(truth, [r_res.datapoints[d] for d in ranked]).statistic
    right = sum(c_res.datapoints[d].majority_value == true_category(None, d, CATEGORIES) for d in labelled)
    return float(tau), right / LABELLED, took


def main() -> int:
    rows: list[tuple[str, str, str, str]] = []
    with Server() as server, Client(url=server.url, api_key=KEY) as c:
        for setting in SETTINGS:
            runs = [one_run(c, server.url, setting, seed) for seed in SEEDS]
            taus, shares, secs = zip(*runs, strict=True)
            print(setting, runs, f"{sum(secs) / len(secs):.0f} s a run", flush=True)
            rows.append(
                (
                    f"{setting}: ranking item ({RANKED} datapoints, {VOTES} votes), Kendall τ to the truth, "
                    f"mean of {len(SEEDS)} seeds",
                    f"{sum(taus) / len(taus):.3f} (min {min(taus):.2f})",
                    "—",
                    "—",
                )
            )
            rows.append(
                (
                    f"{setting}: classify item ({LABELLED} datapoints × {LABELS} labels), share of majorities right",
                    f"{sum(shares) / len(shares):.1%} (min {min(shares):.0%})",
                    "—",
                    "—",
                )
            )
    write_table(
        "people_accuracy",
        f"Accuracy with {SPAMMERS:.0%} spammers among {PEOPLE} people enrolling through a Prolific-style link",
        rows,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
