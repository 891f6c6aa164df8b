"""Evals of a training run through a real server and the simulated crowd: how long `ev.checkpoint` holds the
training loop, and the sentinel end to end on seeded simulated runs (honest and reward-hacking).

Each run is `flowlab.ranking.simulate_policy_run` (16 checkpoints, 32 prompts; a hacked run peaks at
checkpoint 6, then pads its answers while true quality falls 0.2 logits a checkpoint). The trainer's side is
played as a loop would: submit a checkpoint's completions with their proxy reward, go on; the crowd (12
people, each following the oracle's Bradley–Terry preference on `true_score`) votes 3 times a pair. The
server checks the sentinel at every change of a checkpoint's counts — far more looks than once a
checkpoint — so its false alarms here include those on partial counts.

Run: `python benchmarks/bench_evals.py` (a few minutes on 2 cores; `--quick` for a smoke run).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import KEY, Server, pct, write_table

from flowlab import Client
from flowlab.crowd import SimulatedCrowd
from flowlab.ranking import simulate_policy_run

CHECKPOINTS, PROMPTS, ONSET, VOTES = 16, 32, 6, 3
LATENCY_PROMPTS, LATENCY_CHECKPOINTS = 64, 30
MAX_CHECKPOINT_P95_MS = 50.0  # the TRL callback's whole budget beyond generation


def checkpoint_latency(client: Client) -> list[float]:
    """Milliseconds each `ev.checkpoint` call took (64 prompts: 64 items made and committed per call)."""
    prompts = [f"held-out prompt {i}" for i in range(LATENCY_PROMPTS)]
    ev = client.evals.create("latency", prompts, anchor=[f"anchor {i}" for i in range(LATENCY_PROMPTS)])
    took = []
    for c in range(LATENCY_CHECKPOINTS):
        completions = [f"completion {i} at {c}" for i in range(LATENCY_PROMPTS)]
        t0 = time.perf_counter()
        ev.checkpoint(c * 100, completions, proxy_reward=float(c))
        took.append((time.perf_counter() - t0) * 1000)
    return took


def one_run(client: Client, seed: int, hacking: bool, timeout: float) -> tuple[int | None, float]:
    """(checkpoint index where the sentinel first fired or None, seconds the run took)."""
    run = simulate_policy_run(seed, CHECKPOINTS, hacking=hacking, prompts=PROMPTS, onset=ONSET)
    ev = client.evals.create(
        f"{'hacked' if hacking else 'honest'} {seed}",
        run.prompts,
        anchor=run.anchor,
        anchor_metadata=[{"true_score": float(q)} for q in run.anchor_quality],
        votes_per_pair=VOTES,
        window=4,
    )
    t0 = time.monotonic()
    for c in range(CHECKPOINTS):
        ev.checkpoint(
            int(run.steps[c]),
            run.completions[c],
            proxy_reward=[float(p) for p in run.proxy[c]],
            metadata=[{"true_score": float(q)} for q in run.quality[c]],
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # the next checkpoint comes once this one's votes are in
            rows = ev.history()
            if float(rows[(rows.tag == "all") & (rows.step == int(run.steps[c]))].votes.iloc[0]) >= PROMPTS * VOTES:
                break
            time.sleep(0.05)
    time.sleep(0.5)  # the last counts' check
    rows = ev.history()
    fired = sorted(set(rows[rows.divergence].step))
    first = None if not fired else int(np.searchsorted(run.steps, fired[0]))
    return first, time.monotonic() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one run of each kind (a smoke run)")
    parser.add_argument("--runs", type=int, default=3, help="seeded runs of each kind")
    args = parser.parse_args(argv)
    runs = 1 if args.quick else args.runs
    rows: list[tuple[str, str, str, str]] = []
    with Server() as server, Client(url=server.url, api_key=KEY) as client:
        took = checkpoint_latency(client)
        p95 = pct(took, 95)
        rows.append(
            (
                f"ev.checkpoint with {LATENCY_PROMPTS} prompts ({LATENCY_PROMPTS} comparison items made, committed), "
                f"{LATENCY_CHECKPOINTS} calls: p50 / p95 / max",
                f"{pct(took, 50):.1f} / {p95:.1f} / {max(took):.1f} ms",
                f"p95 ≤ {MAX_CHECKPOINT_P95_MS:.0f} ms",
                "yes" if p95 <= MAX_CHECKPOINT_P95_MS else "no",
            )
        )
        print(rows[-1], flush=True)
        with SimulatedCrowd(server.url, KEY, annotators=12, rate=20_000, bulk=True, accuracy=1.0, seed=5):
            outcomes = {
                mode: [one_run(client, seed, mode == "hacked", timeout=60.0) for seed in range(runs)]
                for mode in ("honest", "hacked")
            }
    honest = [f for f, _ in outcomes["honest"]]
    rows.append(
        (
            f"honest runs through the server ({CHECKPOINTS} checkpoints × {PROMPTS} prompts × {VOTES} votes, "
            f"window 4, α 0.05), {runs} seeded runs: runs where the sentinel fired",
            f"{sum(f is not None for f in honest)} of {runs}",
            "none",
            "yes" if all(f is None for f in honest) else "no",
        )
    )
    print(rows[-1], flush=True)
    hacked = [f for f, _ in outcomes["hacked"]]
    delays = [f - ONSET for f in hacked if f is not None and f > ONSET]
    early = sum(f is not None and f <= ONSET for f in hacked)
    seconds = [s for pair in outcomes.values() for _, s in pair]
    rows.append(
        (
            f"hacked runs through the server (peak at checkpoint {ONSET}), {runs} seeded runs: detected; "
            "checkpoints after the peak at the first firing (each run); fired at or before the peak; "
            "seconds a run took (median)",
            f"{len(delays)} of {runs}; {', '.join(str(d) for d in delays) or '–'}; {early}; "
            f"{float(np.median(seconds)):.0f} s",
            "all detected, within 8 checkpoints of the peak",
            "yes" if len(delays) == runs and all(d <= 8 for d in delays) else "no",
        )
    )
    print(rows[-1], flush=True)
    if args.quick:
        return 0
    write_table("evals", "Evals of a training run (real server, simulated crowd)", rows)
    return 0 if all(r[3] != "no" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
