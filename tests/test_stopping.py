"""Stopping when the answer is settled: the rules, an item that ends early in the service, and over HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

import flowlab
from flowlab import Client, FlowItemState, ranking, schemas
from flowlab.crowd import SimulatedCrowd
from flowlab.server.errors import Invalid

from .conftest import ServerProcess
from .test_lifecycle import RESEARCHER, annotator, make_item, run

# ---------------------------------------------------------------- the rules


def test_top_is_settled_only_when_the_leader_beats_everyone() -> None:
    scores = np.array([3.0, 0.0, -0.5, -1.0])
    sure = ranking.settlement(scores, np.full(4, 0.05), "top")
    assert sure.settled and sure.leaders.tolist() == [0] and sure.tests == 3
    # The same leader, one rival close behind: not settled, and the margin says by how much.
    close = ranking.settlement(np.array([3.0, 2.8, -0.5, -1.0]), np.full(4, 0.05), "top")
    assert not close.settled and close.margin < 0


def test_top_k_leaves_the_order_inside_the_set_open() -> None:
    scores = np.array([2.0, 2.05, 2.1, -2.0, -2.2])
    verdict = ranking.settlement(scores, np.full(5, 0.02), "top_k", k=3)
    assert verdict.settled and sorted(verdict.leaders.tolist()) == [0, 1, 2]
    assert not ranking.settlement(scores, np.full(5, 0.02), "top").settled
    assert not ranking.settlement(scores, np.full(5, 0.02), "order").settled


def test_order_needs_every_adjacent_pair() -> None:
    spread = np.array([3.0, 1.0, -1.0, -3.0])
    assert ranking.settlement(spread, np.full(4, 0.1), "order").leaders.tolist() == [0, 1, 2, 3]
    assert ranking.settlement(spread, np.full(4, 0.1), "order").settled
    assert not ranking.settlement(spread, np.full(4, 1.0), "order").settled


def test_bonferroni_makes_more_tests_harder() -> None:
    """A leader exactly 2.5 standard errors clear of each rival passes against 2 rivals, not against 200."""
    few = np.array([2.5, 0.0, 0.0])
    many = np.concatenate([[2.5], np.zeros(200)])
    assert ranking.settlement(few, np.array([0.5, 0.5, 0.5]), "top").settled
    assert not ranking.settlement(many, np.full(201, 0.5), "top").settled


def test_covariance_counts() -> None:
    """Positively correlated scores make their difference surer than their variances alone say."""
    scores = np.array([1.0, 0.0])
    independent = ranking.settlement(scores, np.array([0.3, 0.3]), "top")
    correlated = ranking.settlement(scores, np.array([[0.3, 0.25], [0.25, 0.3]]), "top")
    assert not independent.settled and correlated.settled


def test_bad_arguments_say_what_to_do() -> None:
    with pytest.raises(ValueError, match="rule must be one of"):
        ranking.settlement([1.0, 0.0], [0.1, 0.1], "best")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="top_k needs"):
        ranking.settlement([1.0, 0.0], [0.1, 0.1], "top_k", k=2)
    with pytest.raises(ValueError, match="confidence"):
        ranking.settlement([1.0, 0.0], [0.1, 0.1], confidence=0.3)
    with pytest.raises(ValueError, match="covariance must be"):
        ranking.settlement([1.0, 0.0], np.eye(3))


# ---------------------------------------------------------------- in the service, with a fake clock


async def _vote_for_lowest(service, n_votes: int, people: int = 120) -> int:  # type: ignore[no-untyped-def]
    """Vote `n_votes` times for whichever datapoint has the lower number ("t0" beats "t1" beats ...), the
    votes taken in turn from `people` annotators (nobody compares a pair of an item twice)."""
    crowd = [await annotator(service, f"ann{i}") for i in range(people)]
    for v in range(n_votes):
        who = crowd[v % people]
        task = service.answers.lease_next(who)
        if task is None:
            return v
        a, b = int(task.a.text[1:]), int(task.b.text[1:])
        await service.answers.answer(who, task.task_id, schemas.Answer(choice="a" if a < b else "b"))
    return n_votes


def test_an_item_ends_once_its_top_is_settled(tmp_path: Path) -> None:
    async def body(service, clock):  # type: ignore[no-untyped-def]
        item = await make_item(service, n=4, max_votes=400, stop_when=schemas.StopWhen(rule="top"))
        assert item.config.min_response_threshold == 0, "a stopping rule lowers the default minimum"
        served = await _vote_for_lowest(service, 400)
        return item, served

    item, served = run(body, tmp_path)
    assert item.state == "Completed"
    assert item.response_count == served < 400, "it stopped before the maximum"
    assert item.reason.startswith("settled after") and "'t0' is above every other datapoint" in item.reason
    assert "95% confidence" in item.reason


def test_without_a_rule_the_same_votes_run_to_the_maximum(tmp_path: Path) -> None:
    async def body(service, clock):  # type: ignore[no-untyped-def]
        item = await make_item(service, n=4, max_votes=120)
        return item, await _vote_for_lowest(service, 200)

    item, served = run(body, tmp_path)
    assert item.state == "Completed" and served == item.response_count == 120 and item.reason is None


def test_a_rule_that_cannot_settle_in_time_leaves_the_item_to_its_maximum(tmp_path: Path) -> None:
    """With 0.9999 confidence for the whole order of 6, 60 votes are far too few: the item uses them all."""

    async def body(service, clock):  # type: ignore[no-untyped-def]
        rule = schemas.StopWhen(rule="order", confidence=0.9999)
        item = await make_item(service, n=6, max_votes=60, stop_when=rule)
        return item, await _vote_for_lowest(service, 100)

    item, served = run(body, tmp_path)
    assert item.state == "Completed" and served == 60 and not item.settled and item.reason is None


def test_settled_items_stay_settled_across_a_restart(tmp_path: Path) -> None:
    async def first(service, clock):  # type: ignore[no-untyped-def]
        item = await make_item(service, n=3, max_votes=300, stop_when=schemas.StopWhen(rule="top"))
        await _vote_for_lowest(service, 300)
        await asyncio.sleep(0.05)  # the final record
        return item.id, item.response_count

    async def second(service, clock):  # type: ignore[no-untyped-def]
        service.resume()
        return await service.items.status_of(RESEARCHER, item_id)

    item_id, count = run(first, tmp_path)
    status = run(second, tmp_path)
    assert status.state == "Completed" and status.response_count == count < 300
    assert status.reason is not None and status.reason.startswith("settled after")


def test_rules_are_checked_where_they_are_given(tmp_path: Path) -> None:
    async def body(service, clock):  # type: ignore[no-untyped-def]
        with pytest.raises(Invalid, match="top 4 are settled, but this batch has 4"):
            await make_item(service, n=4, stop_when=schemas.StopWhen(rule="top_k", k=4))
        with pytest.raises(Invalid, match="stop_when is for ranking flows"):
            await service.flows.create(
                RESEARCHER,
                schemas.FlowCreate(
                    name="c",
                    instruction="Which?",
                    kind="classify",
                    categories=[schemas.Category(label="x", value="x"), schemas.Category(label="y", value="y")],
                    stop_when=schemas.StopWhen(rule="top"),
                ),
            )

    run(body, tmp_path)


# ---------------------------------------------------------------- over HTTP


def _scored(n: int, spread: float) -> list[dict[str, object]]:
    return [{"id": f"s{i}", "text": f"sample {i}", "private_metadata": {"true_score": i * spread}} for i in range(n)]


def test_a_flow_stops_early_over_http_and_says_why(client: Client, flowlab_server: ServerProcess) -> None:
    flow = client.flow.create_ranking_flow(
        name="settle", instruction="Which?", max_response_threshold=3000, stop_when="top", stop_confidence=0.9
    )
    assert flow.config.stop_when is not None and flow.config.stop_when.rule == "top"
    with SimulatedCrowd(flowlab_server.url, flowlab_server.api_key, annotators=30, rate=3000, accuracy=1.0, seed=5):
        item = flow.create_new_flow_batch(datapoints=_scored(4, 2.0), time_to_live=120)
        results = item.get_results(timeout=60)
    status = item.get_progress()
    assert results.state == FlowItemState.COMPLETED and results.total_votes < 3000
    assert results.ranking[0] == "s3"
    assert status.reason is not None and "'s3' is above every other datapoint at 90% confidence" in status.reason

    flow.update_config(stop_when={"rule": "never"})
    assert client.flow.get_flow_by_id(flow.id).config.stop_when is None
    with pytest.raises(flowlab.ValidationError, match="stop_when must be one of"):
        client.flow.create_ranking_flow(name="typo", instruction="Which?", stop_when="first")


def test_results_of_active_flows_use_the_fitted_prior_and_ties_count_as_ties(
    client: Client, flowlab_server: ServerProcess
) -> None:
    flow = client.flow.create_ranking_flow(
        name="honest", instruction="Which?", max_response_threshold=150, pair_selection="active", allow_ties=True
    )
    with SimulatedCrowd(flowlab_server.url, flowlab_server.api_key, annotators=12, rate=3000, seed=6, accuracy=0.6):
        item = flow.create_new_flow_batch(datapoints=_scored(6, 0.7), time_to_live=120)
        results = item.get_results(timeout=60)
    votes = item.get_votes()
    keys = list(item.get_win_loss_matrix().index)
    index = {k: i for i, k in enumerate(keys)}
    comparisons = votes[["winner", "loser", "tie"]].astype(int).to_numpy()
    assert comparisons[:, 2].any(), "the crowd was asked for ties"
    local = ranking.fit_bradley_terry(comparisons, len(keys), prior="auto", starting_elo=1200.0)
    plain = ranking.fit_bradley_terry(comparisons, len(keys), starting_elo=1200.0)
    assert local.interval == "sandwich", "ties known as ties take the sandwich"
    assert np.max(np.abs(plain.scores - local.scores)) > 0.01, "the fitted prior makes a difference here"
    by_key = {d.key: d for d in results.details}
    # The server's fit starts from its previous one, this one from scratch: equal to the solvers' tolerance.
    for k, i in index.items():
        assert by_key[k].score == pytest.approx(local.scores[i], abs=2e-3)
        assert by_key[k].ci_high - by_key[k].ci_low == pytest.approx(local.ci_high[i] - local.ci_low[i], rel=1e-2)
