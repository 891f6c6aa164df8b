"""The fallback for a kind the workbench has no view for: its results as a table, and no figures."""

from __future__ import annotations

import functools
from typing import Any

import msgspec
import pandas as pd

from flowlab_widgets._common import esc
from flowlab_widgets.kinds._view import KindView, Reading

__all__ = ["ResultsTable", "results_table_for"]

MAX_ROWS = 50


class ResultsTable(KindView):
    """An item of a kind this workbench does not know (a newer server's, say): the results the SDK returns, as
    an escaped HTML table in `notes`, rather than a heatmap or chart that would stay empty."""

    def __init__(self, *, width: int = 860, height: int = 380, sizing_mode: str | None = None) -> None:
        super().__init__(width=width, height=height, sizing_mode=sizing_mode)
        self.table = pd.DataFrame()
        self.sources = {"results table": {"row": []}}

    def show(self, reading: Reading) -> None:
        result = reading.get("result")
        if result is None:
            return
        self.table = results_frame(result)
        self.sources = {"results table": {"row": list(range(len(self.table)))}}
        shown = self.table.head(MAX_ROWS)
        more = len(self.table) - len(shown)
        self.notes = shown.to_html(index=False, escape=True, border=0, classes="flowlab-results") + (
            f'<div style="color:#666">… and {more} more row(s)</div>' if more > 0 else ""
        )

    @classmethod
    def thresholds(cls, config: Any) -> str:
        return f"min {config.min_response_threshold} / max {config.max_response_threshold} responses"


def results_frame(result: Any) -> pd.DataFrame:
    """A result as rows: its own `to_dataframe()` where it has one, else its fields as one row."""
    if hasattr(result, "to_dataframe"):
        return pd.DataFrame(result.to_dataframe())
    fields = msgspec.to_builtins(result) if not isinstance(result, dict) else result
    if not isinstance(fields, dict):
        return pd.DataFrame({"result": [fields]})
    return pd.DataFrame([{k: v if isinstance(v, str | int | float | bool) else str(v) for k, v in fields.items()}])


@functools.cache
def results_table_for(kind: str) -> type[ResultsTable]:
    """The fallback view for items of `kind`, named so its caption says which kind it stands in for."""
    caption = (
        f'<span class="flowlab-caption" style="color:#b45309">This workbench has no figures for '
        f"{esc(kind)!s} items; their results as a table.</span>"
    )
    return type(f"ResultsTable_{kind}", (ResultsTable,), {"kind": kind, "caption": caption})
