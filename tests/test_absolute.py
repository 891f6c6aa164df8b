"""Absolute ranking flows ("both good" / "both bad") end to end: a real server, the simulated crowd with known
acceptability thresholds, results read back after the item leaves memory and after a restart."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from flowlab import ranking
from flowlab.crowd import SimulatedCrowd
from tests.conftest import ServerProcess, wait_for

GOOD = [f"good {i}" for i in range(4)]
BAD = [f"bad {i}" for i in range(4)]


def _datapoints() -> list[dict[str, object]]:
    # True scores on both sides of each datapoint's threshold (1.0): the crowd's oracle answers by them.
    out = []
    for i, key in enumerate(GOOD):
        out.append({"id": key, "text": key, "private_metadata": {"true_score": 1.5 + 0.5 * i, "acceptable_above": 1.0}})
    for i, key in enumerate(BAD):
        out.append({"id": key, "text": key, "private_metadata": {"true_score": -0.5 * i, "acceptable_above": 1.0}})
    return out


def _wait_gone(server: ServerProcess) -> None:
    live = lambda: httpx.get(f"{server.url}/v1/health").json()["live_items"]  # noqa: E731
    wait_for(lambda: live() == 0, 10, "the ended item to leave memory")


def _refit(server: ServerProcess, item_id: str, n: int) -> ranking.AbsoluteResult:
    """The fit the results should hold, made here from the stored votes: with several annotators, a reliability
    each (``votes=``)."""
    votes = httpx.get(f"{server.url}/v1/items/{item_id}/votes", headers={"Authorization": f"Bearer {server.api_key}"})
    people: dict[str, int] = {}
    rows = []
    for v in votes.json():
        code = 0 if not v["tie"] else {None: 1, "good": 2, "bad": 3}[v["level"]]
        rows.append((people.setdefault(v["annotator_id"], len(people)), v["winner"], v["loser"], code))
    answers = np.array(rows, dtype=np.int64)
    wins, good, bad, ties = ranking.absolute_votes(answers, n)
    return ranking.fit_absolute(
        wins, n, both_good=good, both_bad=bad, tie_counts=ties, starting_elo=1200.0, votes=answers
    )


def test_absolute_flow_with_the_crowd_reads_back_after_memory_and_restart(tmp_path: Path) -> None:
    server = ServerProcess(data_dir=tmp_path, extra_args=["--retain-ended", "0"])
    server.start()
    try:
        with server.client() as client:
            flow = client.flow.create_ranking_flow(
                name="abs", instruction="Which is better?", max_response_threshold=120, absolute=True
            )
            assert flow.config.absolute is True
            item = flow.create_new_flow_batch(datapoints=_datapoints(), time_to_live=60)
            with SimulatedCrowd(server.url, server.api_key, annotators=8, rate=12000, seed=4, accuracy=0.9):
                results = item.get_results(timeout=60)
            assert results.total_votes == 120
            p = {d.key: d.p_acceptable for d in results.details}
            assert all(p[k] > 0.5 for k in GOOD) and all(p[k] < 0.5 for k in BAD), p
            for d in results.details:
                assert d.p_acceptable_low <= d.p_acceptable <= d.p_acceptable_high
            frame = results.to_dataframe()
            assert {"p_acceptable", "p_acceptable_low", "p_acceptable_high"} <= set(frame.columns)
            rewards = results.rewards()
            assert all(rewards[k] > 0 for k in GOOD) and all(rewards[k] < 0 for k in BAD), rewards
            relative = results.rewards(absolute=False)
            assert abs(sum(relative.values())) < 1e-9

            votes = httpx.get(
                f"{server.url}/v1/items/{item.id}/votes", headers={"Authorization": f"Bearer {server.api_key}"}
            ).json()
            assert isinstance(votes, list), votes
            levels = {v["level"] for v in votes}
            assert {"good", "bad"} <= levels, "the crowd answered both good and both bad"
            assert all(v["tie"] for v in votes if v["level"]), "a level is stored as a tie for older readers"
            matrix = item.get_win_loss_matrix().to_numpy()
            assert matrix.sum() == pytest.approx(120)

            expected = _refit(server, item.id, 8)
            _wait_gone(server)
            after = item.get_results()
            by_key = {d.key: d for d in after.details}
            for i, key in enumerate(GOOD + BAD):
                assert by_key[key].p_acceptable == pytest.approx(expected.p_acceptable[i], abs=1e-6)
                assert by_key[key].score == pytest.approx(expected.scores[i], abs=1e-6)
            before = {d.key: (d.p_acceptable, d.p_acceptable_low, d.p_acceptable_high) for d in results.details}
        server.stop()
        server.start()
        with server.client() as client:
            again = client.flow.get_flow_by_id(flow.id)
            assert again.config.absolute is True
            reread = again.get_flow_item(item.id).get_results()
            assert {d.key: (d.p_acceptable, d.p_acceptable_low, d.p_acceptable_high) for d in reread.details} == before
    finally:
        server.stop()


def test_both_answers_are_refused_on_a_plain_ranking_flow(fresh_server: ServerProcess) -> None:
    with fresh_server.client() as client:
        flow = client.flow.create_ranking_flow(name="plain", instruction="Which?", max_response_threshold=4)
        flow.create_new_flow_batch(datapoints=["x", "y"], time_to_live=30)
        auth = {"Authorization": f"Bearer {client.annotators.create('p').token}"}
        task = httpx.post(f"{fresh_server.url}/v1/tasks/next", json={"wait": 2}, headers=auth)
        assert task.status_code == 200, task.text
        body = task.json()
        assert not body.get("absolute")
        answer = httpx.post(
            f"{fresh_server.url}/v1/tasks/{body['task_id']}/answer", json={"choice": "both_good"}, headers=auth
        )
        assert answer.status_code >= 400 and "absolute" in answer.json()["detail"], answer.text
