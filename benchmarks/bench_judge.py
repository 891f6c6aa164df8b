"""A judge that knows when to ask people: how many human votes routing saves, and reward accuracy at equal
votes for judge only, people only and routed.

Simulated GRPO steps: groups of four completions, each with a true quality (a logit, which people's votes
follow: P(a beats b) = σ(q_a − q_b)) and a length. The judge scores `q + bias · length + noise`, tuned so it
orders 75 % of pairs right and prefers long answers; in the "essay" tag lengths vary most, so there the
bias hurts most. Reward accuracy is the share of pairs within groups whose rewards are in the true order
(ties count half). The routed rewards come from the same code `human_reward(judge=...)` runs
(`flowlab.integrations.judge.JudgeCalibration`), with people's votes simulated in numpy; one end-to-end row
runs the reward function against a real server and the simulated crowd.

Run: `python benchmarks/bench_judge.py` (`--quick` for a smaller run).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import expit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import KEY, Server, write_table

from flowlab.integrations.judge import JudgeCalibration, JudgedGroup, score_scale
from flowlab.ranking import fit_bradley_terry

SIZE = 4  # completions per group
VOTES = 8  # votes a group gets in the all-human run (its max_response_threshold)
PAIR_VOTES = 1  # votes a routed pair gets (the routed flow's max_response_threshold)
TAGS = ("maths", "chat", "essay")
LENGTH_SPREAD = {"maths": 0.5, "chat": 1.0, "essay": 2.2}
SPREAD = 2.0  # true quality ~ N(0, SPREAD²): one vote is right ~80 % of the time
BIAS, NOISE = 0.5, 1.5  # judge = q + BIAS · length + N(0, NOISE²): ~75 % of pairs right


def make_steps(steps: int, groups: int, rng: np.random.Generator) -> list[list[dict[str, Any]]]:
    out = []
    for _ in range(steps):
        step = []
        for _ in range(groups):
            tag = TAGS[rng.integers(len(TAGS))]
            q = rng.normal(0, SPREAD, SIZE)
            length = rng.normal(0, SPREAD * LENGTH_SPREAD[tag], SIZE)
            judge = q + BIAS * length + rng.normal(0, NOISE, SIZE)
            step.append({"tag": tag, "q": q, "judge": judge})
        out.append(step)
    return out


def people_votes(
    q: np.ndarray, votes: int, rng: np.random.Generator, pairs: list[tuple[int, int]] | None = None
) -> np.ndarray:
    """A win matrix from `votes` votes on pairs drawn uniformly (from `pairs` when given), each
    Bradley–Terry on the true quality."""
    wins = np.zeros((len(q), len(q)))
    for _ in range(votes):
        a, b = pairs[rng.integers(len(pairs))] if pairs else rng.choice(len(q), 2, replace=False)
        if rng.random() < expit(q[a] - q[b]):
            wins[a, b] += 1
        else:
            wins[b, a] += 1
    return wins


def pair_accuracy(rewards: np.ndarray, q: np.ndarray) -> tuple[float, int]:
    a, b = np.triu_indices(len(q), 1)
    truth = np.sign(q[a] - q[b])
    got = np.sign(rewards[a] - rewards[b])
    return float(np.sum(np.where(got == 0, 0.5, got == truth))), len(a)


def people_scores(wins: np.ndarray) -> np.ndarray:
    w, loser = np.nonzero(wins)
    if not len(w):
        return np.zeros(len(wins))
    comps = np.repeat(np.stack([w, loser], 1), wins[w, loser].astype(int), axis=0)
    return fit_bradley_terry(comps, len(wins), prior=0.1).scores


def run_people(data: list[list[dict[str, Any]]], votes_per_group: float, seed: int) -> tuple[float, float]:
    """Every group gets (about) `votes_per_group` votes, spread evenly; accuracy and total votes."""
    rng = np.random.default_rng(seed)
    right = total = spent = 0.0
    for step in data:
        for group in step:
            k = int(votes_per_group) + (rng.random() < votes_per_group - int(votes_per_group))
            scores = people_scores(people_votes(group["q"], k, rng))
            r, n = pair_accuracy(scores, group["q"])
            right, total, spent = right + r, total + n, spent + k
    return right / total, spent


def run_judge(data: list[list[dict[str, Any]]]) -> float:
    right = total = 0.0
    for step in data:
        for group in step:
            r, n = pair_accuracy(group["judge"], group["q"])
            right, total = right + r, total + n
    return right / total


def run_routed(
    data: list[list[dict[str, Any]]],
    share: float,
    seed: int,
    *,
    route: str = "uncertain",
    tags: bool = True,
) -> tuple[float, float, JudgeCalibration]:
    """People see `share` × the all-human votes: that many pairs a step, one vote each (a flow with
    `max_response_threshold=1`), chosen by `route`; every group is scored by the blend."""
    rng = np.random.default_rng(seed)
    pairs_per_step = SIZE * (SIZE - 1) // 2 * len(data[0])
    budget = round(share * VOTES * len(data[0]) / PAIR_VOTES)
    assert budget <= pairs_per_step
    calibration = JudgeCalibration(route=route, budget=budget, seed=seed)
    right = total = spent = 0.0
    for step in data:
        scale = score_scale([g["judge"] for g in step])
        groups = [JudgedGroup.from_scores(g["judge"], scale, g["tag"] if tags else None) for g in step]
        plan = calibration.plan(groups)
        wins: dict[int, np.ndarray] = {}
        for g, k, _ in plan:
            a, b = (int(x) for x in groups[g].pairs[k, :2])
            wins[g] = wins.get(g, np.zeros((SIZE, SIZE))) + people_votes(step[g]["q"], PAIR_VOTES, rng, [(a, b)])
        scores = calibration.rewards(groups, wins, {(g, k) for g, k, audit in plan if audit})
        votes = sum(float(m.sum()) for m in wins.values())
        calibration.end_step(
            None,
            groups=len(groups),
            to_people=len(plan),
            votes=votes,
            from_people=SIZE * len(wins),
            total=SIZE * len(groups),
        )
        spent += votes
        for group, s in zip(step, scores, strict=True):
            r, n = pair_accuracy(s, group["q"])
            right, total = right + r, total + n
    return right / total, spent, calibration


def bench_savings(rows: list[tuple[str, str, str, str]], steps: int, groups: int, seeds: list[int]) -> None:
    shares = [0.25, 0.3125, 0.375, 0.4375, 0.5, 0.5625, 0.625, 0.75]
    human_acc, judge_acc, routed_acc, random_acc, margin_acc = [], [], {s: [] for s in shares}, {}, {}
    human_votes = 0.0
    for seed in seeds:
        data = make_steps(steps, groups, np.random.default_rng(seed))
        acc, human_votes = run_people(data, VOTES, seed + 100)
        human_acc.append(acc)
        judge_acc.append(run_judge(data))
        for share in shares:
            routed_acc[share].append(run_routed(data, share, seed + 200)[0])
        print(
            f"seed {seed}: people {human_acc[-1]:.4f}", {s: round(v[-1], 4) for s, v in routed_acc.items()}, flush=True
        )
    target = statistics.mean(human_acc)
    reached = next((s for s in shares if statistics.mean(routed_acc[s]) >= target), None)
    rows.append(
        (
            f"judge alone (right on {statistics.mean(judge_acc):.1%} of pairs, biased to long answers): reward "
            f"accuracy, {steps} steps × {groups} groups of {SIZE}, {len(seeds)} seeds",
            f"{statistics.mean(judge_acc):.1%}",
            "(informational)",
            "-",
        )
    )
    rows.append(
        (
            f"all-human rewards: every group gets {VOTES} votes ({human_votes:.0f} votes a run): reward accuracy",
            f"{target:.1%}",
            "(the bar to reach)",
            "-",
        )
    )
    saved = None if reached is None else 1 - reached
    rows.append(
        (
            f"routed (judge on all, people on the least certain pairs, {PAIR_VOTES} vote each, blended by Crowd-BT "
            "with the judge as an annotator): share of human votes needed to reach the all-human reward accuracy "
            "(grid of 25–75 %; accuracy there)",
            "not reached at 75 %"
            if reached is None
            else f"{reached:.0%} of the votes ({statistics.mean(routed_acc[reached]):.1%}): {saved:.0%} fewer",
            "≥ 50 % fewer",
            "yes" if saved is not None and saved >= 0.5 else "no",
        )
    )
    # Equal votes: the same vote budget spent three ways (and routing's two halves apart).
    for share in (0.25, 0.5):
        per_group = share * VOTES
        people, judge = [], []
        rnd, margin = [], []
        for seed in seeds:
            data = make_steps(steps, groups, np.random.default_rng(seed))
            people.append(run_people(data, per_group, seed + 300)[0])
            judge.append(run_judge(data))
            rnd.append(run_routed(data, share, seed + 200, route="random")[0])
            margin.append(run_routed(data, share, seed + 200, tags=False)[0])
        random_acc[share], margin_acc[share] = rnd, margin
        rows.append(
            (
                f"reward accuracy at {share:.1%} of the all-human votes ({per_group:g} a group on average): judge "
                "only / people only (votes spread over every group) / routed: random pairs, blended / routed: "
                "least certain by margin / routed: margin and per-tag calibration",
                f"{statistics.mean(judge):.1%} / {statistics.mean(people):.1%} / {statistics.mean(rnd):.1%} / "
                f"{statistics.mean(margin):.1%} / {statistics.mean(routed_acc[share]):.1%}",
                "routed best",
                "yes"
                if statistics.mean(routed_acc[share]) > max(statistics.mean(judge), statistics.mean(people))
                else "no",
            )
        )
    # The live report at the 25 % budget, first seed: agreement with its interval, per tag.
    data = make_steps(steps, groups, np.random.default_rng(seeds[0]))
    _, _, calibration = run_routed(data, 0.25, seeds[0] + 200)
    overall = calibration.agreement()
    audit = calibration.agreement(audits_only=True)
    tags = ", ".join(
        f"{t} {a.share:.0%} [{a.low:.0%}, {a.high:.0%}] ({calibration.reliability.get(t, float('nan')):.2f})"
        for t, a in sorted(calibration.by_tag().items())
    )
    rows.append(
        (
            "live report at a 25 % budget: judge–people agreement on routed pairs / on random audits (95 % "
            "Wilson) / per tag, on routed pairs (calibrated P(agree) at the judge's usual gap)",
            f"{overall.share:.0%} [{overall.low:.0%}, {overall.high:.0%}] / {audit.share:.0%} [{audit.low:.0%}, "
            f"{audit.high:.0%}] ({audit.pairs} pairs) / {tags}",
            "(informational)",
            "-",
        )
    )


def bench_server(rows: list[tuple[str, str, str, str]]) -> None:
    """The reward function itself against a real server and the simulated crowd: 8 groups of 4 a step, a
    quarter to people; the overhead of judging, routing and blending beyond the people's time."""
    from flowlab import Client
    from flowlab.crowd import SimulatedCrowd
    from flowlab.integrations.trl import human_reward

    rng = np.random.default_rng(0)
    data = make_steps(6, 8, rng)
    with Server() as server, Client(url=server.url, api_key=KEY) as client:
        flow = client.flow.create_ranking_flow("judge", "Better?", max_response_threshold=PAIR_VOTES)
        quality: dict[str, float] = {}
        judged: dict[str, float] = {}

        def judge(prompts: list[Any], completions: list[Any], **_: Any) -> list[float]:
            return [judged[c] for c in completions]

        reward = human_reward(
            flow, wait=30, judge=judge, budget=0.25, metadata=lambda p, c: {"true_score": quality[c]}, seed=1
        )
        costs = []
        with SimulatedCrowd(server.url, KEY, annotators=20, rate=60_000, accuracy=1.0, seed=2):
            for s, step in enumerate(data):
                prompts, completions = [], []
                for g, group in enumerate(step):
                    for i in range(SIZE):
                        text = f"step {s} group {g} answer {i}"
                        quality[text], judged[text] = float(group["q"][i]), float(group["judge"][i])
                        prompts.append(f"prompt {s}.{g}")
                        completions.append(text)
                started = time.perf_counter()
                pending = reward.submit(prompts, completions, step=s)
                submitted = time.perf_counter() - started
                flow.wait_items(pending.items, timeout=30)  # the people's time, left out
                started = time.perf_counter()
                values = reward.collect(pending)
                costs.append((submitted + time.perf_counter() - started) * 1000)
                assert all(v is not None for v in values)
        report = reward.calibration.report()
    rows.append(
        (
            "human_reward(judge=..., budget=0.25) against a real server and the simulated crowd, 8 groups of 4 a "
            "step, one vote a pair: pairs to people a step / votes a step / overhead per step beyond the crowd's "
            "time (judge, routing, an item per asked pair, results, blend; median)",
            f"{report['to_people'].mean():.0f} / {report['votes'].mean():.0f} / {statistics.median(costs):.0f} ms",
            "(informational)",
            "-",
        )
    )


def main(argv: list[str]) -> None:
    quick = "--quick" in argv
    rows: list[tuple[str, str, str, str]] = []
    bench_savings(rows, steps=10 if quick else 30, groups=16, seeds=[0] if quick else [0, 1, 2])
    if "--no-server" not in argv:
        bench_server(rows)
    write_table("judge", "A judge that knows when to ask people", rows)


if __name__ == "__main__":
    main(sys.argv[1:])
