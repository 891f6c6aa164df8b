"""Real people against a real server: audiences, enrollment links (team and platform), flows restricted to
audiences, quotas with completion codes, and the simulated crowd enrolling through a Prolific-style link."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from flowlab import Client
from flowlab.client._errors import NotFound as SDKNotFound
from flowlab.client._errors import ValidationError as SDKValidationError
from flowlab.crowd import SimulatedCrowd

from .conftest import ServerProcess


@pytest.fixture
def researcher(flowlab_server: ServerProcess) -> Iterator[Client]:
    """A researcher key of the test's own, so its flows and people are nobody else's."""
    with flowlab_server.client() as admin:
        key = admin.create_api_key(f"people-{time.monotonic_ns()}").key
    with Client(url=flowlab_server.url, api_key=key) as c:
        yield c


def secret_of(url: str) -> str:
    return urlsplit(url).path.rsplit("/", 1)[-1]


def enroll(server: ServerProcess, url: str, **body: object) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/enroll/{secret_of(url)}", json=body, timeout=30)


def prolific(pid: str, session: str = "s1") -> dict[str, object]:
    return {"params": {"PROLIFIC_PID": pid, "STUDY_ID": "study-1", "SESSION_ID": session}}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def next_task(server: ServerProcess, token: str, wait: float = 0.0) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/tasks/next", json={"wait": wait}, headers=bearer(token), timeout=30)


def rows(server: ServerProcess, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    with sqlite3.connect(server.data_dir / "flowlab.sqlite3") as db:
        return db.execute(sql, params).fetchall()


def test_audiences_are_listed_found_and_deleted(researcher: Client) -> None:
    made = researcher.audiences.create("raters", description="our team")
    assert made.id.startswith("aud_") and made.name == "raters"
    assert [a.id for a in researcher.audiences.list()] == [made.id]
    assert researcher.audiences.get(made.id).last.description == "our team"
    flow = researcher.flow.create_ranking_flow(name="f", instruction="?", audiences=[made])
    assert flow.config.audiences == [made.id]
    with pytest.raises(Exception, match="still serve"):
        made.delete()
    flow.update_config(audiences=[])
    made.delete()
    with pytest.raises(SDKNotFound):
        researcher.audiences.get(made.id)
    with pytest.raises(SDKValidationError, match="No audience"):
        researcher.flow.create_ranking_flow(name="g", instruction="?", audiences=["aud_nope"])


def test_a_prolific_participant_is_always_the_same_annotator(researcher: Client, flowlab_server: ServerProcess) -> None:
    audience = researcher.audiences.create("study")
    link = audience.enrollment_link(platform="prolific", completion_code="C0DE")
    assert "/join/" in link and link.link.platform == "prolific"
    info = httpx.get(f"{flowlab_server.url}/v1/enroll/{secret_of(link)}").json()
    assert info["platform"] == "prolific" and info["id_param"] == "PROLIFIC_PID" and not info["needs_name"]

    first = enroll(flowlab_server, link, **prolific("pid-1")).json()
    again = enroll(flowlab_server, link, **prolific("pid-1", "s2")).json()
    assert again["annotator_id"] == first["annotator_id"] and again["token"] == first["token"] and again["resumed"]

    async def two_tabs() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=flowlab_server.url) as http:
            path = f"/v1/enroll/{secret_of(link)}"
            return list(await asyncio.gather(*(http.post(path, json=prolific("pid-2")) for _ in range(4))))

    tabs = asyncio.run(two_tabs())
    assert {r.status_code for r in tabs} == {200}
    assert len({r.json()["annotator_id"] for r in tabs}) == 1, "four tabs at once are one person"
    n = rows(flowlab_server, "SELECT count(*) FROM annotators WHERE audience_id=?", (audience.id,))[0][0]
    assert n == 2
    me = httpx.get(f"{flowlab_server.url}/v1/annotator/me", headers=bearer(first["token"])).json()
    assert me["participant"] == "pid-1" and me["audience_id"] == audience.id and me["state"] == "active"
    assert audience.refresh().enrolled == 2


def test_bad_links_say_what_to_do_and_create_nobody(researcher: Client, flowlab_server: ServerProcess) -> None:
    audience = researcher.audiences.create("careful")
    before = rows(flowlab_server, "SELECT count(*) FROM annotators")[0][0]

    link = audience.enrollment_link(platform="prolific")
    missing = enroll(flowlab_server, link, params={"STUDY_ID": "x"})
    assert missing.status_code == 422 and missing.json()["code"] == "missing_participant"
    assert "PROLIFIC_PID" in missing.json()["detail"]

    unknown = enroll(flowlab_server, f"{flowlab_server.url}/join/not-a-link", **prolific("p"))
    assert unknown.status_code == 404 and unknown.json()["code"] == "unknown_link"

    audience.revoke_link(link)
    revoked = enroll(flowlab_server, link, **prolific("p"))
    assert revoked.status_code == 410 and revoked.json()["code"] == "link_revoked"

    brief = audience.enrollment_link(platform="url", id_param="workerId", expires_in=0.2)
    deadline = time.monotonic() + 10
    while (r := enroll(flowlab_server, brief, params={"workerId": "w"})).status_code != 410:
        assert time.monotonic() < deadline, "the link never expired"
        assert r.status_code == 200  # "w" enrolled (once, however often) while the link still ran
    assert r.json()["code"] == "link_expired"
    before += len(rows(flowlab_server, "SELECT id FROM annotators WHERE participant = 'w'"))

    capped = audience.enrollment_link(platform="url", id_param="workerId", limit=1)
    assert enroll(flowlab_server, capped, params={"workerId": "first"}).status_code == 200
    full = enroll(flowlab_server, capped, params={"workerId": "second"})
    assert full.status_code == 410 and full.json()["code"] == "link_exhausted"
    assert enroll(flowlab_server, capped, params={"workerId": "first"}).json()["resumed"], "the first comes back"

    team = audience.enrollment_link()
    nameless = enroll(flowlab_server, team, name="  ")
    assert nameless.status_code == 422 and nameless.json()["field"] == "name"
    after = rows(flowlab_server, "SELECT count(*) FROM annotators")[0][0]
    assert after == before + 1  # "first" only


def test_flows_serve_only_their_audiences(researcher: Client, flowlab_server: ServerProcess) -> None:
    inside, outside = researcher.audiences.create("in"), researcher.audiences.create("out")
    member = enroll(flowlab_server, inside.enrollment_link(), name="Ada").json()
    stranger = enroll(flowlab_server, outside.enrollment_link(), name="Bob").json()
    staff = researcher.annotators.create("staff")
    flow = researcher.flow.create_ranking_flow(name="restricted", instruction="?", audiences=[inside])
    flow.create_new_flow_batch(datapoints=["x", "y", "z"], time_to_live=60)

    assert next_task(flowlab_server, stranger["token"]).status_code == 204, "another audience's member"
    assert next_task(flowlab_server, staff.token).status_code == 204, "an annotator of the key, in no audience"
    got = next_task(flowlab_server, member["token"])
    assert got.status_code == 200 and got.json()["flow_id"] == flow.id

    open_flow = researcher.flow.create_ranking_flow(name="open", instruction="?")
    open_flow.create_new_flow_batch(datapoints=["p", "q"], time_to_live=60)
    staff_task = next_task(flowlab_server, staff.token)
    assert staff_task.status_code == 200 and staff_task.json()["flow_id"] == open_flow.id
    for _ in range(5):  # a link reaches only its audience's flows, never the key's open ones
        r = next_task(flowlab_server, stranger["token"])
        assert r.status_code == 204


def test_a_quota_ends_with_the_completion_code_and_the_redirect(
    researcher: Client, flowlab_server: ServerProcess
) -> None:
    audience = researcher.audiences.create("quota")
    link = audience.enrollment_link(platform="prolific", completion_code="ABC 123", quota=3)
    flow = researcher.flow.create_ranking_flow(
        name="q", instruction="?", audiences=[audience], max_response_threshold=50, max_votes_per_annotator=50
    )
    flow.create_new_flow_batch(datapoints=[f"d{i}" for i in range(8)], time_to_live=120)
    token = enroll(flowlab_server, link, **prolific("quota-1")).json()["token"]
    answered = 0
    task = next_task(flowlab_server, token).json()
    while task is not None:
        ack = httpx.post(
            f"{flowlab_server.url}/v1/tasks/{task['task_id']}/answer",
            json={"choice": "a", "fetch_next": True},
            headers=bearer(token),
        ).json()
        assert ack["status"] == "accepted"
        answered += 1
        task = ack.get("next")
    assert answered == 3
    done = next_task(flowlab_server, token)
    assert done.status_code == 403 and done.json()["code"] == "finished"
    me = httpx.get(f"{flowlab_server.url}/v1/annotator/me", headers=bearer(token)).json()
    assert me["finish"] == {
        "reason": "quota",
        "code": "ABC 123",
        "redirect_url": "https://app.prolific.com/submissions/complete?cc=ABC%20123",
    }


def test_no_work_left_gives_the_completion_code(researcher: Client, flowlab_server: ServerProcess) -> None:
    audience = researcher.audiences.create("idle")
    link = audience.enrollment_link(platform="url", id_param="participantId", completion_code="DONE")
    token = enroll(flowlab_server, link, params={"participantId": "cr-1"}).json()["token"]
    r = httpx.post(f"{flowlab_server.url}/v1/annotator/finish", headers=bearer(token))
    assert r.status_code == 200 and r.json() == {"reason": "no_work", "code": "DONE"}
    flow = researcher.flow.create_ranking_flow(name="w", instruction="?", audiences=[audience])
    flow.create_new_flow_batch(datapoints=["x", "y"], time_to_live=60)
    r = httpx.post(f"{flowlab_server.url}/v1/annotator/finish", headers=bearer(token))
    assert r.status_code == 409 and r.json()["code"] == "work_left"


def test_the_crowd_enrolls_through_a_prolific_link(researcher: Client, flowlab_server: ServerProcess) -> None:
    audience = researcher.audiences.create("crowd")
    link = audience.enrollment_link(platform="prolific", completion_code="CROWD")
    flow = researcher.flow.create_ranking_flow(
        name="crowd", instruction="?", audiences=[audience], max_response_threshold=30
    )
    item = flow.create_new_flow_batch(datapoints=[f"d{i}" for i in range(6)], time_to_live=120)
    crowd = SimulatedCrowd(flowlab_server.url, researcher.api_key, annotators=12, rate=3000, seed=3, enroll=link)
    with crowd:
        deadline = time.monotonic() + 60
        while item.get_response_count() < 30:
            assert time.monotonic() < deadline, crowd.stats
            time.sleep(0.1)
    ids = {p.id for p in crowd.profiles}
    members = rows(flowlab_server, "SELECT id, participant FROM annotators WHERE audience_id=?", (audience.id,))
    assert {m[0] for m in members} == ids and len(ids) == 12
    assert {m[1] for m in members} == {p.name for p in crowd.profiles}
    voters = set(rows(flowlab_server, "SELECT DISTINCT annotator_id FROM votes WHERE item_id=?", (item.id,)))
    assert voters and {v[0] for v in voters} <= ids


# ---------------------------------------------------------------- qualification


def gold_set(c: Client, n: int = 6) -> str:
    made = c.validation.create_compare_set(
        name="quiz",
        instruction="Which sum is right?",
        datapoints=[[f"{i} + {i} = {2 * i}", f"{i} + {i} = {2 * i + 1}"] for i in range(n)],
        truths=[f"{i} + {i} = {2 * i}" for i in range(n)],
        explanation=["a sum of two equal numbers is even"] * n,
    )
    return made.id


def answer(server: ServerProcess, token: str, task_id: str, choice: str, **extra: object) -> dict[str, object]:
    r = httpx.post(
        f"{server.url}/v1/tasks/{task_id}/answer", json={"choice": choice, **extra}, headers=bearer(token), timeout=30
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def right_side(task: dict[str, object]) -> str:
    a = task["a"]["text"]  # type: ignore[index]
    _, total = a.split(" = ")
    return "a" if int(total) % 2 == 0 else "b"


def test_a_quiz_admits_those_who_pass_with_feedback_and_screens_out_the_rest(
    researcher: Client, flowlab_server: ServerProcess
) -> None:
    audience = researcher.audiences.create(
        "qualified",
        qualification={"validation_set_id": gold_set(researcher), "questions": 4, "pass_mark": 0.75, "feedback": True},
    )
    link = audience.enrollment_link(platform="prolific", completion_code="OK", screen_out_code="SORRY")
    flow = researcher.flow.create_ranking_flow(name="work", instruction="?", audiences=[audience])
    flow.create_new_flow_batch(datapoints=["x", "y", "z"], time_to_live=120)

    good = enroll(flowlab_server, link, **prolific("good")).json()
    assert good["state"] == "qualifying"
    task = next_task(flowlab_server, good["token"]).json()
    assert task["item_id"].startswith("quiz_") and "1 of 4" in task["instruction"]
    seen = []
    for n in range(4):
        seen.append(task["task_id"])
        wrong = n == 0  # one wrong answer of four still passes 0.75
        choice = {"a": "b", "b": "a"}[right_side(task)] if wrong else right_side(task)
        ack = answer(flowlab_server, good["token"], task["task_id"], choice, fetch_next=True)
        assert ack["status"] == "accepted"
        if wrong:
            assert "The expected answer was" in str(ack["explanation"]) and "even" in str(ack["explanation"])
        else:
            assert "explanation" not in ack
        task = ack.get("next")  # type: ignore[assignment]
    assert task is not None and task["flow_id"] == flow.id, "admitted: real work follows the last question"
    me = httpx.get(f"{flowlab_server.url}/v1/annotator/me", headers=bearer(good["token"])).json()
    assert me["state"] == "active"

    bad = enroll(flowlab_server, link, **prolific("bad")).json()
    for _ in range(4):
        task = next_task(flowlab_server, bad["token"]).json()
        answer(flowlab_server, bad["token"], task["task_id"], {"a": "b", "b": "a"}[right_side(task)])
    out = next_task(flowlab_server, bad["token"])
    assert out.status_code == 403 and out.json()["code"] == "screened_out"
    me = httpx.get(f"{flowlab_server.url}/v1/annotator/me", headers=bearer(bad["token"])).json()
    assert me["state"] == "screened_out" and me["finish"] == {
        "reason": "screened_out",
        "code": "SORRY",
        "redirect_url": "https://app.prolific.com/submissions/complete?cc=SORRY",
    }
    view = audience.refresh()
    assert (view.enrolled, view.qualified, view.screened_out) == (2, 1, 1)
    stored = rows(flowlab_server, "SELECT count(*), sum(correct) FROM quiz_answers WHERE audience_id=?", (audience.id,))
    assert stored == [(8, 3)]


def test_the_quiz_screens_out_most_spammers_of_a_crowd(researcher: Client, flowlab_server: ServerProcess) -> None:
    audience = researcher.audiences.create(
        "screened", qualification={"validation_set_id": gold_set(researcher, 12), "questions": 10, "pass_mark": 0.8}
    )
    link = audience.enrollment_link(platform="prolific", completion_code="C", screen_out_code="S")
    crowd = SimulatedCrowd(
        flowlab_server.url, researcher.api_key, annotators=40, spammer_fraction=0.25, rate=20000, seed=11, enroll=link
    )
    with crowd:
        deadline = time.monotonic() + 60
        while (v := audience.refresh()).qualified + v.screened_out < 40:
            assert time.monotonic() < deadline, (v, crowd.stats)
            time.sleep(0.2)
    states = {
        p.name: s
        for p in crowd.profiles
        for (i, s) in rows(flowlab_server, "SELECT id, state FROM annotators WHERE id=?", (p.id,))
    }
    spammers = [p.name for p in crowd.profiles if p.spammer]
    honest = [p.name for p in crowd.profiles if not p.spammer]
    assert sum(states[n] == "screened_out" for n in spammers) >= 0.7 * len(spammers)
    assert sum(states[n] == "active" for n in honest) >= 0.9 * len(honest)


# ---------------------------------------------------------------- continuous gold, suspend and reinstate


def test_continuous_gold_suspends_at_once_and_a_researcher_reinstates(
    researcher: Client, flowlab_server: ServerProcess
) -> None:
    audience = researcher.audiences.create("watched", suspend_below=0.6, min_gold=4)
    link = audience.enrollment_link(platform="prolific")
    gold = [{"a": {"text": f"GOLD {i} good"}, "b": {"text": f"GOLD {i} bad"}, "answer": "a"} for i in range(6)]
    flow = researcher.flow.create_ranking_flow(
        name="gold",
        instruction="?",
        audiences=[audience],
        validation_pairs=gold,
        gold_rate=1.0,
        max_response_threshold=100,
        max_votes_per_annotator=100,
    )
    flow.create_new_flow_batch(datapoints=[f"d{i}" for i in range(5)], time_to_live=120)
    person = enroll(flowlab_server, link, **prolific("sloppy")).json()
    token = person["token"]
    held = next_task(flowlab_server, token).json()
    for _ in range(4):  # every gold answer wrong: 0 of 4 < 0.6
        task = next_task(flowlab_server, token).json()
        side = "b" if task["a"]["text"].endswith("good") else "a"
        answer(flowlab_server, token, task["task_id"], side)
    stopped = next_task(flowlab_server, token)
    assert stopped.status_code == 403 and stopped.json()["code"] == "suspended"
    assert "check questions" in stopped.json()["detail"]
    late = httpx.post(
        f"{flowlab_server.url}/v1/tasks/{held['task_id']}/answer", json={"choice": "a"}, headers=bearer(token)
    )
    assert late.status_code == 409, "the task held at suspension went back to the pool"
    me = next(s for s in researcher.annotators.list() if s.id == person["annotator_id"])
    assert me.state == "suspended" and me.suspended_at is not None and me.gold_answered == 4
    assert audience.refresh().suspended == 1
    back = researcher.annotators.reinstate(person["annotator_id"])
    assert back.state == "active" and back.suspended_at is None
    assert next_task(flowlab_server, token).status_code == 200
    stored = rows(flowlab_server, "SELECT state FROM annotators WHERE id=?", (person["annotator_id"],))
    assert stored == [("active",)]


def test_the_cli_suspends_reinstates_and_lists_audiences(researcher: Client, flowlab_server: ServerProcess) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "FLOWLAB_URL": flowlab_server.url, "FLOWLAB_API_KEY": researcher.api_key or ""}

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "flowlab", *args], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    audience_id = cli("audiences", "create", "--name", "cli-crowd").strip()
    url = cli("audiences", "link", audience_id, "--platform", "url", "--id-param", "workerId").strip()
    assert "/join/" in url
    who = enroll(flowlab_server, url, params={"workerId": "W1"}).json()["annotator_id"]
    assert "suspended" in cli("annotators", "suspend", who)
    assert "active" in cli("annotators", "reinstate", who)
    listed = cli("audiences", "list")
    assert "cli-crowd" in listed and audience_id in listed


# ---------------------------------------------------------------- the whole path, at scale


def test_two_hundred_participants_one_link_quiz_and_gold_keep_the_spammers_out(
    researcher: Client, flowlab_server: ServerProcess
) -> None:
    gold_id = gold_set(researcher, 12)
    audience = researcher.audiences.create(
        "launch",
        qualification={"validation_set_id": gold_id, "questions": 8, "pass_mark": 0.75},
        suspend_below=0.6,
        min_gold=5,
    )
    link = audience.enrollment_link(platform="prolific", completion_code="DONE", screen_out_code="OUT")
    gold = [{"a": {"text": f"check {i}: right"}, "b": {"text": f"check {i}: wrong"}, "answer": "a"} for i in range(8)]
    flow = researcher.flow.create_ranking_flow(
        name="launch",
        instruction="?",
        audiences=[audience],
        validation_pairs=gold,
        gold_rate=0.4,
        max_response_threshold=400,
    )
    item = flow.create_new_flow_batch(datapoints=[f"d{i}" for i in range(10)], time_to_live=300)
    crowd = SimulatedCrowd(
        flowlab_server.url, researcher.api_key, annotators=200, spammer_fraction=0.2, rate=30000, seed=5, enroll=link
    )
    with crowd:
        deadline = time.monotonic() + 120
        while item.get_response_count() < 400:
            assert time.monotonic() < deadline, (audience.refresh(), crowd.stats)
            time.sleep(0.2)

        async def again() -> list[httpx.Response]:  # some open the link twice, some in two tabs at once
            async with httpx.AsyncClient(base_url=flowlab_server.url, timeout=30) as http:
                path = f"/v1/enroll/{secret_of(link)}"
                bodies = [prolific(p.name, "again") for p in crowd.profiles[:30] for _ in range(2)]
                return list(await asyncio.gather(*(http.post(path, json=b) for b in bodies)))

        repeated = asyncio.run(again())
    by_name = {p.name: p.id for p in crowd.profiles}
    assert all(r.status_code == 200 and r.json()["resumed"] for r in repeated)
    assert {r.json()["annotator_id"] for r in repeated} == {p.id for p in crowd.profiles[:30]}
    members = rows(
        flowlab_server, "SELECT participant, state, suspended_at FROM annotators WHERE audience_id=?", (audience.id,)
    )
    assert len(members) == 200 and {m[0] for m in members} == set(by_name)
    state = {m[0]: m[1] for m in members}
    spammers = [p.name for p in crowd.profiles if p.spammer]
    kept_out = [n for n in spammers if state[n] in ("screened_out", "suspended")]
    assert len(kept_out) >= 0.8 * len(spammers), state
    voters = {v[0] for v in rows(flowlab_server, "SELECT DISTINCT annotator_id FROM votes WHERE item_id=?", (item.id,))}
    assert voters <= set(by_name.values())
    screened = {by_name[n] for n, s in state.items() if s == "screened_out"}
    assert not voters & screened, "nobody screened out ever voted"
    for participant, s, suspended_at in members:  # the suspended voted nothing after their suspension
        if s == "suspended":
            later = rows(
                flowlab_server,
                "SELECT count(*) FROM votes WHERE annotator_id=? AND created_at > ?",
                (by_name[participant], suspended_at + 0.5),
            )
            assert later == [(0,)]
    view = audience.refresh()
    assert view.enrolled == 200 and view.qualified + view.screened_out == 200
