"""Where people show: the PeopleMonitor widget and the dashboard's people panel against a real server — audiences
with their counts, a row per person, and Suspend / Reinstate buttons that change the person's standing there."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import pandas as pd
import pytest

pytest.importorskip("ipywidgets", reason="the workbench needs the lab extra: pip install 'flowlab[lab]'")

from flowlab_widgets import PeopleMonitor
from flowlab_widgets.people import people_from, read_people

from flowlab import Client

from .conftest import ServerProcess

T = TypeVar("T")


@pytest.fixture
def researcher(flowlab_server: ServerProcess) -> Iterator[Client]:
    """A key of the test's own, so the people it lists are the ones it enrolled."""
    with flowlab_server.client() as admin:
        key = admin.create_api_key(f"people-widgets-{time.monotonic_ns()}").key
    with Client(url=flowlab_server.url, api_key=key) as c:
        yield c


def enroll(server: ServerProcess, link: str, pid: str) -> dict[str, Any]:
    secret = urlsplit(link).path.rsplit("/", 1)[-1]
    body = {"params": {"PROLIFIC_PID": pid, "STUDY_ID": "study", "SESSION_ID": "s"}}
    r = httpx.post(f"{server.url}/v1/enroll/{secret}", json=body, timeout=30)
    r.raise_for_status()
    return r.json()


def answer_one(server: ServerProcess, token: str) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    task = httpx.post(f"{server.url}/v1/tasks/next", json={"wait": 0}, headers=auth, timeout=30).json()
    ack = httpx.post(f"{server.url}/v1/tasks/{task['task_id']}/answer", json={"choice": "a"}, headers=auth, timeout=30)
    assert ack.json()["status"] == "accepted"


def in_fresh_thread(fn: Callable[[], T]) -> T:
    """Run `fn` in a thread with no event loop (a browser test's Playwright may have left one in the main thread)."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # handed back to the test's thread below
            outcome["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(120)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def standing(client: Client, annotator_id: str) -> str:
    return next(a.state for a in client.annotators.list() if a.id == annotator_id)


@pytest.fixture
def study(researcher: Client, flowlab_server: ServerProcess) -> SimpleNamespace:
    """Two audiences: "study" with two enrolled participants (one has answered a task), "pilot" with one."""
    audience = researcher.audiences.create("study")
    pilot = researcher.audiences.create("pilot")
    link = audience.enrollment_link(platform="prolific", completion_code="DONE")
    busy, idle = enroll(flowlab_server, link, "pid-busy"), enroll(flowlab_server, link, "pid-idle")
    other = enroll(flowlab_server, pilot.enrollment_link(platform="prolific"), "pid-pilot")
    flow = researcher.flow.create_ranking_flow(name="people", instruction="Which?", audiences=[audience])
    flow.create_new_flow_batch(datapoints=["a", "b", "c"], time_to_live=120)
    answer_one(flowlab_server, busy["token"])
    return SimpleNamespace(audience=audience, pilot=pilot, busy=busy, idle=idle, other=other)


def test_people_monitor_shows_audiences_and_people_and_its_buttons_change_standing(
    researcher: Client, study: SimpleNamespace
) -> None:
    monitor = in_fresh_thread(lambda: PeopleMonitor(researcher, live=False))
    try:
        assert f'data-audience="{study.audience.id}"' in monitor.audiences.value
        assert '<td class="flowlab-enrolled">2</td>' in monitor.audiences.value
        busy_id, idle_id = study.busy["annotator_id"], study.idle["annotator_id"]
        assert monitor.snapshot.people[0].id == busy_id, "busiest first"
        assert monitor.person(busy_id).answers == 1 and monitor.person(idle_id).answers == 0
        assert set(monitor.rows) == {busy_id, idle_id, study.other["annotator_id"]}
        assert "study" in monitor.rows[busy_id][0].value and "pid-busy" in monitor.rows[busy_id][0].value

        button = monitor.button(busy_id)
        assert button.description == "Suspend" and not button.disabled
        button.click()
        assert standing(researcher, busy_id) == "suspended"
        assert monitor.person(busy_id).state == "suspended" and button.description == "Reinstate"
        assert study.audience.refresh().suspended == 1
        assert "suspended" in monitor.message.value

        button.click()
        assert standing(researcher, busy_id) == "active"
        assert monitor.button(busy_id).description == "Suspend"
    finally:
        monitor.close()


def test_people_monitor_of_one_audience_shows_only_its_members(researcher: Client, study: SimpleNamespace) -> None:
    monitor = in_fresh_thread(lambda: PeopleMonitor(researcher, study.pilot, live=False))
    try:
        assert set(monitor.rows) == {study.other["annotator_id"]}
        assert study.pilot.id in monitor.audiences.value and study.audience.id not in monitor.audiences.value
    finally:
        monitor.close()


def test_people_monitor_polls_on_its_own(researcher: Client, study: SimpleNamespace, flowlab_server: Any) -> None:
    monitor = in_fresh_thread(lambda: PeopleMonitor(researcher, study.audience, poll_interval=0.2))
    try:
        deadline = time.monotonic() + 20
        while study.busy["annotator_id"] not in monitor.rows:
            assert time.monotonic() < deadline, monitor.live.error
            time.sleep(0.05)
        researcher.annotators.suspend(study.idle["annotator_id"])
        while monitor.person(study.idle["annotator_id"]).state != "suspended":
            assert time.monotonic() < deadline, "a suspension made elsewhere never showed"
            time.sleep(0.05)
    finally:
        monitor.close()


def test_people_rows_take_answers_speed_and_state_from_the_report() -> None:
    def stats(i: str, **extra: Any) -> SimpleNamespace:
        base = dict(id=i, name=i, revoked=False, votes=3, gold_answered=4, gold_correct=3, gold_agreement=0.75)
        base.update(last_seen=None, state="active", audience_id="aud_1", participant=None)
        return SimpleNamespace(**(base | extra))

    annotators = [stats("ann_a"), stats("ann_b", votes=9), stats("ann_gone", revoked=True)]
    plain = people_from(annotators)
    assert [p.id for p in plain] == ["ann_b", "ann_a"], "busiest first, revoked left out"
    assert plain[0].median_seconds is None and plain[0].gold_agreement == 0.75

    report = pd.DataFrame(
        {
            "answers": [12, 2],
            "gold_agreement": [0.5, float("nan")],
            "median_seconds": [4.25, 7.0],
            "state": ["suspended", "active"],
        },
        index=pd.Index(["ann_a", "ann_b"], name="annotator_id"),
    )
    for frame in (report, report.reset_index()):
        rows = {p.id: p for p in people_from(annotators, frame)}
        assert rows["ann_a"].answers == 12 and rows["ann_a"].median_seconds == 4.25
        assert rows["ann_a"].state == "suspended" and rows["ann_a"].action == "reinstate"
        assert rows["ann_a"].gold_agreement == 0.5 and rows["ann_b"].gold_agreement is None
    assert people_from([stats("ann_c", state="screened_out")])[0].action is None


def test_the_table_reads_answers_and_speed_from_the_report(researcher: Client, study: SimpleNamespace) -> None:
    snap = read_people(researcher, study.audience.id)
    assert snap.from_report
    rows = {p.id: p for p in snap.people}
    report = researcher.annotators.report(audience=study.audience.id)
    for annotator_id, row in report.iterrows():
        assert rows[annotator_id].answers == row["answers"]
        assert rows[annotator_id].median_seconds == row["median_seconds"]
    assert any(p.answers == 1 and p.median_seconds is not None for p in snap.people), "the one who answered"


def test_dashboard_people_panel_lists_people_and_suspends_them(
    researcher: Client, study: SimpleNamespace, flowlab_server: ServerProcess
) -> None:
    pytest.importorskip("panel")
    from flowlab_widgets.dashboard import Dashboard

    busy_id = study.busy["annotator_id"]

    async def main() -> Dashboard:
        board = Dashboard(flowlab_server.url, researcher.api_key)
        try:
            await board.refresh()
            assert busy_id in board.people.rows
            assert f'data-audience="{study.audience.id}"' in board.people.audiences.object
            cells, button, _row = board.people.rows[busy_id]
            assert 'data-state="active"' in cells.object and button.label == "Suspend"
            await board.people.act(busy_id)
            assert 'data-state="suspended"' in cells.object and button.label == "Reinstate"
        finally:
            await board.client.aclose()
        return board

    board = in_fresh_thread(lambda: asyncio.run(main()))
    assert standing(researcher, busy_id) == "suspended"
    assert board.people.snapshot.people[0].id == busy_id


@pytest.fixture
def habits(researcher: Client, flowlab_server: ServerProcess) -> SimpleNamespace:
    """A pair item answered by four people, two of whom always pick the side shown first (left)."""
    from flowlab.crowd import SimulatedCrowd

    flow = researcher.flow.create_ranking_flow(name="habits", instruction="Which?", max_response_threshold=80)
    item = flow.create_new_flow_batch([f"answer {i}" for i in range(12)], time_to_live=120)
    crowd = SimulatedCrowd(
        flowlab_server.url,
        researcher.api_key,
        annotators=4,
        rate=24_000,
        seed=8,
        left_biased_fraction=0.5,
        left_bias=1.0,
        name="habit",
    )
    with crowd:
        item.get_results(timeout=90)
    names = {a.id: a.name for a in researcher.annotators.list()}
    biased = {p.name for p in crowd.profiles if p.left_bias}
    assert len(biased) == 2
    return SimpleNamespace(item=item, left={i for i, n in names.items() if n in biased})


def test_people_monitor_shows_each_persons_left_right_habit_on_an_item(
    researcher: Client, habits: SimpleNamespace
) -> None:
    monitor = in_fresh_thread(lambda: PeopleMonitor(researcher, live=False, item=habits.item))
    try:
        assert "left / right" in monitor.header.value
        assert monitor.snapshot.item_id == habits.item.id and habits.item.id in monitor.note.value
        voters = [p for p in monitor.snapshot.people if p.habit is not None]
        assert len(voters) == 4
        for person in voters:
            cells = monitor.rows[person.id][0].value
            assert "flowlab-person-habit" in cells and f"{person.habit.left_share:.0%} left" in cells
            if person.id in habits.left:
                assert person.habit.left_share == 1.0 and person.habit.position_bias and person.habit.low > 0.5
                assert 'data-position-bias="true"' in cells and "⚠" in cells and "position bias to the left" in cells
            assert person.habit.decisive == person.answers
        assert "2 with a position bias" in monitor.note.value or sum(p.habit.position_bias for p in voters) > 2

        # Without an item, the column says how to choose one; with it again, the habits are back.
        monitor.item_id = None
        monitor.refresh()
        assert all(p.habit is None for p in monitor.snapshot.people) and "item=item" in monitor.note.value
        monitor.item_id = habits.item.id
        monitor.refresh()
        assert {p.id for p in monitor.snapshot.people if p.habit and p.habit.position_bias} >= habits.left
    finally:
        monitor.close()


def test_dashboard_people_panel_shows_the_left_right_habit_on_the_chosen_item(
    researcher: Client, habits: SimpleNamespace, flowlab_server: ServerProcess
) -> None:
    pytest.importorskip("panel")
    from flowlab_widgets.dashboard import Dashboard

    async def main() -> None:
        board = Dashboard(flowlab_server.url, researcher.api_key)
        try:
            await board.refresh()
            assert board.item_id == habits.item.id and board.people.item_id == habits.item.id
            assert "left / right" in board.people.header.object
            for left in habits.left:
                cells = board.people.rows[left][0].object
                assert 'data-position-bias="true"' in cells and "100% left" in cells
            assert habits.item.id in board.people.note.object
        finally:
            await board.client.aclose()

    in_fresh_thread(lambda: asyncio.run(main()))
