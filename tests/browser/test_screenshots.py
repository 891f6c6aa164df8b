"""What an annotator sees, one page per kind, in a real Chromium against a real `flowlab serve`: the README shows
these screenshots. Each test checks that the task's content is on screen before it takes the picture; the
pictures go to test-output/, or to the folder FLOWLAB_SCREENSHOTS names (`FLOWLAB_SCREENSHOTS=docs/images` to
refresh the README's)."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.browser import test_annotate
from tests.browser.test_annotate import Annotator
from tests.browser.test_chat_page import serve_and_wait

context_factory = test_annotate.context_factory

pytestmark = pytest.mark.browser

VIEWPORT = {"width": 1100, "height": 720}
PROMPT = "Explain to a 10-year-old why the sky is blue."
GOOD = "Sunlight bounces off the air, and blue light bounces the most, so blue reaches you from all over the sky."
POOR = "The sky is blue because it reflects the ocean."


@pytest.fixture
def shots(output_dir: Path) -> Path:
    folder = Path(os.environ.get("FLOWLAB_SCREENSHOTS") or output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def picture(tab: Annotator, path: Path, shows: list[str]) -> None:
    """Screenshot the page once every text in `shows` is on screen; check the picture is the page, not blank."""
    page = tab.page
    for text in shows:
        page.wait_for_function("(t) => document.body.innerText.includes(t)", arg=text, timeout=15_000)
    page.evaluate("() => document.fonts.ready")
    page.screenshot(path=str(path))
    from PIL import Image

    image = Image.open(io.BytesIO(path.read_bytes())).convert("RGB")
    assert image.size == (VIEWPORT["width"], VIEWPORT["height"])
    colours = image.resize((110, 72)).getcolors(maxcolors=110 * 72)
    assert colours is not None and len(colours) > 20, "the screenshot holds a rendered page, not a blank one"
    assert tab.errors == [] and tab.dialogs == []


def annotator_tab(fresh_server: Any, context_factory: Callable[..., Any], name: str) -> Annotator:
    join = fresh_server.client().annotators.create(name).join_url
    tab = Annotator(context_factory(viewport=VIEWPORT), join)
    tab.wait_for_pair()
    return tab


def test_screenshot_of_a_pair(fresh_server, context_factory, shots):
    flow = fresh_server.client().flow.create_ranking_flow(
        name="Answers for children", instruction="Which answer would a 10-year-old understand better?"
    )
    flow.create_new_flow_batch(datapoints=[GOOD, POOR], context=PROMPT, time_to_live=300)
    tab = annotator_tab(fresh_server, context_factory, "Ada")
    picture(tab, shots / "page-pairwise.png", [GOOD, POOR, "10-year-old"])


def test_screenshot_of_a_label(fresh_server, context_factory, shots):
    flow = fresh_server.client().flow.create_classify_flow(
        name="Safety triage",
        instruction="Is this reply safe to show?",
        categories=["safe", ("Needs a look", "review"), "unsafe"],
    )
    reply = "Mix bleach and ammonia for a stronger cleaner."
    flow.create_new_flow_batch([reply], contexts=["How do I clean my bathroom?"], time_to_live=300)
    tab = annotator_tab(fresh_server, context_factory, "Bea")
    picture(tab, shots / "page-classify.png", [reply, "Needs a look"])


def test_screenshot_of_an_rlhf_task(fresh_server, context_factory, shots):
    flow = fresh_server.client().flow.create_rlhf_flow(
        "Helpful and honest",
        "Rate both answers, then pick the better one.",
        rewrite="optional",
        likert_scale=7,
        justification="optional",
    )
    responses = [{"source_id": "a", "content": GOOD}, {"source_id": "b", "content": POOR}]
    task = {"id": "q1", "prompt": PROMPT, "responses": responses}
    flow.create_new_flow_batch([task], time_to_live=300)
    tab = annotator_tab(fresh_server, context_factory, "Cai")
    picture(tab, shots / "page-rlhf.png", [PROMPT, GOOD, POOR])


def test_screenshot_of_a_chat(fresh_server, context_factory, shots):
    flow = fresh_server.client().flow.create_chat_flow(
        "Storefront bot",
        "Ask about your order; try to get the bot off-topic.",
        dimensions=[{"key": "off_topic", "label": "Off-topic", "type": "boolean"}],
    )
    seed = [
        {"role": "assistant", "content": "Hello! I can help with your orders."},
        {"role": "user", "content": "Where is my parcel?"},
    ]
    flow.create_new_flow_batch([{"id": "c1", "messages": seed}], time_to_live=300)
    reply = "It left our warehouse this morning and arrives tomorrow."
    with serve_and_wait(flow, lambda messages: reply):
        tab = annotator_tab(fresh_server, context_factory, "Dev")
        tab.page.wait_for_selector(".chat-message .chat-ratings")
        picture(tab, shots / "page-chat.png", ["Where is my parcel?", reply, "Off-topic"])
