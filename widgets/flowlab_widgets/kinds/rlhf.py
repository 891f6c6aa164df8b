"""RLHF items: mean ratings per model and dimension, how often each model was chosen, the Likert strength, and
the latest justifications as text."""

from __future__ import annotations

from typing import Any

from bokeh.models import ColumnDataSource, FactorRange, HoverTool, Range1d
from bokeh.palettes import Category10_10

from flowlab_widgets._common import esc
from flowlab_widgets.figures import base_figure, empty_data, fit_range
from flowlab_widgets.kinds._view import KindView, Reading

__all__ = ["RlhfCharts", "RlhfView"]


class RlhfView(KindView):
    """What people wrote about a prompt and its responses, per model: three charts, and the latest
    justifications below them (escaped text, never markup). Thresholds count annotations per task."""

    kind = "rlhf"
    unit = "annotations"
    per = "task"
    caption = (
        '<span class="flowlab-caption" style="color:#555">An RLHF item has no win-loss matrix: each task collects '
        "annotations, summarised per model.</span>"
    )

    def __init__(self, *, width: int = 860, height: int = 380, sizing_mode: str | None = None) -> None:
        super().__init__(width=width, height=height, sizing_mode=sizing_mode)
        self.rlhf = RlhfCharts(width=width // 3, height=height, sizing_mode=sizing_mode)
        self.figures = list(self.rlhf.figures)
        self.sources = {
            "ratings": self.rlhf.ratings_source,
            "chosen": self.rlhf.share_source,
            "preference strength": self.rlhf.likert_source,
        }

    def show(self, reading: Reading) -> None:
        result = reading.get("result")
        if result is None:
            return
        self.rlhf.update(result)
        why = self.rlhf.latest_justifications
        self.notes = "".join(f'<div class="flowlab-why">“{esc(text)}”</div>' for text in why)

    @classmethod
    def settings(cls, config: Any) -> list[str]:
        spec = getattr(config, "rlhf", None)
        if spec is None:
            return []
        parts = [f"dimensions: {esc(', '.join(d.key for d in spec.dimensions))}"]
        if spec.likert_scale:
            parts.append(f"Likert 1–{spec.likert_scale}")
        return [*parts, f"rewrite {esc(spec.rewrite)}"]


class RlhfCharts:
    """An RLHF item at a glance: each model's mean rating per scale dimension with its 95 % interval, how
    often annotators chose each model, and the distribution of the Likert strength.

    `figures` lists the three figures; `update(result)` takes an `RlhfFlowItemResult` and refills their
    sources in place. Rewrites and justifications are not drawn; `latest_justifications` hands back a few
    (those of the last tasks) as plain text for the caller to show escaped.
    """

    _RATING_COLUMNS = ("row", "model", "dimension", "mean", "low", "high", "n", "color")

    def __init__(self, *, width: int = 430, height: int = 360, sizing_mode: str | None = None) -> None:
        self.ratings_source = ColumnDataSource(empty_data(self._RATING_COLUMNS))
        ratings = base_figure(
            "Ratings per model (95 % CI)",
            width=width,
            height=height,
            sizing_mode=sizing_mode,
            y_range=FactorRange(factors=[]),
            x_range=Range1d(start=0, end=1),
            x_axis_label="rating",
        )
        ratings.segment(x0="low", x1="high", y0="row", y1="row", source=self.ratings_source, line_color="color")
        ratings.scatter(x="mean", y="row", size=8, source=self.ratings_source, color="color", legend_field="model")
        ratings.legend.location = "bottom_right"
        ratings.add_tools(
            HoverTool(
                tooltips=[
                    ("model", "@model"),
                    ("dimension", "@dimension"),
                    ("mean", "@mean{0.00}"),
                    ("95% CI", "@low{0.00} .. @high{0.00}"),
                    ("ratings", "@n"),
                ]
            )
        )
        self.share_source = ColumnDataSource(empty_data(("model", "share", "chosen", "color")))
        share = base_figure(
            "Chosen as the better response",
            width=width,
            height=height,
            sizing_mode=sizing_mode,
            x_range=FactorRange(factors=[]),
            y_range=Range1d(start=0, end=1),
            y_axis_label="share of annotations",
        )
        share.vbar(x="model", top="share", width=0.7, source=self.share_source, fill_color="color", line_color=None)
        share.add_tools(HoverTool(tooltips=[("model", "@model"), ("share", "@share{0.0%}"), ("chosen", "@chosen")]))
        self.likert_source = ColumnDataSource(empty_data(("point", "count")))
        likert = base_figure(
            "Preference strength (Likert)",
            width=width,
            height=height,
            sizing_mode=sizing_mode,
            x_range=FactorRange(factors=[]),
            y_range=Range1d(start=0, end=1),
            y_axis_label="annotations",
        )
        likert.vbar(x="point", top="count", width=0.8, source=self.likert_source, fill_color="#1f77b4")
        likert.add_tools(HoverTool(tooltips=[("point", "@point"), ("annotations", "@count")]))
        self.ratings, self.share, self.likert = ratings, share, likert
        self.figures = [ratings, share, likert]
        self.latest_justifications: list[str] = []

    def update(self, result: Any, *, keep: int = 5) -> None:
        models = [m.source_id for m in result.models]
        color = {m: Category10_10[i % 10] for i, m in enumerate(models)}
        data: dict[str, list[Any]] = empty_data(self._RATING_COLUMNS)
        low_all, high_all = [], []
        for m in result.models:
            for stat in m.ratings:
                # Scales only: a category's mean index or a yes-share has no place on a rating axis.
                if stat.mean is None or not all(v.lstrip("-").isdigit() for v in stat.distribution):
                    continue
                low = stat.ci_low if stat.ci_low is not None else stat.mean
                high = stat.ci_high if stat.ci_high is not None else stat.mean
                data["row"].append(f"{stat.dimension} · {m.source_id}")
                data["model"].append(m.source_id)
                data["dimension"].append(stat.dimension)
                data["mean"].append(float(stat.mean))
                data["low"].append(float(low))
                data["high"].append(float(high))
                data["n"].append(int(stat.n))
                data["color"].append(color[m.source_id])
                low_all.append(low)
                high_all.append(high)
        rows = list(reversed(data["row"]))
        if list(self.ratings.y_range.factors) != rows:
            self.ratings.y_range.factors = rows
        if low_all:
            fit_range(self.ratings.x_range, min(low_all), max(high_all))
        self.ratings_source.data = data
        if list(self.share.x_range.factors) != models:
            self.share.x_range.factors = models
        self.share_source.data = {
            "model": models,
            "share": [float(m.selected_share or 0.0) for m in result.models],
            "chosen": [int(m.selected) for m in result.models],
            "color": [color[m] for m in models],
        }
        totals: dict[str, int] = {}
        for task in result.tasks:
            for point, count in task.likert_distribution.items():
                totals[point] = totals.get(point, 0) + int(count)
        points = sorted(totals, key=int)
        if list(self.likert.x_range.factors) != points:
            self.likert.x_range.factors = points
        self.likert_source.data = {"point": points, "count": [totals[p] for p in points]}
        fit_range(self.likert.y_range, 0, max(totals.values(), default=1), floor=0)
        why = [j for task in result.tasks for j in task.justifications]
        self.latest_justifications = why[-keep:]
