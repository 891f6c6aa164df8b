"""Absolute ranking flows ("both good" / "both bad"): coverage of the 95 % P(acceptable) intervals, and what the
absolute level does to a group's rewards.

Coverage: the share of datapoints whose true P(acceptable) lies inside the interval of `fit_absolute`, over
many data sets simulated under the model (each datapoint judged acceptable with probability σ(u), u = θ − τ
known): pairs drawn uniformly; pairs chosen as the server chooses them for an active item (batches from the
plain Bradley–Terry fit of the votes so far, a share drawn uniformly); and a fifth of the votes from spammers
who answer a, b, both good or both bad at random (the fit does not know who they are).

Rewards: a group of eight completions, all below the threshold (and, for contrast, a mixed group): how many get
a positive reward from the relative scores (`rewards_from_scores(scores)`) and how many with the level
(`rewards_from_scores(scores, threshold=τ)`, what `results.rewards()` gives on an absolute flow).

Run: `python benchmarks/bench_absolute.py` (a few minutes on 2 cores; `--quick` for a smoke run).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one BLAS thread per worker process

import argparse
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from scipy.special import expit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import write_table

from flowlab.ranking import fit_absolute, fit_bradley_terry, rewards_from_scores, select_pairs, simulate_absolute
from flowlab.server.kinds.pairwise import ACTIVE_BATCH, ACTIVE_EXPLORATION

TARGET = "93–97%"


def _covered(u: np.ndarray, fit: object) -> float:
    p = expit(u)
    return float(np.mean((fit.p_low <= p) & (p <= fit.p_high)))  # type: ignore[attr-defined]


def _judge(
    u: np.ndarray, pairs: np.ndarray, rng: np.random.Generator, spam: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Answers to `pairs` under the model (two independent judgements against the threshold); a spammer's
    answer is one of a, b, both good, both bad at random. Returns the win matrix (both answers half a win each
    way, as an item keeps it) and the "both good" and "both bad" counts."""
    n = len(u)
    wins, good, bad = np.zeros((n, n)), np.zeros((n, n)), np.zeros((n, n))
    ok = rng.random((len(pairs), 2)) < expit(u[pairs])
    if spam is not None:
        ok[spam] = rng.random((int(spam.sum()), 2)) < 0.5  # four answers, equally likely
    for (i, j), (x, y) in zip(pairs.tolist(), ok.tolist(), strict=True):
        if x == y:
            target = good if x else bad
            target[i, j] += 1
            target[j, i] += 1
            wins[i, j] += 0.5
            wins[j, i] += 0.5
        elif x:
            wins[i, j] += 1
        else:
            wins[j, i] += 1
    return wins, good, bad


def _utilities(rng: np.random.Generator, n: int, spread: float) -> np.ndarray:
    return rng.normal(0.0, spread, n)


def uniform_run(seed: int, n: int, votes: int) -> float:
    rng = np.random.default_rng(seed)
    u = _utilities(rng, n, 1.5)
    wins, good, bad = simulate_absolute(u, votes, rng)
    return _covered(u, fit_absolute(wins, n, both_good=good, both_bad=bad))


def active_run(seed: int, n: int, votes: int) -> float:
    """Pairs chosen in batches as the server chooses them for an active item (from a plain Bradley–Terry fit of
    the votes so far, "both" answers counted as ties), then the results' absolute fit."""
    rng = np.random.default_rng(seed)
    u = _utilities(rng, n, 1.5)
    wins, good, bad = np.zeros((n, n)), np.zeros((n, n)), np.zeros((n, n))
    fit = None
    batch = max(2, min(ACTIVE_BATCH, n // 2))
    for _ in range(votes // batch):
        pairs = select_pairs(wins, batch, fit=fit, rng=rng, exploration=ACTIVE_EXPLORATION)
        w, g, b = _judge(u, np.asarray(pairs), rng)
        wins, good, bad = wins + w, good + g, bad + b
        fit = fit_bradley_terry(wins, n, tie_counts=good + bad, init=None if fit is None else fit.scores)
    return _covered(u, fit_absolute(wins, n, both_good=good, both_bad=bad))


def spam_run(seed: int, n: int, votes: int) -> float:
    rng = np.random.default_rng(seed)
    u = _utilities(rng, n, 1.5)
    a = rng.integers(0, n, votes)
    pairs = np.stack([a, (a + rng.integers(1, n, votes)) % n], axis=1)
    wins, good, bad = _judge(u, pairs, rng, spam=rng.random(votes) < 0.2)
    return _covered(u, fit_absolute(wins, n, both_good=good, both_bad=bad))


def rewards_run(seed: int, group: str, votes: int) -> tuple[int, int, int, int]:
    """Eight completions, `votes` uniform pairs. Returns how many get a positive reward without and with the
    level, and how many of those signs match the truth (acceptable = positive)."""
    rng = np.random.default_rng(seed)
    if group == "bad":
        u = -np.abs(rng.normal(1.5, 0.5, 8))
    else:
        u = np.concatenate([np.abs(rng.normal(1.5, 0.5, 4)), -np.abs(rng.normal(1.5, 0.5, 4))])
    wins, good, bad = simulate_absolute(u, votes, rng)
    fit = fit_absolute(wins, 8, both_good=good, both_bad=bad)
    relative = rewards_from_scores(fit.scores)
    absolute = rewards_from_scores(fit.scores, threshold=fit.threshold)
    truth = u > 0
    return (
        int((relative > 0).sum()),
        int((absolute > 0).sum()),
        int(((relative > 0) == truth).sum()),
        int(((absolute > 0) == truth).sum()),
    )


def _map(pool: ProcessPoolExecutor, fn: Callable[..., object], sims: int, *args: object) -> list:
    return list(pool.map(fn, range(sims), *([a] * sims for a in args)))


def _ok(coverage: float) -> str:
    return "yes" if 0.93 <= coverage <= 0.97 else "no"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few simulations (a smoke run)")
    args = parser.parse_args(argv)
    sims = 20 if args.quick else 300
    rows: list[tuple[str, str, str, str]] = []
    active = f"active selection as the server chooses (batches of ≤{ACTIVE_BATCH}, {ACTIVE_EXPLORATION:.0%} uniform)"
    with ProcessPoolExecutor(max_workers=min(2, os.cpu_count() or 2)) as pool:
        regimes = (
            ("uniform pairs", uniform_run, 20, 400),
            ("uniform pairs", uniform_run, 8, 48),
            ("uniform pairs", uniform_run, 50, 1000),
            (
                active,
                active_run,
                20,
                400,
            ),
            (
                active,
                active_run,
                50,
                1000,
            ),
            ("20 % of votes from spammers (a, b, both good, both bad at random; not modelled)", spam_run, 20, 400),
        )
        for name, run, n, votes in regimes:
            out = np.array(_map(pool, run, sims, n, votes))
            rows.append(
                (
                    f"P(acceptable) 95 % interval coverage, {name}: {n} datapoints, u ~ N(0, 1.5²), {votes} votes, "
                    f"{sims} sims",
                    f"{out.mean():.1%} (sims' 5th–95th percentile {np.quantile(out, 0.05):.0%}–"
                    f"{np.quantile(out, 0.95):.0%})",
                    TARGET,
                    _ok(float(out.mean())),
                )
            )
        for group, label in (("bad", "eight unacceptable completions"), ("mixed", "four acceptable, four not")):
            for votes in (24, 48):
                out = np.array(_map(pool, rewards_run, sims, group, votes))
                # The level must take the bad group's ~4 positive rewards away, and cost a mixed group nothing.
                target = "< 1 positive" if group == "bad" else "signs right as often as relative (±0.25)"
                met = out[:, 1].mean() < 1 if group == "bad" else out[:, 3].mean() >= out[:, 2].mean() - 0.25
                rows.append(
                    (
                        f"rewards of a group of {label} (u = θ − τ, |u| ~ N(1.5, 0.5²)), {votes} uniform votes, "
                        f"{sims} sims: positive rewards per group, relative → with the level (signs right of 8)",
                        f"{out[:, 0].mean():.2f} → {out[:, 1].mean():.2f} "
                        f"({out[:, 2].mean():.2f} → {out[:, 3].mean():.2f} right)",
                        target,
                        "yes" if met else "no",
                    )
                )
    write_table("absolute", "Absolute ranking flows: P(acceptable) coverage and rewards with the level", rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
