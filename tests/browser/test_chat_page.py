"""Chat tasks on the annotator page, in a real Chromium against a real `flowlab serve` and a model served from
Python: an offline model is said so with a retry, replies stream in, an edited first turn branches the
conversation, both branches are annotated, and the records hold both threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from tests.browser import test_annotate
from tests.browser.conftest import watch_errors
from tests.browser.test_annotate import Annotator

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
        deadline = time.monotonic() + 10
        while not all(m.attached for m in flow.get_models()) and time.monotonic() < deadline:
            time.sleep(0.05)
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
        deadline = time.monotonic() + 15
        while item.get_progress().response_count < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
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
        deadline = time.monotonic() + 15
        while item.get_progress().response_count < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert tab.errors == []
    [conv] = item.get_conversations()
    users = [t for t in conv.turns if t.role == "user"]
    assert len(users) == 1, "a regenerated reply shares its user turn"
    by_id = {t.id: t for t in conv.turns}
    assert [by_id[leaf].content for leaf in conv.branches] == ["First try.", "Second try."]
    assert conv.selected == conv.branches[1] and conv.likert is None
    assert [by_id[leaf].ratings for leaf in conv.branches] == [{"good": False}, {"good": True}]
