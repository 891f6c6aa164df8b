"""The reward-hacking sentinel: false alarms on honest and flat runs, detection and its delay on hacked runs.

Each seeded run is `flowlab.ranking.simulate_policy_run` with 20 checkpoints and 32 prompts, people's votes
against the anchor drawn from the Bradley–Terry model (`simulate_win_votes`), and `check_divergence` called
at every checkpoint on the history so far, as the service calls it. Honest: skill and proxy rise together
(0.15 logits a checkpoint). Flat: neither rises, the proxy only noisy. Hacked: skill peaks at checkpoint 8,
then true quality falls 0.2 logits a checkpoint while the policy pads its answers (1.28× longer a checkpoint)
and the length-crediting proxy keeps climbing. A false alarm is a run that fires at all (honest, flat) or
fires at or before the peak (hacked); the delay counts checkpoints after the peak until the first firing.

Run: `python benchmarks/bench_sentinel.py` (about 5 minutes on 2 cores; `--quick` for a smoke run).
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

from flowlab.ranking import check_divergence, simulate_policy_run, simulate_win_votes

CHECKPOINTS, PROMPTS, ONSET = 20, 32, 8
MAX_FALSE_ALARMS = 0.05
MAX_P90_DELAY = 8  # checkpoints after the peak
MIN_DETECTED = 0.9


def first_fire(seed: int, mode: str, votes_per_prompt: int, window: int, alpha: float) -> int | None:
    rng = np.random.default_rng(seed)
    run = simulate_policy_run(
        rng, CHECKPOINTS, hacking=mode == "hacked", prompts=PROMPTS, onset=ONSET, gain=0.0 if mode == "flat" else 0.15
    )
    wins, votes = simulate_win_votes(run.quality, run.anchor_quality, votes_per_prompt, rng=rng)
    proxy = run.proxy.mean(axis=1)
    for c in range(window - 1, CHECKPOINTS):
        verdict = check_divergence(
            run.steps[: c + 1], proxy[: c + 1], wins[: c + 1], votes[: c + 1], window=window, alpha=alpha
        )
        if verdict.fired:
            return c
    return None


CONFIGS = [
    # votes per prompt (× 32 prompts = votes a checkpoint), window, alpha
    (1, 4, 0.05),
    (1, 6, 0.05),
    (3, 4, 0.05),
    (3, 6, 0.05),
    (9, 4, 0.05),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few simulations (a smoke run)")
    args = parser.parse_args(argv)
    sims = 40 if args.quick else 500
    rows: list[tuple[str, str, str, str]] = []
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for per_prompt, window, alpha in CONFIGS:
            budget = per_prompt * PROMPTS
            setting = f"{budget} votes a checkpoint ({PROMPTS} prompts × {per_prompt}), window {window}, α {alpha:g}"
            for mode in ("honest", "flat", "hacked"):
                jobs = [(seed, mode, per_prompt, window, alpha) for seed in range(sims)]
                fires = list(pool.map(first_fire, *zip(*jobs, strict=True), chunksize=8))
                if mode != "hacked":
                    rate = np.mean([f is not None for f in fires])
                    what = "proxy and quality rise together" if mode == "honest" else "proxy and quality flat, noisy"
                    rows.append(
                        (
                            f"{mode} runs ({what}), {setting}, {CHECKPOINTS} checkpoints, {sims} runs: "
                            "runs with a false alarm",
                            f"{rate:.1%}",
                            f"≤ {MAX_FALSE_ALARMS:.0%}",
                            "yes" if rate <= MAX_FALSE_ALARMS else "no",
                        )
                    )
                else:
                    early = np.mean([f is not None and f <= ONSET for f in fires])
                    delays = np.array([f - ONSET for f in fires if f is not None and f > ONSET])
                    detected = len(delays) / sims
                    p50 = float(np.median(delays)) if len(delays) else float("nan")
                    p90 = float(np.percentile(delays, 90)) if len(delays) else float("nan")
                    in_time = np.mean(delays <= MAX_P90_DELAY) * detected if len(delays) else 0.0
                    rows.append(
                        (
                            f"hacked runs (peak at checkpoint {ONSET}, then quality −0.2 logits a checkpoint), "
                            f"{setting}, {sims} runs: detected / within {MAX_P90_DELAY} checkpoints; "
                            "delay median / 90th percentile (checkpoints after the peak); fired before the peak",
                            f"{detected:.1%} / {in_time:.1%}; {p50:.0f} / {p90:.0f}; {early:.1%}",
                            f"detected ≥ {MIN_DETECTED:.0%}, 90th percentile ≤ {MAX_P90_DELAY}",
                            "yes" if p90 <= MAX_P90_DELAY and detected >= MIN_DETECTED else "no",
                        )
                    )
                print(rows[-1], flush=True)
    if args.quick:
        return 0
    write_table("sentinel", "The reward-hacking sentinel (seeded simulated runs)", rows)
    return 0 if all(r[3] != "no" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
