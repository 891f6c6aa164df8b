"""A judge that knows when to ask people: the routing and blending (`JudgeCalibration`, seeded, no server),
then `human_reward(judge=...)` and `human_pair_reward(judge=...)` called as TRL calls them, against a real
server and the simulated crowd (whose oracle reads each completion's hidden `true_score`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import flowlab
from flowlab.crowd import SimulatedCrowd
from flowlab.integrations.judge import JudgeCalibration, JudgedGroup, score_scale
from flowlab.integrations.trl import human_pair_reward, human_reward

from .conftest import ServerProcess


def group(scores: list[float], tag: str | None = None, scale: float = 1.0) -> JudgedGroup:
    return JudgedGroup.from_scores(scores, scale, tag)


# ---------------------------------------------------------------- routing, offline


def test_before_any_votes_the_least_certain_pairs_go_first_within_the_budget() -> None:
    calibration = JudgeCalibration(budget=2, explore=0.0, seed=0)
    groups = [group([0.0, 3.0, 6.0]), group([0.0, 0.1, 5.0]), group([1.0, 1.05])]
    plan = calibration.plan(groups)
    assert len(plan) == 2 and not any(audit for *_, audit in plan)
    chosen = {(g, tuple(int(x) for x in groups[g].pairs[k, :2])) for g, k, _ in plan}
    assert chosen == {(2, (0, 1)), (1, (0, 1))}, "the two smallest margins (0.05 and 0.1)"
    # A share of the step's pairs: 7 pairs × 0.5 → 4 (rounded), at least one.
    assert len(JudgeCalibration(budget=0.5, seed=0).plan(groups)) == 4
    assert len(JudgeCalibration(budget=0.01, seed=0).plan(groups)) == 1
    assert JudgeCalibration(budget=0).plan(groups) == []
    assert len(JudgeCalibration(budget=50).plan(groups)) == 7, "never more than the step's pairs"


def test_exploring_draws_and_the_random_route_are_seeded_and_marked() -> None:
    groups = [group(list(np.linspace(0, 1, 4) * (g + 1))) for g in range(10)]
    explorer = JudgeCalibration(budget=20, explore=0.5, seed=3)
    plan = explorer.plan(groups)
    audits = [p for p in plan if p[2]]
    assert len(plan) == 20 and 4 <= len(audits) <= 16
    assert plan == JudgeCalibration(budget=20, explore=0.5, seed=3).plan(groups), "same seed, same plan"
    uniform = JudgeCalibration(route="random", budget=5, seed=1).plan(groups)
    assert len(uniform) == 5 and all(audit for *_, audit in uniform)


def test_the_tag_where_the_judge_disagrees_with_people_is_asked_first() -> None:
    rng = np.random.default_rng(0)
    calibration = JudgeCalibration(budget=4, explore=0.0, seed=0)
    # History: people contradict the judge on "essay" pairs and agree on "maths" pairs, at all margins.
    for _ in range(6):
        groups, wins = [], {}
        for g, tag in enumerate(["essay", "maths"] * 3):
            scores = list(rng.normal(0, 1, 3))
            groups.append(group(scores, tag))
            order = np.argsort(scores)  # the judge's order, worst first
            matrix = np.zeros((3, 3))
            for lo in range(3):
                for hi in range(lo + 1, 3):
                    worse, better = order[lo], order[hi]
                    if tag == "essay":
                        matrix[worse, better] = 1  # people prefer what the judge ranks lower
                    else:
                        matrix[better, worse] = 1
            wins[g] = matrix
        calibration.rewards(groups, wins)
    essay, maths = calibration.agreement("essay"), calibration.agreement("maths")
    assert essay.share == 0.0 and maths.share == 1.0 and essay.pairs == maths.pairs == 54
    assert essay.high < 0.1 and maths.low > 0.9, "Wilson intervals"
    assert calibration.reliability["essay"] < 0.5 < calibration.reliability["maths"]
    # Now the essay groups have the larger margins, yet they are the ones asked about.
    step = [group([0, 2, 4], "essay"), group([0, 1, 2], "maths"), group([0, 2, 4], "essay")]
    assert {g for g, _, _ in calibration.plan(step)} == {0, 2}
    assert set(calibration.by_tag()) == {"essay", "maths"}


def test_the_blend_follows_people_where_they_voted_and_the_judge_elsewhere() -> None:
    calibration = JudgeCalibration(budget=1, explore=0.0, seed=0)
    judge = [group([0.0, 1.0, 3.0, 3.1]), group([0.0, 1.0, 2.0, 3.0])]
    plan = calibration.plan(judge)
    assert [(g, tuple(judge[g].pairs[k, :2].astype(int))) for g, k, _ in plan] == [(0, (2, 3))]
    votes = np.zeros((4, 4))
    votes[2, 3] = 3  # three people: 2 beats 3, against the judge's small margin
    scores = calibration.rewards(judge, {0: votes})
    assert scores[0][2] > scores[0][3] > scores[0][1] > scores[0][0], "people's order on the asked pair"
    assert list(np.argsort(scores[1])) == [0, 1, 2, 3], "a judge-only group keeps the judge's order"
    assert calibration.agreement().pairs == 1 and calibration.agreement().share == 0.0
    calibration.end_step(7, groups=2, to_people=1, votes=3, from_people=2, total=8)
    report = calibration.report()
    assert report.loc[0, "step"] == 7 and report.loc[0, "rewards_from_judge"] == 6 and calibration.votes == 3


def test_judged_groups_and_bad_settings_say_what_to_do() -> None:
    g = JudgedGroup.from_scores([1.0, 1.0, 3.0], 2.0, "x")
    assert list(g.pairs[:, 2]) == [0.5, 0.0, 0.0] and list(g.margins) == [0.0, 1.0, 1.0]
    assert score_scale([[0.0, 2.0], [5.0]]) == 2.0 and score_scale([[1.0, 1.0]]) == 1.0
    pair = JudgedGroup.from_preference(0.9)
    assert pair.size == 2 and pair.margins[0] == pytest.approx(np.log(9))
    with pytest.raises(ValueError, match="finite number per completion"):
        JudgedGroup.from_scores([1.0, float("nan")], 1.0)
    with pytest.raises(ValueError, match="P\\(first better\\) in \\[0, 1\\]"):
        JudgedGroup.from_preference(1.5)
    with pytest.raises(ValueError, match="route is one of"):
        JudgeCalibration(route="loud")
    with pytest.raises(ValueError, match="a whole number, or a share"):
        JudgeCalibration(budget=2.5)
    with pytest.raises(ValueError, match="explore is a share"):
        JudgeCalibration(explore=2)


# ---------------------------------------------------------------- against a real server


def true_scores(table: dict[str, float], tags: dict[str, str] | None = None) -> Any:
    def metadata(prompt: Any, completion: Any) -> dict[str, Any]:
        return {"true_score": table[completion], **({"tag": tags[prompt]} if tags else {})}

    return metadata


class Logged(dict):  # type: ignore[type-arg]
    def __call__(self, name: str, value: float) -> None:
        self[name] = value


def test_human_reward_with_a_judge_asks_people_only_within_the_budget(flowlab_server: ServerProcess) -> None:
    client = flowlab.Client(url=flowlab_server.url, api_key=flowlab_server.api_key)
    flow = client.flow.create_ranking_flow("judged grpo", "Which is better?", max_response_threshold=3)
    truth = {"a0": 0.0, "a1": 10.0, "a2": 20.0, "a3": 30.0, "b0": 0.0, "b1": 10.0, "b2": 20.0, "b3": 30.0}
    # The judge swaps a2 and a3 by a hair and has b right with clear margins.
    judged = {"a0": 0.0, "a1": 1.0, "a2": 3.1, "a3": 3.0, "b0": 0.0, "b1": 1.0, "b2": 2.0, "b3": 3.0}
    calls: list[int] = []

    def judge(prompts: list[Any], completions: list[Any], **columns: Any) -> list[float]:
        calls.append(len(completions))
        assert columns["tag"] == ["hard"] * 4 + ["easy"] * 4, "dataset columns reach the judge as TRL's do"
        return [judged[c] for c in completions]

    reward = human_reward(flow, wait=20, judge=judge, budget=1, explore=0.0, metadata=true_scores(truth), seed=0)
    assert reward.__name__ == "human_reward"
    before = len(flow.get_flow_items(amount=None))
    logged = Logged()

    class State:
        global_step = 4

    prompts = ["A?"] * 4 + ["B?"] * 4
    completions = [f"a{i}" for i in range(4)] + [f"b{i}" for i in range(4)]
    with SimulatedCrowd(flowlab_server.url, flowlab_server.api_key, annotators=6, rate=20_000, accuracy=1.0, seed=8):
        rewards = reward(
            prompts, completions, None, trainer_state=State(), log_metric=logged, tag=["hard"] * 4 + ["easy"] * 4
        )
    assert calls == [8], "the judge scores every completion once"
    items = flow.get_flow_items(amount=None)
    assert len(items) == before + 1, "one pair, the least certain, went to people"
    asked = items[0]
    assert len(asked.keys) == 2 and {d.text for d in asked.get_datapoints()} == {"a2", "a3"}
    assert all(isinstance(r, float) for r in rewards)
    assert rewards[3] > rewards[2] > rewards[1] > rewards[0], "people's votes overrule the judge's small margin"
    assert rewards[7] > rewards[6] > rewards[5] > rewards[4], "the judge alone orders the other group"
    assert logged["human/votes"] == 3 and logged["human/pairs_to_people"] == 1
    assert logged["human/people_share"] == 2 / 8 and logged["human/judge_agreement"] == 0.0
    report = reward.calibration.report()
    assert list(report["step"]) == [4] and list(report["rewards_from_people"]) == [2]
    assert reward.calibration.agreement("hard").pairs == 1 and reward.calibration.agreement("easy").pairs == 0
    flow.delete()


def test_human_pair_reward_with_a_judge(flowlab_server: ServerProcess) -> None:
    client = flowlab.Client(url=flowlab_server.url, api_key=flowlab_server.api_key)
    flow = client.flow.create_ranking_flow("judged dpo", "Which is better?", max_response_threshold=3)
    truth = {"x": 0.0, "y": 20.0, "u": 20.0, "v": 0.0}

    def prefer(prompts: list[Any], firsts: list[Any], seconds: list[Any]) -> list[float]:
        return [{"x": 0.55, "u": 0.95}[f] for f in firsts]  # unsure and wrong on (x, y); sure and right on (u, v)

    tags = {"p": "chat", "q": "maths"}  # a tag from the metadata, when no dataset column carries one
    reward = human_pair_reward(flow, wait=20, judge=prefer, budget=1, explore=0.0, metadata=true_scores(truth, tags))
    with SimulatedCrowd(flowlab_server.url, flowlab_server.api_key, annotators=6, rate=20_000, accuracy=1.0, seed=9):
        out = reward(["p", "q", "p", "q"], ["x", "u", "y", "v"])
    assert out[2] > out[0], "people overrule the unsure judge on the pair they saw"
    assert out[1] > out[3] and out[1] + out[3] == pytest.approx(1.0), "the sure judge decides the other"
    items = flow.get_flow_items(amount=None)
    assert len(items) == 1 and {d.text for d in items[0].get_datapoints()} == {"x", "y"}
    assert reward.history[-1]["pairs_to_people"] == 1 and reward.history[-1]["votes"] == 3
    assert reward.calibration.agreement("chat").pairs == 1 and reward.calibration.agreement("chat").share == 0.0
    assert reward.calibration.agreement("maths").pairs == 0
    with pytest.raises(ValueError, match="one each"):
        human_pair_reward(flow, judge=lambda p, a, b: [0.5], budget=0)(["p", "q", "p", "q"], ["x", "u", "y", "v"])
    with pytest.raises(ValueError, match="leave out reference= and fallback="):
        human_reward(flow, judge=lambda prompts, completions, **_: [0.0], fallback=lambda **_: [])
    flow.delete()
