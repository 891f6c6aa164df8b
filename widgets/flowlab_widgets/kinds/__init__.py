"""Each kind of task's view in the workbench: the figures it draws, what it reads, how it words its thresholds.

The dashboard, `FlowMonitor` and `FlowBrowser` ask `view_for(flow.config.kind)` rather than assuming pairs.
A kind is one module here and one entry in `VIEWS`; a kind without one gets `ResultsTable`, its results as a
table, so a newer server's kind shows something instead of breaking the page.
"""

from __future__ import annotations

from typing import Any

from flowlab_widgets.kinds._table import ResultsTable, results_table_for
from flowlab_widgets.kinds._view import RESULTS, KindView, Progress, Read, Reading, aread_item, read_item
from flowlab_widgets.kinds.chat import ChatView
from flowlab_widgets.kinds.classify import ClassifyView
from flowlab_widgets.kinds.listwise import ListwiseView
from flowlab_widgets.kinds.pairwise import PairwiseView
from flowlab_widgets.kinds.rlhf import RlhfView
from flowlab_widgets.kinds.write import WriteView

__all__ = [
    "RESULTS",
    "VIEWS",
    "KindView",
    "Progress",
    "Read",
    "Reading",
    "ResultsTable",
    "aread_item",
    "read_item",
    "view_for",
    "view_of",
]

VIEWS: dict[str, type[KindView]] = {
    view.kind: view for view in (PairwiseView, ClassifyView, RlhfView, ChatView, ListwiseView, WriteView)
}

# A flow that names no kind is a ranking flow (the server's own default).
DEFAULT_KIND = PairwiseView.kind


def view_for(kind: str | None) -> type[KindView]:
    """The view class of the kind named `kind` (None: the default, pairwise); an unknown name gets a table."""
    name = kind or DEFAULT_KIND
    return VIEWS.get(name) or results_table_for(name)


def view_of(flow: Any) -> type[KindView]:
    """The view class for a flow, a flow's config, or anything with a `config.kind` or `kind`."""
    config = getattr(flow, "config", flow)
    return view_for(getattr(config, "kind", None))
