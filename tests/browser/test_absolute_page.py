"""The annotator page on an absolute ranking flow: "both good" (key 3) and "both bad" (key 4) beside A and B."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.browser.test_annotate import Annotator, wait_until


@pytest.fixture
def new_context(browser: Any) -> Iterator[Callable[[], Any]]:
    contexts: list[Any] = []

    def make() -> Any:
        contexts.append(browser.new_context())
        return contexts[-1]

    yield make
    for ctx in contexts:
        ctx.close()


def test_both_good_and_both_bad_by_keys_and_click_are_stored_with_their_level(fresh_server, new_context):
    client = fresh_server.client()
    flow = client.flow.create_ranking_flow(
        name="absolute",
        instruction="Which is better?",
        max_response_threshold=3,
        max_votes_per_annotator=3,
        absolute=True,
    )
    item = flow.create_new_flow_batch(datapoints=["one", "two", "three", "four"], time_to_live=120)
    annotator = client.annotators.create("Ada")

    tab = Annotator(new_context(), f"{fresh_server.url}/annotate#token={annotator.token}")
    first = tab.wait_for_pair()
    assert tab.page.locator("#choose-both-good").is_visible()
    assert tab.page.locator("#choose-both-bad").is_visible()
    assert tab.page.locator("#keys-levels").is_visible()
    second = tab.answer("key:3")
    assert second != first
    tab.answer("key:4")
    tab.page.click("#choose-both-good")

    auth = {"Authorization": f"Bearer {fresh_server.api_key}"}

    def stored() -> list[dict]:
        return httpx.get(f"{fresh_server.url}/v1/items/{item.id}/votes", headers=auth).json()

    votes = wait_until(lambda: len(stored()) == 3 and stored())
    assert sorted(v["level"] for v in votes) == ["bad", "good", "good"]
    assert all(v["tie"] for v in votes)
    assert not tab.errors and not tab.dialogs
    results = item.get_results(timeout=20)
    assert all(d.p_acceptable is not None for d in results.details)


def test_plain_ranking_flows_show_no_level_buttons_and_ignore_keys_3_and_4(fresh_server, new_context):
    client = fresh_server.client()
    flow = client.flow.create_ranking_flow(name="plain", instruction="Pick one", max_response_threshold=5)
    flow.create_new_flow_batch(datapoints=["left", "right", "middle"], time_to_live=60)
    annotator = client.annotators.create("Bo")
    tab = Annotator(new_context(), f"{fresh_server.url}/annotate#token={annotator.token}")
    first = tab.wait_for_pair()
    assert tab.page.locator("#choose-both-good").is_hidden()
    assert tab.page.locator("#keys-levels").is_hidden()
    tab.page.keyboard.press("3")
    tab.page.keyboard.press("4")
    tab.page.wait_for_timeout(300)
    assert tab.task_id() == first, "3 and 4 do nothing on a flow without levels"
