"""Write tasks on the annotator page, in a real Chromium against a real `flowlab serve`: the prompt, guidance and
reference; writing with a live character count against the flow's limits and a Markdown preview; pasting blocked
where the flow says so; Ctrl+Enter submits; the server keeps the text with its author."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser import test_annotate
from tests.browser.test_annotate import PAIR_TIMEOUT_MS, Annotator, wait_until

context_factory = test_annotate.context_factory  # the fixture: browser contexts, closed after each test

pytestmark = pytest.mark.browser

PROMPT = {
    "id": "sea",
    "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Describe the sea."}],
    "guidance": "One or two sentences.",
    "reference": "The sea covers most of the Earth.",
}


def test_an_annotator_writes_a_response_by_keyboard_with_preview_limits_and_no_paste(
    fresh_server: Any, context_factory: Any
) -> None:
    client = fresh_server.client()
    flow = client.flow.create_write_flow(
        "write page", "Write the reply.", min_chars=10, max_chars=60, allow_paste=False
    )
    item = flow.create_new_flow_batch([PROMPT], time_to_live=300)
    annotator = client.annotators.create("Wanda")
    tab = Annotator(context_factory(viewport={"width": 1280, "height": 900}), annotator.join_url)
    tab.wait_for_pair()
    page = tab.page
    form = page.locator("#rlhf .write-form")
    assert form.is_visible()
    text = page.inner_text("#rlhf .write-form")
    for shown in ("Describe the sea.", "Be brief.", "One or two sentences.", "The sea covers most of the Earth."):
        assert shown in text
    assert "Pasting is off" in text
    assert page.evaluate("document.activeElement.name") == "text", "the text box has focus: write at once"

    page.keyboard.type("**Blue**")
    page.wait_for_selector("#rlhf .write-preview strong")
    assert page.inner_text("#rlhf .write-preview strong") == "Blue", "the preview renders Markdown"
    assert page.inner_text("#rlhf .write-count").startswith("8 / 60") and "at least 10" in page.inner_text(
        "#rlhf .write-count"
    )
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("#rlhf .write-problem:visible")
    assert "at least 10" in page.inner_text("#rlhf .write-problem")
    assert item.get_demonstrations() == []

    # A paste is blocked and said so.
    page.evaluate(
        """() => { const t = document.querySelector('#rlhf textarea[name=text]');
             const data = new DataTransfer(); data.setData('text/plain', ' PASTED TEXT');
             const paste = { clipboardData: data, bubbles: true, cancelable: true };
             t.dispatchEvent(new ClipboardEvent('paste', paste)); }"""
    )
    assert "Pasting is off" in page.inner_text("#rlhf .write-problem")
    assert page.input_value("#rlhf textarea[name=text]") == "**Blue**"

    page.keyboard.type(" and " + "wide " * 12)
    assert page.get_attribute("#rlhf .write-count", "data-state") == "over"
    page.keyboard.press("Control+Enter")
    assert "at most 60" in page.inner_text("#rlhf .write-problem")
    page.fill("#rlhf textarea[name=text]", "**Blue** and wide, under a grey sky.")
    assert page.get_attribute("#rlhf .write-count", "data-state") == "ok"
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("body[data-screen=wait]", timeout=PAIR_TIMEOUT_MS)
    assert wait_until(lambda: len(item.get_demonstrations()) == 1)
    (demo,) = item.get_demonstrations()
    assert demo.text == "**Blue** and wide, under a grey sky." and demo.annotator_id == annotator.id
    assert demo.pasted_chars == 0 and demo.shown_at is not None
    assert tab.dialogs == [] and tab.errors == []
