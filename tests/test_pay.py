"""Time on task and pay against a real server: the report and what people are owed, checked against the rows of
the SQLite file recomputed here, after a restart; hidden time, suspension, since/until, consensus and the CLI."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import statistics
import subprocess
import sys
import time
from urllib.parse import urlsplit

import httpx
import pandas as pd
import pytest

from flowlab import Client

from .conftest import ServerProcess

CAP = 300.0  # seconds of a task that count as active time (server/worktime.py's ACTIVE_CAP)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def enroll(server: ServerProcess, url: str, **body: object) -> dict[str, str]:
    secret = urlsplit(url).path.rsplit("/", 1)[-1]
    r = httpx.post(f"{server.url}/v1/enroll/{secret}", json=body, timeout=30)
    assert r.status_code == 200, r.text
    return dict(r.json())


def prolific(pid: str) -> dict[str, object]:
    return {"params": {"PROLIFIC_PID": pid, "STUDY_ID": "study-1", "SESSION_ID": f"s-{pid}"}}


def lease(server: ServerProcess, token: str) -> dict[str, object]:
    r = httpx.post(f"{server.url}/v1/tasks/next", json={"wait": 5}, headers=bearer(token), timeout=30)
    assert r.status_code == 200, r.text
    return dict(r.json())


def show(server: ServerProcess, token: str, task_id: str) -> None:
    r = httpx.post(f"{server.url}/v1/tasks/{task_id}/shown", headers=bearer(token), timeout=30)
    assert r.status_code == 200, r.text


def answer(server: ServerProcess, token: str, task: dict[str, object], choice: str, **extra: object) -> None:
    r = httpx.post(
        f"{server.url}/v1/tasks/{task['task_id']}/answer",
        json={"choice": choice, **extra},
        headers=bearer(token),
        timeout=30,
    )
    assert r.status_code == 200 and r.json()["status"] == "accepted", r.text


def db(server: ServerProcess, sql: str, params: tuple[object, ...] = ()) -> list[sqlite3.Row]:
    with sqlite3.connect(server.data_dir / "flowlab.sqlite3") as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute(sql, params).fetchall()


def stored_answers(server: ServerProcess, annotator_id: str) -> list[sqlite3.Row]:
    """Every answer row of one person, whatever its table: the report's ground truth."""
    return db(
        server,
        "SELECT 'vote' AS what, created_at, shown_at, hidden_seconds, NULL AS correct FROM votes "
        "WHERE annotator_id = ? UNION ALL "
        "SELECT 'gold', created_at, shown_at, hidden_seconds, correct FROM gold_answers WHERE annotator_id = ?",
        (annotator_id, annotator_id),
    )


def on_task(row: sqlite3.Row) -> float:
    return max(0.0, row["created_at"] - row["shown_at"] - (row["hidden_seconds"] or 0.0))


@pytest.fixture
def own_server(fresh_server: ServerProcess) -> tuple[ServerProcess, str]:
    with fresh_server.client() as admin:
        key = admin.keys.create("pay researcher").key
    return fresh_server, key


def test_the_report_and_pay_equal_the_database_after_a_restart(own_server: tuple[ServerProcess, str]) -> None:
    server, key = own_server
    with Client(url=server.url, api_key=key) as c:
        audience = c.audiences.create("prolific raters")
        link = audience.enrollment_link(platform="prolific")
        team = audience.enrollment_link()
        gold = [{"a": {"text": f"GOLD {i} good"}, "b": {"text": f"GOLD {i} bad"}, "answer": "a"} for i in range(8)]
        flow = c.flow.create_ranking_flow(
            name="pay",
            instruction="Which is better?",
            audiences=[audience],
            validation_pairs=gold,
            gold_rate=0.3,
            max_response_threshold=200,
            max_votes_per_annotator=200,
        )
        flow.create_new_flow_batch(datapoints=[f"answer {i}" for i in range(8)], time_to_live=600)
    people = [enroll(server, link, **prolific(f"pid-{i}")) for i in range(2)] + [enroll(server, team, name="Ada")]
    for n, person in enumerate(people):
        for k in range(3 + n):
            task = lease(server, person["token"])
            show(server, person["token"], str(task["task_id"]))
            a_text = str(task["a"]["text"])  # type: ignore[index]
            right = "a" if a_text.endswith("good") or n != 1 else "b"  # person 1 gets every gold question wrong
            if k == 0:
                time.sleep(0.4)
                answer(server, person["token"], task, right, hidden_seconds=0.25)  # 0.25 s of the 0.4 s hidden
            elif k == 1:
                answer(server, person["token"], task, right, hidden_seconds=1000.0)  # more than it was on screen
            else:
                answer(server, person["token"], task, right)

    server.restart()  # the report is read from the database, not from memory
    with Client(url=server.url, api_key=key) as c:
        report = c.annotators.report()
        owed = c.annotators.pay(
            per_answer=0.05, per_hour=9, bonus={"amount": 1.0, "gold_above": 0.5}, csv=server.data_dir / "bonus.csv"
        )

    assert sorted(report.index) == sorted(p["annotator_id"] for p in people)
    for person in people:
        rows = stored_answers(server, person["annotator_id"])
        votes = [r for r in rows if r["what"] == "vote"]
        golds = [r for r in rows if r["what"] == "gold"]
        got = report.loc[person["annotator_id"]]
        assert got.answers == len(votes) and got.gold_answers == len(golds) and got.quiz_answers == 0
        assert got.answers + got.gold_answers == len(rows)
        if golds:
            assert got.gold_agreement == pytest.approx(sum(r["correct"] for r in golds) / len(golds))
        assert all(r["shown_at"] is not None for r in rows), "every answer records when its task was shown"
        times = [on_task(r) for r in rows]
        assert got.median_seconds == pytest.approx(statistics.median(times), abs=1e-6)
        assert got.active_minutes == pytest.approx(sum(min(CAP, t) for t in times) / 60, abs=1e-6)
        assert got.first_seen == pytest.approx(min(r["shown_at"] for r in rows))
        assert got.last_seen == pytest.approx(max(r["created_at"] for r in rows))
        assert got.state == "active" and got.audience_id == audience.id
        first = min(rows, key=lambda r: r["created_at"])
        assert first["hidden_seconds"] == pytest.approx(0.25), "the hidden seconds the page sent are stored"
        assert 0.1 < on_task(first) < 5, "time on task is answered - shown - hidden"
        second = sorted(rows, key=lambda r: r["created_at"])[1]
        assert second["hidden_seconds"] == pytest.approx(second["created_at"] - second["shown_at"])
        assert on_task(second) == 0, "hidden time is never more than the time the task was on screen"

        pay = owed.loc[person["annotator_id"]]
        gold_share = sum(r["correct"] for r in golds) / len(golds) if golds else None
        bonus = 1.0 if gold_share is not None and gold_share > 0.5 else 0.0
        expected = 0.05 * len(rows) + 9 * sum(min(CAP, t) for t in times) / 3600 + bonus
        assert pay.paid_answers == len(rows) and pay.bonus == bonus
        assert pay.amount == pytest.approx(round(expected, 2), abs=0.0051)

    assert pd.isna(report.loc[people[2]["annotator_id"]].participant)
    lines = (server.data_dir / "bonus.csv").read_text().splitlines()
    by_pid = dict(line.split(",") for line in lines)
    assert set(by_pid) == {"pid-0", "pid-1"}, "only people with a participant id; the team member is left out"
    assert all(len(v.split(".")[1]) == 2 for v in by_pid.values()), "amounts with two decimals, no header"
    for person, pid in zip(people[:2], ("pid-0", "pid-1"), strict=True):
        assert float(by_pid[pid]) == pytest.approx(owed.loc[person["annotator_id"]].amount)
    assert sum(float(v) for v in by_pid.values()) == pytest.approx(owed.amount[owed.participant.notna()].sum())

    env = {**os.environ, "FLOWLAB_URL": server.url, "FLOWLAB_API_KEY": key}
    out = server.data_dir / "cli.csv"
    run = subprocess.run(
        [sys.executable, "-m", "flowlab", "annotators", "pay", "--per-answer", "0.05", "--per-hour", "9", "--bonus",
         "1", "--gold-above", "0.5", "--csv", str(out)],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert out.read_text() == "\n".join(lines) + "\n" and "left out" in run.stdout
    shown = subprocess.run(
        [sys.executable, "-m", "flowlab", "annotators", "report", "--audience", audience.id],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert shown.returncode == 0 and all(p["annotator_id"] in shown.stdout for p in people), shown.stderr


def test_suspended_answers_after_the_suspension_are_not_paid_and_the_window_filters(
    researcher: Client, flowlab_server: ServerProcess
) -> None:
    audience = researcher.audiences.create("window")
    link = audience.enrollment_link(platform="prolific")
    flow = researcher.flow.create_ranking_flow(
        name="window", instruction="?", audiences=[audience], max_response_threshold=50, max_votes_per_annotator=50
    )
    flow.create_new_flow_batch(datapoints=[f"w{i}" for i in range(5)], time_to_live=600)
    person = enroll(flowlab_server, link, **prolific(f"susp-{time.monotonic_ns()}"))
    for _ in range(3):
        task = lease(flowlab_server, person["token"])
        answer(flowlab_server, person["token"], task, "a")
    times = [r["created_at"] for r in db(flowlab_server, "SELECT created_at FROM votes WHERE annotator_id=? "
                                         "ORDER BY created_at", (person["annotator_id"],))]  # fmt: skip
    assert len(times) == 3

    assert researcher.annotators.report(since=times[1]).loc[person["annotator_id"]].answers == 2
    assert researcher.annotators.report(until=times[1]).loc[person["annotator_id"]].answers == 1
    as_datetime = dt.datetime.fromtimestamp(times[2] - 0.001, tz=dt.UTC)  # microseconds: just before it
    assert researcher.annotators.report(since=as_datetime).loc[person["annotator_id"]].answers == 1
    assert person["annotator_id"] not in researcher.annotators.report(since=times[2] + 1).index
    assert list(researcher.annotators.report(audience=audience).index) == [person["annotator_id"]]

    researcher.annotators.suspend(person["annotator_id"])
    # The server refuses answers once a person is suspended, but one in flight as the suspension landed (or
    # committed by another process of a cluster) is stored after it: date the suspension between two answers.
    with sqlite3.connect(flowlab_server.data_dir / "flowlab.sqlite3", timeout=10) as conn:
        conn.execute(
            "UPDATE annotators SET suspended_at=? WHERE id=?", ((times[1] + times[2]) / 2, person["annotator_id"])
        )
    owed = researcher.annotators.pay(per_answer=1.0, audience=audience)
    assert owed.loc[person["annotator_id"]].paid_answers == 2 and owed.loc[person["annotator_id"]].amount == 2.0
    everything = researcher.annotators.pay(per_answer=1.0, audience=audience, pay_suspended=True)
    assert everything.loc[person["annotator_id"]].amount == 3.0
    assert researcher.annotators.report().loc[person["annotator_id"]].state == "suspended"


def test_agreement_with_the_consensus_leaves_each_answer_out_of_its_own_majority(
    researcher: Client, flowlab_server: ServerProcess
) -> None:
    audience = researcher.audiences.create("consensus")
    team = audience.enrollment_link()
    flow = researcher.flow.create_classify_flow(
        name="animals", instruction="What is it?", categories=["cat", "dog"], gold_rate=0.0, audiences=[audience]
    )
    flow.create_new_flow_batch(datapoints=["a picture"], time_to_live=600)
    ranking = researcher.flow.create_ranking_flow(
        name="pairs", instruction="?", audiences=[audience], max_response_threshold=10, max_votes_per_annotator=10
    )
    ranking.create_new_flow_batch(datapoints=["first", "second"], time_to_live=600)
    people = [enroll(flowlab_server, team, name=f"p{i}") for i in range(4)]
    for i, person in enumerate(people):
        for _ in range(2):  # one classify task and one pair each, in whichever order they are served
            task = lease(flowlab_server, person["token"])
            if task["kind"] == "classify":
                answer(flowlab_server, person["token"], task, "dog" if i == 3 else "cat")
            else:
                a_text = str(task["a"]["text"])  # type: ignore[index]
                wants = "second" if i == 3 else "first"
                answer(flowlab_server, person["token"], task, "a" if a_text == wants else "b")
    report = researcher.annotators.report(audience=audience.id)
    for i, person in enumerate(people):
        got = report.loc[person["annotator_id"]]
        assert got.consensus_compared == 2, "a label and a vote, each with others beside it"
        assert got.consensus_agreement == (0.0 if i == 3 else 1.0)


def test_bad_windows_and_rules_are_refused(researcher: Client) -> None:
    from flowlab.client._errors import ValidationError

    with pytest.raises(ValidationError, match="until must be later"):
        researcher.annotators.report(since=10, until=5)
    with pytest.raises(ValidationError, match="per_answer"):
        researcher.annotators.pay(per_answer=-1)
    assert researcher.annotators.pay(per_answer=1).to_prolific_csv() == ""


def test_a_ranking_agrees_pair_by_pair_with_the_other_rankings_of_its_item(
    researcher: Client, flowlab_server: ServerProcess
) -> None:
    audience = researcher.audiences.create("listwise consensus")
    team = audience.enrollment_link()
    flow = researcher.flow.create_listwise_flow(
        "orders", "Best first.", k=3, max_response_threshold=4, max_votes_per_annotator=1, audiences=[audience]
    )
    flow.create_new_flow_batch(datapoints=["x", "y", "z"], time_to_live=600)
    people = [enroll(flowlab_server, team, name=f"r{i}") for i in range(4)]
    for i, person in enumerate(people):
        task = lease(flowlab_server, person["token"])
        texts = [str(d["text"]) for d in task["listwise"]["datapoints"]]  # type: ignore[index]
        wanted = ["z", "y", "x"] if i == 3 else ["x", "y", "z"]
        answer(flowlab_server, person["token"], task, "submit", listwise={"order": [texts.index(t) for t in wanted]})
    report = researcher.annotators.report(audience=audience.id)
    for i, person in enumerate(people):
        got = report.loc[person["annotator_id"]]
        assert got.consensus_compared == 3, "the three pairs an order of three implies, each with others beside it"
        assert got.consensus_agreement == (0.0 if i == 3 else 1.0)
