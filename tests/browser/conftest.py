"""Real-browser fixtures: Debian's Chromium driven by Playwright's Python package."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
OUTPUT_DIR = Path(__file__).resolve().parents[2] / "test-output"
# The machine's network is closed; these keep Chromium from trying to phone home at start-up.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# Package scope: Playwright's sync API keeps an event loop marked running in the main thread while it is
# open, which would break asyncio.run() in every test collected after the browser tests.
@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium not found: `apt-get install chromium` (as .ci/run does) to run the browser tests")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the dev extra)")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def output_dir() -> Path:
    OUTPUT_DIR.mkdir(exist_ok=True)
    return OUTPUT_DIR


def wait_until_serving(proc: subprocess.Popen[bytes], url: str, log: Path, what: str, timeout: float = 60) -> None:
    """Poll `url` until it answers 200; fail with the process's log if it exits or never comes up."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited early:\n{log.read_text(errors='replace')}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up:\n{log.read_text(errors='replace')}")
        time.sleep(0.2)


def stop_process_group(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """Stop a process started with start_new_session=True, with everything it spawned."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def watch_errors(page: Any) -> list[str]:
    """Collect a page's console errors and uncaught exceptions as they happen."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    return errors
