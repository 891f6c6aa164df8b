"""Full time on every task: the time left on screen when a task appears, with the page's prefetch on, in Debian's
Chromium against a real server.

The page holds a task behind the one on screen (a pair or classify item behind another; an RLHF, chat, listwise
or write task behind a pair, since nothing is held behind those). Its lease starts when it is leased, so before
`POST /v1/tasks/{id}/shown` the time a person spent on the current task was taken from the next one. Each kind
is driven through `--tasks` tasks with `--think` seconds on each, leases of `--lease` seconds, twice: with the
page as it was before the route (every static file of the commit before it, served in place of the server's
own; `--before-rev`; kinds the page did not have then are measured now only) and with the page as served now.
For every task that appears after one it was held behind, two readings of its countdown (the lease bar, to 0.1 %
of the lease):

- as it appears (the frame that shows it): the page's own figure at once;
- once settled: read at the bar's first update 1.5 s later, plus the time since it appeared, so it is the
  deadline the page counts down to after the server's reply to `shown` (the page shows the full lease until
  then).

Run: `python benchmarks/bench_full_time.py [--tasks 8] [--think 4] [--lease 10]` (about five minutes).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import KEY, Server, pct, write_table

import flowlab

ROOT = Path(__file__).resolve().parents[1]
STATIC = "src/flowlab/server/static"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html; charset=utf-8"}
KINDS = ["pairwise", "classify", "rlhf", "chat", "listwise", "write"]

# Installed once the first task is on screen: for each task that appears after it, the lease bar as it appears
# and at its first update 1.5 s later (plus the time since), in seconds of `lease`.
PROBE = """(lease) => {
  const samples = [];
  window.__fullTime = samples;
  const pair = document.querySelector("#pair");
  const fill = document.querySelector("#lease-fill");
  const left = () => (parseFloat(fill.style.width) / 100) * lease;
  new MutationObserver(() => {
    const id = pair.dataset.taskId;
    if (!id) return;
    const form = !document.querySelector("#rlhf").hidden;
    const sample = { id, form, appeared: left(), settled: null };
    samples.push(sample);
    const t0 = performance.now();
    setTimeout(() => {
      const watch = new MutationObserver(() => {
        watch.disconnect();
        if (pair.dataset.taskId === id) sample.settled = left() + (performance.now() - t0) / 1000;
      });
      watch.observe(fill, { attributes: true, attributeFilter: ["style"] });
    }, 1500);
  }).observe(pair, { attributes: true, attributeFilter: ["data-task-id"] });
}"""


def before_rev() -> str:
    """The commit before the one that made the page call `shown` (HEAD while that is not committed)."""
    log = subprocess.run(
        ["git", "log", "--reverse", "--format=%H", "-S/shown`", "--", f"{STATIC}/api.js"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return f"{log[0]}^" if log else "HEAD"


def page_had(rev: str, kind: str) -> bool:
    """Whether the page at `rev` could show this kind's tasks (a kind drawn by a module of its own needs it)."""
    if not (ROOT / STATIC / f"{kind}.js").exists():
        return True  # drawn by annotate.js itself
    found = subprocess.run(["git", "cat-file", "-e", f"{rev}:{STATIC}/{kind}.js"], cwd=ROOT, capture_output=True)
    return found.returncode == 0


def old_page(context: Any, rev: str) -> None:
    """Serve the page's files (and the page itself) as they were at `rev`, in place of the server's own."""

    def old(name: str) -> bytes | None:
        shown = subprocess.run(["git", "show", f"{rev}:{STATIC}/{name}"], cwd=ROOT, capture_output=True)
        return shown.stdout if shown.returncode == 0 else None

    def serve(route: Any, name: str) -> None:
        body = old(name)
        if body is None:
            route.continue_()
            return
        real = route.fetch()
        headers = {k: v for k, v in real.headers.items() if k.lower() not in ("content-length", "content-type")}
        route.fulfill(status=200, headers=headers, content_type=TYPES[Path(name).suffix], body=body)

    context.route("**/static/*", lambda route: serve(route, route.request.url.rsplit("/", 1)[1].split("?")[0]))
    context.route("**/annotate", lambda route: serve(route, "annotate.html"))


def make_work(client: flowlab.Client, kind: str, tasks: int, lease: float) -> tuple[str, list[Any]]:
    """The kind's work, enough for `tasks` measured appearances; returns a join link and the items a form task
    is in (stopped once skipped, so it is not served again)."""
    forms: list[Any] = []
    join_url = client.annotators.create(f"full time {kind}").join_url
    if kind == "pairwise":
        pairs = client.flow.create_ranking_flow("full time", "Which?", max_response_threshold=1000, lease_seconds=lease)
        pairs.create_new_flow_batch([f"text {i}" for i in range(2 * tasks + 4)], time_to_live=3600)
        return join_url, forms
    if kind == "classify":
        labels = client.flow.create_classify_flow(
            "full time", "Cats?", ["yes", "no"], 1, 1, serve_timeout=lease
        )  # max and min answers per datapoint; hosted's name for the lease
        labels.create_new_flow_batch([f"text {i}" for i in range(tasks + 4)], time_to_live=3600)
        return join_url, forms
    # Pair i, then form task i, then pair i+1, ...: each served once, in the order of their deadlines.
    lead = client.flow.create_ranking_flow("lead", "Which?", max_response_threshold=1, lease_seconds=lease)
    made: Any
    task: dict[str, Any] = {}
    batch = lambda i: [{"id": f"t{i}", **task}]  # noqa: E731  # the form task of item i
    if kind == "listwise":
        made = client.flow.create_listwise_flow(
            "full time", "Order them.", k=3, max_response_threshold=1, lease_seconds=lease
        )
        batch = lambda i: [f"answer {i}.{j}" for j in range(3)]  # noqa: E731
    elif kind == "write":
        made = client.flow.create_write_flow("full time", "Write it.", lease_seconds=lease)
        batch = lambda i: [f"Say hello, {i}."]  # noqa: E731
    elif kind == "rlhf":
        made = client.flow.create_rlhf_flow(
            "full time",
            "Rate both.",
            dimensions=[{"key": "ok", "type": "boolean"}],
            rewrite="off",
            likert_scale=0,
            justification="off",
            max_response_threshold=1,
            lease_seconds=lease,
        )
        task = {
            "prompt": "Say hello.",
            "responses": [{"source_id": "a", "content": "Hi!"}, {"source_id": "b", "content": "No."}],
        }
    else:
        made = client.flow.create_chat_flow(
            "full time", "Chat.", dimensions=[{"key": "ok", "type": "boolean"}], lease_seconds=lease
        )
    for i in range(tasks + 1):
        lead.create_new_flow_batch(["left", "right"], time_to_live=1000 + 2 * i)
        if i < tasks:
            forms.append(made.create_new_flow_batch(batch(i), time_to_live=1001 + 2 * i))
    return join_url, forms


def drive(
    browser: Any, kind: str, join_url: str, forms: list[Any], tasks: int, *, think: float, lease: float, rev: str | None
) -> list[dict[str, Any]]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    if rev is not None:
        old_page(context, rev)
    page = context.new_page()
    try:
        page.goto(join_url)
        page.wait_for_selector("body[data-screen=vote]")
        page.evaluate(PROBE, lease)
        settled = "(n) => window.__fullTime.length > n && window.__fullTime[n].settled !== null"
        seen = 0

        def next_sample() -> dict[str, Any]:
            nonlocal seen
            page.wait_for_function(settled, arg=seen, timeout=20_000)
            seen += 1
            sample: dict[str, Any] = page.evaluate("(n) => window.__fullTime[n]", seen - 1)
            page.wait_for_timeout(max(0.0, think - 1.6) * 1000)  # the rest of the think time
            return sample

        page.wait_for_timeout(think * 1000)  # on the first task, while the next is held behind it
        out = []
        for i in range(tasks):
            if kind == "pairwise":
                page.click("#choose-a")
            elif kind == "classify":
                page.click('#categories .choice[data-choice="yes"]')
            else:
                page.click("#choose-a")  # the pair in front; the form task held behind it appears
            out.append(next_sample())
            if forms:  # a form task on screen: skip it
                page.click("#rlhf .rlhf-skip")
                next_sample()  # the next pair, with the next form task held behind it
                forms[i].stop()
        return out
    finally:
        context.close()


def summary(samples: list[dict[str, Any]], lease: float) -> tuple[str, bool]:
    appeared = [s["appeared"] for s in samples]
    settled = [s["settled"] for s in samples]
    ok = min(settled) >= lease - 1 and min(appeared) >= lease - 1
    text = (
        f"as it appears {min(appeared):.1f} / {pct(appeared, 50):.1f} s; "
        f"settled {min(settled):.1f} / {pct(settled, 50):.1f} s ({len(samples)} tasks)"
    )
    return text, ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=8, help="measured appearances per kind and page")
    parser.add_argument("--think", type=float, default=4.0, help="seconds on each task before answering")
    parser.add_argument("--lease", type=float, default=10.0, help="every flow's lease_seconds")
    parser.add_argument("--before-rev", default=None, help="the page before `shown` (default: found by git log)")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated kinds")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        print("bench_full_time: Chromium not found (apt-get install chromium); skipped.")
        return
    if args.think < 1.6 or args.think >= args.lease / 2:
        parser.error("--think must be at least 1.6 s (the settled reading) and under half the lease")
    from playwright.sync_api import sync_playwright

    rev = args.before_rev or before_rev()
    short = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True, text=True).stdout
    rows: list[tuple[str, str, str, str]] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        version = browser.version
        try:
            for kind in args.kinds.split(","):
                pages = [(f"before (page of {short.strip()})", rev)] if page_had(rev, kind) else []
                for label, page_rev in [*pages, ("now", None)]:
                    # A server of its own each time, so nothing left over is served first.
                    with Server() as server, flowlab.Client(url=server.url, api_key=KEY) as client:
                        join_url, forms = make_work(client, kind, args.tasks, args.lease)
                        samples = drive(
                            browser, kind, join_url, forms, args.tasks, think=args.think, lease=args.lease, rev=page_rev
                        )
                    text, ok = summary(samples, args.lease)
                    rows.append(
                        (
                            f"{kind}, {label}: min / p50 time left",
                            text,
                            f"≥ {args.lease - 1:g} s of {args.lease:g} s",
                            "yes" if ok else "NO",
                        )
                    )
        finally:
            browser.close()
    write_table(
        "full_time",
        f"Full time on every task: time left on screen when a task appears after {args.think:g} s on the one "
        f"before it, leases of {args.lease:g} s (Chromium {version}, headless, loopback)",
        rows,
    )


if __name__ == "__main__":
    main()
