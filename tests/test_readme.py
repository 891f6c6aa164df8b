"""The README's Python runs as written: every ```python block, in order, as one script in a fresh interpreter,
against a real `flowlab serve` named by FLOWLAB_URL (as a newcomer's shell would), with the simulated crowd the
quickstart starts itself."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import ServerProcess

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_the_readme_has_a_quickstart_to_run() -> None:
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 3, "the README lost its Python examples"
    assert "create_ranking_flow" in blocks[0] and "get_results" in blocks[0]


def test_every_python_block_of_the_readme_runs_as_written(fresh_server: ServerProcess, tmp_path: Path) -> None:
    script = tmp_path / "readme.py"
    script.write_text("\n\n".join(python_blocks(README.read_text())))
    env = {**os.environ, "FLOWLAB_URL": fresh_server.url, "FLOWLAB_API_KEY": fresh_server.api_key}
    run = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=280
    )
    assert run.returncode == 0, f"the README's Python failed:\n{run.stdout[-3000:]}\n{run.stderr[-5000:]}"
    out = run.stdout
    # The quickstart's item ended with the crowd's votes, and its results name every answer.
    assert "completed" in out.lower()
    for key in ("rayleigh", "prism", "sunset", "vague", "ocean", "paint"):
        assert key in out
    assert "draft 3 - settled after" in out  # the stopping rule ended the item, not its time
    assert "records;" in out and "preference pairs" in out
    assert "enrolled=30" in out, "the simulated participants enrolled through the audience's link"
    bonus = (tmp_path / "bonus.csv").read_text().splitlines()
    assert bonus and all(re.fullmatch(r"[^,]+,\d+\.\d\d", line) for line in bonus), "the Prolific bonus file"
