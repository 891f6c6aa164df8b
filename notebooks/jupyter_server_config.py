"""`make lab`'s Jupyter configuration: notebooks are saved as the repository stores them — without outputs and
without what running them adds (execution counts, the kernel's language details, widget state, timings) — so
working in JupyterLab (and its autosave) never leaves a change in git that nobody wrote."""

from __future__ import annotations

from typing import Any

# The kernel every notebook here is stored with; a reader's own choice of kernel is theirs, not the notebook's.
PYTHON3 = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
# Cell metadata that running or viewing a cell writes: nbclient's and Lab's timings, collapsed and scrolled
# outputs, hidden inputs and outputs. Tags and the like are written by people and stay.
RUN_STATE = ("execution", "collapsed", "scrolled", "jupyter", "ExecuteTime")


def strip_outputs(model: dict[str, Any], **_: Any) -> None:
    """Jupyter's pre-save hook: clear every code cell's outputs, execution count and run-state metadata; keep only
    the kernel's name and language; drop stored widget state."""
    if model.get("type") != "notebook" or not isinstance(model.get("content"), dict):
        return
    book = model["content"]
    for cell in book.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        meta = cell.get("metadata")
        if isinstance(meta, dict):
            for key in RUN_STATE:
                meta.pop(key, None)
    meta = book.setdefault("metadata", {})
    meta.pop("widgets", None)
    spec = meta.get("kernelspec")
    if isinstance(spec, dict) and spec.get("language", "python") == "python":
        meta["kernelspec"] = dict(PYTHON3)
    info = meta.get("language_info")
    if isinstance(info, dict) and "name" in info:
        meta["language_info"] = {"name": info["name"]}  # the kernel's version and lexer say where it ran


c = get_config()  # type: ignore[name-defined]  # noqa: F821 - provided by Jupyter when it loads this file
c.FileContentsManager.pre_save_hook = strip_outputs
