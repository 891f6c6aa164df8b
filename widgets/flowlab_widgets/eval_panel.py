"""The dashboard's evals panel: pick an eval of a training run and watch its win rate per tag, the proxy reward
and the sentinel, in the same figure (`EvalChart`) as the notebook's EvalMonitor."""

from __future__ import annotations

import math
from typing import Any

import panel as pn

from flowlab import FlowlabError
from flowlab_widgets._common import esc
from flowlab_widgets.evals import EvalChart, EvalSnapshot, summary_html

__all__ = ["EvalPanel"]


class EvalPanel:
    """Evals on the dashboard; one per browser session, refreshed by the dashboard.

    A chart is built once per eval shown (its tags fix its lines) and updated through its sources after that.
    """

    def __init__(self, client: Any) -> None:
        self.client = client  # the session's AsyncClient
        self.select = pn.widgets.Select(label="Eval", options={}, sizing_mode="stretch_width")
        self.summary = pn.pane.HTML("", sizing_mode="stretch_width")
        self.area = pn.Column(sizing_mode="stretch_width")
        self.charts: dict[str, EvalChart] = {}
        self.snapshot: EvalSnapshot | None = None
        self.column = pn.Column(
            pn.pane.HTML("<b>Evals of a training run</b>"),
            self.select,
            self.area,
            self.summary,
            css_classes=["flowlab-evals"],
            sizing_mode="stretch_width",
            visible=False,
        )

    async def refresh(self) -> None:
        try:
            evals = await self.client.evals.list()
        except FlowlabError as exc:
            self.summary.object = f'<span style="color:#b91c1c">{esc(exc)}</span>'
            return
        self.column.visible = bool(evals)
        options = {f"{e.name} · {len(e.info.steps)} checkpoint(s)": e.id for e in reversed(evals)}
        if self.select.options != options:
            self.select.options = options
        chosen = next((e for e in evals if e.id == self.select.value), None)
        if chosen is None:
            if not evals:
                return
            chosen = evals[-1]
            self.select.value = chosen.id
        frame = await chosen.history()
        rows = [
            {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
            for row in frame.to_dict("records")
        ]
        self.snapshot = EvalSnapshot(chosen.info, rows, await chosen.divergence())
        chart = self.charts.get(chosen.id)
        if chart is None:
            tags = sorted({t for ts in chosen.info.tags for t in ts})
            chart = self.charts[chosen.id] = EvalChart(tags, title=chosen.name, sizing_mode="stretch_width", height=300)
        if not self.area.objects or self.area.objects[0].object is not chart.figure:
            self.area.objects = [pn.pane.Bokeh(chart.figure, sizing_mode="stretch_width")]
        chart.update(rows)
        self.summary.object = summary_html(self.snapshot)
