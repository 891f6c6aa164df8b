"""Suspended people's answers leave results, against a real server: for each kind, a spammer's answers count,
then the spammer is suspended (by hand, or by the audience's continuous-gold rule) and the live item's results,
matrix and response count no longer hold them while their rows stay in the database, marked; reinstating puts
them back. A flow restricted to an audience has results made of its admitted, unsuspended people's answers."""

from __future__ import annotations

import time
from typing import Any

import httpx
import numpy as np

from flowlab import Client, schemas
from flowlab.crowd import SimulatedCrowd

from .conftest import ServerProcess
from .test_people import answer, bearer, enroll, gold_set, next_task, prolific, researcher, rows

__all__ = ["researcher"]  # the fixture, shared with test_people


def person(c: Client, name: str) -> tuple[str, str]:
    made = c.annotators.create(name)
    return made.id, made.token


def task_for(server: ServerProcess, token: str) -> dict[str, Any]:
    r = next_task(server, token)
    assert r.status_code == 200 and r.content, r.text
    return dict(r.json())


def excluded_marks(server: ServerProcess, table: str, item_id: str) -> dict[str, set[int]]:
    """annotator id -> the `excluded` marks of their stored answers in the item."""
    out: dict[str, set[int]] = {}
    for who, mark in rows(server, f"SELECT annotator_id, excluded FROM {table} WHERE item_id=?", (item_id,)):
        out.setdefault(str(who), set()).add(int(mark))  # type: ignore[call-overload]
    return out


def vote(server: ServerProcess, token: str, *, honest: bool) -> None:
    """One vote: the honest person prefers the lower-numbered datapoint, the spammer the other."""
    task = task_for(server, token)
    a, b = (int(task[side]["text"][1:]) for side in ("a", "b"))
    lower = "a" if a < b else "b"
    answer(server, token, task["task_id"], lower if honest else {"a": "b", "b": "a"}[lower])


def test_a_suspended_voters_votes_leave_a_ranking_item_and_come_back(
    researcher: Client, flowlab_server: ServerProcess
) -> None:
    flow = researcher.flow.create_ranking_flow(
        name="susp-rank", instruction="?", max_response_threshold=20, max_votes_per_annotator=20
    )
    item = flow.create_new_flow_batch(datapoints=[f"d{i}" for i in range(5)], time_to_live=120)
    honest_id, honest = person(researcher, "honest")
    spam_id, spam = person(researcher, "spam")
    for _ in range(4):
        vote(flowlab_server, honest, honest=True)
        vote(flowlab_server, spam, honest=False)
    assert item.get_response_count() == 8
    assert item.get_win_loss_matrix().to_numpy().sum() == 8

    researcher.annotators.suspend(spam_id)
    assert item.get_response_count() == 4
    matrix = item.get_win_loss_matrix().to_numpy()
    assert matrix.sum() == 4 and np.triu(matrix).sum() == 4, "only the honest votes, lower index over higher"
    results = item.get_results(timeout=0, partial=True)
    assert results.total_votes == 4 and results.annotators == 1
    marks = excluded_marks(flowlab_server, "votes", item.id)
    assert marks == {honest_id: {0}, spam_id: {1}}, "every row kept; the spammer's marked"
    votes = httpx.get(f"{flowlab_server.url}/v1/items/{item.id}/votes", headers=bearer(researcher.api_key or "")).json()
    assert len(votes) == 8 and {v["annotator_id"] for v in votes if v["excluded"]} == {spam_id}
    assert {p["annotator_id"] for p in item.to_preference_pairs()} == {honest_id}

    vote(flowlab_server, honest, honest=True)  # the item keeps collecting from the others
    assert item.get_response_count() == 5

    researcher.annotators.reinstate(spam_id)
    assert item.get_response_count() == 9
    assert item.get_win_loss_matrix().to_numpy().sum() == 9
    assert excluded_marks(flowlab_server, "votes", item.id) == {honest_id: {0}, spam_id: {0}}
    assert item.get_results(timeout=0, partial=True).annotators == 2


def test_an_item_that_ended_before_the_suspension_keeps_its_results(
    researcher: Client, flowlab_server: ServerProcess
) -> None:
    flow = researcher.flow.create_ranking_flow(
        name="susp-ended", instruction="?", max_response_threshold=4, max_votes_per_annotator=4
    )
    item = flow.create_new_flow_batch(datapoints=[f"d{i}" for i in range(4)], time_to_live=120)
    _, honest = person(researcher, "honest")
    spam_id, spam = person(researcher, "spam")
    for _ in range(2):
        vote(flowlab_server, honest, honest=True)
        vote(flowlab_server, spam, honest=False)
    ended = item.get_results(timeout=30)
    assert ended.state == "Completed" and ended.total_votes == 4
    researcher.annotators.suspend(spam_id)
    assert item.get_results(timeout=0).total_votes == 4 and item.get_response_count() == 4
    assert excluded_marks(flowlab_server, "votes", item.id)[spam_id] == {0}


def test_a_suspended_labellers_labels_leave_a_classify_item_which_asks_someone_else(
    researcher: Client, flowlab_server: ServerProcess
) -> None:
    flow = researcher.flow.create_classify_flow(
        name="susp-classify",
        instruction="Which?",
        categories=["yes", "no"],
        max_responses_per_datapoint=3,
        min_responses_per_datapoint=1,
    )
    item = flow.create_new_flow_batch(datapoints=["x0", "x1", "x2"], time_to_live=120)
    honest_id, honest = person(researcher, "honest")
    spam_id, spam = person(researcher, "spam")
    for token, value in ((honest, "yes"), (spam, "no")):
        for _ in range(3):
            task = task_for(flowlab_server, token)
            answer(flowlab_server, token, task["task_id"], value)
    assert item.get_response_count() == 6
    _, late = person(researcher, "late")

    researcher.annotators.suspend(spam_id)
    results = item.get_results(timeout=0, partial=True)
    assert results.total_responses == 3 and results.annotators == 1
    assert all(d.distribution == {"yes": 1, "no": 0} and d.majority_value == "yes" for d in results.datapoints.values())
    assert excluded_marks(flowlab_server, "labels", item.id) == {honest_id: {0}, spam_id: {1}}
    task = task_for(flowlab_server, late)  # the item keeps asking, now of someone else
    answer(flowlab_server, late, task["task_id"], "yes")
    assert item.get_response_count() == 4

    researcher.annotators.reinstate(spam_id)
    results = item.get_results(timeout=0, partial=True)
    assert results.total_responses == 7 and results.annotators == 3
    assert excluded_marks(flowlab_server, "labels", item.id)[spam_id] == {0}


def rlhf_answer(task: dict[str, Any], *, honest: bool) -> dict[str, Any]:
    """The honest annotator prefers the response that says 'good'; the spammer the other, rating it 5."""
    texts = [r["text"] for r in task["rlhf"]["responses"]]
    good = texts.index("good")
    pick = good if honest else 1 - good
    ratings = [{"quality": 5 if j == pick else 1} for j in range(len(texts))]
    return {"choice": "submit", "rlhf": {"ratings": ratings, "selected": pick}}


def test_a_suspended_annotators_annotations_leave_an_rlhf_item(
    researcher: Client, flowlab_server: ServerProcess
) -> None:
    flow = researcher.flow.create_rlhf_flow(
        name="susp-rlhf",
        instruction="Better?",
        dimensions=[schemas.Dimension("quality", min=1, max=5)],
        rewrite="optional",
        likert_scale=0,
        justification="optional",
        max_response_threshold=3,
    )
    tasks = [
        {
            "id": f"t{i}",
            "prompt": f"q{i}",
            "responses": [{"source_id": "A", "content": "good"}, {"source_id": "B", "content": "bad"}],
        }
        for i in range(2)
    ]
    item = flow.create_new_flow_batch(datapoints=tasks, time_to_live=120)
    honest_id, honest = person(researcher, "honest")
    spam_id, spam = person(researcher, "spam")
    for token, is_honest in ((honest, True), (spam, False)):
        for _ in range(2):
            task = task_for(flowlab_server, token)
            r = httpx.post(
                f"{flowlab_server.url}/v1/tasks/{task['task_id']}/answer",
                json=rlhf_answer(task, honest=is_honest),
                headers=bearer(token),
            )
            assert r.status_code == 200 and r.json()["status"] == "accepted", r.text
    before = item.get_results(timeout=0, partial=True)
    assert before.total_responses == 4
    assert all(t.responses[0].selected == 1 for t in before.tasks)

    researcher.annotators.suspend(spam_id)
    after = item.get_results(timeout=0, partial=True)
    assert after.total_responses == 2 and after.annotators == 1
    for t in after.tasks:
        a, b = t.responses
        assert (a.selected, b.selected, t.annotations) == (1, 0, 1)
        assert a.ratings[0].mean == 5 and b.ratings[0].mean == 1
    assert excluded_marks(flowlab_server, "annotations", item.id) == {honest_id: {0}, spam_id: {1}}
    listed = httpx.get(
        f"{flowlab_server.url}/v1/items/{item.id}/annotations", headers=bearer(researcher.api_key or "")
    ).json()
    assert sorted(a["excluded"] for a in listed) == [False, False, True, True]

    researcher.annotators.reinstate(spam_id)
    again = item.get_results(timeout=0, partial=True)
    assert again.total_responses == 4 and all(t.responses[1].selected == 1 for t in again.tasks)


def test_continuous_gold_suspends_and_takes_the_votes_out(researcher: Client, flowlab_server: ServerProcess) -> None:
    audience = researcher.audiences.create("gold-out", suspend_below=0.6, min_gold=4)
    link = audience.enrollment_link(platform="prolific")
    gold = [{"a": {"text": f"GOLD {i} good"}, "b": {"text": f"GOLD {i} bad"}, "answer": "a"} for i in range(8)]
    flow = researcher.flow.create_ranking_flow(
        name="gold-out",
        instruction="?",
        audiences=[audience],
        validation_pairs=gold,
        gold_rate=0.5,
        max_response_threshold=40,
        max_votes_per_annotator=20,
    )
    item = flow.create_new_flow_batch(datapoints=[f"d{i}" for i in range(8)], time_to_live=120)
    member = enroll(flowlab_server, link, **prolific("careless")).json()
    token, who = member["token"], member["annotator_id"]
    votes = 0
    while (r := next_task(flowlab_server, token)).status_code == 200:
        task = r.json()
        if task["a"]["text"].startswith("GOLD"):
            right = "a" if task["a"]["text"].endswith("good") else "b"
            wrong = {"a": "b", "b": "a"}[right]
            answer(flowlab_server, token, task["task_id"], right if votes < 3 else wrong)  # careless after a while
        else:
            answer(flowlab_server, token, task["task_id"], "a")
            votes += 1
    assert r.status_code == 403 and r.json()["code"] == "suspended"
    stored = rows(flowlab_server, "SELECT count(*), min(excluded) FROM votes WHERE annotator_id=?", (who,))
    assert stored == [(votes, 1)] and votes > 0, "kept and marked"
    assert item.get_response_count() == 0 and item.get_win_loss_matrix().to_numpy().sum() == 0
    researcher.annotators.reinstate(who)
    assert item.get_response_count() == votes


def test_an_audiences_flow_counts_only_admitted_unsuspended_people(
    researcher: Client, flowlab_server: ServerProcess
) -> None:
    """The issue's test, smaller than the 200-participant one: the results are recomputed from the database
    with only the answers of people admitted and not suspended, and match."""
    audience = researcher.audiences.create(
        "only-good",
        qualification={"validation_set_id": gold_set(researcher, 12), "questions": 6, "pass_mark": 0.8},
        suspend_below=0.7,
        min_gold=4,
    )
    link = audience.enrollment_link(platform="prolific", completion_code="DONE", screen_out_code="OUT")
    gold = [{"a": {"text": f"check {i}: right"}, "b": {"text": f"check {i}: wrong"}, "answer": "a"} for i in range(8)]
    flow = researcher.flow.create_ranking_flow(
        name="only-good",
        instruction="?",
        audiences=[audience],
        validation_pairs=gold,
        gold_rate=0.4,
        max_response_threshold=150,
    )
    item = flow.create_new_flow_batch(datapoints=[f"d{i}" for i in range(8)], time_to_live=300)
    crowd = SimulatedCrowd(
        flowlab_server.url, researcher.api_key, annotators=60, spammer_fraction=0.3, rate=20000, seed=7, enroll=link
    )
    with crowd:
        deadline = time.monotonic() + 120
        while item.get_response_count() < 150:
            assert time.monotonic() < deadline, (audience.refresh(), crowd.stats)
            time.sleep(0.2)
    results = item.get_results(timeout=30)
    assert results.state == "Completed"
    # Admitted, and not suspended while the item took answers (an item that ended keeps its results).
    ((ended_at,),) = rows(flowlab_server, "SELECT ended_at FROM items WHERE id=?", (item.id,))
    good = {
        str(i)
        for (i,) in rows(
            flowlab_server,
            "SELECT id FROM annotators WHERE audience_id=? AND state IN ('active', 'suspended') "
            "AND (suspended_at IS NULL OR suspended_at > ?)",
            (audience.id, ended_at),
        )
    }
    stored = rows(
        flowlab_server, "SELECT annotator_id, winner, loser, tie, excluded FROM votes WHERE item_id=?", (item.id,)
    )
    counted = [v for v in stored if v[0] in good]
    assert all(v[4] == 0 for v in counted) and all(v[4] == 1 for v in stored if v[0] not in good)
    wins = np.zeros((8, 8))
    for _, w, lo, tie, _ in counted:
        if tie:
            wins[w, lo] += 0.5  # type: ignore[index]
            wins[lo, w] += 0.5  # type: ignore[index]
        else:
            wins[w, lo] += 1  # type: ignore[index]
    assert results.total_votes == len(counted) == 150
    assert np.array_equal(item.get_win_loss_matrix().to_numpy(), wins)
