"""RLHF tasks on the annotator page, in a real Chromium against a real `flowlab serve`: rating, rewriting, choosing
and justifying by keyboard alone, the checks before a submit, drafts across a reload, refusals and XSS."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.browser import test_annotate
from tests.browser.conftest import watch_errors
from tests.browser.test_annotate import LEASE_EXPIRED_TEXT, PAIR_TIMEOUT_MS, Annotator, wait_until

context_factory = test_annotate.context_factory  # the fixture: browser contexts, closed after each test

pytestmark = pytest.mark.browser

DIMENSIONS = [
    {"key": "helpfulness", "label": "Helpfulness", "description": "Does it help the user?", "anchors": ["No", "Very"]},
    {"key": "truthfulness", "label": "Truthfulness", "description": "Is it honest about what it knows?"},
    {"key": "safe", "label": "Safe", "type": "boolean", "description": "Is it safe to show?"},
    {"key": "style", "label": "Style", "type": "category", "options": ["terse", "fine", "verbose"], "allow_na": True},
    {"key": "notes", "label": "Notes", "type": "text", "required": False},
]
KEYS = [d["key"] for d in DIMENSIONS]
XSS_RESPONSE = '<img src=x onerror="window.pwned=1"> and <script>window.pwned=2</script> is all I say.'
XSS_PROMPT = 'Say hi <svg onload="window.pwned=3"></svg> <b>please</b>'
TASKS = [
    {
        "id": "t1",
        "prompt": [
            {"role": "system", "content": "You are a kind assistant."},
            {"role": "user", "content": "How do I boil an egg?"},
        ],
        "responses": [
            {"source_id": "model_a", "content": "Put the egg in boiling water for about eight minutes."},
            {"source_id": "model_b", "content": "Eggs cannot be boiled."},
        ],
    },
    {
        "id": "t2",
        "prompt": XSS_PROMPT,
        "responses": [
            {"source_id": "model_a", "content": "Hi there! Nice to meet you."},
            {"source_id": "model_b", "content": XSS_RESPONSE},
        ],
    },
]
# What the annotator enters for each response, by its source (the page never shows the source).
RATINGS: dict[str, dict[str, Any]] = {
    "model_a": {"helpfulness": 4, "truthfulness": 5, "safe": True, "style": "fine", "notes": "Clear & kind <3"},
    "model_b": {"helpfulness": 2, "truthfulness": 1, "safe": False, "style": None},
}
REWRITE_TAIL = " Or rather: hello!"
JUSTIFICATIONS = {
    "t1": ("Too short", " — now long enough, since model A is correct."),
    "t2": ("The first greets the user; the other only echoes <b>markup</b>.", ""),
}


# ---------------------------------------------------------------- keyboard helpers


def focused(page: Any) -> dict[str, Any]:
    return dict(
        page.evaluate(
            """() => { const a = document.activeElement;
                 return { tag: a.tagName.toLowerCase(), name: a.name || "", cls: String(a.className || ""),
                          text: (a.textContent || "").trim().slice(0, 80), value: a.value ?? null }; }"""
        )
    )


def tab_to(page: Any, check: Callable[[dict[str, Any]], bool], limit: int = 150) -> dict[str, Any]:
    """Press Tab until the focused element passes `check`, as a keyboard user walks the form."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        now = focused(page)
        if check(now):
            return now
    raise AssertionError(f"Tab never reached the control; last focused: {focused(page)}")


def named(name: str) -> Callable[[dict[str, Any]], bool]:
    return lambda f: f["name"] == name


def pick(page: Any, name: str, index: int | None, *, focused_already: bool = False) -> None:
    """Choose the `index`-th radio of a group (None: the last, "Not applicable") with Space and the arrows."""
    if not focused_already:
        tab_to(page, named(name))
    page.keyboard.press("Space")  # the group's first radio: nothing was chosen yet
    if index is None:
        page.keyboard.press("ArrowLeft")  # wraps round to the last
    for _ in range(index or 0):
        page.keyboard.press("ArrowRight")


def option_index(key: str, value: Any) -> int | None:
    if value is None:
        return None
    if key == "safe":
        return 0 if value else 1
    if key == "style":
        return ["terse", "fine", "verbose"].index(value)
    return int(value) - 1  # a 1-5 scale


def rate(page: Any, j: int, values: dict[str, Any], *, skip: str | None = None) -> None:
    """Rate response `j` (as shown) by keyboard: every dimension in `values`, except `skip`."""
    for d, key in enumerate(KEYS):
        if key not in values or key == skip:
            continue
        name = f"r{j}:{d}"
        if key == "notes":
            tab_to(page, named(name))
            page.keyboard.type(values[key])
        else:
            pick(page, name, option_index(key, values[key]))


def shown_sources(page: Any, responses: list[dict[str, str]]) -> list[str]:
    """Which source each shown response is, found by its text (the page only says Response 1, 2, …)."""
    texts = page.locator("#rlhf .rlhf-response-body").all_inner_texts()
    by_text = {r["content"]: r["source_id"] for r in responses}
    return [by_text[t.strip()] for t in texts]


def form_state(page: Any) -> dict[str, Any]:
    return dict(
        page.evaluate(
            """() => { const form = document.querySelector("#rlhf form"); const out = {};
                 for (const c of form.elements) {
                   if (!c.name) continue;
                   if (c.type === "radio") { if (c.checked) out[c.name] = c.value; }
                   else if (c.type === "checkbox") { if (c.checked) out[c.name] = true; }
                   else if (c.value && !(c.name.startsWith("w") && c.closest("[hidden]"))) out[c.name] = c.value;
                 }
                 return out; }"""
        )
    )


def current_task(page: Any) -> dict[str, Any]:
    """Which of TASKS is on screen, by its prompt."""
    text = page.inner_text("#rlhf .rlhf-conversation")
    last = {t["id"]: t["prompt"] if isinstance(t["prompt"], str) else t["prompt"][-1]["content"] for t in TASKS}
    return next(t for t in TASKS if last[t["id"]] in text)


def drafts(page: Any) -> list[str]:
    return list(page.evaluate("() => Object.keys(localStorage).filter((k) => k.startsWith('flowlab.rlhf.draft.'))"))


# ---------------------------------------------------------------- the whole task, by keyboard


def test_annotator_completes_rlhf_tasks_by_keyboard_alone(fresh_server, context_factory):
    client = fresh_server.client()
    flow = client.flow.create_rlhf_flow(
        "rlhf on the page",
        "Rate both responses, then pick the better one.",
        dimensions=DIMENSIONS,
        rewrite="optional",
        likert_scale=7,
        justification="required",
        max_response_threshold=1,
    )
    item = flow.create_new_flow_batch(TASKS, time_to_live=300)
    annotator = client.annotators.create("Keyboard Kay")
    tab = Annotator(context_factory(viewport={"width": 1280, "height": 900}), annotator.join_url)
    console = watch_errors(tab.page)
    page = tab.page

    entered: dict[str, dict[str, Any]] = {}
    task_id = tab.wait_for_pair()
    for n in range(2):
        page.wait_for_selector("#rlhf .rlhf-form")
        task = current_task(page)
        sources = shown_sources(page, task["responses"])
        chosen = sources.index("model_a")
        xss = task["id"] == "t2"

        # What the annotator sees: the whole conversation, the responses labelled by position only, the keys.
        assert page.locator("#rlhf .rlhf-response-title").all_inner_texts() == ["Response 1", "Response 2"]
        main = page.inner_text("main")
        assert "model_a" not in main and "model_b" not in main
        assert "Ctrl" in page.inner_text("#keys-rlhf") and page.locator("#keys-pair").is_hidden()
        if not xss:
            assert page.locator("#rlhf .rlhf-role").all_inner_texts() == ["SYSTEM", "USER"]
        assert page.locator("#rlhf .rlhf-help").first.inner_text() == "Does it help the user?"

        # The pair shortcuts do nothing here: S would skip, the digits and arrows would answer a pair.
        for key in ("s", "1", "2", "ArrowRight", "t"):
            page.keyboard.press(key)
        page.wait_for_timeout(300)
        assert tab.task_id() == task_id

        if xss:
            # Hostile text stays text: in the prompt, in the response, in the rewrite editor and its diff.
            state = page.evaluate("""() => ({
                pwned: window.pwned,
                elements: document.querySelectorAll("main img, main script, main svg, main iframe").length,
                bold: document.querySelectorAll("#rlhf b").length })""")
            assert state == {"pwned": None, "elements": 0, "bold": 0}
            assert XSS_PROMPT in page.inner_text("#rlhf .rlhf-conversation")
            assert XSS_RESPONSE in page.locator("#rlhf .rlhf-response-body").all_inner_texts()

        rewritten = sources.index("model_b") if xss else None
        for j, source in enumerate(sources):
            # On t1 one rating is left out on purpose, to see the list of what is missing.
            rate(page, j, RATINGS[source], skip="truthfulness" if not xss and j == 1 else None)
            if j == rewritten:
                tab_to(page, lambda f, j=j: f["text"] == f"Rewrite Response {j + 1}")
                page.keyboard.press("Enter")
                assert focused(page)["name"] == f"w{j}", "the editor opens with the caret in it"
                assert focused(page)["value"] == XSS_RESPONSE, "prefilled with the response, as text"
                page.keyboard.type(REWRITE_TAIL)
                page.wait_for_selector("#rlhf .rlhf-diff ins")
                diff = page.locator("#rlhf .rlhf-diff").nth(j)
                assert diff.locator("ins").inner_text() == REWRITE_TAIL
                assert diff.inner_text() == XSS_RESPONSE + REWRITE_TAIL
                assert diff.evaluate("(d) => d.querySelectorAll('*').length") == 1, "one <ins>, the rest text"

        if xss:
            # A reload mid-task: the page comes back to the same task (same lease), with everything entered.
            before = form_state(page)
            assert before[f"w{rewritten}"] == XSS_RESPONSE + REWRITE_TAIL
            page.wait_for_timeout(400)  # a draft is saved a moment after the last change (and again on leaving)
            page.reload()
            page.wait_for_selector("#rlhf .rlhf-form")
            assert tab.task_id() == task_id, "the reload resumes the same task"
            assert form_state(page) == before
            assert page.locator("#rlhf .rlhf-diff").nth(rewritten).locator("ins").inner_text() == REWRITE_TAIL
            assert page.locator("#rlhf .rlhf-rewrite-editor").nth(rewritten).is_visible()

        pick(page, "sel", chosen)
        likert = 2 if chosen == 0 else 6  # "better", toward the chosen one
        pick(page, "lk", likert - 1)
        first, rest = JUSTIFICATIONS[task["id"]]
        tab_to(page, named("why"))
        page.keyboard.type(first)
        assert page.inner_text("#rlhf .rlhf-why .rlhf-count").startswith(f"{len(first)} of at least 20")

        if not xss:
            page.keyboard.press("Control+Enter")
            problems = page.locator("#rlhf .rlhf-problems li").all_inner_texts()
            assert problems == ["Response 2: rate Truthfulness", "Justification: at least 20 characters"]
            assert focused(page)["name"] == "r1:1", "focus goes to the first thing missing"
            assert tab.task_id() == task_id, "nothing was sent"
            pick(page, "r1:1", option_index("truthfulness", RATINGS[sources[1]]["truthfulness"]), focused_already=True)
            assert page.locator("#rlhf .rlhf-problems li").all_inner_texts() == [
                "Justification: at least 20 characters"
            ], "what is fixed leaves the list"
            tab_to(page, named("why"))
            page.keyboard.press("End")
            page.keyboard.type(rest)
            assert page.locator("#rlhf .rlhf-problems").is_hidden()

        entered[task["id"]] = {
            "sources": sources,
            "selected": "model_a",
            "likert": likert,
            "justification": first + rest,
            "rewrites": {"model_b": XSS_RESPONSE + REWRITE_TAIL} if xss else {},
        }
        page.keyboard.press("Control+Enter")
        if n == 0:
            task_id = tab.wait_for_pair(task_id)
        else:
            page.wait_for_selector("body[data-screen=wait]", timeout=PAIR_TIMEOUT_MS)

    # The SDK reads back exactly what was entered.
    assert wait_until(lambda: len(item.get_annotations()) == 2)
    records = item.to_rlhf_records()
    keys = {r["metadata"]["datapoint_index"]: r["metadata"]["datapoint_key"] for r in records}
    assert sorted(keys.values()) == ["t1", "t2"]
    for a in item.get_annotations():
        want = entered[keys[a.datapoint]]
        assert a.order == want["sources"]
        assert a.ratings == RATINGS
        assert a.rewrites == want["rewrites"]
        assert a.selected == want["selected"]
        assert a.likert == want["likert"]
        assert a.justification == want["justification"]
        assert a.annotator_id == annotator.id
    for record in records:
        key = record["metadata"]["datapoint_key"]
        turn = record["threads"][0]["turns"][-1]
        notes = {n["key"]: n["value"] for n in turn["annotations"]}
        assert notes["selected_model_id"] == "model_a"
        assert notes["justification"] == entered[key]["justification"]
        assert notes["likert_value"] == entered[key]["likert"]
        rewrites = {
            m["source_id"]: n["value"] for m in turn["messages"] for n in m["annotations"] if n["key"] == "rewrite"
        }
        assert rewrites == entered[key]["rewrites"]

    assert page.evaluate("() => window.pwned") is None
    assert drafts(page) == [], "drafts of submitted tasks are cleared"
    assert tab.dialogs == [] and tab.errors == [] and console == []


# ---------------------------------------------------------------- refusals and late answers


def fill_by_mouse(page: Any, sources: list[str]) -> None:
    for j, source in enumerate(sources):
        for d, key in enumerate(KEYS):
            value = RATINGS[source].get(key, "-")
            if key == "notes":
                if value != "-":
                    page.fill(f'#rlhf textarea[name="r{j}:{d}"]', value)
                continue
            index = option_index(key, value)
            radios = page.locator(f'#rlhf input[name="r{j}:{d}"]')
            radios.nth(-1 if index is None else index).check()
    chosen = sources.index("model_a")
    page.locator('#rlhf input[name="sel"]').nth(chosen).check()
    page.locator('#rlhf input[name="lk"]').nth(0 if chosen == 0 else 6).check()
    page.fill('#rlhf textarea[name="why"]', "Model A answers the question; B does not.")


def test_a_refused_annotation_keeps_the_form_and_says_why(fresh_server, context_factory):
    client = fresh_server.client()
    flow = client.flow.create_rlhf_flow("refusals", "Rate them", dimensions=DIMENSIONS, max_response_threshold=1)
    item = flow.create_new_flow_batch(TASKS[:1], time_to_live=300)
    tab = Annotator(context_factory(), client.annotators.create("Rita").join_url)
    task_id = tab.wait_for_pair()
    page = tab.page
    sources = shown_sources(page, TASKS[0]["responses"])
    fill_by_mouse(page, sources)

    # The server refuses what the page let through (here: the choice, dropped on the way), and the form stays.
    def drop_choice(route: Any) -> None:
        body = json.loads(route.request.post_data)
        body["rlhf"]["selected"] = None
        route.continue_(post_data=json.dumps(body))

    page.route("**/v1/tasks/*/answer", drop_choice)
    page.click("#rlhf .rlhf-submit")
    page.wait_for_selector("#rlhf .rlhf-problems:visible")
    assert "Choose the better response (1 to 2)." in page.inner_text("#rlhf .rlhf-problems")
    assert focused(page)["name"] == "sel", "focus goes to what the server named (rlhf.selected)"
    assert tab.task_id() == task_id and page.locator("#rlhf .rlhf-form").is_visible()
    assert page.input_value('#rlhf textarea[name="why"]') == "Model A answers the question; B does not."
    assert item.get_annotations() == []

    page.unroute("**/v1/tasks/*/answer")
    page.keyboard.press("Control+Enter")  # the lease stayed: the same task, sent again
    page.wait_for_selector("body[data-screen=wait]", timeout=PAIR_TIMEOUT_MS)
    assert wait_until(lambda: len(item.get_annotations()) == 1)
    assert item.get_annotations()[0].selected == "model_a"
    assert tab.dialogs == [] and tab.errors == []


def test_a_late_rlhf_submit_is_explained_and_its_draft_dropped(fresh_server, context_factory):
    client = fresh_server.client()
    flow = client.flow.create_rlhf_flow(
        "late", "Rate them", dimensions=DIMENSIONS, max_response_threshold=1, lease_seconds=2
    )
    item = flow.create_new_flow_batch(TASKS[:1], time_to_live=300)
    tab = Annotator(context_factory(), client.annotators.create("Slow Sue").join_url)
    tab.wait_for_pair()
    page = tab.page
    fill_by_mouse(page, shown_sources(page, TASKS[0]["responses"]))
    assert wait_until(lambda: drafts(page)), "a draft is kept while the annotator works"
    page.wait_for_function("() => document.querySelector('#lease').dataset.level === 'expired'", timeout=5000)
    assert "Time is up: this task" in page.inner_text("#lease-text")

    page.keyboard.press("Control+Enter")
    page.locator("#notice").wait_for(state="visible")
    assert LEASE_EXPIRED_TEXT in page.inner_text("#notice") and "not counted" in page.inner_text("#notice")
    page.wait_for_selector("body[data-screen=wait]")
    assert drafts(page) == []
    assert item.get_annotations() == []
    assert tab.dialogs == [] and tab.errors == []


# ---------------------------------------------------------------- the form's other shapes


FORM_VARIANTS = """async () => {
  const { RlhfView, likertLabel, wordDiff } = await import("/static/rlhf.js");
  const task = { task_id: "task_variants", rlhf: {
    prompt: [{ role: "user", content: "Which is it?" }],
    responses: [{ kind: "text", text: "one two three" }, { kind: "text", text: "b" },
                { kind: "image", url: "https://example.invalid/a.png" }],
    spec: { dimensions: [
              { key: "kind", type: "category", options: ["a", "b", "c", "d", "e", "f", "g", "h"], allow_na: true },
              { key: "why", label: "Reason", type: "text", allow_na: true },
              { key: "ok", type: "boolean", required: false }],
            rewrite: "required", likert_scale: 5, justification: "off" } } };
  let sent = null;
  const view = new RlhfView(task, { markdown: false, submit: (a) => { sent = a; }, skip() {} });
  document.body.append(view.node);
  const q = (s) => view.node.querySelector(s);
  const out = {
    selectOptions: [...q('select[name="r0:0"]').options].map((o) => o.text),
    likert: Boolean(q('[name="lk"]')), justification: Boolean(q('[name="why"]')),
    toggles: [...view.node.querySelectorAll(".rlhf-rewrite-toggle")].map((b) => b.textContent),
    titles: [...view.node.querySelectorAll(".rlhf-response-title")].map((t) => t.textContent),
    first: view.problems().map((p) => p.text),
  };
  q('select[name="r0:0"]').value = "1";
  q('select[name="r1:0"]').value = "na";
  q('select[name="r2:0"]').value = "7";
  q('textarea[name="r0:1"]').value = "because";
  const na = q('input[name="r1:1:na"]');
  na.checked = true;
  na.dispatchEvent(new Event("change", { bubbles: true }));
  q('textarea[name="r2:1"]').value = "a picture";
  q('input[name="sel"][value="2"]').checked = true;
  out.imageChosen = view.problems().map((p) => p.text);
  q('input[name="sel"][value="0"]').checked = true;
  out.needsRewrite = view.problems().map((p) => p.text);
  out.textDisabled = q('textarea[name="r1:1"]').disabled;
  q(".rlhf-rewrite-toggle").click();
  q('textarea[name="w0"]').value = "one 2 three";
  view.renderDiff(0);
  out.diff = [...q(".rlhf-diff").childNodes].map((n) => [n.nodeName, n.textContent]);
  view.trySubmit();
  out.sent = sent;
  out.field = view.nameOfField("rlhf.ratings[1].why");
  out.labels = Object.fromEntries([2, 4, 5, 7].map((n) =>
    [n, Array.from({ length: n }, (_, i) => likertLabel(i + 1, n))]));
  out.wordDiff = wordDiff("the cat sat", "the dog sat down");
  view.discard();
  return out;
}"""


def test_the_form_fits_each_kind_of_dimension_and_task(fresh_server, context_factory):
    tab = Annotator(context_factory(), f"{fresh_server.url}/annotate")
    tab.page.wait_for_selector("body[data-screen=join]")
    out = tab.page.evaluate(FORM_VARIANTS)
    assert out["selectOptions"] == ["Choose…", *"abcdefgh", "Not applicable"], "many categories: a drop-down"
    assert not out["likert"], "three responses: no Likert question"
    assert not out["justification"], "justification off: no text box"
    assert out["toggles"] == ["Rewrite Response 1", "Rewrite Response 2"], "only text responses are rewritten"
    assert out["titles"] == ["Response 1", "Response 2", "Response 3"]
    assert out["first"] == [
        "Response 1: rate kind",
        "Response 1: fill in Reason",
        "Response 2: rate kind",
        "Response 2: fill in Reason",
        "Response 3: rate kind",
        "Response 3: fill in Reason",
        "Choose the better response",
    ]
    assert out["imageChosen"] == [
        "Response 3 cannot be rewritten here, but this task needs a rewrite of the one you choose"
    ]
    assert out["needsRewrite"] == ["Response 1: rewrite it (this task needs a rewrite of the response you choose)"]
    assert out["textDisabled"] is True
    assert out["diff"] == [["#text", "one "], ["DEL", "two"], ["INS", "2"], ["#text", " three"]]
    assert out["sent"] == {
        "ratings": [{"kind": "b", "why": "because"}, {"kind": None, "why": None}, {"kind": "h", "why": "a picture"}],
        "selected": 0,
        "rewrites": ["one 2 three", None, None],
    }
    assert out["field"] == "r1:1"
    assert out["labels"] == {
        "2": ["Response 1 much better", "Response 2 much better"],
        "4": [
            "Response 1 much better",
            "Response 1 slightly better",
            "Response 2 slightly better",
            "Response 2 much better",
        ],
        "5": [
            "Response 1 much better",
            "Response 1 slightly better",
            "About the same",
            "Response 2 slightly better",
            "Response 2 much better",
        ],
        "7": [
            "Response 1 much better",
            "Response 1 better",
            "Response 1 slightly better",
            "About the same",
            "Response 2 slightly better",
            "Response 2 better",
            "Response 2 much better",
        ],
    }
    assert out["wordDiff"] == [
        {"type": "same", "text": "the "},
        {"type": "del", "text": "cat"},
        {"type": "ins", "text": "dog"},
        {"type": "same", "text": " sat"},
        {"type": "ins", "text": " down"},
    ]
    assert tab.errors == [] and tab.dialogs == []
