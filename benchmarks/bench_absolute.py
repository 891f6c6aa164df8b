"""Absolute ranking flows ("both good" / "both bad"): coverage of the 95 % P(acceptable) intervals, and what the
absolute level does to a group's rewards.

Coverage: the share of datapoints whose true P(acceptable) lies inside the interval of `fit_absolute`, over
many data sets simulated under the model (each datapoint judged acceptable with probability σ(u), u = θ − τ
known): pairs drawn uniformly; pairs chosen as the server chooses them for an active item (batches from the
plain Bradley–Terry fit of the votes so far, a share drawn uniformly); and a fifth of the votes from spammers
(two of ten annotators) who answer a, b, both good or both bad at random, fitted without the annotators and with
them (`fit_absolute(..., votes=)`, a reliability per annotator).

Rewards: a group of eight completions, all below the threshold (and, for contrast, a mixed group): how many get
a positive reward from the relative scores (`rewards_from_scores(scores)`) and how many with the level
(`rewards_from_scores(scores, threshold=τ)`, what `results.rewards()` gives on an absolute flow).

Run: `python benchmarks/bench_absolute.py` (a few minutes on 2 cores; `--quick` for a smoke run; `--only-spam` reruns
the spammer rows alone, `--only-cost` the rows timing one fit).

Cost: one results fit of an absolute item whose annotators are modelled (a reliability each, fitted by EM
accelerated with SQUAREM), at sizes from a small item to 1,000 datapoints and 200,000 answers.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one BLAS thread per worker process

import argparse
import json
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from scipy.special import expit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import RESULTS_DIR, write_table

from flowlab.ranking import (
    absolute_votes,
    fit_absolute,
    fit_bradley_terry,
    rewards_from_scores,
    select_pairs,
    simulate_absolute,
)
from flowlab.server.kinds.pairwise import ACTIVE_BATCH, ACTIVE_EXPLORATION

TARGET = "93–97%"
TITLE = "Absolute ranking flows: P(acceptable) coverage and rewards with the level"


def _covered(u: np.ndarray, fit: object) -> float:
    p = expit(u)
    return float(np.mean((fit.p_low <= p) & (p <= fit.p_high)))  # type: ignore[attr-defined]


def _judge(u: np.ndarray, pairs: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Answers to `pairs` under the model (two independent judgements against the threshold). Returns the win
    matrix (both answers half a win each way, as an item keeps it) and the "both good" and "both bad" counts."""
    n = len(u)
    wins, good, bad = np.zeros((n, n)), np.zeros((n, n)), np.zeros((n, n))
    ok = rng.random((len(pairs), 2)) < expit(u[pairs])
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


SPAM_CROWD = 10  # annotators in the spam regimes, two of them spammers: a fifth of the votes


def _spam_answers(rng: np.random.Generator, u: np.ndarray, votes: int, crowd: int) -> np.ndarray:
    """`votes` answers on uniform pairs from `crowd` annotators, the first fifth of whom answer at random, as
    ``(annotator, first, second, answer)`` rows: the first won, or both good (2) / both bad (3)."""
    n = len(u)
    a = rng.integers(0, n, votes)
    pairs = np.stack([a, (a + rng.integers(1, n, votes)) % n], axis=1)
    who = rng.integers(0, crowd, votes)
    spam = who < crowd // 5
    ok = rng.random((votes, 2)) < expit(u[pairs])
    ok[spam] = rng.random((int(spam.sum()), 2)) < 0.5  # four answers, equally likely
    first = np.where(ok[:, 0] | (ok[:, 0] == ok[:, 1]), pairs[:, 0], pairs[:, 1])
    second = pairs.sum(axis=1) - first
    code = np.where(ok[:, 0] == ok[:, 1], np.where(ok[:, 0], 2, 3), 0)
    return np.stack([who, first, second, code], axis=1)


def spam_run(seed: int, n: int, votes: int, modelled: bool = False) -> tuple[float, float, float]:
    """Ten annotators give the votes uniformly, two of them at random. Returns the coverage, and (with the
    annotators given to the fit) the spammers' and the careful annotators' mean reliability (NaN without)."""
    rng = np.random.default_rng(seed)
    u = _utilities(rng, n, 1.5)
    rows = _spam_answers(rng, u, votes, SPAM_CROWD)
    wins, good, bad, ties = absolute_votes(rows, n)
    fit = fit_absolute(wins, n, both_good=good, both_bad=bad, tie_counts=ties, votes=rows if modelled else None)
    if fit.reliability is None:
        return _covered(u, fit), float("nan"), float("nan")
    return _covered(u, fit), float(fit.reliability[:2].mean()), float(fit.reliability[2:].mean())


def spam_modelled_run(seed: int, n: int, votes: int) -> tuple[float, float, float]:
    return spam_run(seed, n, votes, modelled=True)


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


SPAM = "20 % of votes from spammers (a, b, both good, both bad at random; two of ten annotators)"


def _coverage_row(name: str, n: int, votes: int, sims: int, out: np.ndarray) -> tuple[str, str, str, str]:
    return (
        f"P(acceptable) 95 % interval coverage, {name}: {n} datapoints, u ~ N(0, 1.5²), {votes} votes, {sims} sims",
        f"{out.mean():.1%} (sims' 5th–95th percentile {np.quantile(out, 0.05):.0%}–{np.quantile(out, 0.95):.0%})",
        TARGET,
        _ok(float(out.mean())),
    )


def _spam_rows(pool: ProcessPoolExecutor, sims: int) -> list[tuple[str, str, str, str]]:
    rows = []
    for label, run in (("not modelled", spam_run), ("annotators given: reliability fitted", spam_modelled_run)):
        out = np.array(_map(pool, run, sims, 20, 400))
        row = _coverage_row(f"{SPAM}, {label}", 20, 400, sims, out[:, 0])
        if run is spam_modelled_run:
            row = (
                row[0],
                f"{row[1]}; mean η spammers {out[:, 1].mean():.2f}, careful {out[:, 2].mean():.2f}",
                *row[2:],
            )
        rows.append(row)
    return rows


COST_SIZES = ((20, 400, 10), (50, 5_000, 20), (200, 40_000, 50), (1_000, 200_000, 300))


def _cost_rows(sizes: tuple[tuple[int, int, int], ...]) -> list[tuple[str, str, str, str]]:
    """Seconds for one results fit of an absolute item, a fifth of its annotators spammers: with a reliability per
    annotator (EM, what the server runs once two people have answered) and without (median of 3)."""
    rows = []
    for n, votes, crowd in sizes:
        rng = np.random.default_rng(n)
        answers = _spam_answers(rng, _utilities(rng, n, 1.5), votes, crowd)
        wins, good, bad, ties = absolute_votes(answers, n)
        timed: dict[str, list[float]] = {"em": [], "plain": []}
        steps = 0
        for _ in range(3):
            for key, given in (("em", answers), ("plain", None)):
                start = time.perf_counter()
                fit = fit_absolute(wins, n, both_good=good, both_bad=bad, tie_counts=ties, votes=given)
                timed[key].append(time.perf_counter() - start)
                steps = fit.iterations if key == "em" else steps
        em, plain = (float(np.median(timed[k])) for k in ("em", "plain"))
        rows.append(
            (
                f"one results fit with a reliability per annotator (EM): {n:,} datapoints, {votes:,} answers, "
                f"{crowd} annotators (a fifth spammers), median of 3",
                f"{_seconds(em)} ({steps} EM steps, SQUAREM); {_seconds(plain)} without reliabilities",
                "(measured)",
                "-",
            )
        )
    return rows


def _seconds(s: float) -> str:
    return f"{s * 1000:,.0f} ms" if s < 1 else f"{s:,.1f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few simulations (a smoke run)")
    parser.add_argument(
        "--only-cost", action="store_true", help="rerun only the fit-cost rows, keeping the other rows written before"
    )
    parser.add_argument(
        "--only-spam", action="store_true", help="rerun only the spammer rows, keeping the other rows written before"
    )
    args = parser.parse_args(argv)
    sims = 20 if args.quick else 300
    rows: list[tuple[str, str, str, str]] = []
    active = f"active selection as the server chooses (batches of ≤{ACTIVE_BATCH}, {ACTIVE_EXPLORATION:.0%} uniform)"
    sizes = COST_SIZES[:2] if args.quick else COST_SIZES
    if args.only_cost:
        kept = json.loads((RESULTS_DIR / "absolute.json").read_text())["rows"]
        rows = [tuple(r) for r in kept if not r[0].startswith("one results fit")]  # type: ignore[misc]
        write_table("absolute", TITLE, rows + _cost_rows(sizes))
        return 0
    with ProcessPoolExecutor(max_workers=min(2, os.cpu_count() or 2)) as pool:
        if args.only_spam:
            kept = json.loads((RESULTS_DIR / "absolute.json").read_text())["rows"]
            spam = _spam_rows(pool, sims)
            rows = [tuple(r) for r in kept if "spammers" not in r[0]]  # type: ignore[misc]
            at = next(i for i, r in enumerate(rows) if r[0].startswith("rewards"))
            rows[at:at] = spam
            write_table("absolute", TITLE, rows)
            return 0
        regimes = (
            ("uniform pairs", uniform_run, 20, 400),
            ("uniform pairs", uniform_run, 8, 48),
            ("uniform pairs", uniform_run, 50, 1000),
            (active, active_run, 20, 400),
            (active, active_run, 50, 1000),
        )
        for name, run, n, votes in regimes:
            rows.append(_coverage_row(name, n, votes, sims, np.array(_map(pool, run, sims, n, votes))))
        rows += _spam_rows(pool, sims)
    write_table("absolute", TITLE, rows + _cost_rows(sizes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
