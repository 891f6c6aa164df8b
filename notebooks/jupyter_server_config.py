"""`make lab`'s Jupyter configuration: notebooks are saved without outputs, so working in JupyterLab (and its
autosave) never leaves outputs in the repository, which stores notebooks clean."""

from __future__ import annotations

from typing import Any


def strip_outputs(model: dict[str, Any], **_: Any) -> None:
    """Jupyter's pre-save hook: clear every code cell's outputs and execution count, and stored widget state."""
    if model.get("type") != "notebook" or not isinstance(model.get("content"), dict):
        return
    book = model["content"]
    for cell in book.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    book.get("metadata", {}).pop("widgets", None)


c = get_config()  # type: ignore[name-defined]  # noqa: F821 - provided by Jupyter when it loads this file
c.FileContentsManager.pre_save_hook = strip_outputs
