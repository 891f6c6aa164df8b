"""The annotator page's answer-to-next-pair time, measured in Debian's Chromium against a real server.

The page keeps one task in hand beyond the one on screen, so an answer should show the next pair within a
frame or two. The clock starts at the input event's own timestamp (the click or key press as the browser
received it) and stops after the frame that shows the next pair. Answers follow each other as fast as
Playwright can send them, which drains the prefetch harder than a person would; a second run waits 300 ms
between answers, a quick human's pace.

RLHF tasks (the seed's four dimensions, two text responses) are measured too: each form is filled in through the
DOM, as a fast user would, then submitted with a click. An annotation stays on screen until the server has it
(a refused one is fixed and sent again), and no task is held behind an RLHF task (it would go stale over the
minutes one takes), so here the clock runs from the click through the answer's round trip, which also leases the
next task, to the frame that shows that task. Run: `python benchmarks/bench_page.py [--answers 240] [--rlhf 60]`.
"""

from __future__ import annotations

import argparse
import shutil
import struct
import sys
import time
import zlib
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import KEY, Server, pct, write_table

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
TARGET_P95_MS = 100.0

# Installed once the page has loaded: timestamps each answer and the frame that shows its successor.
PROBE = """() => {
  const probe = { start: null, samples: [] };
  window.__pageBench = probe;
  const pair = document.querySelector("#pair");
  const begin = (event) => { probe.start = event.timeStamp; };
  document.addEventListener("click", (e) => { if (e.target.closest(".choice")) begin(e); }, true);
  document.addEventListener("keydown", (e) => { if (["1", "2", "ArrowLeft", "ArrowRight"].includes(e.key)) begin(e); },
                            true);
  new MutationObserver(() => {
    if (probe.start === null || !pair.dataset.taskId) return;
    const start = probe.start;
    probe.start = null;
    const swapped = performance.now() - start;
    // rAF runs just before the frame is drawn; the task queued from it runs once the frame is out.
    requestAnimationFrame(() => setTimeout(() => {
      probe.samples.push({ swapped, shown: performance.now() - start });
    }, 0));
  }).observe(pair, { attributes: true, attributeFilter: ["data-task-id"] });
}"""


# The same for RLHF tasks: from the click on Submit to the frame that shows the next task.
RLHF_PROBE = """() => {
  const probe = { start: null, samples: [] };
  window.__pageBench = probe;
  const pair = document.querySelector("#pair");
  document.addEventListener("click", (e) => { if (e.target.closest(".rlhf-submit")) probe.start = e.timeStamp; }, true);
  new MutationObserver(() => {
    if (probe.start === null || !pair.dataset.taskId) return;
    const start = probe.start;
    probe.start = null;
    const swapped = performance.now() - start;
    requestAnimationFrame(() => setTimeout(() => {
      probe.samples.push({ swapped, shown: performance.now() - start });
    }, 0));
  }).observe(pair, { attributes: true, attributeFilter: ["data-task-id"] });
}"""

# A fast annotator's form: every rating 4, the first response chosen, "better" on the Likert scale, and why.
RLHF_FILL = """() => {
  const form = document.querySelector("#rlhf form");
  for (const input of form.querySelectorAll('input[type=radio][value="4"]')) {
    if (/^r\\d+:\\d+$/.test(input.name)) input.checked = true;
  }
  form.querySelector('input[name="sel"][value="0"]').checked = true;
  form.querySelector('input[name="lk"][value="2"]').checked = true;
  form.querySelector('textarea[name="why"]').value = "The first response is clearer and more accurate.";
  form.dispatchEvent(new Event("change", { bubbles: true }));
}"""


def png(width: int, height: int, seed: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(
        b"\x00" + b"".join(bytes(((x + y + seed * 30) % 256, (x * 2) % 256, (y * 3) % 256)) for x in range(width))
        for y in range(height)
    )
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def make_work(url: str, kind: str, answers: int) -> str:
    """A flow with far more work than the run needs; returns a join link."""
    h = {"Authorization": f"Bearer {KEY}"}
    flow = httpx.post(
        f"{url}/v1/flows",
        headers=h,
        json={
            "name": f"page bench {kind}",
            "instruction": "Which response is more helpful?",
            "max_response_threshold": answers * 4,
            "lease_seconds": 60,
        },
    ).json()
    if kind == "text":
        datapoints = [
            {"text": f"Response {i}. " + "A reasonably long model answer with some detail. " * 12} for i in range(40)
        ]
    else:
        datapoints = []
        for i in range(12):
            ref = httpx.post(
                f"{url}/v1/media", headers={**h, "Content-Type": "image/png"}, content=png(320, 240, i)
            ).json()
            datapoints.append({"media": ref["sha256"]})
    r = httpx.post(
        f"{url}/v1/flows/{flow['id']}/items",
        headers=h,
        json={"datapoints": datapoints, "context": "Prompt: explain the benchmark.", "time_to_live": 3600},
    )
    r.raise_for_status()
    return str(httpx.post(f"{url}/v1/annotators", headers=h, json={"name": f"bench {kind}"}).json()["join_url"])


def make_rlhf_work(url: str, tasks: int) -> str:
    """An RLHF flow (the default form: four 1-5 dimensions, rewrites optional, a 7-point Likert scale, a required
    justification) with `tasks` two-response tasks, one annotation each; returns a join link."""
    h = {"Authorization": f"Bearer {KEY}"}
    flow = httpx.post(
        f"{url}/v1/flows",
        headers=h,
        json={
            "name": "page bench rlhf",
            "instruction": "Rate both responses, then choose the better one.",
            "kind": "rlhf",
            "rlhf": {},
            "max_response_threshold": 1,
            "lease_seconds": 600,
        },
    )
    flow.raise_for_status()
    answer = "A reasonably long model answer with some detail. " * 12
    datapoints = [
        {
            "id": f"task-{i}",
            "prompt": f"Question {i}: explain the benchmark in a few sentences.",
            "responses": [
                {"source_id": "model_a", "text": f"Model A, task {i}. {answer}"},
                {"source_id": "model_b", "text": f"Model B, task {i}. {answer}"},
            ],
        }
        for i in range(tasks)
    ]
    r = httpx.post(
        f"{url}/v1/flows/{flow.json()['id']}/items", headers=h, json={"datapoints": datapoints, "time_to_live": 3600}
    )
    r.raise_for_status()
    return str(httpx.post(f"{url}/v1/annotators", headers=h, json={"name": "bench rlhf"}).json()["join_url"])


def drive_rlhf(browser, join_url: str, submits: int) -> list[dict[str, float]]:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(join_url)
        page.wait_for_selector("#rlhf .rlhf-form")
        page.evaluate(RLHF_PROBE)
        for n in range(submits):
            page.evaluate(RLHF_FILL)
            page.click("#rlhf .rlhf-submit")
            page.wait_for_function("(n) => window.__pageBench.samples.length > n", arg=n, timeout=10_000)
        return list(page.evaluate("() => window.__pageBench.samples"))
    finally:
        page.close()


def row(label: str, samples: list[dict[str, float]]) -> tuple[str, str, str, str]:
    shown = [s["shown"] for s in samples]
    swapped = [s["swapped"] for s in samples]
    p95 = pct(shown, 95)
    return (
        f"{label}, p50 / p95 / max",
        f"{pct(shown, 50):.1f} / {p95:.1f} / {max(shown):.1f} ms (DOM swap p95 {pct(swapped, 95):.2f} ms)",
        f"p95 ≤ {TARGET_P95_MS:.0f} ms",
        "yes" if p95 <= TARGET_P95_MS else "NO",
    )


def drive(browser, join_url: str, answers: int, *, by: str, think_ms: int) -> list[dict[str, float]]:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(join_url)
        page.wait_for_selector("body[data-screen=vote]")
        page.wait_for_timeout(300)  # let the prefetch land, as it would while a person reads the first pair
        page.evaluate(PROBE)
        for n in range(answers):
            if by == "click":
                page.click("#choose-a" if n % 2 else "#choose-b")
            else:
                page.keyboard.press("1" if n % 2 else "ArrowRight")
            page.wait_for_function("(n) => window.__pageBench.samples.length > n", arg=n, timeout=10_000)
            if think_ms:
                page.wait_for_timeout(think_ms)
        return list(page.evaluate("() => window.__pageBench.samples"))
    finally:
        page.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=240, help="answers per run (at least 200 for a p95)")
    parser.add_argument("--rlhf", type=int, default=60, help="RLHF submits (0: none)")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        print("bench_page: Chromium not found (apt-get install chromium); skipped.")
        return
    from playwright.sync_api import sync_playwright

    runs = [("text", "click", 0), ("text", "key", 0), ("image", "click", 0), ("text", "click", 300)]
    rows: list[tuple[str, str, str, str]] = []
    with Server() as server, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        version = browser.version
        try:
            for kind, by, think in runs:
                join_url = make_work(server.url, kind, args.answers)
                t0 = time.perf_counter()
                samples = drive(browser, join_url, args.answers, by=by, think_ms=think)
                wall = time.perf_counter() - t0
                pace = "back to back" if not think else f"{think} ms apart"
                label = f"{kind} pairs, {by}s {pace} ({len(samples)} answers, {len(samples) / wall:.0f}/s)"
                rows.append(row(f"{label}: next pair shown", samples))
            if args.rlhf:
                # A server of its own, or the pair flows' leftover work would be served first. One task more
                # than submitted, so the last submit has a successor to show.
                with Server() as rlhf_server:
                    join_url = make_rlhf_work(rlhf_server.url, args.rlhf + 1)
                    t0 = time.perf_counter()
                    samples = drive_rlhf(browser, join_url, args.rlhf)
                    wall = time.perf_counter() - t0
                label = (
                    f"RLHF tasks (4 dimensions, 2 text responses), pre-filled, submitted back to back "
                    f"({len(samples)} submits, {len(samples) / wall:.0f}/s): submit → next task shown"
                )
                rows.append(row(label, samples))
        finally:
            browser.close()
    write_table(
        "page",
        f"Annotator page: answer → next pair (or RLHF task) shown (Chromium {version}, headless, loopback)",
        rows,
    )


if __name__ == "__main__":
    main()
