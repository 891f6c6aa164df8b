"""Benchmarks for flowlab.ranking: speed, accuracy, interval coverage, active selection and quality weighting.

Run as ``python benchmarks/bench_ranking.py``. Prints a markdown table (measured value, target, pass/fail)
and writes it to ``benchmarks/results/ranking.md``. choix is used only as a speed/accuracy comparison.

BLAS runs on one thread unless OPENBLAS_NUM_THREADS / OMP_NUM_THREADS / MKL_NUM_THREADS say otherwise: on a
small shared machine a multi-threaded BLAS call can stall for a whole scheduler slice waiting for a busy
core, which makes timings meaningless, and a server answering concurrent requests should run that way too.
"""

# ruff: noqa: E402 - BLAS threads are set before numpy is imported

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # must happen before numpy is imported

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

from flowlab.ranking import (
    fit_bradley_terry,
    fit_crowd_bradley_terry,
    select_pairs,
    simulate_comparisons,
    simulate_crowd_votes,
    simulate_scores,
    win_matrix,
)

RESULTS = Path(__file__).resolve().parent / "results" / "ranking.md"


def timed(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``repeat`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def tau(a: np.ndarray, b: np.ndarray) -> float:
    return float(kendalltau(a, b)[0])


# ---------------------------------------------------------------- speed and accuracy


def bench_large(rows: list[tuple[str, str, str, bool | None]], repeat: int) -> None:
    theta = simulate_scores(1000, rng=0)
    comps = simulate_comparisons(theta, 200_000, rng=1)
    fit_time = timed(lambda: fit_bradley_terry(comps), repeat)
    rows.append(
        (
            "n=1,000, 200k comparisons: full fit (scores, Wald 95% CI, rank ranges)",
            f"{fit_time:.3f} s",
            "≤ 0.25 s",
            fit_time <= 0.25,
        )
    )
    try:
        import choix
    except ImportError:  # choix is a dev-only comparison
        rows.append(("choix.ilsr_pairwise, same data", "choix not installed", "≥ 3× slower", False))
        choix = None  # type: ignore[assignment]
    if choix is not None:
        pairs = [(int(w), int(lo)) for w, lo in comps]  # choix wants a sequence of (winner, loser)
        choix_time = timed(lambda: choix.ilsr_pairwise(1000, pairs), max(1, repeat // 3))
        speedup = choix_time / fit_time
        rows.append(
            (
                "speed-up over choix.ilsr_pairwise (same run; choix gives scores only)",
                f"{speedup:.1f}× (choix {choix_time:.2f} s)",
                "≥ 3×",
                speedup >= 3.0,
            )
        )
    default_tau = tau(fit_bradley_terry(comps).scores, theta)
    mle_tau = tau(fit_bradley_terry(comps, prior=0.0, tol=1e-10).scores, theta)
    gap = abs(default_tau - mle_tau)
    rows.append(
        (
            "Kendall τ to the truth: default fit vs exact MLE",
            f"{default_tau:.4f} vs {mle_tau:.4f} (Δ {gap:.4f})",
            "Δ ≤ 0.002",
            gap <= 0.002,
        )
    )


def bench_refit(rows: list[tuple[str, str, str, bool | None]], repeat: int) -> None:
    theta = simulate_scores(100, rng=2)
    comps = simulate_comparisons(theta, 1_000_000, rng=3)
    fit_time = timed(lambda: fit_bradley_terry(comps), repeat)
    rows.append(
        ("n=100, 1M comparisons: full fit from the vote list", f"{fit_time * 1e3:.1f} ms", "≤ 100 ms", fit_time <= 0.1)
    )

    wins = win_matrix(comps, 100)
    previous = fit_bradley_terry(wins)
    batches = [simulate_comparisons(theta, 1000, rng=100 + k) for k in range(repeat + 1)]
    times = []
    for k, batch in enumerate(batches):
        start = time.perf_counter()
        wins += win_matrix(batch, 100)
        previous = fit_bradley_terry(wins, init=previous.scores)
        if k:  # the first is a warm-up
            times.append(time.perf_counter() - start)
    refit = statistics.median(times)
    rows.append(
        (
            "n=100: count +1,000 votes and refit, warm-started (Wald CI, ranks)",
            f"{refit * 1e3:.2f} ms",
            "≤ 10 ms",
            refit <= 0.01,
        )
    )


# ---------------------------------------------------------------- interval coverage


def bench_coverage(rows: list[tuple[str, str, str, bool | None]], n_sims: int, n_boot_sims: int) -> None:
    for m in (2000, 20_000):
        for interval, sims in (("wald", n_sims), ("sandwich", n_sims), ("bootstrap", n_boot_sims)):
            hits = []
            for seed in range(sims):
                theta = simulate_scores(50, rng=seed)
                comps = simulate_comparisons(theta, m, rng=10_000 + seed)
                fit = fit_bradley_terry(comps, interval=interval, n_bootstrap=100, rng=seed)  # type: ignore[arg-type]
                hits.append(np.mean((fit.ci_low <= theta) & (theta <= fit.ci_high)))
            coverage = float(np.mean(hits))
            default = " (default)" if interval == "wald" else ""
            rows.append(
                (
                    f"95% {interval}{default} interval coverage, 50 datapoints, {m:,} comparisons, {sims} sims",
                    f"{coverage:.1%}",
                    "93–97%",
                    0.93 <= coverage <= 0.97,
                )
            )


# ---------------------------------------------------------------- active selection


def _tau_curve(n: int, budget: int, batch: int, method: str, seed: int, spread: float) -> np.ndarray:
    from flowlab.ranking._simulate import _outcomes

    theta = simulate_scores(n, spread=spread, rng=seed)
    gen = np.random.default_rng(seed + 7919)
    wins = np.zeros((n, n))
    fit = fit_bradley_terry(wins)
    curve = []
    for _ in range(budget // batch):
        pairs = select_pairs(wins, batch, fit=fit, method=method, rng=gen)  # type: ignore[arg-type]
        votes = _outcomes(theta, pairs[:, 0], pairs[:, 1], None, gen)
        np.add.at(wins, (votes[:, 0], votes[:, 1]), 1.0)
        fit = fit_bradley_terry(wins, init=fit.scores)
        curve.append(tau(fit.scores, theta))
    return np.asarray(curve)


def bench_active(rows: list[tuple[str, str, str, bool | None]], seeds: dict[int, int]) -> None:
    cases = [(50, 2.0, True), (100, 2.0, True), (50, 1.0, False)]
    for n, spread, is_target in cases:
        batch = n // 5
        budget = 10 * n  # uniform's τ at 10 votes per datapoint is the target
        n_seeds = seeds[n]
        uniform = np.mean([_tau_curve(n, budget, batch, "uniform", s, spread) for s in range(n_seeds)], axis=0)
        active = np.mean([_tau_curve(n, budget, batch, "active", s, spread) for s in range(n_seeds)], axis=0)
        votes = np.arange(1, len(uniform) + 1) * batch
        target = uniform[-1]
        reached = np.flatnonzero(active >= target)
        if len(reached):
            k = reached[0]
            if k == 0:
                needed = float(votes[0])
            else:  # interpolate between the batches either side of the crossing
                frac = (target - active[k - 1]) / (active[k] - active[k - 1])
                needed = float(votes[k - 1] + frac * batch)
            saving = 1.0 - needed / budget
            measured = f"{saving:.0%} fewer ({needed:.0f} vs {budget} votes; τ {target:.3f})"
        else:
            saving = -1.0
            measured = f"not reached in {budget} votes (τ {active[-1]:.3f} vs {target:.3f})"
        label = f"active vs uniform pairs, n={n}, true θ ~ N(0, {spread:g}²), batches of {batch}, {n_seeds} seeds"
        if is_target:
            rows.append((label, measured, "≥ 25% fewer votes", saving >= 0.25))
        else:
            rows.append((label + " (informational: close scores)", measured, "—", None))


def bench_select_speed(rows: list[tuple[str, str, str, bool | None]], repeat: int) -> None:
    theta = simulate_scores(100, rng=4)
    wins = win_matrix(simulate_comparisons(theta, 2000, rng=5), 100)
    fit = fit_bradley_terry(wins)
    gen = np.random.default_rng(0)
    per_call = timed(lambda: [select_pairs(wins, 16, fit=fit, rng=gen) for _ in range(50)], repeat) / 50
    rows.append(("select_pairs, n=100, 16 pairs, with fit", f"{per_call * 1e3:.2f} ms", "< 1 ms", per_call < 1e-3))


# ---------------------------------------------------------------- quality weighting


def bench_quality(rows: list[tuple[str, str, str, bool | None]], n_seeds: int) -> None:
    weighted, plain = [], []
    for seed in range(n_seeds):
        theta = simulate_scores(50, rng=seed)
        votes, _ = simulate_crowd_votes(theta, 2000, n_annotators=20, spammer_share=0.2, rng=500 + seed)
        weighted.append(tau(fit_crowd_bradley_terry(votes, 50).fit.scores, theta))
        plain.append(tau(fit_bradley_terry(votes[:, 1:], 50).scores, theta))
    w, p = float(np.mean(weighted)), float(np.mean(plain))
    rows.append(
        (
            f"20% spammers, n=50, 2,000 votes, 20 annotators, {n_seeds} seeds: τ Crowd-BT vs plain BT",
            f"{w:.3f} vs {p:.3f}",
            "weighted > unweighted",
            w > p,
        )
    )


# ---------------------------------------------------------------- report


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ""
    if hasattr(os, "getloadavg"):
        load = f", load average {os.getloadavg()[0]:.1f} at the end"
    blas = os.environ.get("OPENBLAS_NUM_THREADS", "?")
    return (
        f"{cpu}, {os.cpu_count()} CPUs{load}; Python {platform.python_version()}, numpy {np.__version__}, "
        f"scipy {__import__('scipy').__version__}; BLAS threads {blas}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and seeds (a smoke run)")
    args = parser.parse_args(argv)
    repeat = 3 if args.quick else 7
    rows: list[tuple[str, str, str, bool | None]] = []
    started = time.perf_counter()
    bench_large(rows, repeat)
    bench_refit(rows, repeat)
    bench_select_speed(rows, repeat)
    bench_coverage(rows, n_sims=40 if args.quick else 200, n_boot_sims=10 if args.quick else 40)
    bench_active(rows, {50: 4, 100: 2} if args.quick else {50: 16, 100: 8})
    bench_quality(rows, 3 if args.quick else 10)
    elapsed = time.perf_counter() - started

    lines = [
        "### Ranking, flowlab.ranking",
        "",
        f"Machine: {machine()}. Total run time {elapsed:.0f} s. Timings are medians after a warm-up.",
        "",
        "| figure | measured | target | pass |",
        "|---|---|---|---|",
    ]
    verdict = {True: "pass", False: "FAIL", None: "—"}
    lines += [f"| {name} | {value} | {target} | {verdict[ok]} |" for name, value, target, ok in rows]
    table = "\n".join(lines) + "\n"
    print(table)
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(table)
        print(f"written to {RESULTS}")
    return 0 if all(ok is not False for *_, ok in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
