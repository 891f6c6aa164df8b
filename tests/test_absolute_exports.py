"""What an absolute ranking flow hands on: KTO rows labelled by P(acceptable), the votes with their level, a batch
project's deliverable, `update_config(absolute=...)` for new items only, and the async SDK end to end."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from flowlab import AsyncClient, Client, ValidationError, formats, ranking, schemas
from flowlab.crowd import SimulatedCrowd

GOOD = [f"good {i}" for i in range(3)]
BAD = [f"bad {i}" for i in range(3)]


def _datapoints() -> list[dict[str, object]]:
    """Three completions above their threshold (1.0) and three below, as the crowd's oracle reads them."""
    good: list[dict[str, object]] = [
        {"id": k, "text": k, "private_metadata": {"true_score": 2.0 + i, "acceptable_above": 1.0}}
        for i, k in enumerate(GOOD)
    ]
    bad: list[dict[str, object]] = [
        {"id": k, "text": k, "private_metadata": {"true_score": -1.0 - i, "acceptable_above": 1.0}}
        for i, k in enumerate(BAD)
    ]
    return good + bad


def _crowd(client: Client | AsyncClient, **options: object) -> SimulatedCrowd:
    settings = {"annotators": 6, "rate": 60_000, "bulk": True, "accuracy": 1.0, "seed": 3, **options}
    return SimulatedCrowd(client.url, client.api_key, **settings)  # type: ignore[arg-type]


def _wire_results(fit: ranking.AbsoluteResult, keys: list[str], votes: list[int]) -> schemas.ItemResults:
    rows = [
        schemas.DatapointResult(
            key=k,
            index=i,
            score=float(fit.scores[i]),
            elo=float(fit.elo[i]),
            ci_low=float(fit.ci_low[i]),
            ci_high=float(fit.ci_high[i]),
            rank=int(fit.ranks[i]),
            rank_low=int(fit.rank_low[i]),
            rank_high=int(fit.rank_high[i]),
            votes=votes[i],
            wins=0.0,
            p_acceptable=float(fit.p_acceptable[i]),
            p_acceptable_low=float(fit.p_low[i]),
            p_acceptable_high=float(fit.p_high[i]),
        )
        for i, k in enumerate(keys)
    ]
    return schemas.ItemResults(
        item_id="i", state="Completed", total_votes=sum(votes), partial=False, datapoints=rows, version=1
    )


def _points(keys: list[str]) -> list[schemas.Datapoint]:
    return [schemas.Datapoint(index=i, key=k, kind="text", text=k) for i, k in enumerate(keys)]


def test_kto_rows_label_by_p_acceptable_and_leave_out_the_undecided_on_request() -> None:
    # Four datapoints: clearly good, clearly bad, undecided (one good and one bad judgement), never voted on.
    n = 4
    wins, good, bad = np.zeros((n, n)), np.zeros((n, n)), np.zeros((n, n))
    wins[0, 1] = 12  # 0 beat 1 twelve times: 0 judged good, 1 bad
    good[0, 2] = good[2, 0] = 1  # 0 and 2 both good once
    bad[1, 2] = bad[2, 1] = 1  # 1 and 2 both bad once
    for m in (good, bad):
        wins += 0.5 * m
    fit = ranking.fit_absolute(wins, n, both_good=good, both_bad=bad)
    keys = ["yes", "no", "unsure", "unseen"]
    results = _wire_results(fit, keys, votes=[13, 13, 2, 0])
    points = _points(keys)
    points[1] = schemas.Datapoint(index=1, key="no", kind="image", url="https://example.org/no.png")

    rows = formats.acceptability_kto_rows(points, results, prompt="Say hi.")
    assert [r["key"] for r in rows] == ["yes", "no", "unsure"], "nobody judged 'unseen': no row"
    by_key = {r["key"]: r for r in rows}
    assert by_key["yes"]["label"] is True and by_key["no"]["label"] is False
    assert by_key["unsure"]["p_acceptable"] == pytest.approx(0.5) and by_key["unsure"]["label"] is False
    assert by_key["no"]["completion"] == "https://example.org/no.png", "a non-text datapoint is its URL"
    assert all(r["prompt"] == "Say hi." for r in rows)
    for r in rows:  # confidence is Φ(|u|/se), u and se read back through the interval
        u = math.log(r["p_acceptable"] / (1 - r["p_acceptable"]))
        i = keys.index(r["key"])
        se = (math.log(fit.p_high[i] / (1 - fit.p_high[i])) - u) / 1.959963984540054
        assert r["confidence"] == pytest.approx(0.5 * (1 + math.erf(abs(u) / se / math.sqrt(2))), rel=1e-9)
    sure = formats.acceptability_kto_rows(points, results, min_confidence=0.975)
    for r in rows:
        straddles = r["p_acceptable_low"] < 0.5 < r["p_acceptable_high"]
        assert (r["key"] in {s["key"] for s in sure}) == (not straddles), r
    assert {s["key"] for s in sure} == {"yes", "no"}

    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list(rows)
    assert ds.features["label"].dtype == "bool" and ds.features["prompt"].dtype == "string"
    assert ds.features["completion"].dtype == "string"

    plain = schemas.ItemResults(
        item_id="i",
        state="Completed",
        total_votes=1,
        partial=False,
        version=1,
        datapoints=[
            schemas.DatapointResult(
                key=k, index=i, score=0, elo=0, ci_low=0, ci_high=0, rank=1, rank_low=1, rank_high=2, votes=1, wins=0.5
            )
            for i, k in enumerate(keys)
        ],
    )
    with pytest.raises(ValueError, match=r"absolute=True"):
        formats.acceptability_kto_rows(points, plain)
    with pytest.raises(ValueError, match="min_confidence"):
        formats.acceptability_kto_rows(points, results, min_confidence=2)


def test_preference_pairs_leave_out_both_answers() -> None:
    points = _points(["a", "b"])
    votes = [
        schemas.Vote("t1", "x", 0, 1, False, 1.0),
        schemas.Vote("t2", "x", 0, 1, True, 2.0, level="good"),
        schemas.Vote("t3", "x", 1, 0, True, 3.0, level="bad"),
    ]
    pairs = formats.preference_pairs(points, votes, prompt="p")
    assert [(p["chosen_key"], p["rejected_key"]) for p in pairs] == [("a", "b")]


def test_absolute_item_kto_rows_votes_and_the_deliverable(researcher: Client) -> None:
    flow = researcher.flow.create_ranking_flow(
        name="abs exports", instruction="Which is better?", max_response_threshold=60, absolute=True
    )
    item = flow.create_new_flow_batch(datapoints=_datapoints(), context="Say something kind.", time_to_live=60)
    with _crowd(researcher):
        results = item.get_results(timeout=60)
    assert results.total_votes == 60
    rows = item.to_kto_rows()
    assert {r["key"] for r in rows} == set(GOOD + BAD)
    assert all(r["label"] == (r["key"] in GOOD) for r in rows), rows
    assert all(r["prompt"] == "Say something kind." and r["completion"] == r["key"] for r in rows)
    assert len(item.to_kto_rows(min_confidence=0.975)) <= len(rows)
    votes = item.get_votes()
    assert "level" in votes.columns and set(votes["level"].dropna()) <= {"good", "bad"}
    assert (votes["level"].notna() <= votes["tie"]).all(), "a level is always a tie too"
    pairs = item.to_preference_pairs()
    assert len(pairs) == int((~votes["tie"]).sum()), "both answers give no preference pair"
    record = item.to_rlhf_task()  # seed 001's record: each response carries its level beside its rank
    levels = {m["source_id"]: m["annotations"] for m in record["messages"] if m["role"] == "assistant"}
    by_key = {d.key: d for d in results.details}
    for key, a in levels.items():
        assert a["p_acceptable"] == pytest.approx(by_key[key].p_acceptable)
        assert a["p_acceptable_ci_95"][0] <= a["p_acceptable"] <= a["p_acceptable_ci_95"][1]
        assert a["acceptable"] == (key in GOOD), (key, a)

    # A batch project on the same flow: tasks carry P(acceptable), votes their level, and KTO rows come along.
    flow.update_config(max_response_threshold=6)  # six people can each judge a pair once
    project = researcher.projects.create(
        flow, [{"id": "t0", "prompt": "Say something kind.", "a": _datapoints()[0], "b": _datapoints()[3]}]
    )
    with _crowd(researcher):
        project.wait(timeout=60)
    tables = project.deliverable()
    assert {"tasks", "votes", "preference_pairs", "rlhf_tasks", "kto"} <= set(tables)
    task = tables["tasks"][0]
    for d in task["datapoints"]:
        assert d["p_acceptable_low"] <= d["p_acceptable"] <= d["p_acceptable_high"]
    assert all("level" in v for v in tables["votes"])
    assert {r["key"] for r in tables["kto"]} == {GOOD[0], BAD[0]} and all(r["task_id"] == "t0" for r in tables["kto"])
    datasets = pytest.importorskip("datasets")
    assert isinstance(project.to_dataset("kto"), datasets.Dataset)


def test_plain_flows_have_no_kto_rows_and_update_config_turns_absolute_on_for_new_items(researcher: Client) -> None:
    flow = researcher.flow.create_ranking_flow(name="later absolute", instruction="Which?", max_response_threshold=20)
    before = flow.create_new_flow_batch(datapoints=_datapoints(), time_to_live=60)
    flow.update_config(absolute=True)
    assert flow.config.absolute is True and researcher.flow.get_flow_by_id(flow.id).config.absolute is True
    after = flow.create_new_flow_batch(datapoints=_datapoints(), time_to_live=60)
    with _crowd(researcher):
        old, new = before.get_results(timeout=60), after.get_results(timeout=60)
    assert all(d.p_acceptable is None for d in old.details), "an existing item keeps its snapshot"
    assert old.threshold is None and new.threshold is not None
    assert all(d.p_acceptable is not None for d in new.details)
    with pytest.raises(ValidationError, match=r"absolute=True"):
        before.to_kto_rows()
    assert before.get_votes()["level"].isna().all()
    plain = [m["annotations"] for m in before.to_rlhf_task()["messages"] if m["role"] == "assistant"]
    assert plain and not any("p_acceptable" in a for a in plain), "a plain flow's record keeps its shape"
    assert {r["key"] for r in after.to_kto_rows()} == set(GOOD + BAD)

    flow.update_config(absolute=False)
    third = flow.create_new_flow_batch(datapoints=_datapoints(), time_to_live=60)
    with _crowd(researcher):
        assert third.get_results(timeout=60).threshold is None


def test_the_async_sdk_end_to_end(researcher: Client) -> None:
    async def run() -> None:
        async with AsyncClient(url=researcher.url, api_key=researcher.api_key) as client:
            flow = await client.flow.create_ranking_flow(
                name="async abs", instruction="Which?", max_response_threshold=40, absolute=True
            )
            assert flow.config.absolute is True
            item = await flow.create_new_flow_batch(datapoints=_datapoints(), context="ctx", time_to_live=60)
            with _crowd(client):
                results = await item.get_results(timeout=60)
            assert all(((d.p_acceptable or 0.0) > 0.5) == (d.key in GOOD) for d in results.details)
            rewards = results.rewards()
            assert all(((rewards[k] or 0.0) > 0) == (k in GOOD) for k in GOOD + BAD), rewards
            rows = await item.to_kto_rows()
            assert {r["key"]: r["label"] for r in rows} == {k: k in GOOD for k in GOOD + BAD}
            votes = await item.get_votes()
            assert set(votes["level"].dropna()) <= {"good", "bad"} and votes["level"].notna().any()
            await flow.update_config(absolute=False)
            again = await client.flow.get_flow_by_id(flow.id)
            assert again.config.absolute is False

    asyncio.run(run())
