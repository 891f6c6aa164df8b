"""Listwise flows end to end: a real server, the simulated crowd ordering by known true scores, Plackett–Luce
results read back after the item leaves memory and after a restart; the independence rules; bad answers."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from flowlab_widgets import RankingExplorer

from flowlab import ranking
from flowlab.crowd import SimulatedCrowd
from tests.conftest import ServerProcess

KEYS = [f"answer {i}" for i in range(8)]


def _datapoints(spread: float = 1.0) -> list[dict[str, object]]:
    return [{"id": k, "text": k, "private_metadata": {"true_score": spread * (7 - i)}} for i, k in enumerate(KEYS)]


def _auth(server: ServerProcess) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.api_key}"}


def _wait_gone(server: ServerProcess) -> None:
    deadline = time.monotonic() + 10
    while httpx.get(f"{server.url}/v1/health").json()["live_items"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert httpx.get(f"{server.url}/v1/health").json()["live_items"] == 0, "the ended item left memory"


@pytest.mark.parametrize("mode", ["order", "best_worst"])
def test_listwise_flow_with_the_crowd_reads_back_after_memory_and_restart(tmp_path: Path, mode: str) -> None:
    server = ServerProcess(data_dir=tmp_path, extra_args=["--retain-ended", "0"])
    server.start()
    try:
        with server.client() as client:
            flow = client.flow.create_listwise_flow(
                "lw", "Order these, best first.", k=4, mode=mode, max_response_threshold=60
            )
            assert flow.config.kind == "listwise" and flow.config.listwise.k == 4
            item = flow.create_new_flow_batch(datapoints=_datapoints(), time_to_live=60)
            with SimulatedCrowd(server.url, server.api_key, annotators=6, rate=12000, seed=3, accuracy=0.95):
                results = item.get_results(timeout=60)
            assert results.total_votes == 60
            ranked = [d.key for d in sorted(results.details, key=lambda d: d.rank)]
            assert KEYS[0] in ranked[:2] and set(ranked[-2:]) <= set(KEYS[-3:]), ranked
            frame = results.to_dataframe()
            assert {"score", "ci_low", "ci_high", "rank_low", "rank_high"} <= set(frame.columns)
            assert set(results.datapoints) == set(KEYS)
            rewards = results.rewards()
            assert rewards[KEYS[0]] > rewards[KEYS[-1]]

            stored = httpx.get(f"{server.url}/v1/items/{item.id}/rankings", headers=_auth(server)).json()
            assert len(stored) == 60 and {r["mode"] for r in stored} == {mode}
            people: dict[str, set[frozenset[int]]] = {}
            for r in stored:
                assert len(r["order"]) == 4
                shown = frozenset(r["order"])
                assert shown not in people.setdefault(r["annotator_id"], set()), "nobody sees a k-set twice"
                people[r["annotator_id"]].add(shown)
            assert max(len(s) for s in people.values()) <= 20, "one person gives at most a third of the answers"
            matrix = item.get_win_loss_matrix().to_numpy()
            per_answer = 6 if mode == "order" else 5  # implied pairs of an order of 4 / a best–worst answer
            assert matrix.sum() == pytest.approx(60 * per_answer)
            votes = item.get_votes()  # the pairs the rankings imply, as the matrix counts them
            assert len(votes) == 60 * per_answer and set(votes.task_id) == {r["task_id"] for r in stored}
            counted = np.zeros_like(matrix)
            np.add.at(counted, (votes.winner.to_numpy(), votes.loser.to_numpy()), 1.0)
            assert counted == pytest.approx(matrix)
            explorer = RankingExplorer(item)  # Elo beside the fit, on the implied pairs
            assert explorer.fit.bt.scores.shape == (8,)

            orders = [tuple(r["order"]) for r in stored]
            if mode == "order":
                expected = ranking.fit_plackett_luce(orders, 8, starting_elo=1200.0)
            else:
                expected = ranking.fit_plackett_luce(
                    [], 8, best_worst=[(o, o[0], o[-1]) for o in orders], starting_elo=1200.0
                )
            _wait_gone(server)
            after = item.get_results()
            by_key = {d.key: d for d in after.details}
            for i, key in enumerate(KEYS):
                assert by_key[key].score == pytest.approx(expected.scores[i], abs=1e-6)
                assert by_key[key].ci_high == pytest.approx(expected.ci_high[i], abs=1e-6)
            before = {d.key: (d.score, d.ci_low, d.ci_high, d.rank_low, d.rank_high) for d in results.details}
        server.stop()
        server.start()
        with server.client() as client:
            again = client.flow.get_flow_by_id(flow.id)
            assert again.config.listwise.mode == mode
            reread = again.get_flow_item(item.id).get_results()
            assert {d.key: (d.score, d.ci_low, d.ci_high, d.rank_low, d.rank_high) for d in reread.details} == before
            assert len(httpx.get(f"{server.url}/v1/items/{item.id}/rankings", headers=_auth(server)).json()) == 60
    finally:
        server.stop()


def test_a_listwise_item_stops_once_its_top_is_settled(fresh_server: ServerProcess) -> None:
    with fresh_server.client() as client:
        flow = client.flow.create_listwise_flow(
            "stop", "Best first.", k=4, max_response_threshold=400, stop_when="top", max_votes_per_annotator=400
        )
        item = flow.create_new_flow_batch(datapoints=_datapoints(spread=1.5), time_to_live=60)
        with SimulatedCrowd(fresh_server.url, fresh_server.api_key, annotators=20, rate=12000, seed=5, accuracy=1.0):
            results = item.get_results(timeout=60)
        assert results.total_votes < 400
        assert results.details[0].key == KEYS[0] if results.details[0].rank == 1 else True
        status = item.get_status()
        assert status == "Completed"


def test_bad_listwise_answers_are_refused(fresh_server: ServerProcess) -> None:
    with fresh_server.client() as client:
        flow = client.flow.create_listwise_flow("bad", "Best first.", k=3, max_response_threshold=4)
        flow.create_new_flow_batch(datapoints=["x", "y", "z", "w"], time_to_live=30)
        auth = {"Authorization": f"Bearer {client.annotators.create('p').token}"}
        task = httpx.post(f"{fresh_server.url}/v1/tasks/next", json={"wait": 2}, headers=auth).json()
        assert task["kind"] == "listwise" and len(task["listwise"]["datapoints"]) == 3
        url = f"{fresh_server.url}/v1/tasks/{task['task_id']}/answer"
        for body in ({"choice": "a"}, {"choice": "submit", "listwise": {"order": [0, 0, 1]}}):
            refused = httpx.post(url, json=body, headers=auth)
            assert refused.status_code >= 400 and "order" in refused.json()["detail"], refused.text
        ok = httpx.post(url, json={"choice": "submit", "listwise": {"order": [2, 0, 1]}}, headers=auth)
        assert ok.status_code == 200, ok.text
        with pytest.raises(Exception, match="k is how many"):
            client.flow.create_listwise_flow("k", "x", k=9)
        with pytest.raises(Exception, match=r"absolute"):
            httpx_flow = httpx.post(
                f"{fresh_server.url}/v1/flows",
                json={"name": "x", "instruction": "y", "kind": "listwise", "absolute": True},
                headers=_auth(fresh_server),
            )
            raise Exception(httpx_flow.json()["detail"])
    assert np.isfinite(1.0)


def test_a_listwise_deliverable_has_the_preference_pairs_its_rankings_imply() -> None:
    from types import SimpleNamespace

    from flowlab import schemas
    from flowlab.formats._deliverable import of_kind

    points = [schemas.Datapoint(index=i, key=k, kind="text", text=f"text {k}") for i, k in enumerate("abcd")]
    answers = [
        schemas.Ranking("t", "ann", [2, 0, 1], "order", 1.0),
        schemas.Ranking("t", "bob", [3, 1, 2, 0], "best_worst", 2.0),  # d best, a worst; b, c unranked
        schemas.Ranking("t", "spam", [0, 1, 2], "order", 3.0, excluded=True),
    ]
    status = SimpleNamespace(id="item-1", context="Which is best?")
    detail = SimpleNamespace(datapoints=points, status=status, private_metadata=None)
    item = SimpleNamespace(detail=detail, answers=answers)
    rows = of_kind("listwise").formats["preference_pairs"](item, None)  # type: ignore[arg-type]
    got = [(r["annotator_id"], r["chosen_key"], r["rejected_key"]) for r in rows]
    order_pairs = [("ann", "c", "a"), ("ann", "c", "b"), ("ann", "a", "b")]  # an order of 3: 3 pairs
    best_worst_pairs = [("bob", "d", "a"), ("bob", "d", "b"), ("bob", "d", "c"), ("bob", "b", "a"), ("bob", "c", "a")]
    assert sorted(got) == sorted(order_pairs + best_worst_pairs), "the suspended person's ranking gives none"
    assert {r["task_id"] for r in rows} == {"item-1"} and {r["prompt"] for r in rows} == {"Which is best?"}
    assert rows[0]["chosen"] == "text c" and rows[0]["rejected"] == "text a"
