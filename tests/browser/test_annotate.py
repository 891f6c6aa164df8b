"""The annotator page in a real Chromium against a real `flowlab serve`: joining, voting, safety, leases."""

from __future__ import annotations

import base64
import io
import math
import struct
import time
import wave
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.browser

PAIR_TIMEOUT_MS = 10_000
LEASE_EXPIRED_TEXT = "Time ran out on that"  # "… pair" / "… task before your answer arrived"


# ---------------------------------------------------------------- test media, made here


def png_bytes(rgb: tuple[int, int, int], size: int = 16) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes(rgb) * size
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(row * size)) + chunk(b"IEND", b"")
    )


def wav_bytes(freq: float, seconds: float = 0.25, rate: int = 8000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(
            b"".join(
                struct.pack("<h", int(8000 * math.sin(2 * math.pi * freq * i / rate)))
                for i in range(int(seconds * rate))
            )
        )
    return out.getvalue()


RECORD_WEBM = """async (hue) => {
  // Chromium's own encoder makes a real VP8 WebM, so no video tooling is needed on the machine.
  const canvas = document.createElement("canvas");
  canvas.width = 32; canvas.height = 32;
  document.body.append(canvas);
  const g = canvas.getContext("2d");
  const rec = new MediaRecorder(canvas.captureStream(25), { mimeType: "video/webm;codecs=vp8" });
  const chunks = [];
  rec.ondataavailable = (e) => chunks.push(e.data);
  const stopped = new Promise((resolve) => { rec.onstop = resolve; });
  rec.start();
  for (let i = 0; i < 8; i++) {
    g.fillStyle = `hsl(${hue + i * 10}, 80%, 50%)`;
    g.fillRect(0, 0, 32, 32);
    await new Promise((r) => setTimeout(r, 40));
  }
  rec.stop();
  await stopped;
  const bytes = new Uint8Array(await new Blob(chunks).arrayBuffer());
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}"""


@pytest.fixture(scope="module")
def media_files(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """Three small files of each kind: PNG images, WAV tones and WebM clips."""
    folder = tmp_path_factory.mktemp("media")
    files: dict[str, list[Path]] = {"image": [], "audio": [], "video": []}
    page = browser.new_page()
    try:
        page.set_content("<!doctype html><title>recorder</title>")
        for i in range(3):
            png = folder / f"image-{i}.png"
            png.write_bytes(png_bytes((60 + 80 * i, 200 - 60 * i, 90)))
            files["image"].append(png)
            wav = folder / f"tone-{i}.wav"
            wav.write_bytes(wav_bytes(330.0 * (i + 1)))
            files["audio"].append(wav)
            webm = folder / f"clip-{i}.webm"
            webm.write_bytes(base64.b64decode(page.evaluate(RECORD_WEBM, 120 * i)))
            files["video"].append(webm)
    finally:
        page.close()
    return files


# ---------------------------------------------------------------- page helpers


class Annotator:
    """One annotator's browser tab, with every dialog the page ever opens recorded."""

    def __init__(self, context: Any, join_url: str) -> None:
        self.page = context.new_page()
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on("dialog", self._on_dialog)
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.goto(join_url)

    def _on_dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def wait_for_pair(self, not_task: str | None = None) -> str:
        self.page.wait_for_function(
            """(old) => document.body.dataset.screen === "vote"
                 && document.querySelector("#pair").dataset.taskId
                 && document.querySelector("#pair").dataset.taskId !== old""",
            arg=not_task or "",
            timeout=PAIR_TIMEOUT_MS,
        )
        return self.task_id()

    def task_id(self) -> str:
        return self.page.get_attribute("#pair", "data-task-id") or ""

    def pane(self, side: str) -> dict[str, Any]:
        return self.page.evaluate(
            """(side) => {
                 const pane = document.querySelector(`#pane-${side}`);
                 const body = document.querySelector(`#body-${side}`);
                 const media = body.querySelector("img, audio, video");
                 return { kind: pane.dataset.kind, ref: Number(pane.dataset.ref), text: body.textContent,
                          tag: media ? media.tagName.toLowerCase() : null,
                          src: media ? media.src : null, controls: media ? media.controls : null,
                          item: document.querySelector("#pair").dataset.itemId };
               }""",
            side,
        )

    def answer(self, how: str) -> str:
        """Answers with a click on a button (`click:a`) or a key (`key:ArrowLeft`); returns the next task id."""
        before = self.task_id()
        kind, what = how.split(":", 1)
        if kind == "click":
            self.page.click(f"#choose-{what}")
        else:
            self.page.keyboard.press(what)
        return self.wait_for_pair(before)


@pytest.fixture
def context_factory(browser: Any) -> Iterator[Callable[..., Any]]:
    contexts: list[Any] = []

    def make(**options: Any) -> Any:
        ctx = browser.new_context(**options)
        contexts.append(ctx)
        return ctx

    yield make
    for ctx in contexts:
        ctx.close()


# Long enough for a vote to become durable on a loaded 2-core machine; a check that passes returns at once.
SETTLE_SECONDS = 20.0


def wait_until(check: Callable[[], Any], timeout: float = SETTLE_SECONDS, page: Any = None) -> Any:
    """Poll `check` until it is truthy or `timeout` passes; its last value. Pass the `page` when `check` reads
    what a Playwright event handler records (responses, dialogs, page errors): the sync API delivers events only
    inside its own calls, so the wait goes through `page.wait_for_timeout`, never `time.sleep`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        if page is None:
            time.sleep(0.05)
        else:
            page.wait_for_timeout(50)


# ---------------------------------------------------------------- joining and voting


def test_annotator_votes_by_clicks_and_keys_on_every_modality(fresh_server, context_factory, media_files):
    client = fresh_server.client()
    flow = client.flow.create_ranking_flow(
        name="modalities",
        instruction="Which one fits the prompt better?",
        max_response_threshold=3,
        allow_ties=True,
        lease_seconds=30,
        max_votes_per_annotator=3,  # one person gives every vote here: each of an item's three pairs once
    )
    items = {
        "text": flow.create_new_flow_batch(
            datapoints=[{"id": f"text-{i}", "text": f"Answer number {i}: the sky is blue."} for i in range(3)],
            context="A question about the sky",
            time_to_live=60,
        )
    }
    for offset, kind in enumerate(("image", "audio", "video"), start=1):
        items[kind] = flow.create_new_flow_batch(
            datapoints=[{"id": f"{kind}-{i}", "path": str(p)} for i, p in enumerate(media_files[kind])],
            time_to_live=60 + offset,
        )
    by_id = {item.id: kind for kind, item in items.items()}
    annotator = client.annotators.create("Ada")

    tab = Annotator(context_factory(), annotator.join_url)
    tab.wait_for_pair()
    assert "token" not in tab.page.url, "the token must leave the address bar"

    # Each answer prefers the lower-indexed datapoint, so every vote lands in the matrix's upper triangle;
    # half go in by clicks, half by keys, one is a tie.
    ways = ["click:{}", "key:{}", "click:{}", "key:{}"]
    keys = {"a": ["1", "ArrowLeft"], "b": ["2", "ArrowRight"]}
    wins: Counter[str] = Counter()
    ties: Counter[str] = Counter()
    seen_kinds: set[str] = set()
    for n in range(12):
        a, b = tab.pane("a"), tab.pane("b")
        kind = by_id[a["item"]]
        assert a["kind"] == b["kind"] == kind
        seen_kinds.add(kind)
        for pane in (a, b):
            if kind == "text":
                assert pane["text"] == f"Answer number {pane['ref']}: the sky is blue."
            else:
                assert pane["tag"] == {"image": "img", "audio": "audio", "video": "video"}[kind]
                assert pane["src"].startswith(f"{fresh_server.url}/media/")
                if kind != "image":
                    assert pane["controls"] is True
        if kind != "text":
            # The media really loads and decodes in Chromium, not just an element with a src.
            tab.page.wait_for_function(
                """() => [...document.querySelectorAll("#pair img, #pair audio, #pair video")].every(
                     (m) => m.tagName === "IMG" ? m.complete && m.naturalWidth > 0 : m.readyState >= 1)""",
                timeout=PAIR_TIMEOUT_MS,
            )
        if n == 5:
            tab.answer("key:t")
            ties[kind] += 1
            continue
        side = "a" if a["ref"] < b["ref"] else "b"
        way = ways[n % 4]
        how = way.format(side) if way.startswith("click") else way.format(keys[side][(n // 2) % 2])
        if n == 11:
            tab.page.click(f"#choose-{side}")  # the last pair has no successor to wait for
        else:
            tab.answer(how)
        wins[kind] += 1

    assert seen_kinds == {"text", "image", "audio", "video"}
    for kind, item in items.items():
        expected = wins[kind] + ties[kind]
        assert wait_until(lambda item=item, expected=expected: item.get_response_count() == expected), kind
        matrix = item.get_win_loss_matrix().to_numpy(dtype=float)
        assert matrix.sum() == pytest.approx(expected), kind
        upper = sum(matrix[i, j] for i in range(3) for j in range(3) if i < j)
        lower = sum(matrix[i, j] for i in range(3) for j in range(3) if i > j)
        assert upper == pytest.approx(wins[kind] + ties[kind] / 2), kind
        assert lower == pytest.approx(ties[kind] / 2), kind
    tab.page.wait_for_function("() => document.querySelector('#stats').textContent.startsWith('12 votes')")
    assert tab.dialogs == [] and tab.errors == []


def test_join_by_pasting_a_token_and_the_tie_key_only_where_allowed(fresh_server, context_factory):
    client = fresh_server.client()
    flow = client.flow.create_ranking_flow(name="no ties", instruction="Pick one", max_response_threshold=5)
    # Three datapoints: a person never sees a pair of an item twice, so the skip is followed by another pair.
    flow.create_new_flow_batch(datapoints=["left text", "right text", "middle text"], time_to_live=60)
    annotator = client.annotators.create("Grace")

    tab = Annotator(context_factory(), f"{fresh_server.url}/annotate")
    tab.page.wait_for_selector("body[data-screen=join]")
    tab.page.fill("#join-token", annotator.token)
    tab.page.click("#join-form button[type=submit]")
    first = tab.wait_for_pair()

    assert tab.page.locator("#choose-tie").is_hidden()
    tab.page.keyboard.press("t")
    tab.page.wait_for_timeout(300)
    assert tab.task_id() == first, "T must do nothing where the flow allows no ties"
    tab.answer("key:s")  # skip: the pair goes back to the queue, no vote
    assert tab.page.locator("#stats").inner_text().startswith("0 votes")
    assert client.flow.get_flow_by_id(flow.id).get_flow_items()[0].get_response_count() == 0


# ---------------------------------------------------------------- security


XSS_TEXTS = [
    "<img src=x onerror=alert(1)>",
    "<script>alert(2)</script>",
    '<svg onload="alert(3)"></svg><iframe src="javascript:alert(4)"></iframe>',
    '"><img src=x onerror="window.pwned=1">',
]
XSS_MARKDOWN = [
    "[click me](javascript:alert(5)) and **bold** and [fine](https://example.invalid/page)",
    '![x](javascript:alert(6)) <a href="javascript:alert(7)">link</a>',
    "# Title <img src=x onerror=alert(8)>\n\n- item <script>alert(9)</script>\n\n`<b>code</b>`",
]


def test_xss_datapoints_stay_inert_text(fresh_server, context_factory):
    client = fresh_server.client()
    # The plain item has the nearer deadline and room for four votes, so the Markdown one follows it.
    plain = client.flow.create_ranking_flow(
        name="xss",
        instruction="<img src=x onerror=alert(10)> Which is safer?",
        max_response_threshold=4,
        max_votes_per_annotator=4,  # one person gives them all
    )
    plain.create_new_flow_batch(datapoints=XSS_TEXTS, context="<script>alert(11)</script>", time_to_live=60)
    markdown = client.flow.create_ranking_flow(
        name="xss-md",
        instruction="**Rendered** <script>alert(12)</script>",
        max_response_threshold=50,
        max_votes_per_annotator=50,
        render_markdown=True,
    )
    markdown.create_new_flow_batch(datapoints=XSS_MARKDOWN, time_to_live=61)
    annotator = client.annotators.create("Mallory's victim")

    tab = Annotator(context_factory(), annotator.join_url)
    tab.wait_for_pair()
    seen_plain: set[str] = set()
    seen_markdown = 0
    for _ in range(6):  # seven pairs in all (four votes, three Markdown pairs): each answer has a next pair
        a, b = tab.pane("a"), tab.pane("b")
        dangerous = tab.page.evaluate("""() => ({
            elements: document.querySelectorAll(
              "main img, main script, main svg, main iframe, main object, main embed").length,
            jsLinks: [...document.querySelectorAll("a")].filter((x) => !/^(https?:|mailto:)/.test(x.href)).length,
            pwned: window.pwned === 1,
            markdown: document.querySelectorAll("#pair .md").length,
            strong: document.querySelectorAll("#pair strong, #instruction strong").length,
            links: [...document.querySelectorAll("#pair a")].map((x) => x.href),
        })""")
        assert dangerous["elements"] == 0 and dangerous["jsLinks"] == 0 and not dangerous["pwned"]
        if dangerous["markdown"]:
            seen_markdown += 1
            assert set(dangerous["links"]) <= {"https://example.invalid/page"}
            assert dangerous["strong"] >= 1
        else:
            for pane in (a, b):
                assert pane["text"] in XSS_TEXTS  # shown exactly, as text
                seen_plain.add(pane["text"])
            assert "<img src=x onerror=alert(10)>" in tab.page.inner_text("#instruction")
            assert "<script>alert(11)</script>" in tab.page.inner_text("#context")
        tab.answer("key:1")
    assert seen_plain and seen_markdown
    tab.page.wait_for_timeout(200)
    assert tab.dialogs == [], f"a datapoint ran as code: {tab.dialogs}"
    assert tab.errors == []


def test_bad_and_revoked_tokens_are_explained_and_tokens_stay_out_of_logs(fresh_server, context_factory):
    fresh_server.extra_args = ["--access-log", "--log-level", "info"]
    fresh_server.restart()
    client = fresh_server.client()
    ctx = context_factory()

    wrong = Annotator(ctx, f"{fresh_server.url}/annotate#token=fl_ann_not_a_real_token")
    wrong.page.wait_for_selector("body[data-screen=error]")
    assert "doesn't work" in wrong.page.inner_text("#error-title")
    assert "revoked" in wrong.page.inner_text("#error-text")
    assert "token" not in wrong.page.url
    wrong.page.click("#error-token")
    wrong.page.wait_for_selector("body[data-screen=join]")

    annotator = client.annotators.create("Eve")
    tab = Annotator(context_factory(), annotator.join_url)
    tab.page.wait_for_selector("body[data-screen=wait]")
    # An annotator token reads no flows, results or other annotators.
    flow = client.flow.create_ranking_flow(name="private", instruction="x", max_response_threshold=5)
    headers = {"Authorization": f"Bearer {annotator.token}"}
    for path in ("/v1/flows", f"/v1/flows/{flow.id}", "/v1/annotators"):
        assert httpx.get(fresh_server.url + path, headers=headers).status_code == 403, path

    client.annotators.revoke(annotator.id)
    flow.create_new_flow_batch(datapoints=["one", "two"], time_to_live=60)  # wakes the waiting page
    tab.page.wait_for_selector("body[data-screen=error]", timeout=PAIR_TIMEOUT_MS)
    assert "revoked" in tab.page.inner_text("#error-text")

    log = fresh_server.log()
    assert "/v1/tasks/next" in log, "the access log is on, so requests should be in it"
    assert annotator.token not in log and "fl_ann_not_a_real_token" not in log


# ---------------------------------------------------------------- leases, idle and concurrency


def test_an_answer_after_the_lease_expired_is_explained(fresh_server, context_factory):
    client = fresh_server.client()
    flow = client.flow.create_ranking_flow(
        name="short leases", instruction="Quick!", max_response_threshold=5, lease_seconds=1
    )
    item = flow.create_new_flow_batch(datapoints=["first", "second", "third"], time_to_live=60)
    annotator = client.annotators.create("Slow Sam")
    tab = Annotator(context_factory(), annotator.join_url)
    expired = tab.wait_for_pair()
    tab.page.wait_for_function("() => document.querySelector('#lease').dataset.level === 'expired'", timeout=5000)
    assert "Time is up" in tab.page.inner_text("#lease-text")

    tab.page.click("#choose-a")
    notice = tab.page.locator("#notice")
    notice.wait_for(state="visible")
    assert LEASE_EXPIRED_TEXT in notice.inner_text()
    assert "not counted" in notice.inner_text()
    assert tab.wait_for_pair(expired) != expired, "the page moves on to a fresh pair"
    assert item.get_response_count() == 0
    assert tab.page.locator("#stats").inner_text().startswith("0 votes")


def test_tasks_of_an_ended_item_leave_the_page_at_once(fresh_server, context_factory):
    """Stopping an item takes its pairs off annotators' screens (and out of what the page holds behind), with a
    word, instead of leaving them up until the lease runs out and the vote gets refused."""
    client = fresh_server.client()
    flow = client.flow.create_ranking_flow(name="stop me", instruction="Which?", max_response_threshold=50)
    first = flow.create_new_flow_batch(datapoints=["one", "two", "three", "four"], time_to_live=60)
    # A later deadline: served after; three datapoints, so the person has a pair left after answering one.
    second = flow.create_new_flow_batch(datapoints=["five", "six", "seven"], time_to_live=300)
    annotator = client.annotators.create("Steady Sue")
    tab = Annotator(context_factory(), annotator.join_url)
    shown = tab.wait_for_pair()
    assert tab.pane("a")["item"] == first.id
    first.stop()
    assert tab.wait_for_pair(shown) != shown
    assert tab.pane("a")["item"] == second.id, "the next pair comes from an item still running"
    notice = tab.page.locator("#notice")
    assert "has just ended, so it left your screen" in notice.inner_text()
    tab.answer("click:a")  # the next pair shows first; the answer travels behind it
    assert wait_until(lambda: second.get_response_count() == 1), "the vote on the running item was counted"
    assert first.get_response_count() == 0
    assert not tab.errors


def test_idle_page_wakes_on_preheat_and_on_work(fresh_server, context_factory):
    client = fresh_server.client()
    annotator = client.annotators.create("Idle Ida")
    tab = Annotator(context_factory(), annotator.join_url)
    # No task seen yet in this browser: the neutral wording (tests/browser/test_annotate_look.py has the others).
    tab.page.wait_for_function("() => document.querySelector('#wait-title').textContent.startsWith('No tasks')")
    assert tab.page.locator("#wait-hot").is_hidden()

    client.flow.preheat()
    tab.page.locator("#wait-hot").wait_for(state="visible", timeout=PAIR_TIMEOUT_MS)

    flow = client.flow.create_ranking_flow(name="wake", instruction="Pick", max_response_threshold=5)
    t0 = time.monotonic()
    flow.create_new_flow_batch(datapoints=["red", "blue"], time_to_live=60)
    tab.wait_for_pair()
    # Woken by the server, not at the end of its 25 s long poll: seconds of slack for a loaded machine.
    assert time.monotonic() - t0 < 6.0, "an idle page shows new work at once, not at its next poll"


def test_two_annotators_at_once_never_get_the_same_task(fresh_server, context_factory):
    client = fresh_server.client()
    flow = client.flow.create_ranking_flow(name="two", instruction="Which?", max_response_threshold=100)
    item = flow.create_new_flow_batch(datapoints=[f"option {i}" for i in range(6)], time_to_live=60)
    people = [client.annotators.create(name) for name in ("Ann", "Bob")]
    tabs = [Annotator(context_factory(), p.join_url) for p in people]
    shown: list[list[str]] = [[t.wait_for_pair()] for t in tabs]
    for n in range(16):
        i = n % 2
        shown[i].append(tabs[i].answer("key:1" if n % 4 < 2 else "click:b"))

    assert not set(shown[0]) & set(shown[1]), "the same task was shown to both annotators"
    answered = [ids[:-1] for ids in shown]
    assert wait_until(lambda: item.get_response_count() == 16)
    votes = item.get_votes()
    assert len(votes) == 16 and votes["task_id"].is_unique
    by_task = dict(zip(votes["task_id"], votes["annotator_id"], strict=True))
    for person, ids in zip(people, answered, strict=True):
        assert {by_task[t] for t in ids} == {person.id}


# ---------------------------------------------------------------- quality


def test_gold_pairs_are_mixed_in_and_agreement_is_recorded(fresh_server, context_factory):
    client = fresh_server.client()
    flow = client.flow.create_ranking_flow(
        name="gold",
        instruction="Which sum is right?",
        max_response_threshold=200,
        validation_pairs=[
            {"a": {"text": "GOLD right: 2 + 2 = 4"}, "b": {"text": "GOLD wrong: 2 + 2 = 5"}, "answer": "a"}
        ],
        gold_rate=0.5,
    )
    # Eight datapoints: 28 pairs, so one person never runs out of pairs of the item they have not seen (with four, six
    # regular answers could come before the third gold one, and gold is only mixed into regular work).
    item = flow.create_new_flow_batch(datapoints=[f"regular {i}" for i in range(8)], time_to_live=60)
    annotator = client.annotators.create("Careful Cat")
    tab = Annotator(context_factory(), annotator.join_url)
    tab.wait_for_pair()

    gold = regular = 0
    for _ in range(60):
        if gold >= 3 and regular >= 3:
            break
        a, b = tab.pane("a"), tab.pane("b")
        if a["text"].startswith("GOLD"):
            assert b["text"].startswith("GOLD")  # gold tasks look like any other task
            right = "a" if a["text"].startswith("GOLD right") else "b"
            wrong = "b" if right == "a" else "a"
            tab.answer(f"click:{wrong if gold == 0 else right}")  # the first one wrong on purpose
            gold += 1
        else:
            tab.answer("click:a")
            regular += 1
    assert gold >= 3 and regular >= 3

    def stats() -> Any:
        return next(s for s in client.annotators.list() if s.id == annotator.id)

    assert wait_until(lambda: stats().gold_answered == gold and stats().votes == regular)
    s = stats()
    assert s.gold_correct == gold - 1
    assert s.gold_agreement == pytest.approx((gold - 1) / gold)
    assert item.get_response_count() == regular, "gold answers are not votes on the researcher's item"
    agreement = f"{round(100 * (gold - 1) / gold)}%"
    tab.page.wait_for_function(
        "(a) => document.querySelector('#stats').textContent.includes(a)", arg=agreement, timeout=PAIR_TIMEOUT_MS
    )


# ---------------------------------------------------------------- phones and accessibility


def test_phone_sized_viewport_is_usable(fresh_server, context_factory, output_dir, media_files):
    client = fresh_server.client()
    flow = client.flow.create_ranking_flow(
        name="phone",
        instruction="Which reply is kinder to the user?",
        max_response_threshold=10,
        allow_ties=True,
        render_markdown=True,
        max_votes_per_annotator=10,
    )
    flow.create_new_flow_batch(
        datapoints=[
            "Sure! Here is a **short** answer:\n\n- step one\n- step two",
            "I can't help with that, but here's a link to the docs: <https://example.invalid/docs>",
            "Open Settings, then choose *Reset password*.",  # a third: the person's next pair is a new one
        ],
        context="User: how do I reset my password?",
        time_to_live=60,
        context_assets=[str(media_files["image"][0])],
    )
    annotator = client.annotators.create("Phoebe")
    ctx = context_factory(viewport={"width": 390, "height": 844}, device_scale_factor=1, is_mobile=True, has_touch=True)
    tab = Annotator(ctx, annotator.join_url)
    first = tab.wait_for_pair()
    tab.page.wait_for_function("() => document.querySelector('#assets img')?.naturalWidth > 0")
    shot = output_dir / "annotate-phone.png"
    tab.page.screenshot(path=str(shot))
    assert shot.stat().st_size > 5_000

    layout = tab.page.evaluate("""() => {
        const box = (s) => document.querySelector(s).getBoundingClientRect();
        return { scrollWidth: document.documentElement.scrollWidth, a: box("#pane-a"), b: box("#pane-b"),
                 buttons: ["#choose-a", "#choose-b", "#choose-tie", "#choose-skip"].map((s) => box(s)) };
    }""")
    assert layout["scrollWidth"] <= 390, "nothing may scroll sideways on a phone"
    assert layout["b"]["top"] >= layout["a"]["bottom"], "panes stack on a narrow screen"
    for button in layout["buttons"]:
        assert button["bottom"] <= 844 and button["height"] >= 44, "answer buttons stay in reach"

    # Buttons carry names, and keyboard focus is visible.
    for name in ("A is better", "B is better", "Tie", "Skip this pair"):
        assert tab.page.get_by_role("button", name=name).count() == 1
    tab.page.focus("#choose-skip")
    tab.page.keyboard.press("Shift+Tab")
    outline = tab.page.evaluate("""() => {
        const s = getComputedStyle(document.activeElement);
        return { id: document.activeElement.id, style: s.outlineStyle, width: parseFloat(s.outlineWidth) };
    }""")
    assert outline["id"] == "choose-b" and outline["style"] != "none" and outline["width"] >= 2

    tab.page.tap("#choose-b")
    assert tab.wait_for_pair(first) != first


def test_on_a_phone_the_answer_bar_never_covers_the_end_of_pane_b(fresh_server, context_factory):
    client = fresh_server.client()
    flow = client.flow.create_ranking_flow(name="long b", instruction="Which?", max_response_threshold=10)
    long_b = "\n".join(f"Line {i} of a long answer that fills the screen." for i in range(60)) + "\nTHE END"
    flow.create_new_flow_batch(datapoints=["A short answer.", long_b], time_to_live=60)
    annotator = client.annotators.create("Paul")
    ctx = context_factory(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    tab = Annotator(ctx, annotator.join_url)
    tab.wait_for_pair()
    tab.page.evaluate("() => window.scrollTo(0, document.documentElement.scrollHeight)")
    tab.page.wait_for_timeout(200)
    boxes = tab.page.evaluate("""() => {
        const bottom = (el) => el.getBoundingClientRect().bottom;
        return { a: bottom(document.querySelector("#pane-a")), b: bottom(document.querySelector("#pane-b")),
                 bar: document.querySelector("#pair-actions").getBoundingClientRect().top };
    }""")
    lowest = max(boxes["a"], boxes["b"])
    assert lowest <= boxes["bar"], f"scrolled to the end, the last pane ends above the answer bar: {boxes}"


def test_page_loads_media_only_from_http_urls_and_markdown_stays_cheap(fresh_server, context_factory):
    # Servers refuse non-http URLs at creation, so the page's own filter is checked directly here.
    tab = Annotator(context_factory(), f"{fresh_server.url}/annotate")
    tab.page.wait_for_selector("body[data-screen=join]")
    result = tab.page.evaluate("""async () => {
        const { safeMediaUrl, renderContent } = await import("/static/render.js");
        const { renderMarkdown } = await import("/static/markdown.js");
        const sha = "ab".repeat(32);
        const urls = ["javascript:alert(1)", " javascript:alert(1)", "JaVaScRiPt:alert(1)", "data:image/png;base64,AA",
                      "vbscript:x", "/v1/flows", "/v1/annotator/events", "http://user:pw@example.invalid/a.png",
                      `/media/${sha}`, "https://cdn.example.invalid/a.png"];
        const allowed = urls.filter((u) => safeMediaUrl(u) !== null);
        const shown = (thing) => {
            const node = renderContent(thing, { label: "A" });
            const media = node.querySelector("img, audio, video, a");
            return { tag: media ? media.tagName.toLowerCase() : null, text: node.textContent };
        };
        // Hostile Markdown of two sizes, 8x apart: a linear renderer takes about 8x as long, a quadratic one 64x.
        const hostileOf = (k) => "*".repeat(2500 * k) + "_".repeat(2500 * k) + "[".repeat(1250 * k)
            + "`".repeat(1250 * k) + "~".repeat(1250 * k) + "\\n> ".repeat(312 * k);
        const timed = (k) => {
            const started = performance.now();
            const node = renderMarkdown(hostileOf(k));
            return [performance.now() - started, node];
        };
        timed(1);  // warm-up
        const [small] = timed(1);
        const [large, hostile] = timed(8);
        const elapsed = large / Math.max(small, 1);
        return {
            allowed,
            badImage: shown({ kind: "image", url: "javascript:alert(1)" }),
            badLink: shown({ kind: "url", url: "javascript:alert(1)" }),
            video: shown({ kind: "video", url: `/media/${sha}` }),
            asset: shown({ kind: "audio", media: sha }),
            elapsed,
            hostileText: hostile.textContent.length,
        };
    }""")
    assert result["allowed"] == ["/media/" + "ab" * 32, "https://cdn.example.invalid/a.png"]
    assert result["badImage"]["tag"] is None and "cannot be shown" in result["badImage"]["text"]
    assert result["badLink"] == {"tag": None, "text": "javascript:alert(1)"}
    assert result["video"]["tag"] == "video" and result["asset"]["tag"] == "audio"
    assert result["elapsed"] < 24, "Markdown rendering must stay linear on hostile input (time ratio for 8x input)"
    assert result["hostileText"] > 30_000, "hostile Markdown still shows as text"


# ---------------------------------------------------------------- classify tasks


def test_an_annotator_classifies_by_number_keys(fresh_server, context_factory):
    client = fresh_server.client()
    flow = client.flow.create_classify_flow(
        name="animals",
        instruction="Which animal is this?",
        categories=[("Cat", "cat"), ("Dog", "dog"), ("Bird", "bird")],
        max_responses_per_datapoint=1,
        min_responses_per_datapoint=1,
    )
    texts = ["a purring one", "a barking one", "a singing one"]
    item = flow.create_new_flow_batch(texts, contexts=[f"photo {i}" for i in range(3)], time_to_live=60)
    annotator = client.annotators.create("Hedy")
    tab = Annotator(context_factory(), annotator.join_url)
    task = tab.wait_for_pair()

    buttons = tab.page.locator("#categories .choice")
    assert buttons.all_inner_texts() == ["Cat\n1", "Dog\n2", "Bird\n3", "Skip\nS"]
    assert tab.page.locator("#pane-b").is_hidden() and tab.page.locator("#pair-actions").is_hidden()
    assert tab.page.locator("#keys-categories").inner_text().endswith("skip")
    tab.page.keyboard.press("ArrowLeft")  # the pair keys mean nothing here
    tab.page.keyboard.press("9")  # nor a digit past the last category
    tab.page.wait_for_timeout(300)
    assert tab.task_id() == task
    answers = {"a purring one": "1", "a barking one": "2", "a singing one": "3"}
    for _ in range(3):
        shown = tab.page.locator("#body-a").inner_text()
        assert tab.page.locator("#context").inner_text().startswith("photo")
        before = tab.task_id()
        tab.page.keyboard.press(answers[shown])
        if _ < 2:
            tab.wait_for_pair(before)
    results = item.get_results(timeout=10)
    assert {k: r.majority_value for k, r in results.datapoints.items()} == {
        "a purring one": "cat",
        "a barking one": "dog",
        "a singing one": "bird",
    }
    tab.page.wait_for_selector("body[data-screen=wait]")
    assert not tab.errors and not tab.dialogs


def test_hosted_settings_and_a_gold_explanation_reach_the_page(fresh_server, context_factory):
    import flowlab

    client = fresh_server.client()
    gold = client.validation.create_compare_set(
        "obvious",
        "Which is better?",
        [["a careful reply", "zxcv"]],
        ["a careful reply"],
        data_type="text",
        explanation=["The other one is noise."],
    )
    flow = client.flow.create_ranking_flow(
        "settings on the page",
        "Which answer is better?",
        10,
        validation_set_id=gold.id,
        settings=[
            flowlab.NoInstructionDisplaySetting(),
            flowlab.AllowNeitherBothSetting(delay_ms=700),
            flowlab.SwapContextInstructionSetting(),
            flowlab.NoShuffleSetting(),
        ],
        gold_rate=1.0,
    )
    flow.create_new_flow_batch(["first", "second"], context="the prompt", data_type="text", time_to_live=60)
    tab = Annotator(context_factory(), client.annotators.create("Ida").join_url)
    first = tab.wait_for_pair()
    page = tab.page
    assert page.locator("#instruction").is_hidden(), "NoInstructionDisplaySetting"
    assert page.locator("#prompt > :first-child").get_attribute("id") == "context", "context above instruction"
    assert page.locator("#choose-tie").is_hidden(), "the Unsure button waits for its delay"
    page.keyboard.press("t")
    page.wait_for_timeout(100)
    assert tab.task_id() == first, "T does nothing before the Unsure button shows"
    page.wait_for_selector("#choose-tie:visible", timeout=PAIR_TIMEOUT_MS)
    assert page.locator("#choose-tie").inner_text().startswith("Unsure")
    # Every task is the gold pair, A first (no shuffle): answering B is wrong, and the set says why.
    assert page.locator("#body-a").inner_text() == "a careful reply"
    page.keyboard.press("2")
    page.wait_for_selector("#notice:visible")
    assert "The other one is noise." in page.locator("#notice-text").inner_text()
    assert not tab.errors and not tab.dialogs
