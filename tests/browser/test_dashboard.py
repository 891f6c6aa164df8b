"""`flowlab dashboard` in Debian's Chromium: it updates live while a crowd votes, edits the instruction, and
fetches nothing from outside this machine."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowlab.crowd import SimulatedCrowd
from tests.browser.conftest import stop_process_group, wait_until_serving
from tests.conftest import free_port

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


@pytest.fixture
def dashboard_url(flowlab_server: Any, tmp_path: Path) -> Iterator[str]:
    """`flowlab dashboard` (the CLI, as `make dashboard` runs it) on a free port, against the test server."""
    port = free_port()
    log = tmp_path / "dashboard.log"
    cmd = [
        sys.executable,
        "-m",
        "flowlab",
        "dashboard",
        "--url",
        flowlab_server.url,
        "--api-key",
        flowlab_server.api_key,
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
