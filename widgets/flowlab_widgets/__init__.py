"""The flowlab workbench: notebook widgets, the Panel dashboard and the bokeh figures they share.

Names load lazily, so `flowlab_widgets.proxy` (read by jupyter-server-proxy when Jupyter starts) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowlab_widgets.browser import FlowBrowser
    from flowlab_widgets.creator import FlowCreator
    from flowlab_widgets.evals import EvalMonitor
    from flowlab_widgets.explorer import RankingExplorer
    from flowlab_widgets.monitor import FlowMonitor
    from flowlab_widgets.people import PeopleMonitor
    from flowlab_widgets.projects import ProjectMonitor

__all__ = [
    "EvalMonitor",
    "FlowBrowser",
    "FlowCreator",
    "FlowMonitor",
    "PeopleMonitor",
    "ProjectMonitor",
    "RankingExplorer",
    "show",
]

_HOMES = {
    "EvalMonitor": "flowlab_widgets.evals",
    "FlowBrowser": "flowlab_widgets.browser",
    "FlowCreator": "flowlab_widgets.creator",
    "FlowMonitor": "flowlab_widgets.monitor",
    "PeopleMonitor": "flowlab_widgets.people",
    "ProjectMonitor": "flowlab_widgets.projects",
    "RankingExplorer": "flowlab_widgets.explorer",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'flowlab_widgets' has no attribute {name!r}")


def show(figure: Any) -> Any:
    """Display a bokeh figure (e.g. one from `flowlab_widgets.figures`) as a live widget in the notebook.

    Returns the widget; later changes to the figure's data sources appear in place.
    """
    from flowlab_widgets._common import bokeh_widget

    return bokeh_widget(figure)
