"""`flowlab dashboard` in Debian's Chromium: it updates live while a crowd votes, edits the instruction, draws a
live and an ended item of every kind with its kind's figures, and fetches nothing from outside this machine."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

import flowlab
from flowlab.crowd import SimulatedCrowd
from tests.browser.conftest import stop_process_group, wait_until_serving, watch_errors
from tests.conftest import ServerProcess, free_port

pytestmark = pytest.mark.browser

LOCAL = ("http://127.0.0.1", "http://localhost", "ws://127.0.0.1", "ws://localhost", "data:", "blob:", "about:")

HEATMAP_TOTAL_JS = """() => {
  if (!window.Bokeh) return null;
  for (const doc of Bokeh.documents) {
    for (const model of doc.all_models) {
      const data = model.data;
      if (!data) continue;
      const get = (k) => (data instanceof Map ? data.get(k) : data[k]);
      if (get("winner") !== undefined && get("count") !== undefined) {
        return Array.from(get("count")).reduce((a, b) => a + b, 0);
      }
    }
  }
  return null;
}"""


@contextlib.contextmanager
def running_dashboard(server: Any, log: Path) -> Iterator[str]:
    """`flowlab dashboard` (the CLI, as `make dashboard` runs it) on a free port, against `server`; its log must
    hold no traceback when it stops."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "flowlab",
        "dashboard",
        "--url",
        server.url,
        "--api-key",
        server.api_key,
        "--port",
        str(port),
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(proc, url + "/", log, "flowlab dashboard")
        yield url
    finally:
        stop_process_group(proc)
        assert "Traceback" not in log.read_text(errors="replace"), log.read_text(errors="replace")


@pytest.fixture
def dashboard_url(flowlab_server: Any, tmp_path: Path) -> Iterator[str]:
    with running_dashboard(flowlab_server, tmp_path / "dashboard.log") as url:
        yield url


def test_served_page_inlines_no_cdn(dashboard_url: str) -> None:
    html = httpx.get(dashboard_url + "/", timeout=10).text
    for cdn in ("cdn.bokeh.org", "cdn.holoviz.org/panel", "unpkg.com", "cdn.jsdelivr.net/npm/@holoviz"):
        assert f'src="https://{cdn}' not in html and f'href="https://{cdn}' not in html, cdn


def test_dashboard_updates_live_while_a_crowd_votes(
    browser: Any, dashboard_url: str, flowlab_server: Any, output_dir: Path
) -> None:
    client = flowlab_server.client()
    flow = client.flow.create_ranking_flow(
        name="Dashboard, live",
        instruction="Which reply is kinder?",
        max_response_threshold=400,
        min_response_threshold=50,
    )
    item = flow.create_new_flow_batch(
        datapoints=[
            {"id": f"reply-{i}", "text": f"reply {i}", "private_metadata": {"true_score": 0.5 * i}} for i in range(6)
        ],
        time_to_live=60,
    )
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    page = context.new_page()
    errors: list[str] = []
    outside: list[str] = []
    page.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))

    def only_local(route: Any) -> None:
        # Offline by construction: anything that tries to leave this machine is recorded and refused.
        if route.request.url.startswith(LOCAL):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    crowd = SimulatedCrowd(flowlab_server.url, flowlab_server.api_key, annotators=10, rate=900, seed=11).start()
    try:
        page.goto(f"{dashboard_url}/?flow={flow.id}")
        page.locator(f".flowlab-header[data-flow='{flow.id}']").wait_for(timeout=30_000)
        count = page.locator(".flowlab-count")
        count.wait_for(timeout=30_000)
        seen: list[int] = []
        totals: list[float] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (len(seen) < 4 or len(totals) < 4):
            value = int(count.first.inner_text())
            if not seen or seen[-1] != value:
                seen.append(value)
            total = page.evaluate(HEATMAP_TOTAL_JS)
            if total is not None and (not totals or totals[-1] != total):
                totals.append(total)
            time.sleep(0.25)
        assert len(seen) >= 4 and seen == sorted(seen), f"the count should climb live: {seen}"
        assert len(totals) >= 4 and totals == sorted(totals), f"the heatmap should fill up live: {totals}"
        assert item.id in page.locator(".flowlab-items").first.inner_text()
        # The progress column shows a bar: the table's styles reach into the pane's shadow root.
        bar = page.locator(".flowlab-bar").first.bounding_box()
        fill = page.locator(".flowlab-bar > div").first.bounding_box()
        assert bar is not None and bar["width"] > 100 and bar["height"] >= 8, bar
        assert fill is not None and 0 < fill["width"] <= bar["width"] and fill["height"] >= 8, fill

        # The instruction editor calls update_config on the server.
        editor = page.locator("textarea").first
        editor.fill("Which reply is kinder to the reader?")
        editor.press("Tab")  # Panel sends a text area's value when it loses focus
        page.get_by_role("button", name="Update instruction").click()
        deadline = time.monotonic() + 15
        while flow.refresh().instruction != "Which reply is kinder to the reader?":
            assert time.monotonic() < deadline, "the dashboard's editor did not update the flow"
            time.sleep(0.2)
        assert flow.config.config_version == 2
        page.get_by_text("Saved as config v2").wait_for(timeout=10_000)

        page.screenshot(path=str(output_dir / "dashboard.png"), full_page=True)
        assert not outside, f"the dashboard fetched from outside this machine: {outside}"
        assert not errors, errors
    finally:
        crowd.stop()
        context.close()
        client.close()


# ---------------------------------------------------------------- every kind, live and ended

# Every plot the page shows (hidden panels' plots have no size), with the most rows any of its renderers draws,
# read from BokehJS's own documents and views.
SHOWN_PLOTS_JS = """() => {
  if (!window.Bokeh || !Bokeh.documents.length || !Bokeh.index) return null;
  const plots = [];
  for (const doc of Bokeh.documents) {
    for (const model of doc.all_models) {
      if (model.renderers === undefined || model.toolbar === undefined || model.title == null) continue;
      const view = Bokeh.index.find_one(model);
      const box = view && view.el ? view.el.getBoundingClientRect() : null;
      if (!box || box.width === 0 || box.height === 0) continue;
      let rows = 0;
      for (const r of model.renderers) {
        if (!r.visible) continue; // a legend's swatch, say
        const source = r.data_source;
        if (source && source.get_length) rows = Math.max(rows, source.get_length() ?? 0);
      }
      plots.push({title: String(model.title.text ?? model.title), rows: rows});
    }
  }
  return plots;
}"""
# The plots every flow shows, whatever its kind.
SHARED_PLOTS = {
    "Items: responses towards min / max",
    "Responses over time",
    "Annotator activity (colour: gold agreement)",
}


@pytest.fixture(scope="module")
def forgetful_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server that lets an ended item leave memory at once (its reads then come from the database) and logs
    every request, so a 500 shows in its log."""
    server = ServerProcess(
        data_dir=tmp_path_factory.mktemp("forgetful"), extra_args=["--retain-ended", "0", "--access-log"]
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def forgetful_dashboard(forgetful_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_dashboard(forgetful_server, tmp_path_factory.mktemp("dashboard") / "dashboard.log") as url:
        yield url


def _open_and_wait_drawn(browser: Any, url: str, flow: Any, kind: str, state: str) -> tuple[Any, Any, list[str]]:
    """A new dashboard session on `flow`, once `_wait_drawn` holds. Returns (context, page, errors)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1400})
    page = context.new_page()
    errors = watch_errors(page)
    page.goto(f"{url}/?flow={flow.id}")
    try:
        _wait_drawn(page, flow, kind, state)
    except BaseException:
        context.close()
        raise
    return context, page, errors


def _wait_drawn(page: Any, flow: Any, kind: str, state: str) -> None:
    """Wait until the page shows `flow` with its item in `state`, and exactly the shared plots and the kind's own,
    each drawing something."""
    from flowlab_widgets.kinds import view_for

    wanted = SHARED_PLOTS | {figure.title.text for figure in view_for(kind)().figures}
    page.locator(f".flowlab-header[data-flow='{flow.id}'][data-kind='{kind}']").wait_for(timeout=30_000)
    plots: list[dict[str, Any]] = []
    shown_state = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        plots = page.evaluate(SHOWN_PLOTS_JS) or []
        shown_state = page.locator(".flowlab-count + .flowlab-state").first.get_attribute("data-state")
        drawn = {p["title"] for p in plots if p["rows"] > 0}
        if shown_state == state and len(plots) == len(wanted) and drawn == wanted:
            return
        time.sleep(0.25)
    raise AssertionError(f"{kind}: the item shows {shown_state!r} (wanted {state!r}); plots shown {plots}")


@pytest.mark.parametrize("kind", ["pairwise", "classify", "rlhf", "chat", "listwise", "write"])
def test_dashboard_draws_a_live_and_an_ended_item_of_every_kind(
    kind: str, browser: Any, forgetful_server: ServerProcess, forgetful_dashboard: str, output_dir: Path
) -> None:
    from flowlab_widgets.kinds import view_for

    from tests.test_widgets import KIND_CASES

    server, case = forgetful_server, KIND_CASES[kind]
    log_start = len(server.log())
    client = server.client()
    flow = case.create(client)
    item = flow.create_new_flow_batch(case.batch, time_to_live=120)
    try:
        with ExitStack() as crowd:
            case.crowd(crowd, server, flow)
            deadline = time.monotonic() + 60
            while item.get_response_count() < 2:
                assert time.monotonic() < deadline, "the crowd should answer"
                time.sleep(0.1)
            # Live: the kind's figures, its wording of the thresholds, a caption where it has no matrix.
            context, page, errors = _open_and_wait_drawn(browser, forgetful_dashboard, flow, kind, "Running")
            try:
                summary = page.locator(".flowlab-summary").first.inner_text()
                assert f"per {case.per}" in summary and ("pairs: uniform" in summary) == (kind == "pairwise"), summary
                captions = page.locator(".flowlab-caption")
                if view_for(kind).has_matrix:
                    assert captions.count() == 0
                else:
                    assert "no win-loss matrix" in captions.first.inner_text()
                page.screenshot(path=str(output_dir / f"dashboard_{kind}_live.png"), full_page=True)
                assert not errors, errors
            finally:
                context.close()
        item.stop()
        deadline = time.monotonic() + 20
        while httpx.get(f"{server.url}/v1/health").json()["live_items"]:
            assert time.monotonic() < deadline, "the ended item should leave memory at once (--retain-ended 0)"
            time.sleep(0.05)
        # Ended and out of memory: a new session reads it back from the database.
        context, page, errors = _open_and_wait_drawn(browser, forgetful_dashboard, flow, kind, "Stopped")
        try:
            page.screenshot(path=str(output_dir / f"dashboard_{kind}_ended.png"), full_page=True)
            assert not errors, errors
        finally:
            context.close()
    finally:
        with contextlib.suppress(flowlab.FlowlabError):
            item.stop()
        client.close()
    log = server.log()[log_start:]
    assert "Traceback" not in log and " 500 " not in log, log[-4000:]


def test_choosing_a_flow_of_another_kind_swaps_the_figures(
    browser: Any, forgetful_server: ServerProcess, forgetful_dashboard: str
) -> None:
    """One session, two kinds: picking the other flow in the sidebar shows that kind's figures (built then, in a
    page that is already open) and hides the first kind's; picking the first again shows its figures again."""
    from tests.test_widgets import datapoints

    client = forgetful_server.client()
    pairs = client.flow.create_ranking_flow(name="switch: pairs", instruction="?", max_response_threshold=12)
    labels = client.flow.create_classify_flow(
        name="switch: labels",
        instruction="?",
        categories=["yes", "no"],
        max_responses_per_datapoint=2,
        min_responses_per_datapoint=2,
    )
    items = [
        pairs.create_new_flow_batch(datapoints(3, "sw"), time_to_live=60),
        labels.create_new_flow_batch(["p", "q"], time_to_live=60),
    ]
    with SimulatedCrowd(forgetful_server.url, forgetful_server.api_key, annotators=4, rate=6000, seed=3):
        for item in items:
            item.get_results(timeout=30)
    context, page, errors = _open_and_wait_drawn(browser, forgetful_dashboard, pairs, "pairwise", "Completed")
    try:
        for flow, kind in ((labels, "classify"), (pairs, "pairwise")):
            option = page.locator("select option", has_text=flow.name).first
            page.locator("select").first.select_option(value=option.get_attribute("value"))
            _wait_drawn(page, flow, kind, "Completed")
        assert not errors, errors
    finally:
        context.close()
        client.close()


# ---------------------------------------------------------------- annotators, the legend, the response curve

# A plot by its title: the rows it shows, each row's height on screen, its note, and where its frame and legend sit.
PLOT_JS = """(title) => {
  for (const doc of Bokeh.documents) {
    for (const model of doc.all_models) {
      if (model.renderers === undefined || model.toolbar === undefined || model.title == null) continue;
      if (String(model.title.text ?? model.title) !== title) continue;
      const view = Bokeh.index.find_one(model);
      const el = view.el.getBoundingClientRect();
      const frame = view.frame.bbox;
      const factors = model.y_range.factors ?? [];
      const notes = model.below.filter((m) => m.type === "Title").map((m) => m.text);
      const data = (name) => {
        for (const r of model.renderers) {
          const d = r.data_source.data;
          const get = (k) => (d instanceof Map ? d.get(k) : d[k]);
          if (r.visible && get(name) !== undefined) return Array.from(get(name));
        }
        return null;
      };
      return { rows: factors.length, rowPx: factors.length ? frame.height / factors.length : 0, notes,
               el: { left: el.left, top: el.top, right: el.right, bottom: el.bottom },
               frame: { left: el.left + frame.x, top: el.top + frame.y, right: el.left + frame.x + frame.width,
                        bottom: el.top + frame.y + frame.height },
               x_start: model.x_range.start, t: data("t"), count: data("count") };
    }
  }
  return null;
}"""
ANNOTATORS = "Annotator activity (colour: gold agreement)"


def _legend_colours(png: bytes, colours: list[str]) -> dict[str, int]:
    """How many pixels of each colour an image has (within a little of it, for anti-aliasing)."""
    import io

    from PIL import Image

    raw = Image.open(io.BytesIO(png)).convert("RGB").tobytes()
    pixels = [tuple(raw[i : i + 3]) for i in range(0, len(raw), 3)]
    out = {}
    for colour in colours:
        want = tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
        out[colour] = sum(1 for p in pixels if all(abs(a - b) <= 6 for a, b in zip(p, want, strict=True)))
    return out


def _show_up(server: ServerProcess, client: Any, numbers: range) -> None:
    """New annotators, each taking a task and handing it back: seen now, with no votes."""
    with httpx.Client(base_url=server.url, timeout=10) as http:
        for i in numbers:
            token = client.annotators.create(f"person {i:03d}").token
            headers = {"Authorization": f"Bearer {token}"}
            task = http.post("/v1/tasks/next", json={"wait": 0}, headers=headers).json()
            http.post(f"/v1/tasks/{task['task_id']}/answer", json={"choice": "skip"}, headers=headers)


def test_annotator_activity_legend_and_response_curve_read_well(
    browser: Any, fresh_server: ServerProcess, tmp_path: Path, output_dir: Path
) -> None:
    """36 annotators, then 300: the busiest 25 are drawn at a readable height each with a note on the rest; the
    legend shows its five colours; the response curve of an ended flow starts at its first vote, not at page load."""
    from flowlab_widgets.figures import AGREEMENT_BANDS

    client = fresh_server.client()
    flow = client.flow.create_ranking_flow(name="Activity", instruction="Which?", max_response_threshold=30)
    item = flow.create_new_flow_batch([f"option {i}" for i in range(4)], time_to_live=60)
    with SimulatedCrowd(fresh_server.url, fresh_server.api_key, annotators=6, rate=6000, seed=4):
        item.get_results(timeout=30)
    started = item.get_progress().started_at
    # Another flow's item gives the people below a task each: the dashboard shows those seen lately.
    other = client.flow.create_ranking_flow(name="Busy", instruction="Which?", max_response_threshold=1000)
    other.create_new_flow_batch([f"choice {i}" for i in range(6)], time_to_live=300)
    _show_up(fresh_server, client, range(30))
    time.sleep(1.5)  # so the page opens well after the flow's first vote
    context = browser.new_context(viewport={"width": 1400, "height": 1200})
    page = context.new_page()
    errors = watch_errors(page)
    try:
        with running_dashboard(fresh_server, tmp_path / "dashboard.log") as url:
            opened = time.time()
            page.goto(f"{url}/?flow={flow.id}")
            page.locator(f".flowlab-header[data-flow='{flow.id}']").wait_for(timeout=30_000)
            for total in (36, 300):
                deadline = time.monotonic() + 30
                plot = page.evaluate(PLOT_JS, ANNOTATORS)
                while not plot or not any(f"of {total} annotators" in n for n in plot["notes"]):
                    assert time.monotonic() < deadline, f"the chart should say how many annotators there are: {plot}"
                    time.sleep(0.25)
                    plot = page.evaluate(PLOT_JS, ANNOTATORS)
                page.wait_for_timeout(500)  # the figure grows to its rows
                plot = page.evaluate(PLOT_JS, ANNOTATORS)
                assert plot["rows"] == 25 and f"+{total - 25} more" in plot["notes"][0], plot
                assert plot["rowPx"] >= 14, f"each annotator's row is tall enough for its name: {plot}"
                assert plot["el"]["right"] <= 1400, plot
                page.locator(".bk-Canvas").last.scroll_into_view_if_needed()
                page.screenshot(path=str(output_dir / f"dashboard_annotators_{total}.png"), full_page=True)
                if total == 36:
                    _show_up(fresh_server, client, range(30, 294))

            # The legend, right of the bars: every band's colour is on screen, not blank swatches.
            plot = page.evaluate(PLOT_JS, ANNOTATORS)
            page.evaluate(f"window.scrollTo(0, {plot['el']['top']} + window.scrollY - 20)")
            page.wait_for_timeout(300)
            plot = page.evaluate(PLOT_JS, ANNOTATORS)
            clip = {
                "x": plot["frame"]["right"] + 2,
                "y": plot["frame"]["top"],
                "width": plot["el"]["right"] - plot["frame"]["right"] - 2,
                "height": min(200, plot["frame"]["bottom"] - plot["frame"]["top"]),
            }
            legend = page.screenshot(clip=clip)
            (output_dir / "dashboard_annotator_legend.png").write_bytes(legend)
            found = _legend_colours(legend, [colour for _, colour in AGREEMENT_BANDS])
            assert all(n >= 40 for n in found.values()), f"each swatch shows its colour: {found}"

            # Responses over time: from the item's start (its first vote's side), to its end, not from page load.
            curve = page.evaluate(PLOT_JS, "Responses over time")
            assert curve["t"][0] == pytest.approx(started * 1000.0, abs=1.0) and curve["count"][0] == 0
            assert curve["count"][-1] == 30
            assert curve["x_start"] <= started * 1000.0 < opened * 1000.0 - 1000
            assert not errors, errors
    finally:
        context.close()
        client.close()


def test_people_panel_shows_a_person_and_its_suspend_button_suspends_them(
    browser: Any, flowlab_server: Any, tmp_path: Path, output_dir: Path
) -> None:
    from types import SimpleNamespace
    from urllib.parse import urlsplit

    with flowlab_server.client() as admin:
        key = admin.create_api_key("dashboard people").key
    client = flowlab.Client(url=flowlab_server.url, api_key=key)  # a key of its own: only its people show
    audience = client.audiences.create("Prolific raters")
    link = audience.enrollment_link(platform="prolific", completion_code="DONE")
    body = {"params": {"PROLIFIC_PID": "pid-dash", "STUDY_ID": "study", "SESSION_ID": "s"}}
    person = httpx.post(
        f"{flowlab_server.url}/v1/enroll/{urlsplit(link).path.rsplit('/', 1)[-1]}", json=body, timeout=30
    ).json()
    annotator_id = person["annotator_id"]
    researcher = SimpleNamespace(url=flowlab_server.url, api_key=key)
    with running_dashboard(researcher, tmp_path / "dashboard.log") as url:
        page = browser.new_context(viewport={"width": 1400, "height": 1100}).new_page()
        errors = watch_errors(page)
        page.goto(url + "/")
        audience_row = page.locator(f".flowlab-audience[data-audience='{audience.id}']")
        audience_row.wait_for(timeout=30_000)
        assert "Prolific raters" in audience_row.inner_text()
        assert page.locator(".flowlab-enrolled").first.inner_text() == "1"
        row = page.locator(".flowlab-person-row", has=page.locator(f"[data-annotator='{annotator_id}']"))
        row.wait_for(timeout=30_000)
        assert "pid-dash" in (row.locator(".flowlab-person-name").get_attribute("title") or "")
        assert row.locator(".flowlab-person-state").inner_text() == "active"
        row.get_by_role("button", name="Suspend").click()
        deadline = time.monotonic() + 15
        while next(a.state for a in client.annotators.list() if a.id == annotator_id) != "suspended":
            assert time.monotonic() < deadline, "clicking Suspend did not suspend them on the server"
            time.sleep(0.2)
        row.get_by_role("button", name="Reinstate").wait_for(timeout=15_000)
        page.locator(f"[data-annotator='{annotator_id}'][data-state='suspended']").wait_for(timeout=15_000)
        page.screenshot(path=str(output_dir / "dashboard-people.png"), full_page=True)
        assert not errors, errors
    client.close()


EVAL_LINE_JS = """() => {
  if (!window.Bokeh) return null;
  let best = null;  // the "all" line holds the most votes
  for (const doc of Bokeh.documents) {
    for (const model of doc.all_models) {
      const data = model.data;
      if (!data) continue;
      const get = (k) => (data instanceof Map ? data.get(k) : data[k]);
      if (get("win_rate") !== undefined && get("votes") !== undefined && get("low") !== undefined) {
        best = Math.max(best ?? 0, Array.from(get("votes")).reduce((a, b) => a + b, 0));
      }
    }
  }
  return best;
}"""


def test_evals_panel_draws_an_eval_and_its_sentinel_line(
    browser: Any, flowlab_server: Any, tmp_path: Path, output_dir: Path
) -> None:
    from types import SimpleNamespace

    with flowlab_server.client() as admin:
        key = admin.create_api_key("dashboard evals").key
    client = flowlab.Client(url=flowlab_server.url, api_key=key)  # a key of its own: only its eval shows
    prompts = [f"prompt {i}" for i in range(4)]
    ev = client.evals.create(
        "browser eval",
        prompts,
        tags=["maths", "maths", "refusals", "refusals"],
        anchor=[f"anchor {i}" for i in range(4)],
        anchor_metadata=[{"true_score": 0.0}] * 4,
        votes_per_pair=1,
    )
    for step, quality in ((0, -3.0), (10, 3.0)):
        ev.checkpoint(
            step, [f"c{i}@{step}" for i in range(4)], proxy_reward=step / 10, metadata=[{"true_score": quality}] * 4
        )
    with SimulatedCrowd(flowlab_server.url, key, annotators=4, rate=60_000, bulk=True, accuracy=1.0, seed=3):
        deadline = time.monotonic() + 30
        while ev.history().votes.sum() < 2 * 8:  # "all" (4) and "maths", "refusals" (2 each), two checkpoints
            assert time.monotonic() < deadline, "the crowd did not vote on the eval"
            time.sleep(0.1)
    researcher = SimpleNamespace(url=flowlab_server.url, api_key=key)
    with running_dashboard(researcher, tmp_path / "dashboard.log") as url:
        page = browser.new_context(viewport={"width": 1400, "height": 1100}).new_page()
        errors = watch_errors(page)
        page.goto(url + "/")
        summary = page.locator(".flowlab-eval-summary")
        summary.wait_for(timeout=30_000)
        assert "step 10: all" in summary.inner_text() and "(4 votes)" in summary.inner_text()
        page.wait_for_function(f"() => ({EVAL_LINE_JS})() === 8", timeout=30_000)  # the "all" line: 2 × 4 votes
        page.screenshot(path=str(output_dir / "dashboard-evals.png"), full_page=True)
        assert not errors, errors
    client.close()
