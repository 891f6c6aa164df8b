"""Chat tasks on the annotator page, in a real Chromium against a real `flowlab serve` and a model served from
Python: an offline model is said so with a retry, replies stream in, an edited first turn branches the
conversation, both branches are annotated, and the records hold both threads."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tests.browser import test_annotate
from tests.browser.conftest import watch_errors
from tests.browser.test_annotate import Annotator, wait_until

context_factory = test_annotate.context_factory

pytestmark = pytest.mark.browser

GREETING = "Hi! I am the shop's assistant. How can I help?"


def test_annotator_chats_edits_the_first_turn_and_annotates_both_branches(fresh_server, context_factory):
    client = fresh_server.client()
    flow = client.flow.create_chat_flow(
        "chat on the page",
        "Try to get the bot off-topic.",
        dimensions=[{"key": "off_topic", "label": "Off-topic", "type": "boolean"}],
        likert_scale=5,
        justification="required",
    )
    item = flow.create_new_flow_batch(
        [{"id": "c1", "messages": [{"role": "assistant", "content": GREETING}], "guidance": "Ask about maths."}],
        time_to_live=300,
    )
    release = threading.Event()

    def bot(messages: list[dict[str, str]]) -> Iterator[str]:
        last = messages[-1]["content"]
        if "maths" in last:
            yield "Sure: "
            release.wait(10)  # the test sees the first chunk on the page before the rest is written
            yield "two plus two is four."
        else:
            yield "Your parcel arrives tomorrow."

    handle = None
    try:
        annotator = client.annotators.create("Chatty Chris")
        tab = Annotator(context_factory(viewport={"width": 1280, "height": 900}), annotator.join_url)
        console = watch_errors(tab.page)
        page = tab.page
        tab.wait_for_pair()
        page.wait_for_selector("#rlhf .chat")
        assert "Ask about maths." in page.inner_text(".chat-guidance")
        assert page.locator(".chat-message").all_inner_texts()[0].endswith(GREETING)

        # Nobody serves the model yet: the page says so at once, with a retry.
        page.fill(".chat-input", "Can you do maths?")
        page.click(".chat-send")
        page.wait_for_selector(".chat-error")
        assert "offline" in page.inner_text(".chat-error")
        handle = flow.serve_model(bot)
        assert wait_until(lambda: all(m.attached for m in flow.get_models())), "the model is served"
        page.click(".chat-retry")
        page.wait_for_function(
            "() => [...document.querySelectorAll('.chat-message')].some(m => m.innerText.includes('Sure:'))"
        )
        assert "four" not in page.inner_text(".chat-thread"), "the first chunk shows before the model finishes"
        release.set()
        page.wait_for_selector(".chat-message .chat-ratings")
        assert "two plus two is four." in page.inner_text(".chat-thread")

        # Edit the first user turn: a second branch, answered by the model.
        page.locator('.chat-message[data-role="user"] .chat-edit-button').first.click()
        page.fill(".chat-edit", "Where is my parcel?")
        page.click(".chat-send-edit")
        page.wait_for_function("() => document.querySelector('.chat-thread').innerText.includes('arrives tomorrow')")
        assert page.locator(".chat-branch").all_inner_texts() == ["Branch 1", "Branch 2"]
        assert "maths" not in page.inner_text(".chat-thread"), "the branch on screen is the edited one"

        # Annotate both branches: this one on-topic, then the first (switched to) off-topic.
        page.locator(".chat-ratings label", has_text="No").click()
        page.locator(".chat-branch", has_text="Branch 1").click()
        assert "four" in page.inner_text(".chat-thread")
        page.locator(".chat-ratings label", has_text="Yes").click()
        page.click(".chat-submit")
        assert "Choose the better branch" in page.inner_text(".rlhf-problems")
        page.locator(".chat-verdict label", has_text="Branch 2").first.click()
        page.locator(".chat-likert label", has_text="Branch 2 much better").click()
        page.fill(".chat-justification", "The second stays on the shop.")
        page.click(".chat-submit")
        assert wait_until(lambda: item.get_progress().response_count == 1, page=page), "the conversation was counted"
        # The browser logs the refused request (the offline model's 503) itself; nothing else may appear.
        assert [e for e in console if "status of 503" not in e] == [] and tab.errors == []
    finally:
        if handle is not None:
            handle.stop()
    [conv] = item.get_conversations()
    assert len(conv.branches) == 2 and conv.selected == conv.branches[1] and conv.likert == 5
    by_id = {t.id: t for t in conv.turns}
    assert [by_id[leaf].ratings for leaf in conv.branches] == [{"off_topic": True}, {"off_topic": False}]
    [record] = item.to_chat_records()
    texts = [
        [m["content"]["text"] for turn in thread["turns"] for m in turn["messages"]] for thread in record["threads"]
    ]
    assert texts == [
        [GREETING, "Can you do maths?", "Sure: two plus two is four."],
        [GREETING, "Where is my parcel?", "Your parcel arrives tomorrow."],
    ]
    assert record["threads"][1]["annotations"][0]["value"] is True


def test_regenerate_keeps_both_replies_as_branches(fresh_server, context_factory):
    client = fresh_server.client()
    flow = client.flow.create_chat_flow(
        "regenerate on the page", "Chat.", dimensions=[{"key": "good", "type": "boolean"}], likert_scale=0
    )
    item = flow.create_new_flow_batch([{"id": "r1"}], time_to_live=300)
    replies = iter(["First try.", "Second try."])
    with flow.serve_model(lambda messages: next(replies)):
        annotator = client.annotators.create("Regina")
        tab = Annotator(context_factory(viewport={"width": 1280, "height": 900}), annotator.join_url)
        page = tab.page
        tab.wait_for_pair()
        page.fill(".chat-input", "Say something.")
        page.click(".chat-send")
        page.wait_for_function("() => document.querySelector('.chat-thread').innerText.includes('First try.')")
        page.click(".chat-regenerate")
        page.wait_for_function("() => document.querySelector('.chat-thread').innerText.includes('Second try.')")
        assert page.locator(".chat-branch").all_inner_texts() == ["Branch 1", "Branch 2"]
        assert "First try." not in page.inner_text(".chat-thread"), "the new reply's branch is on screen"
        page.locator(".chat-ratings label", has_text="Yes").click()
        page.locator(".chat-branch", has_text="Branch 1").click()
        page.locator(".chat-ratings label", has_text="No").click()
        page.locator(".chat-verdict label", has_text="Branch 2").click()
        page.click(".chat-submit")
        assert wait_until(lambda: item.get_progress().response_count == 1, page=page), "the conversation was counted"
        assert tab.errors == []
    [conv] = item.get_conversations()
    users = [t for t in conv.turns if t.role == "user"]
    assert len(users) == 1, "a regenerated reply shares its user turn"
    by_id = {t.id: t for t in conv.turns}
    assert [by_id[leaf].content for leaf in conv.branches] == ["First try.", "Second try."]
    assert conv.selected == conv.branches[1] and conv.likert is None
    assert [by_id[leaf].ratings for leaf in conv.branches] == [{"good": False}, {"good": True}]


def serve_and_wait(flow, generate):
    handle = flow.serve_model(generate)
    assert wait_until(lambda: all(m.attached for m in flow.get_models())), "the model is served"
    return handle


def wait_for_answer(item) -> None:
    assert wait_until(lambda: item.get_progress().response_count == 1), "the conversation was counted"


def test_a_conversation_that_ends_with_a_user_turn_opens_with_the_models_reply(fresh_server, context_factory):
    client = fresh_server.client()
    flow = client.flow.create_chat_flow(
        "the customer spoke last", "Chat.", dimensions=[{"key": "off_topic", "label": "Off-topic", "type": "boolean"}]
    )
    seed = [{"role": "assistant", "content": GREETING}, {"role": "user", "content": "Where is my parcel?"}]
    item = flow.create_new_flow_batch([{"id": "u1", "messages": seed}], time_to_live=300)
    with serve_and_wait(flow, lambda messages: "It arrives tomorrow."):
        annotator = client.annotators.create("Una")
        tab = Annotator(context_factory(viewport={"width": 1280, "height": 900}), annotator.join_url)
        page = tab.page
        tab.wait_for_pair()
        # Nobody typed anything: the page asked the model to answer the starting conversation.
        page.wait_for_function("() => document.querySelector('.chat-thread').innerText.includes('arrives tomorrow')")
        page.wait_for_selector(".chat-input:not([disabled])")
        assert page.locator(".chat-message").count() == 3
        page.locator(".chat-ratings label", has_text="No").click()
        page.click(".chat-submit")
        wait_for_answer(item)
        assert tab.errors == []
    [conv] = item.get_conversations()
    assert [(t.role, t.seed, t.model) for t in conv.turns] == [
        ("assistant", True, None),
        ("user", True, None),
        ("assistant", False, "model"),
    ]
    assert conv.turns[2].parent == conv.turns[1].id and conv.turns[2].ratings == {"off_topic": False}


def test_after_a_failed_reply_the_page_retries_or_drops_it_before_going_on(fresh_server, context_factory):
    client = fresh_server.client()
    flow = client.flow.create_chat_flow(
        "flaky", "Chat.", dimensions=[{"key": "off_topic", "label": "Off-topic", "type": "boolean"}], likert_scale=0
    )
    item = flow.create_new_flow_batch([{"id": "f1"}], time_to_live=300)
    calls = iter(range(100))

    def flaky(messages: list[dict[str, str]]) -> str:
        n = next(calls)
        if n in (0, 2):
            raise RuntimeError("CUDA out of memory")
        return f"Reply {n}."

    with serve_and_wait(flow, flaky):
        annotator = client.annotators.create("Fay")
        tab = Annotator(context_factory(viewport={"width": 1280, "height": 900}), annotator.join_url)
        page = tab.page
        tab.wait_for_pair()
        page.fill(".chat-input", "Hello")
        page.click(".chat-send")
        page.wait_for_selector(".chat-error")
        assert "CUDA out of memory" in page.inner_text(".chat-error")
        # The conversation does not go on from a failed reply: retry it or drop it first.
        assert page.is_disabled(".chat-input") and page.is_disabled(".chat-send")
        assert page.get_attribute(".chat-status", "data-state") == "failed"
        assert page.locator(".chat-edit-button").count() == 0
        page.click(".chat-retry")
        page.wait_for_function("() => document.querySelector('.chat-thread').innerText.includes('Reply 1.')")
        page.wait_for_selector(".chat-input:not([disabled])")
        assert page.locator(".chat-error").count() == 0
        page.fill(".chat-input", "Again")
        page.click(".chat-send")
        page.wait_for_selector(".chat-error")
        page.click(".chat-drop")
        page.wait_for_selector(".chat-input:not([disabled])")
        assert page.locator(".chat-message .rlhf-content").all_inner_texts() == ["Hello", "Reply 1."]
        assert "Again" not in page.inner_text(".chat-thread"), "the dropped turn went with its failed reply"
        page.locator(".chat-ratings label", has_text="Yes").click()
        page.click(".chat-submit")
        wait_for_answer(item)
        assert tab.errors == []
    [conv] = item.get_conversations()
    assert [(t.role, t.content) for t in conv.turns] == [("user", "Hello"), ("assistant", "Reply 1.")]
    assert conv.turns[1].ratings == {"off_topic": True}


RATINGS_IN_VIEW = """(selector) => {
    const boxes = document.querySelectorAll(selector);
    const box = boxes[boxes.length - 1];
    if (!box) return false;
    const r = box.getBoundingClientRect();
    if (r.height === 0 || r.top < 0 || r.bottom > window.innerHeight) return false;
    const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
    return box.contains(hit);  // not clipped by a scroll area, not covered
}"""

LEASE_STANDS_STILL = """async (ms) => {
    const text = () => document.querySelector('#lease-text').textContent;
    const first = text();
    const t0 = performance.now();
    while (performance.now() - t0 < ms) {
        await new Promise((resolve) => requestAnimationFrame(resolve));
        if (text() !== first) return `changed from ${first} to ${text()}`;
    }
    return first;
}"""


def test_the_chat_page_shows_the_models_state_and_points_at_what_to_fix(fresh_server, context_factory, output_dir):
    client = fresh_server.client()
    flow = client.flow.create_chat_flow(
        "page quality",
        "Try to get the bot off-topic.",
        dimensions=[
            {"key": "off_topic", "label": "Off-topic", "type": "boolean"},
            {"key": "helpfulness", "label": "Helpfulness", "type": "scale", "min": 1, "max": 5},
        ],
        likert_scale=0,
        justification="off",
    )
    story = "I ordered a blue kettle three weeks ago and it still has not arrived. " * 6
    history = []
    for k in range(3):
        history += [{"role": "user", "content": f"{k}: {story}"}, {"role": "assistant", "content": f"Sorry! {story}"}]
    item = flow.create_new_flow_batch([{"id": "q1", "messages": history}], time_to_live=300)
    release = threading.Event()

    def bot(messages: list[dict[str, str]]) -> Iterator[str]:
        yield "Let me check. "
        release.wait(10)
        yield "It ships today."

    handle = serve_and_wait(flow, bot)
    try:
        annotator = client.annotators.create("Quinn")
        tab = Annotator(context_factory(viewport={"width": 1100, "height": 700}), annotator.join_url)
        page = tab.page
        tab.wait_for_pair()
        page.wait_for_selector("#rlhf .chat")

        # Controls styled as the rest of the page, and the keys said.
        style = page.evaluate(
            """() => {
                const s = getComputedStyle(document.querySelector('.chat-input'));
                const send = getComputedStyle(document.querySelector('.chat-send'));
                return { font: s.fontFamily, body: getComputedStyle(document.body).fontFamily,
                         radius: s.borderRadius, send: send.minHeight };
            }"""
        )
        assert style["font"] == style["body"] and style["radius"] == "6px" and style["send"] == "44px", style
        assert "Ctrl+Enter" in page.inner_text(".chat-send") and "Ctrl+Enter" in page.inner_text(".chat-keys")

        # Ctrl+Enter sends; while the model writes the page says so, and the lease's countdown stands still.
        page.fill(".chat-input", "Where is it?")
        page.press(".chat-input", "Control+Enter")
        page.wait_for_selector('.chat-status[data-state="writing"]')
        assert "is writing" in page.inner_text(".chat-status")
        page.wait_for_selector('#lease[data-paused="true"]')
        assert "paused" in page.inner_text("#lease-text")
        still = page.evaluate(LEASE_STANDS_STILL, 1500)
        assert still.endswith("(paused while the model writes)"), still
        release.set()

        # When the reply ends its rating questions are in view (not cut off inside a scroll box), by label.
        page.wait_for_selector(".chat-message .chat-ratings")
        page.wait_for_function(RATINGS_IN_VIEW, arg=".chat-ratings", timeout=5000)
        assert page.locator(".chat-dimension-label").all_inner_texts() == ["Off-topic", "Helpfulness"]
        assert "off_topic" not in page.inner_text(".chat-ratings")
        page.wait_for_selector('#lease[data-paused="false"]')
        assert page.get_attribute(".chat-status", "data-state") == ""
        page.screenshot(path=str(output_dir / "chat-page.png"))

        # A second branch, rated; the first left unrated: Submit names it and takes the annotator there.
        page.click(".chat-regenerate")
        page.wait_for_function("() => document.querySelectorAll('.chat-branch').length === 2")
        page.wait_for_selector(".chat-message .chat-ratings")
        page.locator(".chat-ratings label", has_text="No").click()
        page.locator(".chat-ratings label", has_text="4").click()
        page.locator(".chat-verdict label", has_text="Branch 2").click()
        page.click(".chat-submit")
        problems = page.inner_text(".rlhf-problems")
        assert "Branch 1, reply 1 (Model A): rate Off-topic, Helpfulness" in problems, problems
        assert page.inner_text(".chat-branch.current") == "Branch 1"
        page.wait_for_function(RATINGS_IN_VIEW, arg=".chat-ratings.invalid", timeout=5000)
        page.locator(".chat-ratings label", has_text="Yes").click()
        page.locator(".chat-ratings label", has_text="2").click()
        page.wait_for_selector(".rlhf-problems", state="hidden")
        assert page.locator(".chat-ratings.invalid").count() == 0

        # The model goes away: the page says so at once, before anyone sends a turn.
        handle.stop()
        page.wait_for_selector('.chat-status[data-state="offline"]', timeout=6000)
        assert "offline" in page.inner_text(".chat-status")
        page.screenshot(path=str(output_dir / "chat-page-offline.png"), full_page=True)
        page.click(".chat-submit")
        wait_for_answer(item)
        assert tab.errors == []
    finally:
        handle.stop()
    [conv] = item.get_conversations()
    by_id = {t.id: t for t in conv.turns}
    assert [by_id[leaf].ratings for leaf in conv.branches] == [
        {"off_topic": True, "helpfulness": 2},
        {"off_topic": False, "helpfulness": 4},
    ]
