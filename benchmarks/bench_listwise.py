"""Ranking k at once against pairs: person-seconds to settle the top-1, the intervals' calibration under the
flow's own active choice of k-sets, and the Plackett–Luce fit's speed against choix.

Each simulated item runs as the server runs it, with flowlab's own code: listwise k-sets from
`kinds.listwise.choose_set` on the current Plackett–Luce fit (half drawn uniformly), pairs from
`ranking.select_pairs` on the current Bradley–Terry fit (batches of 16, a tenth uniform), the `top` rule looked at
every 2 % of the maximum once there is one answer (listwise) or two votes (pairs) per datapoint, through
`ranking.settlement` at 95 %. Four people work at once, so a listwise set is chosen from a fit at most four
answers old. The crowd answers from hidden scores θ ~ N(0, 1): an order of k is a Plackett–Luce draw (θ plus
Gumbel noise, sorted), a pair a Bradley–Terry draw: the same logit scale, so neither format is favoured by its
noise. Reading costs time: a task takes 2 s plus 3 s per text read (a pair 8 s, k = 4 14 s, k = 8 26 s).
"Wrong" means the datapoint declared top is not the true top; runs that never settle count their maximum.

Two kinds of rows. With θ drawn freely, the best and the second are sometimes near-ties that no budget
settles: many runs end at the maximum, the two formats end with different error (pairs' declared top is wrong
more often), and the ratio of seconds is not "at equal error". The equal-error rows draw θ again until the best
leads the second by at least GAP, the usual setting of best-arm identification (a gap bounds the work), with
three times the maximum so nearly every run settles: both formats then settle on the true top, and the ratio of
person-seconds is the comparison the target names.

Run: `python benchmarks/bench_listwise.py` (about 10 minutes on 2 cores; `--quick` for a smoke run, `--part
coverage` for the calibration rows alone, printed and not written).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import write_table

from flowlab.ranking import fit_bradley_terry, fit_plackett_luce, select_pairs, settlement, simulate_comparisons
from flowlab.server.kinds.listwise import EXPLORATION, choose_set
from flowlab.server.kinds.pairwise import ACTIVE_BATCH, ACTIVE_EXPLORATION, LOOKS

CONFIDENCE = 0.95
GAP = 0.5  # the lead of the best over the second in the equal-error rows (logit scale: it wins 62 % of pairs)
PEOPLE_AT_ONCE = 4


def seconds_per_task(texts: int) -> float:
    """The crowd model's time on a task: 2 s, plus 3 s per text read."""
    return 2.0 + 3.0 * texts


def _pl_order(theta: np.ndarray, shown: tuple[int, ...], rng: np.random.Generator) -> tuple[int, ...]:
    """A Plackett–Luce draw: the shown datapoints sorted by θ plus Gumbel noise (Yellott 1977)."""
    idx = np.array(shown)
    noisy = theta[idx] + rng.gumbel(size=len(idx))
    return tuple(int(i) for i in idx[np.argsort(-noisy)])


def hidden_scores(rng: np.random.Generator, n: int, gap: float = 0.0) -> np.ndarray:
    """θ ~ N(0, 1) for n datapoints, drawn again until the best leads the second by at least `gap`."""
    while True:
        theta = rng.normal(0, 1, n)
        second, first = np.sort(theta)[-2:]
        if first - second >= gap:
            return theta


def run_listwise(seed: int, n: int, k: int, budget: int, gap: float = 0.0) -> tuple[int, bool, bool]:
    """Answers used, whether the declared top was wrong, whether it settled before the maximum."""
    rng = np.random.default_rng(seed)
    pick = random.Random(seed)
    theta = hidden_scores(rng, n, gap)
    answers: list[tuple[int, ...]] = []
    fit = fit_plackett_luce([], n)
    step, next_look = max(1, -(-budget // LOOKS)), n
    while len(answers) < budget:
        sets = [choose_set(fit, k, pick, rule="top", top=1, exploration=EXPLORATION) for _ in range(PEOPLE_AT_ONCE)]
        for shown in sets[: budget - len(answers)]:
            answers.append(_pl_order(theta, shown, rng))
            if len(answers) >= next_look:
                next_look = len(answers) + step
                look = fit_plackett_luce(answers, n, init=fit.scores)
                verdict = settlement(look.scores, look.covariance, "top", confidence=CONFIDENCE)
                if verdict.settled:
                    return len(answers), int(verdict.leaders[0]) != int(np.argmax(theta)), True
        fit = fit_plackett_luce(answers, n, init=fit.scores)
    return budget, int(np.argmax(fit.scores)) != int(np.argmax(theta)), False


def run_pairwise(seed: int, n: int, budget: int, gap: float = 0.0) -> tuple[int, bool, bool]:
    """Votes used, whether the declared top was wrong, whether it settled before the maximum."""
    rng = np.random.default_rng(seed)
    theta = hidden_scores(rng, n, gap)
    wins = np.zeros((n, n))
    fit = None
    count = 0
    step, next_look = max(1, -(-budget // LOOKS)), 2 * n
    while count < budget:
        pairs = select_pairs(wins, ACTIVE_BATCH, fit=fit, rng=rng, exploration=ACTIVE_EXPLORATION)[: budget - count]
        for w, lose in simulate_comparisons(theta, len(pairs), pairs=pairs, rng=rng):
            wins[w, lose] += 1.0
            count += 1
            if count >= next_look:
                next_look = count + step
                look = fit_bradley_terry(wins, n, prior="auto")
                verdict = settlement(look.scores, look.covariance, "top", confidence=CONFIDENCE)
                if verdict.settled:
                    return count, int(verdict.leaders[0]) != int(np.argmax(theta)), True
        fit = fit_bradley_terry(wins, n, init=None if fit is None else fit.scores)
    final = fit_bradley_terry(wins, n, prior="auto")
    return budget, int(np.argmax(final.scores)) != int(np.argmax(theta)), False


def run_coverage(seed: int, n: int, k: int, answers_wanted: int) -> tuple[int, int]:
    """Datapoints whose 95 % interval covers the true centred score, of n, after a run under active choice."""
    rng = np.random.default_rng(seed)
    pick = random.Random(seed)
    theta = rng.normal(0, 1, n)
    answers: list[tuple[int, ...]] = []
    fit = fit_plackett_luce([], n)
    while len(answers) < answers_wanted:
        for _ in range(PEOPLE_AT_ONCE):
            answers.append(_pl_order(theta, choose_set(fit, k, pick, rule="top", top=1), rng))
        fit = fit_plackett_luce(answers, n, init=fit.scores)
    truth = theta - theta.mean()
    return int(((fit.ci_low <= truth) & (truth <= fit.ci_high)).sum()), n


def _median_seconds(call, repeats: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def fit_speed(n: int, k: int, count: int, repeats: int) -> tuple[str, str, str, str]:
    import choix

    rng = np.random.default_rng(0)
    theta = rng.normal(0, 1, n)
    data = [_pl_order(theta, tuple(rng.choice(n, k, replace=False).tolist()), rng) for _ in range(count)]
    ours = _median_seconds(lambda: fit_plackett_luce(data, n), repeats)
    ilsr = _median_seconds(lambda: choix.ilsr_rankings(n, data, alpha=0.1), repeats)
    opt = _median_seconds(lambda: choix.opt_rankings(n, data, alpha=0.1), repeats)
    return (
        f"Plackett–Luce fit, {count:,} orders of {k} over {n} datapoints (median of {repeats})",
        f"flowlab {ours * 1e3:,.1f} ms (with intervals and rank ranges); choix.ilsr_rankings {ilsr * 1e3:,.1f} ms, "
        f"choix.opt_rankings {opt * 1e3:,.1f} ms (scores only)",
        "no slower than choix's faster method ×3",
        "yes" if ours <= 3 * min(ilsr, opt) else "no",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few simulations (a smoke run)")
    parser.add_argument(
        "--part", choices=("settle", "coverage", "speed"), help="run one part only; the table is not written"
    )
    args = parser.parse_args(argv)
    sims = 12 if args.quick else 120
    parts = {args.part} if args.part else {"settle", "coverage", "speed"}
    rows: list[tuple[str, str, str, str]] = []
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        settings = ((8, (4,), 600, 0.0), (16, (4, 8), 1500, 0.0), (8, (4, 8), 1800, GAP), (16, (4, 8), 4500, GAP))
        for n, ks, pair_budget, gap in settings if "settle" in parts else ():
            seeds = list(range(sims))
            pairs = list(pool.map(run_pairwise, seeds, [n] * sims, [pair_budget] * sims, [gap] * sims, chunksize=4))
            pair_seconds = np.mean([o[0] for o in pairs]) * seconds_per_task(2)
            pair_wrong = np.mean([o[1] for o in pairs])
            drawn = f"best ahead by ≥ {gap:g}" if gap else "any θ"
            for k in ks:
                budget = int(pair_budget * seconds_per_task(2) // seconds_per_task(k))  # the same person-seconds
                lists = list(
                    pool.map(run_listwise, seeds, [n] * sims, [k] * sims, [budget] * sims, [gap] * sims, chunksize=4)
                )
                list_seconds = np.mean([o[0] for o in lists]) * seconds_per_task(k)
                list_wrong = np.mean([o[1] for o in lists])
                ratio = pair_seconds / list_seconds
                equal_error = abs(list_wrong - pair_wrong) <= 0.01
                rows.append(
                    (
                        f"person-seconds to settle the top-1 of {n} at 95 % ({drawn}): listwise k = {k} vs active "
                        f"pairs ({sims} sims, same seeds and θ)",
                        f"{ratio:.2f}× fewer: listwise {list_seconds:,.0f} s ({np.mean([o[0] for o in lists]):.0f} "
                        f"orders × {seconds_per_task(k):g} s, wrong top {list_wrong:.1%}, settled "
                        f"{np.mean([o[2] for o in lists]):.0%}) vs pairs {pair_seconds:,.0f} s "
                        f"({np.mean([o[0] for o in pairs]):.0f} votes × 8 s, wrong top {pair_wrong:.1%}, settled "
                        f"{np.mean([o[2] for o in pairs]):.0%})",
                        "≥ 2× fewer at equal error" if gap else "(errors differ: not at equal error)",
                        ("yes" if ratio >= 2 and equal_error else "no") if gap else "-",
                    )
                )
                print(rows[-1], flush=True)
        for n, k, count in ((8, 4, 40), (16, 4, 80), (16, 4, 200), (16, 8, 40)) if "coverage" in parts else ():
            jobs = list(range(sims))
            out = list(pool.map(run_coverage, jobs, [n] * sims, [k] * sims, [count] * sims, chunksize=4))
            covered = sum(o[0] for o in out) / sum(o[1] for o in out)
            rows.append(
                (
                    f"coverage of 95 % intervals under the flow's active k-sets: {n} datapoints, {count} orders "
                    f"of {k}, {sims} sims",
                    f"{covered:.1%}",
                    "93–97 %",
                    "yes" if 0.93 <= covered <= 0.97 else "no",
                )
            )
            print(rows[-1], flush=True)
    if "speed" in parts:
        rows.append(fit_speed(16, 8, 200, 5 if args.quick else 21))
        print(rows[-1], flush=True)
    # A larger size (200 datapoints, 5,000 orders) is left out: choix.opt_rankings takes minutes there.
    if args.quick or args.part:
        return 0 if all(r[3] != "no" for r in rows) else 1
    write_table("listwise", "Ranking k at once against pairs", rows)
    return 0 if all(r[3] != "no" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
