"""jupyter-server-proxy entry point: the flowlab dashboard as a JupyterLab launcher tile (as on Binder)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

# Kept free of heavy imports: Jupyter reads every proxy entry point when it starts.

_ICON = Path(__file__).with_name("flowlab.svg")


def _command() -> list[str]:
    # Prefer the `flowlab` script next to this interpreter, so the tile works in a venv that is not on PATH.
    script = Path(sys.executable).with_name("flowlab")
    if script.exists():
        return [str(script)]
    found = shutil.which("flowlab")
    return [found] if found else [sys.executable, "-m", "flowlab"]


def setup_dashboard() -> dict[str, Any]:
    """The server-proxy config for `flowlab dashboard`.

    jupyter-server-proxy starts the dashboard on a free `{port}` the first time the tile (or the URL
    `<jupyter>/flowlab-dashboard/`) is opened. The dashboard is told its public prefix through
    FLOWLAB_DASHBOARD_PREFIX and receives absolute paths, so its page, static files and websocket all resolve
    under Jupyter's URL. The dashboard finds its server by the rule
    `Client()` follows in the notebooks (flowlab.client._servers): FLOWLAB_URL / FLOWLAB_API_KEY from Jupyter's
    own environment (binder/start sets them), else the newest `flowlab serve` running here, else the embedded
    local server; its page says which and why.
    """
    return {
        "command": [*_command(), "dashboard", "--port", "{port}"],
        "environment": {"FLOWLAB_DASHBOARD_PREFIX": "{base_url}flowlab-dashboard"},
        "absolute_url": True,
        "timeout": 60,
        "new_browser_tab": True,
        "launcher_entry": {
            "enabled": True,
            "title": "flowlab dashboard",
            "icon_path": str(_ICON),
            "category": "Notebook",
        },
    }
