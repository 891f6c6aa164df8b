"""Full time on every task, in a real Chromium against a real `flowlab serve`: the page holds a task in reserve
while the person works on the one on screen, and the task that appears next shows its whole lease, because
showing it starts its clock (POST /v1/tasks/{id}/shown). For every kind: pairwise, classify, RLHF, chat, listwise
and write."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.browser import test_annotate
from tests.browser.test_annotate import PAIR_TIMEOUT_MS, Annotator, wait_until
from tests.browser.test_chat_page import serve_and_wait

context_factory = test_annotate.context_factory

pytestmark = pytest.mark.browser

LEASE = 10  # seconds: short, so a few seconds on one task is a large share of the next one's lease
THINK = 4  # seconds spent on the task on screen while the next one is held behind it

# Each time a task appears, what its countdown says at that moment (the observer runs right after `show`).
WATCH_APPEARANCES = """() => {
  window.appeared = [];
  new MutationObserver(() => {
    const id = document.querySelector("#pair").dataset.taskId;
    if (id) window.appeared.push({ id, text: document.querySelector("#lease-text").textContent });
  }).observe(document.querySelector("#pair"), { attributes: true, attributeFilter: ["data-task-id"] });
}"""


def seconds_left(text: str) -> int:
    """The countdown's "m:ss left on this …" in seconds."""
    found = re.search(r"(\d+):(\d\d) left", text)
    assert found, f"no time left in {text!r}"
    return int(found.group(1)) * 60 + int(found.group(2))


class Tab(Annotator):
    """An annotator's tab that counts the tasks it leased (with `POST /v1/tasks/next`) and records each task's
    countdown as it appears."""

    def __init__(self, context: Any, join_url: str) -> None:
        self.leased = 0

        def on_response(response: Any) -> None:
            if response.url.endswith("/v1/tasks/next") and response.status == 200:
                self.leased += 1

        context.on("response", on_response)
        super().__init__(context, join_url)
        self.page.wait_for_selector("#pair", state="attached")
        self.page.evaluate(WATCH_APPEARANCES)

    def left(self) -> int:
        return seconds_left(self.page.inner_text("#lease-text"))

    def spend(self, seconds: float) -> None:
        """Work on the task on screen until its countdown has gone down by `seconds`."""
        until = LEASE - seconds
        self.page.wait_for_function(
            """(until) => {
                 const m = /(\\d+):(\\d\\d) left/.exec(document.querySelector("#lease-text").textContent);
                 return m && Number(m[1]) * 60 + Number(m[2]) <= until;
               }""",
            arg=until,
            timeout=(seconds + 5) * 1000,
        )

    def next_appears(self, before: str, act: Callable[[], None]) -> tuple[str, int, int]:
        """Do `act` (an answer); return the task that appears, its time left as it appears, and once the server's
        reply to `shown` has set its deadline."""
        act()
        task = self.wait_for_pair(before)
        self.page.wait_for_function(
            """(id) => document.querySelector("#pair").dataset.taskId === id
                 && document.querySelector("#lease").dataset.clock === "server" """,
            arg=task,
            timeout=PAIR_TIMEOUT_MS,
        )
        settled = self.left()
        appeared = [a for a in self.page.evaluate("() => window.appeared") if a["id"] == task]
        assert appeared, "the observer saw the task appear"
        return task, seconds_left(appeared[0]["text"]), settled


def held_then_shown(tab: Tab, answer_first: Callable[[], None]) -> str:
    """The first task on screen, one held behind it; a while on the first, then its answer: the held one appears
    with its full lease. Returns the task that appeared."""
    first = tab.wait_for_pair()
    # `leased` is kept by a Playwright response handler: the wait goes through the page, or the count never moves.
    assert wait_until(lambda: tab.leased >= 2, page=tab.page), "the page holds a task behind the one on screen"
    tab.spend(THINK)
    task, at_appearance, settled = tab.next_appears(first, answer_first)
    assert at_appearance >= LEASE - 1, f"it appeared with {at_appearance} s of {LEASE} s"
    assert settled >= LEASE - 1, f"the server's deadline left {settled} s of {LEASE} s"
    return task


def answered_late(tab: Tab, item: Any, answer: Callable[[], None], count: int) -> None:
    """Answered after the lease it was leased with ran out (LEASE s after it was leased), yet within the lease
    that started when it appeared: it counts."""
    tab.spend(LEASE - 3)  # on screen THINK + 7 s after it was leased: past its first expiry
    answer()
    assert wait_until(lambda: item.get_response_count() >= count), "the late answer was counted"
    assert item.get_response_count() == count
    assert "ran out" not in tab.page.inner_text("#notice")


def test_a_pair_held_behind_another_appears_with_its_full_lease(fresh_server, context_factory):
    client = fresh_server.client()
    flow = client.flow.create_ranking_flow(
        name="full time pairs", instruction="Which?", max_response_threshold=50, lease_seconds=LEASE
    )
    item = flow.create_new_flow_batch(datapoints=[f"text {i}" for i in range(6)], time_to_live=300)
    tab = Tab(context_factory(), client.annotators.create("Patient Pat").join_url)
    held_then_shown(tab, lambda: tab.page.click("#choose-a"))
    assert wait_until(lambda: item.get_response_count() == 1)
    answered_late(tab, item, lambda: tab.page.click("#choose-b"), 2)
    assert tab.errors == [] and tab.dialogs == []


def test_a_classify_item_held_behind_another_appears_with_its_full_lease(fresh_server, context_factory):
    client = fresh_server.client()
    flow = client.flow.create_classify_flow(
        name="full time labels",
        instruction="Is it about cats?",
        categories=["yes", "no"],
        max_responses_per_datapoint=1,
        min_responses_per_datapoint=1,
        serve_timeout=LEASE,  # hosted's name for the lease
    )
    item = flow.create_new_flow_batch([f"text {i}" for i in range(6)], time_to_live=300)
    tab = Tab(context_factory(), client.annotators.create("Careful Cam").join_url)
    choose = '#categories .choice[data-choice="yes"]'
    held_then_shown(tab, lambda: tab.page.click(choose))
    assert wait_until(lambda: item.get_response_count() == 1)
    answered_late(tab, item, lambda: tab.page.click(choose), 2)
    assert tab.errors == [] and tab.dialogs == []


def lead_pair(client: Any) -> Any:
    """A pair served first (its deadline is nearest), and only once: the page holds the next kind's task behind
    it (an RLHF or chat task on screen has nothing held behind it)."""
    flow = client.flow.create_ranking_flow(
        name="first a pair", instruction="Which?", max_response_threshold=1, lease_seconds=LEASE
    )
    return flow.create_new_flow_batch(datapoints=["left", "right"], time_to_live=200)


def test_an_rlhf_task_held_behind_a_pair_appears_with_its_full_lease(fresh_server, context_factory):
    client = fresh_server.client()
    pair = lead_pair(client)
    flow = client.flow.create_rlhf_flow(
        "full time rlhf",
        "Rate both answers.",
        dimensions=[{"key": "ok", "label": "Fine", "type": "boolean"}],
        rewrite="off",
        likert_scale=0,
        justification="off",
        max_response_threshold=1,
        lease_seconds=LEASE,
    )
    task = {
        "id": "q1",
        "prompt": "Say hello.",
        "responses": [{"source_id": "a", "content": "Hello!"}, {"source_id": "b", "content": "Go away."}],
    }
    item = flow.create_new_flow_batch([task], time_to_live=300)
    tab = Tab(context_factory(viewport={"width": 1280, "height": 900}), client.annotators.create("Reader Rae").join_url)
    held_then_shown(tab, lambda: tab.page.click("#choose-a"))
    assert wait_until(lambda: pair.get_response_count() == 1)
    page = tab.page
    page.wait_for_selector("#rlhf .rlhf-submit")
    for j in range(2):
        page.locator(f'#rlhf input[name="r{j}:0"]').nth(0).check()
    page.locator('#rlhf input[name="sel"]').nth(0).check()
    answered_late(tab, item, lambda: page.click("#rlhf .rlhf-submit"), 1)
    assert tab.errors == [] and tab.dialogs == []


def test_a_chat_task_held_behind_a_pair_appears_with_its_full_lease(fresh_server, context_factory):
    client = fresh_server.client()
    pair = lead_pair(client)
    flow = client.flow.create_chat_flow(
        "full time chat",
        "Chat.",
        dimensions=[{"key": "off_topic", "label": "Off-topic", "type": "boolean"}],
        likert_scale=0,
        lease_seconds=LEASE,
    )
    seed = [{"role": "user", "content": "Where is my parcel?"}]  # answered by the model as the task appears
    item = flow.create_new_flow_batch([{"id": "c1", "messages": seed}], time_to_live=300)
    with serve_and_wait(flow, lambda messages: "It arrives tomorrow."):
        tab = Tab(
            context_factory(viewport={"width": 1280, "height": 900}), client.annotators.create("Chatty Cy").join_url
        )
        held_then_shown(tab, lambda: tab.page.click("#choose-a"))
        assert wait_until(lambda: pair.get_response_count() == 1)
        page = tab.page
        page.wait_for_function("() => document.querySelector('.chat-thread').innerText.includes('arrives tomorrow')")
        page.locator(".chat-ratings label", has_text="No").click()
        answered_late(tab, item, lambda: page.click(".chat-submit"), 1)
        assert tab.errors == [] and tab.dialogs == []


def test_a_listwise_set_held_behind_a_pair_appears_with_its_full_lease(fresh_server, context_factory):
    client = fresh_server.client()
    pair = lead_pair(client)
    flow = client.flow.create_listwise_flow(
        "full time lists", "Order them, best first.", k=3, max_response_threshold=1, lease_seconds=LEASE
    )
    item = flow.create_new_flow_batch(["first answer", "second answer", "third answer"], time_to_live=300)
    tab = Tab(context_factory(viewport={"width": 1280, "height": 900}), client.annotators.create("Lister Lu").join_url)
    held_then_shown(tab, lambda: tab.page.click("#choose-a"))
    assert wait_until(lambda: pair.get_response_count() == 1)
    page = tab.page
    page.wait_for_selector("#rlhf .listwise-card")
    for key in ("2", "1"):  # the third card falls into place
        page.keyboard.press(key)
    assert page.get_attribute("#rlhf .listwise-form", "data-complete") == "true"
    answered_late(tab, item, lambda: page.click("#rlhf .rlhf-submit"), 1)
    assert tab.errors == [] and tab.dialogs == []


def test_a_write_prompt_held_behind_a_pair_appears_with_its_full_lease(fresh_server, context_factory):
    client = fresh_server.client()
    pair = lead_pair(client)
    flow = client.flow.create_write_flow("full time writing", "Write the reply.", lease_seconds=LEASE)
    item = flow.create_new_flow_batch(["Describe the sea in a sentence."], time_to_live=300)
    tab = Tab(context_factory(viewport={"width": 1280, "height": 900}), client.annotators.create("Writer Wyn").join_url)
    held_then_shown(tab, lambda: tab.page.click("#choose-a"))
    assert wait_until(lambda: pair.get_response_count() == 1)
    page = tab.page
    page.wait_for_selector("#rlhf .write-form")
    page.fill("#rlhf textarea[name=text]", "Grey and wide under a low sky.")
    answered_late(tab, item, lambda: page.keyboard.press("Control+Enter"), 1)
    assert tab.errors == [] and tab.dialogs == []
