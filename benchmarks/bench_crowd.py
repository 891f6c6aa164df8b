"""`flowlab crowd` against a real `flowlab serve`: the votes per second it delivers on the single-vote
path (fetch a task, answer it with `fetch_next`) when asked for more than it can give, with its summary.

Run: `python benchmarks/bench_crowd.py` (about a minute).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import KEY, Server, setup_flow, write_table

SECONDS = 15.0
REQUESTED_PER_MIN = 600_000  # 10,000 votes/s: more than one crowd process can deliver


def run_crowd(url: str, *, annotators: int, bulk: bool = False) -> tuple[float, str]:
    cmd = [
        sys.executable,
        "-m",
        "flowlab",
        "crowd",
        "--url",
        url,
        "--api-key",
        KEY,
        "--annotators",
        str(annotators),
        "--rate",
        str(REQUESTED_PER_MIN),
        "--duration",
        str(SECONDS),
    ] + (["--bulk"] if bulk else [])
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=SECONDS + 120, env=os.environ.copy())
    text = out.stdout + out.stderr
    found = re.search(r"\(([\d,]+) votes/s\)", text)
    if found is None:
        raise RuntimeError(f"no rate in the crowd's summary:\n{text}")
    return float(found[1].replace(",", "")), text


def main() -> int:
    rows: list[tuple[str, str, str, str]] = []
    with Server() as server:
        setup_flow(server.url, items=4, n=50)
        for annotators in (20, 64):
            rate, summary = run_crowd(server.url, annotators=annotators)
            print(summary)
            rows.append(
                (
                    f"`flowlab crowd`, single-vote path, {annotators} annotators, asked for 10,000 votes/s for "
                    f"{SECONDS:.0f} s (one crowd process, server on the same 2 cores)",
                    f"{rate:,.0f} votes/s",
                    "≥ 1,000 votes/s",
                    "yes" if rate >= 1000 else "no",
                )
            )
        summary_line = next((line for line in summary.splitlines() if "below the rate asked" in line), "")
        rows.append(
            ("the summary says why it fell short of the rate asked", summary_line.strip() or "(none)", "—", "—")
        )
    write_table("crowd", "The simulated crowd's own speed", rows)
    return 0 if all(r[3] != "no" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
