"""Classify items: each datapoint's answers split by category, the majority and the weighted consensus on hover."""

from __future__ import annotations

from typing import Any

import pandas as pd
from bokeh.models import ColumnDataSource, FactorRange, HoverTool, Range1d
from bokeh.palettes import Category10_10

from flowlab_widgets._common import esc
from flowlab_widgets.figures import base_figure, empty_data, fit_range
from flowlab_widgets.kinds._view import KindView, Reading

__all__ = ["ClassifyView", "LabelDistributionChart"]


class ClassifyView(KindView):
    """Answers per datapoint by category in one chart. Thresholds count answers per datapoint; there is no
    win-loss matrix and no ranking, and the view says so instead of drawing them empty."""

    kind = "classify"
    unit = "answers"
    per = "datapoint"
    caption = (
        '<span class="flowlab-caption" style="color:#555">A classify item has no win-loss matrix or ranking: '
        "each datapoint collects answers, shown by category.</span>"
    )

    def __init__(self, *, width: int = 860, height: int = 380, sizing_mode: str | None = None) -> None:
        super().__init__(width=width, height=height, sizing_mode=sizing_mode)
        self.distribution = LabelDistributionChart(width=width, height=height, sizing_mode=sizing_mode)
        self.figures = [self.distribution.figure]
        self.sources = {"answers by category": self.distribution.source}

    def show(self, reading: Reading) -> None:
        result = reading.get("result")
        if result is not None:
            self.distribution.update(result)

    @classmethod
    def settings(cls, config: Any) -> list[str]:
        categories = [c.value for c in getattr(config, "categories", [])]
        return [f"{len(categories)} categories: {esc(', '.join(categories))}"]


class LabelDistributionChart:
    """A classify item's answers: a bar per datapoint split by category, the majority on hover.

    One renderer draws every segment (its own left and right edge), so any flow's categories fit the same
    figure and a new item only replaces the source's data.
    """

    _COLUMNS = ("key", "value", "left", "right", "count", "majority", "confidence", "color")

    def __init__(
        self,
        *,
        title: str = "Answers per datapoint, by category",
        width: int = 440,
        height: int = 400,
        sizing_mode: str | None = None,
    ) -> None:
        self.source = ColumnDataSource(empty_data(self._COLUMNS))
        fig = base_figure(
            title,
            width=width,
            height=height,
            sizing_mode=sizing_mode,
            y_range=FactorRange(factors=[]),
            x_range=Range1d(start=0, end=1),
            x_axis_label="answers",
        )
        fig.ygrid.grid_line_color = None
        fig.hbar(
            y="key",
            left="left",
            right="right",
            height=0.8,
            source=self.source,
            fill_color="color",
            line_color="white",
            legend_field="value",
        )
        fig.legend.location = "bottom_right"
        fig.legend.label_text_font_size = "9pt"
        fig.add_tools(
            HoverTool(
                tooltips=[
                    ("", "@key"),
                    ("category", "@value"),
                    ("answers", "@count"),
                    ("majority", "@majority"),
                    ("weighted confidence", "@confidence{0.00}"),
                ]
            )
        )
        self.figure = fig

    def update(self, result: Any) -> None:
        """Show a `ClassifyFlowItemResult` (its `datapoints` map each key to a distribution)."""
        data: dict[str, list[Any]] = empty_data(self._COLUMNS)
        keys = []
        most = 0
        for key, d in result.datapoints.items():
            keys.append(str(key))
            left = 0
            for i, (value, count) in enumerate(d.distribution.items()):
                if count:
                    data["key"].append(str(key))
                    data["value"].append(str(value))
                    data["left"].append(left)
                    data["right"].append(left + count)
                    data["count"].append(int(count))
                    data["majority"].append(d.majority_value if d.majority_value is not None else "(tie)")
                    data["confidence"].append(float(d.confidence) if d.confidence is not None else float("nan"))
                    data["color"].append(Category10_10[i % 10])
                left += count
            most = max(most, left)
        factors = list(reversed(keys))  # the first datapoint on top
        if list(self.figure.y_range.factors) != factors:
            self.figure.y_range.factors = factors
        fit_range(self.figure.x_range, 0, max(most, 1), floor=0)
        self.source.data = data

    def to_frame(self) -> pd.DataFrame:
        """Answers per datapoint (rows) and category (columns), as shown."""
        frame = pd.DataFrame({k: self.source.data[k] for k in ("key", "value", "count")})
        if frame.empty:
            return frame
        return frame.pivot_table(index="key", columns="value", values="count", aggfunc="sum", fill_value=0)
