"""JupyterLab in Debian's Chromium: the dashboard launcher tile, and the quickstart notebook's widgets updating live."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import stop_process_group, wait_until_serving, watch_errors
from tests.conftest import free_port

pytestmark = pytest.mark.browser

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
LOCAL = ("http://127.0.0.1", "http://localhost", "ws://127.0.0.1", "ws://localhost", "data:", "blob:", "about:")

# Sum of every win-loss heatmap source on the page, read from BokehJS's own documents: the figure data the
# browser actually draws, not what the kernel thinks it sent.
HEATMAP_TOTALS_JS = """() => {
  if (!window.Bokeh) return null;
  const totals = [];
  for (const doc of Bokeh.documents) {
    for (const model of doc.all_models) {
      const data = model.data;
      if (!data) continue;
      const get = (k) => (data instanceof Map ? data.get(k) : data[k]);
      if (get("winner") === undefined || get("count") === undefined) continue;
      totals.push(Array.from(get("count")).reduce((a, b) => a + b, 0));
    }
  }
  return totals;
}"""


# The monitor's item table as drawn: each row's cells start where the header's columns do, no cell wraps onto a
# second line, and the item picker's label fits its box.
MONITOR_LAYOUT_JS = """(monitor) => {
  const lefts = (row) => Array.from(row.children).map((c) => Math.round(c.getBoundingClientRect().left));
  const header = monitor.querySelector(".flowlab-item-header");
  const rows = Array.from(monitor.querySelectorAll(".flowlab-item-row"));
  const misaligned = [], wrapped = [];
  for (const row of rows) {
    const a = lefts(header), b = lefts(row);
    if (a.length !== b.length || a.some((x, i) => Math.abs(x - b[i]) > 1)) misaligned.push([a, b]);
    for (const cell of row.children) if (cell.getBoundingClientRect().height > 30) wrapped.push(cell.textContent);
  }
  const select = monitor.querySelector("select");
  const ctx = document.createElement("canvas").getContext("2d");
  ctx.font = getComputedStyle(select).font;
  const label = select.options[select.selectedIndex]?.text ?? "";
  const fits = ctx.measureText(label).width <= select.clientWidth - 24;
  return { rows: rows.length, misaligned, wrapped, picker_fits: fits, label };
}"""


@dataclass
class Lab:
    url: str
    token: str
    proc: subprocess.Popen[bytes]
    log: Path

    def page_url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.url}{path}{sep}token={self.token}"


@pytest.fixture
def jupyter_lab(flowlab_server: Any, tmp_path: Path) -> Iterator[Lab]:
    """`jupyter lab` on a free port, serving a copy of notebooks/, with kernels pointed at the test server."""
    root = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, root)
    settings = tmp_path / "lab-settings"
    # No "get Jupyter news?" toast over the notebook, and no request to the internet for it.
    notification = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True)
    notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env = {
        **os.environ,
        "FLOWLAB_URL": flowlab_server.url,
        "FLOWLAB_API_KEY": flowlab_server.api_key,
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "lab-workspaces"),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),  # ignore the user's own Jupyter config
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
    }
    port, token = free_port(), secrets.token_hex(16)
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.open_browser=False",
        "--LabApp.news_url=",
        "--ServerApp.port_retries=0",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # CI containers run as root
    log = tmp_path / "jupyter.log"
    with open(log, "wb") as out:
        # Its own process group, so the kernels and the proxied dashboard go down with it.
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    lab = Lab(f"http://127.0.0.1:{port}", token, proc, log)
    try:
        wait_until_serving(proc, lab.page_url("/api/status"), log, "jupyter lab")
        yield lab
    finally:
        stop_process_group(proc, timeout=15)


def test_quickstart_runs_in_jupyterlab_with_live_widgets(browser: Any, jupyter_lab: Lab, output_dir: Path) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    outside: list[str] = []

    def only_local(route: Any) -> None:
        # Offline by construction: BokehJS comes inline from the kernel, everything else from Jupyter.
        if route.request.url.startswith(LOCAL):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", only_local)
    page = context.new_page()
    errors = watch_errors(page)
    try:
        # The launcher has the dashboard tile (jupyter-server-proxy entry point), and it opens the dashboard.
        page.goto(jupyter_lab.page_url("/lab?reset"))
        tile = page.locator(".jp-LauncherCard", has_text="flowlab dashboard")
        tile.wait_for(timeout=60_000)
        page.screenshot(path=str(output_dir / "lab_launcher.png"))
        with context.expect_page(timeout=30_000) as opened:
            tile.click()
        dashboard = opened.value
        dashboard_errors = watch_errors(dashboard)
        dashboard.locator(".flowlab-header").first.wait_for(timeout=60_000)  # its first refresh has landed
        assert "/flowlab-dashboard/" in dashboard.url
        assert dashboard.title() == "flowlab dashboard"
        dashboard.screenshot(path=str(output_dir / "lab_dashboard_tile.png"))
        dashboard.close()
        assert not dashboard_errors, dashboard_errors

        # Open the quickstart and run every cell.
        page.goto(jupyter_lab.page_url("/lab/tree/01_quickstart.ipynb"))
        page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=60_000)
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()

        counts: list[int] = []
        heatmap_totals: list[float] = []
        deadline = time.monotonic() + 150
        prompts = page.locator(".jp-CodeCell .jp-InputPrompt")
        while time.monotonic() < deadline:
            shown = page.locator(".flowlab-count")
            if shown.count():
                value = int(shown.first.inner_text())
                if not counts or counts[-1] != value:
                    counts.append(value)
            totals = page.evaluate(HEATMAP_TOTALS_JS) or []
            if totals and (not heatmap_totals or heatmap_totals[-1] != totals[0]):
                heatmap_totals.append(totals[0])
            if prompts.last.inner_text().strip() not in ("[ ]:", "[*]:"):
                break  # the last cell has run
            time.sleep(0.2)
        else:
            pytest.fail(f"the notebook did not finish; counts seen {counts}\n{jupyter_lab.log.read_text()[-3000:]}")

        monitor = page.locator(".flowlab-monitor").first
        monitor.scroll_into_view_if_needed()
        page.wait_for_timeout(300)
        page.screenshot(path=str(output_dir / "lab_quickstart.png"))
        monitor.screenshot(path=str(output_dir / "lab_quickstart_monitor.png"))

        assert page.locator("[data-mime-type='application/vnd.jupyter.error']").count() == 0, "a cell raised"
        layout = monitor.evaluate(MONITOR_LAYOUT_JS)
        assert layout["rows"] >= 1 and layout["misaligned"] == [], layout
        assert layout["wrapped"] == [], f"item rows keep to one line: {layout}"
        assert layout["picker_fits"], f"the item picker shows its whole label: {layout}"
        assert len(counts) >= 3 and counts == sorted(counts), f"the count should climb live: {counts}"
        assert counts[-1] == 200
        assert len(heatmap_totals) >= 3, f"the heatmap should change live: {heatmap_totals}"
        assert heatmap_totals[-1] == 200
        assert not errors, errors
        assert not outside, f"the notebook page fetched from outside this machine: {outside}"
    finally:
        context.close()


# ---------------------------------------------------------------- JupyterLab's default layout at 1280 px

# Monitors of three kinds in one notebook, each on an item the crowd has finished (no live updates to wait for).
NARROW_CELLS = [
    """from flowlab import Client
from flowlab.crowd import SimulatedCrowd
from flowlab_widgets import FlowMonitor

client = Client()
crowd = SimulatedCrowd(client.url, client.api_key, annotators=6, rate=6000, seed=5).start()""",
    """pairs = client.flow.create_ranking_flow(
    name="narrow: pairs", instruction="Which answer would a reader on a small screen find more helpful?",
    max_response_threshold=40)
pairs.create_new_flow_batch([f"answer number {i}" for i in range(6)], time_to_live=120).get_results(timeout=60)
FlowMonitor(pairs, live=False)""",
    """labels = client.flow.create_classify_flow(
    name="narrow: labels", instruction="Which animal is it?", categories=["cat", "dog", "bird"],
    max_responses_per_datapoint=3, min_responses_per_datapoint=3)
labels.create_new_flow_batch([f"animal {i}" for i in range(12)], time_to_live=120).get_results(timeout=60)
FlowMonitor(labels, live=False)""",
    """rated = client.flow.create_rlhf_flow("narrow: rated", "Which answer is better?", max_response_threshold=3)
rated.create_new_flow_batch([
    {"id": f"q{i}", "prompt": f"Question {i}?", "responses": [
        {"source_id": "strong", "content": "A careful answer."}, {"source_id": "weak", "content": "Eh."}]}
    for i in range(3)], time_to_live=120).get_results(timeout=60)
FlowMonitor(rated, live=False)""",
    "crowd.stop()",
]

# Every element of each monitor, against the notebook's visible area and the monitor's own box: what shows past
# either edge is cut off (or runs over what is beside it). What a box of the monitor clips on purpose (a cell's
# text cut short) counts only as far as that box shows it.
CLIPPED_JS = """() => {
  const panel = document.querySelector(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer")
    ?? document.querySelector(".jp-NotebookPanel:not(.lm-mod-hidden)");
  const area = panel.getBoundingClientRect();
  const edge = Math.min(area.right, window.innerWidth);
  const out = [];
  for (const monitor of document.querySelectorAll(".flowlab-monitor")) {
    const box = monitor.getBoundingClientRect();
    const right = Math.min(edge, box.right);
    const clipped = [];
    for (const el of monitor.querySelectorAll("*")) {
      const r = el.getBoundingClientRect();
      if (r.width === 0 || r.height === 0) continue;
      let shownRight = r.right;
      let shownLeft = r.left;
      for (let a = el.parentElement; a && a !== monitor; a = a.parentElement) {
        if (getComputedStyle(a).overflowX !== "visible") {
          const ar = a.getBoundingClientRect();
          shownRight = Math.min(shownRight, ar.right);
          shownLeft = Math.max(shownLeft, ar.left);
        }
      }
      // A figure is never cut short on purpose: all of it must show.
      if (el.classList.contains("bk-Figure")) [shownLeft, shownRight] = [r.left, r.right];
      if (shownRight > shownLeft && (shownRight > right + 1 || shownLeft < box.left - 1)) {
        clipped.push(`${el.tagName.toLowerCase()}.${String(el.className).slice(0, 40)} `
          + `${Math.round(r.left)}-${Math.round(r.right)}`);
      }
    }
    out.push({ left: box.left, right: box.right, edge, clipped: clipped.slice(0, 8), count: clipped.length,
               figures: Array.from(monitor.querySelectorAll(".bk-Figure"), (f) => {
                 const r = f.getBoundingClientRect();
                 return { left: Math.round(r.left), right: Math.round(r.right), width: Math.round(r.width) };
               }) });
  }
  return { browser: Boolean(document.querySelector("#filebrowser:not(.lm-mod-hidden)")), monitors: out };
}"""
# A cell of the item table whose text runs on past the cell, over the next one.
OVERRUN_JS = """(monitor) => {
  const out = [];
  for (const row of monitor.querySelectorAll(".flowlab-item-row, .flowlab-item-header")) {
    for (const cell of row.children) {
      const box = cell.getBoundingClientRect();
      const clips = getComputedStyle(cell).overflowX !== "visible";
      for (const inner of cell.querySelectorAll("*")) {
        if (!clips && inner.getBoundingClientRect().right > box.right + 1) out.push(cell.textContent);
      }
    }
  }
  return out;
}"""


def test_monitors_fit_jupyterlab_at_1280px_with_the_file_browser_open(
    browser: Any, jupyter_lab: Lab, tmp_path: Path, output_dir: Path
) -> None:
    notebook = {
        "cells": [
            {"cell_type": "code", "metadata": {}, "source": src, "outputs": [], "execution_count": None}
            for src in NARROW_CELLS
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (tmp_path / "notebooks" / "narrow.ipynb").write_text(json.dumps(notebook))
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors = watch_errors(page)
    try:
        page.goto(jupyter_lab.page_url("/lab/tree/narrow.ipynb?reset"))
        page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=60_000)
        browser_tab = page.locator("#filebrowser")
        if not browser_tab.is_visible():  # JupyterLab's default layout has it open; make sure
            page.locator("li[data-id='filebrowser']").click()
        browser_tab.wait_for(state="visible")
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        prompts = page.locator(".jp-CodeCell .jp-InputPrompt")
        deadline = time.monotonic() + 150
        while prompts.last.inner_text().strip() in ("[ ]:", "[*]:"):
            assert time.monotonic() < deadline, jupyter_lab.log.read_text()[-3000:]
            time.sleep(0.3)
        page.locator(".flowlab-monitor").nth(2).wait_for(timeout=30_000)
        page.wait_for_timeout(1000)  # the figures lay themselves out
        assert page.locator("[data-mime-type='application/vnd.jupyter.error']").count() == 0, "a cell raised"
        for n in range(3):
            monitor = page.locator(".flowlab-monitor").nth(n)
            monitor.scroll_into_view_if_needed()
            page.wait_for_timeout(300)
            page.screenshot(path=str(output_dir / f"lab_narrow_monitor_{n}.png"))
        layout = page.evaluate(CLIPPED_JS)
        assert layout["browser"], "the file browser is open beside the notebook"
        assert len(layout["monitors"]) == 3
        for shown in layout["monitors"]:
            assert shown["right"] <= shown["edge"] + 1, f"a monitor runs past the notebook's edge: {shown}"
            assert shown["count"] == 0, f"parts of a monitor are cut off: {shown}"
            assert shown["figures"] and all(f["width"] >= 300 for f in shown["figures"]), shown
        for n in range(3):
            monitor = page.locator(".flowlab-monitor").nth(n)
            rows = monitor.evaluate(MONITOR_LAYOUT_JS)
            assert rows["rows"] >= 1 and rows["misaligned"] == [] and rows["wrapped"] == [], rows
            assert monitor.evaluate(OVERRUN_JS) == [], "a cell's text runs over the next cell"
        assert not errors, errors
    finally:
        context.close()
