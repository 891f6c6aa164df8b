"""Stopping when the answer is settled: votes saved, and how often the answer is wrong, against
running every item to its maximum.

Each simulated item runs as the server runs it: pairs uniform (random matchings) or active (batches of 16,
a tenth drawn uniformly), the rule looked at every 2 % of the maximum once there are two votes per datapoint,
each look a fit as the item's results are fitted. The same vote stream then runs on to the maximum, so both
policies answer from the same votes. "Wrong" means the answer differs from the truth: another datapoint on
top, another top-k set, or any two datapoints out of order.

Run: `python benchmarks/bench_stopping.py` (about 5 minutes on 2 cores; `--quick` for a smoke run).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import write_table

from flowlab.ranking import DEFAULT_PRIOR, fit_bradley_terry, select_pairs, settlement, simulate_comparisons
from flowlab.server.kinds.pairwise import ACTIVE_BATCH, ACTIVE_EXPLORATION, LOOKS


def _uniform_round(n: int, rng: np.random.Generator) -> np.ndarray:
    """One round of the server's uniform pairs: a random matching that shows every datapoint once."""
    order = rng.permutation(n)
    pairs = [order[i : i + 2] for i in range(0, n - 1, 2)]
    if n % 2:
        pairs.append(np.array([order[-1], rng.choice(order[:-1])]))
    return np.array(pairs)


def run(seed: int, rule: str, k: int, selection: str, n: int, spread: float, budget: int, confidence: float) -> tuple:
    rng = np.random.default_rng(seed)
    theta = rng.normal(0, spread, n)
    truth = np.argsort(-theta)
    prior = "auto" if selection == "active" else DEFAULT_PRIOR

    def wrong(leaders: np.ndarray) -> bool:
        if rule == "top_k":
            return set(leaders.tolist()) != set(truth[:k].tolist())
        return leaders.tolist() != truth[: len(leaders)].tolist()

    wins = np.zeros((n, n))
    fit = None
    count, stopped_at, stopped_wrong = 0, None, None
    step = max(1, -(-budget // LOOKS))
    next_look = 2 * n
    while count < budget:
        if selection == "active":
            pairs = select_pairs(wins, ACTIVE_BATCH, fit=fit, rng=rng, exploration=ACTIVE_EXPLORATION)
        else:
            pairs = _uniform_round(n, rng)
        pairs = pairs[: budget - count]
        votes = simulate_comparisons(theta, len(pairs), pairs=pairs, rng=rng)
        for w, lose in votes:
            wins[w, lose] += 1.0
            count += 1
            if stopped_at is None and count >= next_look:
                next_look = count + step
                look = fit_bradley_terry(wins, n, prior=prior)
                verdict = settlement(look.scores, look.covariance, rule, k=k, confidence=confidence)  # type: ignore[arg-type]
                if verdict.settled:
                    stopped_at, stopped_wrong = count, wrong(verdict.leaders)
        if selection == "active":
            fit = fit_bradley_terry(wins, n, init=None if fit is None else fit.scores)
    final = fit_bradley_terry(wins, n, prior=prior)
    at_max = wrong(settlement(final.scores, final.covariance, rule, k=k, confidence=confidence).leaders)  # type: ignore[arg-type]
    if stopped_at is None:
        return budget, at_max, at_max, False
    return stopped_at, stopped_wrong, at_max, True


SCENARIOS = [
    # rule, k, datapoints, spread of θ, maximum votes
    ("top", 1, 10, 1.0, 2000),
    ("top_k", 3, 10, 1.0, 2000),
    ("order", 1, 6, 1.5, 2000),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few simulations (a smoke run)")
    args = parser.parse_args(argv)
    sims = 16 if args.quick else 200
    rows: list[tuple[str, str, str, str]] = []
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for rule, k, n, spread, budget in SCENARIOS:
            for selection in ("uniform", "active"):
                for confidence in (0.95, 0.8):
                    jobs = [(s, rule, k, selection, n, spread, budget, confidence) for s in range(sims)]
                    out = list(pool.map(run, *zip(*jobs, strict=True), chunksize=4))
                    used = np.mean([o[0] for o in out])
                    wrong_stop = np.mean([o[1] for o in out])
                    wrong_max = np.mean([o[2] for o in out])
                    settled = np.mean([o[3] for o in out])
                    what = f"top {k}" if rule == "top_k" else rule
                    rows.append(
                        (
                            f"stop when {what} is settled at {confidence:.0%}: {n} datapoints, θ ~ N(0, {spread:g}²), "
                            f"max {budget:,} votes, {selection} pairs, {sims} sims",
                            f"{1 - used / budget:.0%} of votes saved ({used:,.0f} used, {settled:.0%} settled); "
                            f"wrong {wrong_stop:.1%} vs {wrong_max:.1%} at the maximum",
                            "saves votes; wrong no more often than at the maximum (+1 pt)",
                            "yes" if used < budget and wrong_stop <= wrong_max + 0.01 else "no",
                        )
                    )
                    print(rows[-1], flush=True)
    if args.quick:
        return 0
    write_table("stopping", "Stopping when the answer is settled", rows)
    return 0 if all(r[3] != "no" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
