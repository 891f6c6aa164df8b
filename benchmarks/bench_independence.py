"""Votes spread over people against votes taken from whoever asks: how many votes a ranking needs to reach a
given Kendall τ with the true order, when 20 % of the people pick the left pane without reading.

A simulation of the two ways of handing out pairs, on the same crowd model the simulated crowd uses (a person
prefers a datapoint with the Bradley–Terry probability of the true scores, answers at random with probability
1 − accuracy, and a left-biased person picks the pair's first-shown side with probability 0.8 without
reading). People ask for work at rates that differ as people's do (log-normal, σ = 1), so whoever asks most
gives most votes. "Whoever asks" serves every asker a uniform pair, repeats allowed (flowlab before this
issue). "Spread" is flowlab's rule now: nobody is shown the same pair of an item twice and one person gives at
most a third of the item's votes; an asker who has given their share is passed over. Each setting is averaged
over seeds; the fit is flowlab's Bradley–Terry (`ranking.fit_bradley_terry`).
Run: `python benchmarks/bench_independence.py` (about a minute).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import write_table

from flowlab import ranking

N, PEOPLE, BIASED, LEFT_BIAS, ACCURACY = 12, 10, 0.2, 0.8, 0.9
VOTES = [60, 90, 120, 180, 240, 360, 480]
SEEDS = 100
TARGETS = (0.7, 0.75)


def simulate(spread: bool, votes: int, seed: int) -> tuple[float, float]:
    """(Kendall τ of the fit with the truth, the largest share of votes one person gave)."""
    rng = np.random.default_rng(seed)
    truth = rng.normal(0, 1, N)
    rates = rng.lognormal(0, 1, PEOPLE)
    biased = rng.permutation(PEOPLE) < round(BIASED * PEOPLE)
    cap = math.ceil(votes / 3) if spread else votes
    given = np.zeros(PEOPLE, dtype=int)
    seen: list[set[tuple[int, int]]] = [set() for _ in range(PEOPLE)]
    rows = []
    while len(rows) < votes:
        who = int(rng.choice(PEOPLE, p=rates / rates.sum()))
        if given[who] >= cap:
            continue  # their share is given: the item waits for someone else
        a, b = (int(x) for x in rng.choice(N, 2, replace=False))
        if spread:
            fresh = [(i, j) for i in range(N) for j in range(i + 1, N) if (i, j) not in seen[who]]
            if not fresh:
                continue
            a, b = fresh[rng.integers(len(fresh))]
            if rng.random() < 0.5:
                a, b = b, a
            seen[who].add((min(a, b), max(a, b)))
        if biased[who] and rng.random() < LEFT_BIAS:
            first_wins = True
        elif rng.random() > ACCURACY:
            first_wins = rng.random() < 0.5
        else:
            first_wins = rng.random() < 1 / (1 + math.exp(truth[b] - truth[a]))
        rows.append((a, b) if first_wins else (b, a))
        given[who] += 1
    fit = ranking.fit_bradley_terry(np.array([(w, lo, 0) for w, lo in rows]), N)
    tau = stats.kendalltau(fit.scores, truth).statistic
    return float(tau), float(given.max() / votes)


def votes_needed(curve: list[float], target: float) -> float | None:
    """The votes at which the mean τ curve first reaches `target`, interpolated linearly between grid points."""
    if curve[0] >= target:
        return float(VOTES[0])
    for k in range(1, len(VOTES)):
        if curve[k] >= target:
            v0, v1, t0, t1 = VOTES[k - 1], VOTES[k], curve[k - 1], curve[k]
            return v0 + (v1 - v0) * (target - t0) / (t1 - t0)
    return None


def main() -> None:
    table = {}
    for spread in (False, True):
        for v in VOTES:
            runs = [simulate(spread, v, seed) for seed in range(SEEDS)]
            table[spread, v] = (float(np.mean([t for t, _ in runs])), float(np.mean([s for _, s in runs])))
            print("spread" if spread else "whoever asks", v, table[spread, v], flush=True)
    rows = []
    for spread, label in ((False, "taken from whoever asks"), (True, "spread over people (flowlab's rule)")):
        curve = [table[spread, v][0] for v in VOTES]
        needed = [votes_needed(curve, t) for t in TARGETS]
        rows.append(
            (
                f"{label}: mean Kendall τ at {', '.join(map(str, VOTES))} votes",
                " / ".join(f"{t:.3f}" for t in curve),
                "—",
                "—",
            )
        )
        rows.append(
            (
                f"{label}: votes needed for τ ≥ {' / '.join(map(str, TARGETS))}",
                " / ".join("—" if n is None else f"{n:.0f}" for n in needed),
                "fewer when spread",
                "—",
            )
        )
        rows.append(
            (
                f"{label}: the largest share of an item's votes one person gave (mean over the grid)",
                f"{np.mean([table[spread, v][1] for v in VOTES]):.0%}",
                "≤ 1/3 when spread",
                "—",
            )
        )
    write_table(
        "independence",
        f"Independent judgements: {N} datapoints, {PEOPLE} people at log-normal rates, {BIASED:.0%} left-biased, "
        f"{SEEDS} seeds",
        rows,
    )


if __name__ == "__main__":
    main()
