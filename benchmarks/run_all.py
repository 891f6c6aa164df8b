"""Run every benchmark script and paste their tables into docs/benchmarks.md (the README keeps a summary)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PAGE = HERE.parent / "docs" / "benchmarks.md"
ORDER = ["bench_service.py", "bench_history.py", "bench_ranking.py", "bench_page.py"]


def main(argv: list[str]) -> int:
    scripts = [HERE / s for s in ORDER if (HERE / s).exists()]
    scripts += sorted(p for p in HERE.glob("bench_*.py") if p.name not in ORDER)
    if argv:
        scripts = [s for s in scripts if any(a in s.name for a in argv)]
    failed = 0
    for script in scripts:
        print(f"== {script.name}", flush=True)
        failed += subprocess.run([sys.executable, str(script)], cwd=HERE.parent).returncode != 0
    order = [s.removeprefix("bench_").removesuffix(".py") for s in ORDER]
    results = sorted((HERE / "results").glob("*.md"), key=lambda p: (order.index(p.stem) if p.stem in order else 99, p))
    tables = [p.read_text() for p in results]
    text = PAGE.read_text()
    block = "<!-- bench:start -->\n" + "\n".join(tables) + "<!-- bench:end -->"
    PAGE.write_text(re.sub(r"<!-- bench:start -->.*<!-- bench:end -->", lambda _: block, text, flags=re.S))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
