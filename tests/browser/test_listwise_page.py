"""Listwise tasks on the annotator page, in a real Chromium against a real `flowlab serve`: k cards with fixed
numbers; ordering by number keys (Backspace undoes, Enter submits once complete), by dragging the cards, and
best–worst by keys and by the cards' buttons; the stored rankings match what was done on the page."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.browser import test_annotate
from tests.browser.conftest import watch_errors
from tests.browser.test_annotate import PAIR_TIMEOUT_MS, Annotator, wait_until

context_factory = test_annotate.context_factory  # the fixture: browser contexts, closed after each test

pytestmark = pytest.mark.browser

TEXTS = ["alpha answer", "bravo answer", "charlie answer", "delta answer", "echo answer"]  # five: 4-sets to spare


def _rankings(server: Any, item_id: str) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {server.api_key}"}
    return httpx.get(f"{server.url}/v1/items/{item_id}/rankings", headers=headers).json()  # type: ignore[no-any-return]


def _refs(page: Any) -> list[int]:
    """The datapoint index behind each card, in the order the cards were shown (numbers 1…k)."""
    return page.evaluate(
        """() => [...document.querySelectorAll('#rlhf .listwise-card')]
                 .sort((a, b) => a.dataset.position - b.dataset.position).map((c) => Number(c.dataset.ref))"""
    )


def _start(server: Any, context_factory: Any, mode: str, name: str) -> tuple[Any, Any, Any]:
    client = server.client()
    flow = client.flow.create_listwise_flow(
        name, "Order these, best first.", k=4, mode=mode, max_response_threshold=6, max_votes_per_annotator=6
    )
    item = flow.create_new_flow_batch([{"id": t, "text": t} for t in TEXTS], time_to_live=300)
    annotator = client.annotators.create("Lisa")
    context = context_factory(viewport={"width": 1280, "height": 1000})
    tab = Annotator(context, annotator.join_url)
    tab.console = watch_errors(tab.page)
    tab.wait_for_pair()
    tab.page.wait_for_selector("#rlhf .listwise-card")
    return item, annotator, tab


def _next_task(tab: Any, before: str | None) -> None:
    tab.page.wait_for_function(
        "(before) => document.querySelector('#pair').dataset.taskId !== before"
        " && document.querySelectorAll('#rlhf .listwise-card').length > 0",
        arg=before,
        timeout=PAIR_TIMEOUT_MS,
    )


def test_an_annotator_orders_by_keys_and_by_drag(fresh_server: Any, context_factory: Any) -> None:
    item, annotator, tab = _start(fresh_server, context_factory, "order", "listwise keys")
    page = tab.page
    text = page.inner_text("#rlhf .listwise-form")
    assert sum(t in text for t in TEXTS) == 4, "the k datapoints are on screen"
    assert [page.inner_text(f"#rlhf .listwise-card[data-position='{p}'] .listwise-number") for p in range(4)] == [
        "1",
        "2",
        "3",
        "4",
    ]

    # Keys: 3, 1, a mistake (2) undone with Backspace, then 4: the last one falls into place.
    first = _refs(page)
    page.keyboard.press("Enter")
    assert page.is_visible("#rlhf .listwise-problem"), "Enter before the order is complete says what is missing"
    for key in ("3", "1", "2", "Backspace", "4"):
        page.keyboard.press(key)
    assert page.get_attribute("#rlhf .listwise-form", "data-complete") == "true"
    ranks = [page.inner_text(f"#rlhf .listwise-card[data-position='{p}'] .listwise-rank") for p in range(4)]
    assert ranks == ["2nd", "4th", "1st", "3rd"]
    task = page.get_attribute("#pair", "data-task-id")
    page.keyboard.press("Enter")
    assert wait_until(lambda: len(_rankings(fresh_server, item.id)) == 1)
    (stored,) = _rankings(fresh_server, item.id)
    assert stored["order"] == [first[2], first[0], first[3], first[1]] and stored["annotator_id"] == annotator.id
    assert stored["mode"] == "order"

    # Drag: put the card numbered 4 on top, then the card numbered 1 below the one numbered 3.
    _next_task(tab, task)
    second = _refs(page)
    card = "#rlhf .listwise-card[data-position='{}']"
    page.drag_and_drop(card.format(3), card.format(0), target_position={"x": 20, "y": 5})
    assert page.get_attribute("#rlhf .listwise-form", "data-complete") == "true", "a drag orders every card"
    page.drag_and_drop(card.format(0), card.format(2), target_position={"x": 20, "y": 60})
    shown = page.evaluate("() => [...document.querySelectorAll('#rlhf .listwise-card')].map((c) => c.dataset.position)")
    assert shown == ["3", "1", "2", "0"], shown
    page.click("#rlhf .rlhf-submit")
    assert wait_until(lambda: len(_rankings(fresh_server, item.id)) == 2)
    stored = _rankings(fresh_server, item.id)[1]
    assert stored["order"] == [second[3], second[1], second[2], second[0]]
    assert tab.dialogs == [] and tab.errors == [] and tab.console == []


def test_an_annotator_picks_best_and_worst_by_keys_and_buttons(fresh_server: Any, context_factory: Any) -> None:
    item, _, tab = _start(fresh_server, context_factory, "best_worst", "listwise best worst")
    page = tab.page
    assert "best and the worst" in page.inner_text("#rlhf .listwise-heading, #rlhf h2")
    first = _refs(page)
    for key in ("2", "4", "Backspace", "1"):  # best 2, worst 4 undone, worst 1
        page.keyboard.press(key)
    assert page.inner_text("#rlhf .listwise-card[data-position='1'] .listwise-rank") == "Best"
    assert page.inner_text("#rlhf .listwise-card[data-position='0'] .listwise-rank") == "Worst"
    task = page.get_attribute("#pair", "data-task-id")
    page.keyboard.press("Enter")
    assert wait_until(lambda: len(_rankings(fresh_server, item.id)) == 1)
    (stored,) = _rankings(fresh_server, item.id)
    assert stored["mode"] == "best_worst"
    assert stored["order"][0] == first[1] and stored["order"][-1] == first[0]

    # Buttons: worst first, then best; picking a card's other end moves it.
    _next_task(tab, task)
    second = _refs(page)
    card = "#rlhf .listwise-card[data-position='{}'] .listwise-{}"
    page.click(card.format(2, "worst"))
    page.click(card.format(3, "best"))
    page.click(card.format(2, "best"))  # changes their mind: 3 is the best, so it is no longer the worst
    assert page.get_attribute("#rlhf .listwise-form", "data-complete") == "false"
    page.click(card.format(0, "worst"))
    assert page.get_attribute(card.format(2, "best"), "aria-pressed") == "true"
    page.click("#rlhf .rlhf-submit")
    assert wait_until(lambda: len(_rankings(fresh_server, item.id)) == 2)
    stored = _rankings(fresh_server, item.id)[1]
    assert stored["order"][0] == second[2] and stored["order"][-1] == second[0]
    page.wait_for_selector("body[data-screen=wait], #rlhf .listwise-card", timeout=PAIR_TIMEOUT_MS)
    assert tab.dialogs == [] and tab.errors == [] and tab.console == []
