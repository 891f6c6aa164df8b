"""Real people in Chromium: enrolling through a Prolific-style link, answering up to the quota, the completion
code and the redirect, the qualification quiz with feedback, resuming as the same person, a team invitation's name,
bad links explained, and a suspended person told why."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from .test_annotate import PAIR_TIMEOUT_MS, Annotator, wait_until

PROLIFIC_DONE = "https://app.prolific.com/submissions/complete"


@pytest.fixture
def context_factory(browser: Any) -> Iterator[Callable[..., Any]]:
    contexts: list[Any] = []

    def make(**options: Any) -> Any:
        contexts.append(browser.new_context(**options))
        return contexts[-1]

    yield make
    for ctx in contexts:
        ctx.close()


def votes_of(server: Any, annotator_id: str) -> int:
    with server.client() as c:
        return next(s.votes for s in c.annotators.list() if s.id == annotator_id)


def me(tab: Annotator) -> dict[str, Any]:
    return tab.page.evaluate(
        """async () => {
             const token = sessionStorage.getItem("flowlab.annotator.token");
             const r = await fetch("/v1/annotator/me", { headers: { Authorization: `Bearer ${token}` } });
             return r.json();
           }"""
    )


def test_a_prolific_participant_answers_to_the_quota_and_is_sent_back_with_the_code(fresh_server, context_factory):
    client = fresh_server.client()
    audience = client.audiences.create("Prolific study")
    link = audience.enrollment_link(platform="prolific", completion_code="C0MPLETE", quota=4)
    flow = client.flow.create_ranking_flow(
        name="study",
        instruction="Which is better?",
        audiences=[audience],
        max_response_threshold=100,
        max_votes_per_annotator=100,
    )
    flow.create_new_flow_batch(datapoints=[f"answer {i}" for i in range(8)], time_to_live=300)

    ctx = context_factory()
    redirected: list[str] = []

    def prolific(route: Any) -> None:
        redirected.append(route.request.url)
        route.fulfill(status=200, content_type="text/html", body="<h1>Prolific: submission complete</h1>")

    ctx.route(f"{PROLIFIC_DONE}**", prolific)
    study_url = f"{link}?PROLIFIC_PID=pp-0001&STUDY_ID=st-1&SESSION_ID=se-1"
    tab = Annotator(ctx, study_url)
    tab.wait_for_pair()
    first = me(tab)
    assert first["participant"] == "pp-0001" and first["audience_id"] == audience.id
    tab.answer("click:a")
    tab.answer("key:2")
    assert wait_until(lambda: votes_of(fresh_server, first["id"]) == 2)

    # The same participant opens the link again (a reload, a second tab): the same person, who goes on.
    tab.page.goto(study_url)
    tab.wait_for_pair()
    assert me(tab)["id"] == first["id"]
    other = Annotator(ctx, study_url)
    other.page.wait_for_function("() => ['vote', 'wait'].includes(document.body.dataset.screen)")
    assert me(other)["id"] == first["id"]
    other.page.close()

    tab.answer("click:a")
    tab.page.click("#choose-b")  # the fourth: the quota is done
    tab.page.wait_for_function("() => document.body.dataset.screen === 'end'", timeout=PAIR_TIMEOUT_MS)
    assert tab.page.text_content("#end-code") == "C0MPLETE"
    assert "done" in (tab.page.text_content("#end-title") or "")
    tab.page.wait_for_url(f"{PROLIFIC_DONE}**", timeout=15_000)
    assert redirected and redirected[-1] == f"{PROLIFIC_DONE}?cc=C0MPLETE"
    assert votes_of(fresh_server, first["id"]) == 4
    assert not tab.errors


def test_a_team_invitation_asks_a_name_once(fresh_server, context_factory):
    client = fresh_server.client()
    audience = client.audiences.create("Lab team")
    link = audience.enrollment_link()
    flow = client.flow.create_ranking_flow(name="team", instruction="Which?", audiences=[audience])
    flow.create_new_flow_batch(datapoints=["x", "y", "z"], time_to_live=300)
    ctx = context_factory()
    tab = Annotator(ctx, link)
    tab.page.wait_for_selector("#enroll-name", state="visible")
    tab.page.fill("#enroll-name", "Grace")
    tab.page.click("#enroll-form button")
    tab.wait_for_pair()
    assert "Grace" in (tab.page.text_content("#who") or "")
    tab.page.reload()
    tab.wait_for_pair()  # no second name asked: this browser remembers the person
    members = [s for s in client.annotators.list() if s.audience_id == audience.id]
    assert [m.name for m in members] == ["Grace"]


def test_bad_links_are_explained(fresh_server, context_factory):
    client = fresh_server.client()
    audience = client.audiences.create("Closed")
    link = audience.enrollment_link(platform="prolific")
    ctx = context_factory()
    tab = Annotator(ctx, str(link))  # opened without PROLIFIC_PID
    tab.page.wait_for_function("() => document.body.dataset.screen === 'error'")
    assert "participant id is missing" in (tab.page.text_content("#error-title") or "")
    assert "PROLIFIC_PID" in (tab.page.text_content("#error-text") or "")
    audience.revoke_link(link)
    tab.page.goto(f"{link}?PROLIFIC_PID=p1")
    tab.page.wait_for_function("() => document.querySelector('#error-title').textContent.includes('withdrawn')")
    tab.page.goto(f"{fresh_server.url}/join/nonsense?PROLIFIC_PID=p1")
    tab.page.wait_for_function("() => document.querySelector('#error-title').textContent.includes(\"doesn't work\")")
    assert httpx.get(f"{fresh_server.url}/v1/enroll/nonsense").status_code == 404
    assert not [s for s in client.annotators.list() if s.audience_id == audience.id], "nobody was created"


def test_a_suspended_person_sees_why(fresh_server, context_factory):
    client = fresh_server.client()
    audience = client.audiences.create("Watched", suspend_below=0.6, min_gold=10)
    link = audience.enrollment_link(platform="prolific")
    flow = client.flow.create_ranking_flow(name="w", instruction="Which?", audiences=[audience])
    flow.create_new_flow_batch(datapoints=["x", "y", "z", "w"], time_to_live=300)
    tab = Annotator(context_factory(), f"{link}?PROLIFIC_PID=sus-1&STUDY_ID=s&SESSION_ID=t")
    tab.wait_for_pair()
    client.annotators.suspend(me(tab)["id"])
    tab.page.click("#choose-a")  # the task in hand went back to the pool; the next request says why
    tab.page.wait_for_function("() => document.body.dataset.screen === 'end'", timeout=PAIR_TIMEOUT_MS)
    assert tab.page.text_content("#end-title") == "Your work is paused"
    assert "paused" in (tab.page.text_content("#end-text") or "")
    assert tab.page.locator("#end-code-line").is_hidden()


def test_a_participant_takes_the_quiz_with_feedback_then_works_to_the_quota(fresh_server, context_factory):
    client = fresh_server.client()
    sums = [(f"{i} + {i} = {2 * i}", f"{i} + {i} = {2 * i + 1}") for i in range(3)]
    gold = client.validation.create_compare_set(
        name="sums",
        instruction="Which sum is right?",
        datapoints=[list(s) for s in sums],
        truths=[s[0] for s in sums],
        explanation=["a sum of two equal numbers is even"] * 3,
    )
    audience = client.audiences.create(
        "Quizzed", qualification={"validation_set_id": gold.id, "questions": 3, "pass_mark": 0.6, "feedback": True}
    )
    link = audience.enrollment_link(platform="prolific", completion_code="QUIZ-OK", quota=1)
    flow = client.flow.create_ranking_flow(name="after the quiz", instruction="Which helps?", audiences=[audience])
    flow.create_new_flow_batch(datapoints=["the real task, left", "the real task, right"], time_to_live=300)

    ctx = context_factory()
    ctx.route(f"{PROLIFIC_DONE}**", lambda route: route.fulfill(status=200, body="done"))
    tab = Annotator(ctx, f"{link}?PROLIFIC_PID=quiz-1&STUDY_ID=s&SESSION_ID=t")
    page = tab.page
    seen: list[str] = []
    for question in range(3):
        task = tab.wait_for_pair(seen[-1] if seen else None)
        seen.append(task)
        assert f"Qualification question {question + 1} of 3" in page.inner_text("body")
        texts = [tab.pane(side)["text"] for side in ("a", "b")]
        right = "a" if int(texts[0].split("=")[-1]) % 2 == 0 else "b"  # the even sum is the right one
        wrong = "b" if right == "a" else "a"
        # The first answer is wrong on purpose: the page says what was expected, and why.
        page.click(f"#choose-{wrong if question == 0 else right}")
        if question == 0:
            page.wait_for_function(
                "() => document.querySelector('#notice').textContent.includes('The expected answer was')",
                timeout=PAIR_TIMEOUT_MS,
            )
            assert "because a sum of two equal numbers is even" in page.inner_text("#notice")
    # Two of three right passes 0.6: the real task comes next, and one answer fills the quota.
    tab.wait_for_pair(seen[-1])
    assert "the real task" in page.inner_text("body")
    page.click("#choose-a")
    page.wait_for_function("() => document.body.dataset.screen === 'end'", timeout=PAIR_TIMEOUT_MS)
    assert page.text_content("#end-code") == "QUIZ-OK"
    assert audience.refresh().qualified == 1
    assert not tab.errors
