"""The notebooks in notebooks/ run top to bottom in a real kernel against the test server, and are stored clean."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat", reason="the notebook tests need the lab extra: pip install 'flowlab[lab]'")
nbclient = pytest.importorskip("nbclient", reason="the notebook tests need the lab extra: pip install 'flowlab[lab]'")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = [
    "01_quickstart",
    "02_live_monitoring",
    "03_online_rlhf_loop",
    "04_run_analysis",
    "05_batch_project",
    "06_storefront_chat",
]
# Each notebook keeps its own time-to-lives short; this only catches a hang.
CELL_TIMEOUT = 120
NOTEBOOK_BUDGET = 90.0


def test_every_notebook_is_listed_here() -> None:
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_stored_without_outputs(name: str) -> None:
    book = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(book)
    for cell in book.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name}: clear outputs before committing"
    assert "widgets" not in book.metadata, f"{name}: stored widget state is an output too"
    assert book.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.notebook
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_top_to_bottom(
    name: str, flowlab_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The kernel inherits this environment, so `Client()` and `SimulatedCrowd(...)` reach the test server.
    monkeypatch.setenv("FLOWLAB_URL", flowlab_server.url)
    monkeypatch.setenv("FLOWLAB_API_KEY", flowlab_server.api_key)
    work = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, work)
    book = nbformat.read(work / f"{name}.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        book, kernel_name="python3", timeout=CELL_TIMEOUT, resources={"metadata": {"path": str(work)}}
    )
    started = time.monotonic()
    client.execute()
    elapsed = time.monotonic() - started
    errors = [o for c in book.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert elapsed < NOTEBOOK_BUDGET, f"{name} took {elapsed:.0f} s; keep notebooks quick (short TTLs)"
    widget_views = [
        o
        for c in book.cells
        if c.cell_type == "code"
        for o in c.outputs
        if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    assert widget_views, f"{name} should show at least one workbench widget"
    if name == "04_run_analysis":
        _check_run_analysis_claims(book)
    if name == "03_online_rlhf_loop":
        printed = "".join(
            o.get("text", "")
            for c in book.cells
            if c.cell_type == "code"
            for o in c.outputs
            if o.get("name") == "stdout"
        )
        assert "{'step'" not in printed, "the loop shows one progress bar, not a dict per step"


def _check_run_analysis_claims(book: Any) -> None:
    """Notebook 04 says the quality tests catch most spammers and no careful annotator: its output must show it
    (it once flagged 1 of 5 spammers while its text spoke of spammers being left out)."""
    import re

    text = "".join(
        o.get("text", "") for c in book.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "stream"
    )
    found = re.search(r"flagged (\d+) of the (\d+) spammers, and (\d+) of the (\d+) careful annotators", text)
    assert found is not None, text
    caught, spammers, wrongly, careful = map(int, found.groups())
    assert (spammers, careful) == (5, 15)
    assert caught >= 3 and wrongly <= 1


def test_make_lab_saves_notebooks_without_outputs(tmp_path: Path) -> None:
    """JupyterLab (and its autosave) saves through the contents manager; with `make lab`'s config the outputs
    never reach the file. `make lab` also passes --allow-root where it runs as root."""
    import json
    import os
    import subprocess

    from jupyter_server.services.contents.filemanager import FileContentsManager
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("jupyter_server_config.py", path=str(NOTEBOOKS)).load_config()
    manager = FileContentsManager(root_dir=str(tmp_path), config=config)
    book = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1", execution_count=3)])
    book.cells[0].outputs = [nbformat.v4.new_output("execute_result", data={"text/plain": "2"}, execution_count=3)]
    book.metadata["widgets"] = {"state": {}}
    manager.save({"type": "notebook", "format": "json", "content": json.loads(nbformat.writes(book))}, "a.ipynb")
    saved = json.loads((tmp_path / "a.ipynb").read_text())
    assert saved["cells"][0]["outputs"] == [] and saved["cells"][0]["execution_count"] is None
    assert "widgets" not in saved["metadata"]
    dry = subprocess.run(["make", "-n", "lab"], cwd=NOTEBOOKS.parent, capture_output=True, text=True, check=True)
    assert "--config=notebooks/jupyter_server_config.py" in dry.stdout
    assert ("--allow-root" in dry.stdout) == (os.geteuid() == 0)
