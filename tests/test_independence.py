"""Independent judgements: an item's votes come from different people, nobody compares the same pair of an item
twice, and results say who voted (people per item and datapoint, each person's share, left-right habit).

Each test has a server of its own: on the shared one, another test's crowd could take the tasks."""

from __future__ import annotations

import pytest

import flowlab
from flowlab.crowd import SimulatedCrowd

from .conftest import ServerProcess, wait_for

WAITING = "waiting for other annotators"


@pytest.mark.parametrize("people", [1, 2, 5])
def test_a_projects_answers_per_task_are_different_people(fresh_server: ServerProcess, people: int) -> None:
    """Pair tasks × 3 answers: each task's answers are from different people; with fewer than three people the
    items wait for more rather than asking the same ones again, and say so."""
    client = fresh_server.client()
    flow = client.flow.create_ranking_flow("three each", "Which is better?", max_response_threshold=3)
    assert flow.config.max_votes_per_annotator == 1, "a third of 3 votes: one each"
    rows = [{"id": f"t{i}", "datapoints": [f"left {i}", f"right {i}"]} for i in range(4)]
    crowd = SimulatedCrowd(fresh_server.url, fresh_server.api_key, annotators=people, rate=6000, seed=people)
    with crowd:
        project = client.projects.create(flow, rows, name=f"{people} people")
        items = lambda: flow.get_flow_items(amount=None)  # noqa: E731
        wait_for(lambda: len(items()) == 4, 60, "the items")
        if people >= 3:
            project.wait(timeout=60)
        else:
            wait_for(
                lambda: all(i.get_progress().response_count == people for i in items()),
                60,
                "every item to take one vote from each person and wait",
            )
            polls = crowd.stats.idle_polls
            wait_for(
                lambda: crowd.stats.idle_polls >= polls + 3 * people, 60, "the crowd to ask again and find nothing"
            )
            for item in items():
                progress = item.get_progress()
                assert progress.response_count == people, "nobody answered a task twice"
                assert progress.waiting == WAITING and progress.state == "Running"
    for item in items():
        votes = item.get_votes()
        assert votes["annotator_id"].is_unique, "each answer of a task is another person's"
        results = item.get_results(timeout=0, partial=True)
        assert results.annotators == len(votes) == min(people, 3)
        assert results.top_annotator_share == pytest.approx(1 / len(votes))
        assert all(d.annotators == len(votes) for d in results.details)
    if people < 3:
        project.pause()


def test_nobody_compares_a_pair_of_an_item_twice_and_results_say_who_voted(fresh_server: ServerProcess) -> None:
    client = fresh_server.client()
    flow = client.flow.create_ranking_flow("spread", "Which?", max_response_threshold=60)
    assert flow.config.max_votes_per_annotator == 20
    item = flow.create_new_flow_batch([f"answer {i}" for i in range(5)], time_to_live=120)  # 10 pairs
    with SimulatedCrowd(fresh_server.url, fresh_server.api_key, annotators=9, rate=12_000, seed=3):
        results = item.get_results(timeout=60)
    votes = item.get_votes()
    assert len(votes) == 60
    for annotator, theirs in votes.groupby("annotator_id"):
        pairs = [frozenset(p) for p in zip(theirs["winner"], theirs["loser"], strict=True)]
        assert len(pairs) == len(set(pairs)), f"{annotator} compared a pair twice"
        assert len(theirs) <= 20
    by_person = votes["annotator_id"].value_counts()
    assert results.annotators == len(by_person)
    assert results.top_annotator_share == pytest.approx(by_person.max() / 60)
    for d in results.details:
        voted = votes[(votes["winner_key"] == d.key) | (votes["loser_key"] == d.key)]
        assert d.annotators == voted["annotator_id"].nunique()
    people = item.get_annotators()
    assert sorted(people["answers"]) == sorted(by_person)
    assert people["share"].sum() == pytest.approx(1.0)


def test_a_person_who_picks_the_left_side_is_found_out(fresh_server: ServerProcess) -> None:
    client = fresh_server.client()
    flow = client.flow.create_ranking_flow("habits", "Which?", max_response_threshold=400)
    item = flow.create_new_flow_batch([f"answer {i}" for i in range(24)], time_to_live=120)
    crowd = SimulatedCrowd(
        fresh_server.url, fresh_server.api_key, annotators=10, rate=24_000, seed=4, left_biased_fraction=0.3
    )
    with crowd:
        item.get_results(timeout=90)
    names = {a.id: a.name for a in client.annotators.list()}
    people = item.get_annotators().set_index("annotator_id")
    biased = {p.name for p in crowd.profiles if p.left_bias}
    assert len(biased) == 3
    for annotator_id, row in people.iterrows():
        if names[annotator_id] in biased:
            assert row["position_bias"] and row["first_ci_low"] > 0.5, row
    honest = people[[names[a] not in biased for a in people.index]]
    assert 0.4 < honest["first_choices"].sum() / honest["decisive"].sum() < 0.6
    assert set(people.columns) >= {"answers", "share", "first_share", "first_ci_low", "first_ci_high"}


def test_a_flow_may_let_one_person_give_every_vote(fresh_server: ServerProcess) -> None:
    client = fresh_server.client()
    flow = client.flow.create_ranking_flow("solo", "Which?", max_response_threshold=6, max_votes_per_annotator=6)
    assert flow.config.max_votes_per_annotator == 6
    item = flow.create_new_flow_batch([f"answer {i}" for i in range(4)], time_to_live=60)  # six pairs
    with SimulatedCrowd(fresh_server.url, fresh_server.api_key, annotators=1, seed=5):
        results = item.get_results(timeout=30)
    assert results.total_votes == 6 and results.annotators == 1 and results.top_annotator_share == 1.0
    with pytest.raises(flowlab.ValidationError, match="max_votes_per_annotator"):
        client.flow.create_ranking_flow("bad", "Which?", max_votes_per_annotator=0)


def test_every_answer_keeps_when_its_task_was_on_screen(fresh_server: ServerProcess) -> None:
    """Time on task: a vote and an RLHF annotation store when the page showed the task (else when it was handed
    out); an RLHF record's created_at is that moment, and the item's annotators say how long they took."""
    from datetime import datetime

    import httpx

    client = fresh_server.client()
    pairs = client.flow.create_ranking_flow("timed", "Which?", max_response_threshold=1)
    pair_item = pairs.create_new_flow_batch(["x", "y"], time_to_live=60)
    form = {"dimensions": [{"key": "ok", "type": "boolean", "label": "OK"}], "likert_scale": 0}
    rlhf = client.flow.create_rlhf_flow("timed rlhf", "Rate.", max_response_threshold=1, **form)
    task_item = rlhf.create_new_flow_batch(
        [
            {
                "id": "p",
                "prompt": "q?",
                "responses": [{"source_id": "m1", "content": "a"}, {"source_id": "m2", "content": "b"}],
            }
        ],
        time_to_live=60,
    )
    person = client.annotators.create("timed person")
    http = httpx.Client(base_url=fresh_server.url, headers={"Authorization": f"Bearer {person.token}"}, timeout=10)
    shown_at = {}
    for _ in range(2):
        task = http.post("/v1/tasks/next", json={}).json()
        shown = http.post(f"/v1/tasks/{task['task_id']}/shown").json()
        shown_at[task["kind"]] = shown["shown_at"]
        if task["kind"] == "rlhf":
            why = "The first answer is the right one."
            body = {
                "choice": "submit",
                "rlhf": {"ratings": [{"ok": True}, {"ok": False}], "selected": 0, "justification": why},
            }
        else:
            body = {"choice": "a"}
        ack = http.post(f"/v1/tasks/{task['task_id']}/answer", json=body).json()
        assert ack.get("status") == "accepted", ack
    vote = pair_item.get_votes().iloc[0]
    assert vote["shown_at"] == shown_at["pairwise"] <= vote["created_at"]
    (annotation,) = task_item.get_annotations()
    assert annotation.shown_at == shown_at["rlhf"] <= annotation.created_at
    (record,) = task_item.to_rlhf_records()
    started = datetime.fromisoformat(record["created_at"]).timestamp()
    assert started == pytest.approx(shown_at["rlhf"], abs=1e-3), "a record starts when its task was shown"
    (who,) = pair_item.get_annotators().to_dict("records")
    assert who["median_seconds"] == pytest.approx(vote["created_at"] - vote["shown_at"])


def test_results_flag_one_person_whose_votes_are_most_of_an_item(fresh_server: ServerProcess) -> None:
    """`dominated_by` names the person who gave over half an item's votes (their view is the ranking), in the wire
    results, the SDK's results and their DataFrame; at half or less it is None."""
    import httpx

    client = fresh_server.client()
    flow = client.flow.create_ranking_flow("lopsided", "Which?", max_response_threshold=12, max_votes_per_annotator=6)
    item = flow.create_new_flow_batch([f"answer {i}" for i in range(5)], time_to_live=60)
    assert item.get_results(timeout=0, partial=True).dominated_by is None, "no votes, nobody dominates"
    people = [client.annotators.create(f"person {n}") for n in range(2)]

    def vote(person: flowlab.schemas.AnnotatorCreated, n: int) -> None:
        http = httpx.Client(base_url=fresh_server.url, headers={"Authorization": f"Bearer {person.token}"}, timeout=10)
        for _ in range(n):
            task = http.post("/v1/tasks/next", json={}).json()
            assert task["item_id"] == item.id, task
            assert http.post(f"/v1/tasks/{task['task_id']}/answer", json={"choice": "a"}).json()["status"] == "accepted"

    vote(people[0], 3)
    admin = {"Authorization": f"Bearer {fresh_server.api_key}"}
    results = item.get_results(timeout=0, partial=True)
    assert results.dominated_by == people[0].id and results.top_annotator_share == 1.0
    wire = httpx.get(f"{fresh_server.url}/v1/items/{item.id}/results", headers=admin).json()
    assert wire["dominated_by"] == people[0].id
    assert results.to_dataframe().attrs["dominated_by"] == people[0].id
    vote(people[1], 2)
    assert item.get_results(timeout=0, partial=True).dominated_by == people[0].id, "3 of 5 votes"
    vote(people[1], 1)
    results = item.get_results(timeout=0, partial=True)
    assert results.top_annotator_share == 0.5 and results.dominated_by is None, "half is not over half"
    assert results.to_dataframe().attrs == {"annotators": 2, "top_annotator_share": 0.5, "dominated_by": None}


def test_a_listwise_item_answered_by_one_person_says_so(fresh_server: ServerProcess) -> None:
    client = fresh_server.client()
    flow = client.flow.create_listwise_flow(
        "solo lists", "Order them.", k=3, max_response_threshold=4, max_votes_per_annotator=4
    )
    item = flow.create_new_flow_batch([f"answer {i}" for i in range(4)], time_to_live=60)
    with SimulatedCrowd(fresh_server.url, fresh_server.api_key, annotators=1, seed=6):
        results = item.get_results(timeout=30)
    (person,) = item.get_annotators()["annotator_id"]
    assert results.total_votes == 4 and results.dominated_by == person
