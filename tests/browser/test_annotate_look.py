"""How the annotator page reads and behaves, in a real Chromium against a real `flowlab serve`: words for the kind
of task at hand, images at full size, focus after an answer, no server jargon, notices clear of the key hints, the
wrong-token page, Leave asking first, and the RLHF form's rewrite diff and instruction."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from tests.browser import test_annotate
from tests.browser.test_annotate import PAIR_TIMEOUT_MS, Annotator, png_bytes, wait_until

context_factory = test_annotate.context_factory  # the fixture: browser contexts, closed after each test

pytestmark = pytest.mark.browser

STATIC = Path(__file__).resolve().parents[2] / "src" / "flowlab" / "server" / "static"
# The page's own modules: annotate.js words the screens, the others what a task shows (chat.js: the chat page's).
PAGE_SCRIPTS = ["annotate.js", "render.js", "rlhf.js", "markdown.js"]
JARGON = re.compile(r"\bleas(e|es|ed|ing)\b", re.IGNORECASE)


def wait_text(page: Any, selector: str, text: str, timeout: int = PAIR_TIMEOUT_MS) -> None:
    page.wait_for_function(
        "([s, t]) => document.querySelector(s)?.textContent.includes(t)", arg=[selector, text], timeout=timeout
    )


def overlaps(a: dict[str, float], b: dict[str, float]) -> bool:
    return (
        a["x"] < b["x"] + b["width"]
        and b["x"] < a["x"] + a["width"]
        and a["y"] < b["y"] + b["height"]
        and (b["y"] < a["y"] + a["height"])
    )


# ---------------------------------------------------------------- words for the kind at hand


def test_the_waiting_screen_and_the_skip_link_speak_of_the_kind_at_hand(fresh_server, context_factory, output_dir):
    client = fresh_server.client()
    annotator = client.annotators.create("Kim")
    ctx = context_factory(viewport={"width": 1280, "height": 900})
    tab = Annotator(ctx, annotator.join_url)
    page = tab.page
    # Nothing seen yet in this browser: neutral words.
    wait_text(page, "#wait-title", "No tasks right now")
    assert page.inner_text("#wait-text").startswith("Keep this page open: it shows the next task")

    responses = [{"source_id": "a", "content": "Yes."}, {"source_id": "b", "content": "No."}]
    kinds = {
        "pairwise": (
            lambda: client.flow.create_ranking_flow(name="p", instruction="Which?", max_response_threshold=5),
            ["left", "right"],
        ),
        "classify": (
            lambda: client.flow.create_classify_flow(
                name="c",
                instruction="Which?",
                categories=["x", "y"],
                max_responses_per_datapoint=2,
                min_responses_per_datapoint=1,
            ),
            ["one"],
        ),
        "rlhf": (
            lambda: client.flow.create_rlhf_flow("r", "Rate them.", max_response_threshold=2),
            [{"id": "q", "prompt": "?", "responses": responses}],
        ),
        "listwise": (
            lambda: client.flow.create_listwise_flow("l", "Order them.", k=3, max_response_threshold=2),
            ["first", "second", "third"],
        ),
        "write": (lambda: client.flow.create_write_flow("w", "Write it.", max_response_threshold=2), ["Say hi."]),
        "chat": (
            lambda: client.flow.create_chat_flow("h", "Chat.", models=["v1"], max_turns=1, dimensions=["helpfulness"]),
            [{"id": "c"}],
        ),
    }
    expected = {  # skip link, its target, the waiting screen's title, what the notices call one
        "pairwise": ("Skip to the pair", "#pair", "No pairs to compare right now", "pair"),
        "classify": ("Skip to the item", "#pair", "No items to label right now", "item"),
        "rlhf": ("Skip to the responses", "#rlhf", "No responses to rate right now", "task"),
        "listwise": ("Skip to the answers", "#rlhf", "No sets to order right now", "set"),
        "write": ("Skip to the prompt", "#rlhf", "No prompts to answer right now", "prompt"),
        "chat": ("Skip to the conversation", "#rlhf", "No conversations to have right now", "conversation"),
    }
    for kind, (create, batch) in kinds.items():
        skip, target, idle, one = expected[kind]
        item = create().create_new_flow_batch(batch, time_to_live=120)
        tab.wait_for_pair()
        link = page.locator("#skip-link")
        assert (link.inner_text(), link.get_attribute("href")) == (skip, target), kind
        assert page.locator(target).is_visible(), f"{kind}: the skip link leads to what is on screen"
        assert page.get_attribute("#lease", "aria-label") == f"Time left on this {one}"
        # Focused (a keyboard user's first Tab), the link shows; following it lands on the task.
        page.focus("#skip-link")
        assert link.is_visible() and link.bounding_box()["x"] >= 0
        page.keyboard.press("Enter")
        assert page.evaluate("(t) => location.hash === t", target)
        item.stop()  # the task leaves the screen; nothing else to do
        wait_text(page, "#wait-title", idle, timeout=8000)  # at once: not after the 25 s long poll out returns
        assert page.locator("#wait-title").inner_text() == idle
        assert f"the next {one} as soon as" in page.inner_text("#wait-text")
        assert f"The batch this {one} belonged to has just ended" in page.inner_text("#notice-text")
        page.screenshot(path=str(output_dir / f"annotate-idle-{kind}.png"))

    # A new visit, before any task: the kind seen last.
    page.reload()
    wait_text(page, "#wait-title", "No conversations to have right now")
    assert not tab.errors and not tab.dialogs


# ---------------------------------------------------------------- images at full size, and focus after answers


def test_an_image_opens_at_full_size_without_voting_and_no_focus_ring_outlives_an_answer(
    fresh_server, context_factory, output_dir, tmp_path
):
    client = fresh_server.client()
    flow = client.flow.create_ranking_flow(
        name="big images", instruction="Which photo is sharper?", max_response_threshold=10
    )
    paths = []
    for i, rgb in enumerate([(200, 60, 60), (60, 160, 80), (70, 90, 210)]):
        path = tmp_path / f"big-{i}.png"
        path.write_bytes(png_bytes(rgb, size=1600))
        paths.append(str(path))
    item = flow.create_new_flow_batch([{"id": f"img{i}", "path": p} for i, p in enumerate(paths)], time_to_live=120)
    tab = Annotator(context_factory(viewport={"width": 1280, "height": 900}), client.annotators.create("Zoe").join_url)
    page = tab.page
    first = tab.wait_for_pair()
    page.wait_for_function("() => [...document.querySelectorAll('#pair img')].every((m) => m.naturalWidth > 0)")
    shown = page.evaluate("() => document.querySelector('#body-a img').getBoundingClientRect().width")
    assert shown < 800, f"in its pane the image is scaled down ({shown} px)"

    # A click opens it at its own size; keys wait while it is open; Escape closes it. No vote, same pair.
    page.click("#body-a img")
    dialog = page.locator("dialog#zoom")
    dialog.wait_for(state="visible")
    page.wait_for_function("() => document.querySelector('#zoom img').naturalWidth === 1600")
    full = page.evaluate("""() => { const img = document.querySelector('#zoom img');
        return { width: img.getBoundingClientRect().width, natural: img.naturalWidth,
                 scrolls: document.querySelector('#zoom').scrollWidth > document.querySelector('#zoom').clientWidth };
    }""")
    assert full == {"width": 1600, "natural": 1600, "scrolls": True}, full
    page.screenshot(path=str(output_dir / "annotate-zoom.png"))
    for key in ("1", "ArrowRight", "s"):
        page.keyboard.press(key)
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
    page.wait_for_timeout(300)
    assert tab.task_id() == first and item.get_response_count() == 0, "opening an image is no vote"

    # By keyboard: Tab to the image, Enter opens it, Escape closes it, focus comes back to it.
    page.focus("#body-b .zoom-open")
    page.keyboard.press("Enter")
    dialog.wait_for(state="visible")
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
    assert page.evaluate("() => document.activeElement.closest('#body-b') !== null")
    assert tab.task_id() == first

    # A click, then a key: no answer button keeps focus (a ring on it would look chosen in advance).
    second = tab.answer("click:a")
    assert second != first
    ring = """() => ({ active: document.activeElement.closest('.choice') ? document.activeElement.id : null,
                       visible: [...document.querySelectorAll('.choice')].filter((b) => b.matches(':focus-visible'))
                         .map((b) => b.id) })"""
    assert page.evaluate(ring) == {"active": None, "visible": []}
    third = tab.answer("key:2")
    assert third != second
    assert page.evaluate(ring) == {"active": None, "visible": []}, "a key press after a click draws no ring"
    page.screenshot(path=str(output_dir / "annotate-after-key.png"))
    # Tab still walks on from the pair.
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.closest('#pair') !== null")
    assert wait_until(lambda: item.get_response_count() == 2)
    assert not tab.errors and not tab.dialogs


# ---------------------------------------------------------------- no jargon, notices, wrong tokens, leaving


class _Visible(HTMLParser):
    """The text and the spoken or shown attributes of an HTML file."""

    def __init__(self) -> None:
        super().__init__()
        self.strings: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        for name, value in attrs:
            if name in ("aria-label", "title", "placeholder", "alt") and value:
                self.strings.append(value)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip and data.strip():
            self.strings.append(data)


def user_strings(js: str) -> list[str]:
    """The string literals of a script that read as words to people (they hold a space), comments left out."""
    js = re.sub(r"/\*.*?\*/", "", js, flags=re.DOTALL)
    js = re.sub(r"^\s*//.*$", "", js, flags=re.MULTILINE)
    literals = re.findall(r'"((?:[^"\\\n]|\\.)*)"|`((?:[^`\\]|\\.)*)`', js)
    return [a or b for a, b in literals if " " in (a or b)]


def test_no_server_jargon_in_what_annotators_read() -> None:
    parser = _Visible()
    parser.feed((STATIC / "annotate.html").read_text())
    texts = parser.strings
    for name in PAGE_SCRIPTS:
        texts += user_strings((STATIC / name).read_text())
    assert len(texts) > 60, "the check sees the page's words"
    assert any("Time is up" in t for t in texts) and any("Time ran out" in t for t in texts)
    assert [t for t in texts if JARGON.search(t)] == []


def test_a_late_answer_is_explained_in_plain_words_clear_of_the_key_hints(fresh_server, context_factory, output_dir):
    client = fresh_server.client()
    flow = client.flow.create_ranking_flow(name="late", instruction="Quick!", max_response_threshold=5, lease_seconds=1)
    flow.create_new_flow_batch(["first", "second", "third"], time_to_live=60)
    tab = Annotator(context_factory(viewport={"width": 1280, "height": 800}), client.annotators.create("Lou").join_url)
    page = tab.page
    expired = tab.wait_for_pair()
    page.wait_for_function("() => document.querySelector('#lease').dataset.level === 'expired'", timeout=5000)
    page.click("#choose-a")
    notice = page.locator("#notice")
    notice.wait_for(state="visible")
    assert notice.inner_text().startswith("Time ran out on that pair before your answer arrived")
    tab.wait_for_pair(expired)
    page.screenshot(path=str(output_dir / "annotate-notice.png"))
    box = notice.bounding_box()
    for what in ("#keys-pair", "#pair-actions", "#instruction", ".lease-track", "#lease-text", "#pane-a", "#pane-b"):
        other = page.locator(what).bounding_box()
        assert other is not None and not overlaps(box, other), f"the notice covers {what}: {box} {other}"
    assert box["x"] + box["width"] <= 1280 and box["y"] >= 0
    # Nothing on the page, spoken or shown, says "lease".
    words = page.evaluate("""() => [document.body.innerText, ...[...document.querySelectorAll("[aria-label], [title]")]
        .map((e) => e.getAttribute("aria-label") || e.title)]""")
    assert [w for w in words if JARGON.search(w)] == []
    assert not tab.errors and not tab.dialogs


@pytest.mark.parametrize("token", ["fl_ann_not_a_real_token", "researcher key"])
def test_the_wrong_token_page_shows_its_command_as_code_not_markdown(fresh_server, context_factory, token):
    token = fresh_server.api_key if token == "researcher key" else token
    tab = Annotator(context_factory(), f"{fresh_server.url}/annotate#token={token}")
    tab.page.wait_for_selector("body[data-screen=error]")
    help_text = tab.page.inner_text("#error-help")
    assert "`" not in help_text and "`" not in tab.page.inner_text("#screen-error")
    assert tab.page.locator("#error-help code").inner_text() == "flowlab annotators create --name YOUR_NAME"
    assert "join link" in help_text


def test_leave_asks_first_and_only_then_hands_back_the_task_and_forgets_the_token(fresh_server, context_factory):
    client = fresh_server.client()
    flow = client.flow.create_ranking_flow(name="leave", instruction="Which?", max_response_threshold=5)
    item = flow.create_new_flow_batch(["one", "two"], time_to_live=60)
    tab = Annotator(context_factory(), client.annotators.create("Lea").join_url)
    page = tab.page
    shown = tab.wait_for_pair()
    token = page.evaluate("() => sessionStorage.getItem('flowlab.annotator.token')")
    assert token

    confirm = page.locator("#leave-confirm")
    page.click("#leave")
    confirm.wait_for(state="visible")
    assert page.evaluate("() => document.activeElement.id") == "leave-no", "the safe answer has focus"
    page.keyboard.press("1")  # the pair behind waits: no vote
    page.keyboard.press("Escape")
    confirm.wait_for(state="hidden")
    page.click("#leave")
    page.click("#leave-no")
    confirm.wait_for(state="hidden")
    assert tab.task_id() == shown and page.evaluate("() => document.body.dataset.screen") == "vote"
    assert page.evaluate("() => sessionStorage.getItem('flowlab.annotator.token')") == token
    assert item.get_response_count() == 0 and item.get_progress().leases_out >= 1

    page.click("#leave")
    page.click("#leave-yes")
    page.wait_for_selector("body[data-screen=join]")
    assert page.evaluate("() => sessionStorage.getItem('flowlab.annotator.token')") is None
    assert wait_until(lambda: item.get_progress().leases_out == 0), "the tasks in hand went back to the queue"
    assert item.get_response_count() == 0
    assert tab.dialogs == [], "no window.confirm"
    assert not tab.errors


# ---------------------------------------------------------------- the RLHF form


BEFORE = "The quick brown fox jumps over the lazy dog, and then it runs to the old barn near the river."
AFTER = "A slow red fox leaps over a sleeping dog, and then it walks to the new barn near a river."


def test_the_rewrite_diff_shows_each_changed_run_whole_and_the_instruction_once(
    fresh_server, context_factory, output_dir
):
    client = fresh_server.client()
    instruction = "Rate both answers, then pick the better one."
    flow = client.flow.create_rlhf_flow("diff", instruction, rewrite="optional", max_response_threshold=1)
    flow.create_new_flow_batch(
        [
            {
                "id": "q",
                "prompt": "Tell me about a fox.",
                "responses": [{"source_id": "a", "content": BEFORE}, {"source_id": "b", "content": BEFORE}],
            }
        ],
        time_to_live=120,
    )
    tab = Annotator(context_factory(viewport={"width": 1280, "height": 900}), client.annotators.create("Di").join_url)
    page = tab.page
    tab.wait_for_pair()
    page.wait_for_selector("#rlhf .rlhf-form")
    main = page.inner_text("main")
    assert main.count(instruction) == 1, "the flow's instruction, once"
    assert "Rate each response on every question" not in main, "not again in other words"
    assert "You may rewrite any response" in page.inner_text("#rlhf .rlhf-howto")

    page.locator(".rlhf-rewrite-toggle").first.click()
    page.fill("textarea[name=w0]", AFTER)
    page.wait_for_function("() => document.querySelector('.rlhf-diff ins')")
    page.wait_for_timeout(300)
    nodes = page.evaluate(
        "() => [...document.querySelector('.rlhf-diff').childNodes].map((n) => [n.nodeName, n.textContent])"
    )
    # Both texts stay whole in the diff: what is kept plus what went is the response, plus what came the rewrite.
    assert "".join(t for n, t in nodes if n != "INS") == BEFORE
    assert "".join(t for n, t in nodes if n != "DEL") == AFTER
    # Each changed run is one deletion followed by one insertion, never words taking turns.
    kinds = [n for n, _ in nodes]
    for k, kind in enumerate(kinds):
        if kind == "DEL":
            assert kinds[k + 1] == "INS", nodes
        if kind == "INS" and k > 0:
            assert kinds[k - 1] in ("DEL", "#text"), nodes
    kept = [t for n, t in nodes if n == "#text"]
    assert all(t.strip() and len(t.strip()) > 2 for t in kept[1:-1] if t), f"no stray shared scraps: {nodes}"
    assert ["DEL", "The quick brown"] in nodes and ["INS", "A slow red"] in nodes, nodes
    assert kinds.count("DEL") <= 6, nodes
    page.locator(".rlhf-diff").first.scroll_into_view_if_needed()
    page.locator(".rlhf-rewrite").first.screenshot(path=str(output_dir / "annotate-rlhf-diff.png"))
    assert not tab.errors and not tab.dialogs
