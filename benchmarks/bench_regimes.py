"""Coverage of flowlab's default 95 % intervals in the regimes flowlab itself creates.

Each figure is the share of true, centred scores inside their interval, over many simulated data sets:
pairs chosen by flowlab's active selection (as the server chooses them) and fitted as the server fits
their results; Crowd-BT with 20 % random clickers; a quarter of the votes ties, counted half each way;
online Elo; the width an unvoted datapoint gets from the bootstrap; an RLHF response's mean rating from a
few ratings; and, for classify flows, the consensus's stated confidence against how often it is right. The
uniform-pair regimes are in bench_ranking.py.

Run: `python benchmarks/bench_regimes.py` (about 15 minutes on 2 cores; `--quick` for a smoke run).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one BLAS thread per worker process

import argparse
import math
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import write_table
from scipy.special import ndtr

from flowlab.ranking import (
    dawid_skene,
    elo_ratings,
    fit_bradley_terry,
    fit_crowd_bradley_terry,
    select_pairs,
    simulate_comparisons,
    simulate_crowd_votes,
)
from flowlab.server.kinds.pairwise import ACTIVE_BATCH, ACTIVE_EXPLORATION
from flowlab.server.kinds.rlhf import _mean_interval

TARGET = "93–97%"


def _covered(theta: np.ndarray, low: np.ndarray, high: np.ndarray) -> float:
    return float(np.mean((low <= theta) & (theta <= high)))


def active_run(seed: int, spread: float) -> tuple[float, float, float]:
    """50 datapoints, 2,000 votes in batches of 16 chosen as the server chooses them; the results' fit (an
    empirical-Bayes prior) and, for reference, the plain fit. Returns both coverages and the plain slope."""
    n, budget = 50, 2000
    rng = np.random.default_rng(seed)
    theta = rng.normal(0, spread, n)
    theta -= theta.mean()
    wins = np.zeros((n, n))
    fit = None
    for _ in range(budget // ACTIVE_BATCH):
        pairs = select_pairs(wins, ACTIVE_BATCH, fit=fit, rng=rng, exploration=ACTIVE_EXPLORATION)
        votes = simulate_comparisons(theta, len(pairs), pairs=pairs, rng=rng)
        np.add.at(wins, (votes[:, 0], votes[:, 1]), 1.0)
        fit = fit_bradley_terry(wins, n, init=None if fit is None else fit.scores)
    results = fit_bradley_terry(wins, n, prior="auto")
    plain = fit_bradley_terry(wins, n)
    slope = float(np.polyfit(theta, plain.scores, 1)[0])
    return _covered(theta, results.ci_low, results.ci_high), _covered(theta, plain.ci_low, plain.ci_high), slope


def crowd_run(seed: int, interval: str) -> tuple[float, float, float]:
    """50 datapoints, 2,000 votes from 20 annotators of whom 20 % click at random."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(0, 1, 50)
    theta -= theta.mean()
    votes, spam = simulate_crowd_votes(theta, 2000, n_annotators=20, spammer_share=0.2, rng=rng)
    result = fit_crowd_bradley_terry(votes, 50, 20, interval=interval, n_bootstrap=100, rng=seed)
    fit = result.fit
    careful = float(result.reliability[~spam].mean())
    return _covered(theta, fit.ci_low, fit.ci_high), careful, float(np.polyfit(theta, fit.scores, 1)[0])


def ties_run(seed: int, interval: str | None, ties: str | None) -> tuple[np.ndarray, np.ndarray, float, float]:
    """20 datapoints evenly spread over [-1.5, 1.5], 3,000 votes of Davidson's model with ν = 0.8."""
    theta = np.linspace(-1.5, 1.5, 20)
    votes = simulate_comparisons(theta, 3000, tie_strength=0.8, rng=seed)
    fit = fit_bradley_terry(votes, 20, ties=ties, interval=interval, n_bootstrap=100, rng=seed)  # type: ignore[arg-type]
    return fit.scores, fit.std_errors, _covered(theta, fit.ci_low, fit.ci_high), float(votes[:, 2].mean())


def elo_run(seed: int, k: float, n_votes: int) -> float:
    """10 datapoints, θ ~ N(0, 1), votes on uniform pairs in random order."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(0, 1, 10)
    theta -= theta.mean()
    result = elo_ratings(simulate_comparisons(theta, n_votes, rng=rng), 10, k=k, n_bootstrap=200, rng=seed)
    truth = result.initial_rating + 400.0 / math.log(10.0) * theta
    return _covered(truth, result.ci_low, result.ci_high)


def unvoted_run(seed: int) -> tuple[float, float]:
    """Bootstrap and Wald widths of a datapoint with no votes, beside three with 300 between them."""
    votes = simulate_comparisons(np.array([1.0, 0.0, -1.0, 0.0]), 400, rng=seed)
    votes = votes[(votes[:, 0] != 3) & (votes[:, 1] != 3)]
    boot = fit_bradley_terry(votes, 4, interval="bootstrap", rng=seed)
    wald = fit_bradley_terry(votes, 4)
    return float(boot.ci_high[3] - boot.ci_low[3]), float(wald.ci_high[3] - wald.ci_low[3])


def rlhf_run(seed: int, n_ratings: int, accuracy: float) -> float:
    """Coverage of one response's true mean rating (1-5 scale) by the interval the RLHF results give, with the
    simulated crowd's rating model: a point near 3 + 2 tanh(score / 2), Gaussian noise, rounded and clipped."""
    rng = np.random.default_rng(seed)
    points = np.arange(1, 6)
    noise = 0.35 + 2.0 * (1.0 - accuracy)
    hits = []
    for _ in range(50):
        centre = 3 + 2 * math.tanh(rng.normal(0, 1.5) / 2)
        edges = np.concatenate([[-np.inf], points[:-1] + 0.5, [np.inf]])
        p = np.diff(ndtr((edges - centre) / noise))
        low, high = _mean_interval(rng.multinomial(n_ratings, p)[None, :], offset=1)
        hits.append(low[0] <= p @ points <= high[0])
    return float(np.mean(hits))


def classify_run(seed: int, answers: int, spam: float) -> tuple[float, float]:
    """300 datapoints, 3 categories, 20 annotators at 80 % accuracy (or random clickers): the consensus's
    stated confidence in its answer, and the share of answers that are right."""
    rng = np.random.default_rng(seed)
    n, classes, people = 300, 3, 20
    truth = rng.integers(0, classes, n)
    random_clicker = np.arange(people) < round(spam * people)
    d = np.repeat(np.arange(n), answers)
    a = np.array([rng.choice(people, answers, replace=False) for _ in range(n)]).ravel()
    right = rng.random(len(d)) < np.where(random_clicker[a], 1.0 / classes, 0.8)
    labels = np.where(right, truth[d], (truth[d] + rng.integers(1, classes, len(d))) % classes)
    consensus = dawid_skene(d, a, labels, n, classes, n_annotators=people)
    return float(consensus.posterior.max(axis=1).mean()), float(np.mean(consensus.posterior.argmax(axis=1) == truth))


def _map(pool: ProcessPoolExecutor, fn: Callable[..., object], sims: int, *args: object) -> list:  # type: ignore[type-arg]
    return list(pool.map(fn, range(sims), *([a] * sims for a in args), chunksize=4))


def _ok(value: float) -> str:
    return "yes" if 0.93 <= value <= 0.97 else "no"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few simulations (a smoke run)")
    args = parser.parse_args(argv)
    sims = 24 if args.quick else 400
    boot_sims = 8 if args.quick else 100
    rows: list[tuple[str, str, str, str]] = []
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for spread in (1.0, 2.0):
            out = np.array(_map(pool, active_run, sims, spread))
            rows.append(
                (
                    f"active selection as the server chooses pairs (θ ~ N(0, {spread:g}²), 50 datapoints, 2,000 votes, "
                    f"batches of {ACTIVE_BATCH}, {ACTIVE_EXPLORATION:.0%} drawn uniformly): results' interval "
                    f"(empirical-Bayes prior), {sims} sims",
                    f"{out[:, 0].mean():.1%} (plain fit: {out[:, 1].mean():.1%}, slope {out[:, 2].mean():.2f})",
                    TARGET,
                    _ok(out[:, 0].mean()),
                )
            )
        for interval, n in (("wald", sims), ("sandwich", sims), ("bootstrap", boot_sims)):
            out = np.array(_map(pool, crowd_run, n, interval))
            default = " (default)" if interval == "wald" else " (not the default)" if interval == "bootstrap" else ""
            rows.append(
                (
                    f"Crowd-BT, 20 % spammers (50 datapoints, 2,000 votes, 20 annotators): {interval}{default}, "
                    f"{n} sims",
                    f"{out[:, 0].mean():.1%} (careful annotators' η {out[:, 1].mean():.3f}, "
                    f"slope {out[:, 2].mean():.2f})",
                    TARGET,
                    _ok(out[:, 0].mean()),
                )
            )
        for interval, n in ((None, sims), ("wald", sims), ("bootstrap", boot_sims)):
            out = _map(pool, ties_run, n, interval, None)
            estimates = np.array([o[0] for o in out])
            errors = np.array([o[1] for o in out])
            ratio = float(np.mean(errors.mean(axis=0) / estimates.std(axis=0)))
            share = float(np.mean([o[3] for o in out]))
            name = "sandwich (the default with known ties)" if interval is None else interval
            informational = interval == "wald"  # why the sandwich is the default here
            rows.append(
                (
                    f"ties counted half (ties=None), {share:.0%} ties: standard error / spread of the estimates, "
                    f"{name}, {n} sims",
                    f"{ratio:.2f}",
                    "— (Wald counts a tie as a decided vote: why the sandwich is the default)"
                    if informational
                    else "0.95–1.05",
                    "—" if informational else "yes" if 0.95 <= ratio <= 1.05 else "no",
                )
            )
        out = _map(pool, ties_run, sims, None, "davidson")
        coverage = float(np.mean([o[2] for o in out]))
        rows.append(
            (f"ties modelled (ties='davidson'): Wald coverage, {sims} sims", f"{coverage:.1%}", TARGET, _ok(coverage))
        )
        for k, n_votes, note in ((16, 3000, ""), (32, 3000, ""), (4, 20_000, ""), (4, 3000, " (informational)")):
            coverage = float(np.mean(_map(pool, elo_run, sims, k, n_votes)))
            rows.append(
                (
                    f"online Elo, k={k}, {n_votes:,} votes over 10 datapoints: bootstrap interval (200 replays){note}, "
                    f"{sims} sims",
                    f"{coverage:.1%}",
                    TARGET if not note else "— (Elo still climbing from its start)",
                    _ok(coverage) if not note else "—",
                )
            )
        for n_ratings in (3, 5, 10):
            coverage = float(np.mean(_map(pool, rlhf_run, max(sims // 10, 4), n_ratings, 0.9)))
            rows.append(
                (
                    f"RLHF rating of one response (1-5 scale), {n_ratings} ratings, crowd at 90 % accuracy: 95 % "
                    f"interval (Dirichlet posterior), {max(sims // 10, 4) * 50:,} responses",
                    f"{coverage:.1%}",
                    TARGET,
                    _ok(coverage),
                )
            )
        for answers, spam in ((3, 0.0), (5, 0.0), (3, 0.2), (5, 0.2)):
            out = np.array(_map(pool, classify_run, max(sims // 10, 4), answers, spam))
            confidence, right = out[:, 0].mean(), out[:, 1].mean()
            who = "80 % accurate annotators" if not spam else "80 % accurate annotators, 20 % random clickers"
            rows.append(
                (
                    f"classify consensus, 3 categories, {answers} answers per datapoint, {who}: mean stated "
                    f"confidence vs share right, {max(sims // 10, 4) * 300:,} datapoints",
                    f"{confidence:.1%} vs {right:.1%}",
                    "within 3 points",
                    "yes" if abs(confidence - right) <= 0.03 else "no",
                )
            )
        widths = np.array(_map(pool, unvoted_run, boot_sims))
        rows.append(
            (
                f"bootstrap width of a datapoint with no votes / its Wald width, {boot_sims} sims",
                f"{np.mean(widths[:, 0] / widths[:, 1]):.2f} (bootstrap ±{widths[:, 0].mean() / 2:.1f})",
                "0.8–1.2 (was 0)",
                "yes" if 0.8 <= np.mean(widths[:, 0] / widths[:, 1]) <= 1.2 else "no",
            )
        )
    if args.quick:
        for row in rows:
            print(" | ".join(row))
        return 0
    write_table("regimes", "Intervals in flowlab's own regimes", rows)
    return 0 if all(r[3] != "no" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
