"""Bokeh figure factories shared by the notebook widgets and the dashboard: built once, updated via their sources.

The figures every kind of flow shares live here (items, throughput, annotators, a ranking with intervals, a
reward curve); each kind's own figures live with its view in `flowlab_widgets.kinds` and are importable from
here too.
"""

from __future__ import annotations

import importlib
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from bokeh.models import ColumnDataSource, FactorRange, HoverTool, LinearAxis, Range1d
from bokeh.models.annotations import Legend, LegendItem, Span, Title
from bokeh.palettes import Category10_10
from bokeh.plotting import figure

if TYPE_CHECKING:
    from flowlab_widgets.kinds.classify import LabelDistributionChart
    from flowlab_widgets.kinds.pairwise import WinLossHeatmap, ranking_rows
    from flowlab_widgets.kinds.rlhf import RlhfCharts

__all__ = [
    "ELO_PER_LOGIT",
    "STATE_COLORS",
    "AnnotatorActivityChart",
    "ItemProgressChart",
    "LabelDistributionChart",
    "RankingChart",
    "RewardCurveChart",
    "RlhfCharts",
    "ThroughputChart",
    "WinLossHeatmap",
    "ranking_rows",
    "response_history",
]

# A kind's own figures, defined in its view's module; imported on first use (those modules import this one).
_KIND_FIGURES = {
    "LabelDistributionChart": "flowlab_widgets.kinds.classify",
    "RlhfCharts": "flowlab_widgets.kinds.rlhf",
    "WinLossHeatmap": "flowlab_widgets.kinds.pairwise",
    "ranking_rows": "flowlab_widgets.kinds.pairwise",
}


def __getattr__(name: str) -> Any:
    if name in _KIND_FIGURES:
        return getattr(importlib.import_module(_KIND_FIGURES[name]), name)
    raise AttributeError(f"module 'flowlab_widgets.figures' has no attribute {name!r}")


# Elo points per Bradley–Terry logit: a 400-point gap means 10:1 odds, so 400 / ln(10).
ELO_PER_LOGIT = 400.0 / math.log(10.0)

STATE_COLORS: dict[str, str] = {
    "Pending": "#9e9e9e",
    "Running": "#1f77b4",
    "Stopping": "#ff7f0e",
    "Completed": "#2ca02c",
    "Incomplete": "#bcbd22",
    "Stopped": "#7f7f7f",
    "Failed": "#d62728",
}


def base_figure(title: str, *, width: int, height: int, sizing_mode: str | None, **kwargs: Any) -> Any:
    opts: dict[str, Any] = {
        "title": Title(text=title, text_font_size="12pt"),
        "height": height,
        "tools": "pan,wheel_zoom,reset,save",
        "toolbar_location": "above",
        **kwargs,
    }
    if sizing_mode:
        opts["sizing_mode"] = sizing_mode
    else:
        opts["width"] = width
    fig = figure(**opts)
    fig.toolbar.logo = None
    fig.toolbar.autohide = True
    return fig


def empty_data(columns: Iterable[str]) -> dict[str, list[Any]]:
    return {name: [] for name in columns}


def fit_range(rng: Any, low: float, high: float, *, pad: float = 0.06, floor: float | None = None) -> None:
    """Fit a numeric range to [low, high] with some padding.

    Numeric axes use explicit ranges set from the data rather than auto-ranging: an auto range over an empty
    source makes BokehJS log a warning on every render, and live figures start empty.
    """
    if not (math.isfinite(low) and math.isfinite(high)):
        return
    if high <= low:
        low, high = low - 0.5, high + 0.5
    span = high - low
    start, end = low - pad * span, high + pad * span
    if floor is not None and low >= floor:
        start = max(floor, start)
    if (rng.start, rng.end) != (start, end):
        rng.update(start=start, end=end)


# ---------------------------------------------------------------- ranking with intervals


class RankingChart:
    """Datapoints ranked by score with their intervals: best on top, a dot per estimate and a bar per interval."""

    _COLUMNS = ("key", "score", "low", "high", "rank", "votes", "color")

    def __init__(
        self,
        *,
        title: str = "Ranking (Bradley–Terry, 95 % interval)",
        x_axis_label: str = "score (logit)",
        width: int = 440,
        height: int = 400,
        sizing_mode: str | None = None,
        color: str = "#1f77b4",
        y_range: FactorRange | None = None,
    ) -> None:
        self.color = color
        self.source = ColumnDataSource(empty_data(self._COLUMNS))
        fig = base_figure(
            title,
            width=width,
            height=height,
            sizing_mode=sizing_mode,
            y_range=y_range if y_range is not None else FactorRange(factors=[]),
            x_range=Range1d(start=-1, end=1),
            x_axis_label=x_axis_label,
        )
        fig.ygrid.grid_line_color = None
        fig.segment(
            x0="low",
            y0="key",
            x1="high",
            y1="key",
            source=self.source,
            line_color="color",
            line_width=3,
            line_alpha=0.45,
        )
        fig.scatter(x="score", y="key", source=self.source, size=9, fill_color="color", line_color="white")
        fig.add_tools(
            HoverTool(
                tooltips=[
                    ("", "@key"),
                    ("rank", "@rank"),
                    ("score", "@score{0.00}"),
                    ("interval", "@low{0.00} – @high{0.00}"),
                    ("votes", "@votes"),
                ]
            )
        )
        self.figure = fig
        self.owns_range = y_range is None

    def update(self, rows: Sequence[Mapping[str, Any]], *, order: Sequence[str] | None = None) -> None:
        """Show `rows` (dicts with key, score, low, high and optionally rank, votes); best ends up on top.

        `order` fixes the top-to-bottom order of keys instead (charts that share a y-range use it).
        """
        ranked = sorted(rows, key=lambda r: -float(r["score"]))
        data: dict[str, list[Any]] = empty_data(self._COLUMNS)
        for i, row in enumerate(ranked):
            data["key"].append(str(row["key"]))
            data["score"].append(float(row["score"]))
            data["low"].append(float(row.get("low", row["score"])))
            data["high"].append(float(row.get("high", row["score"])))
            data["rank"].append(int(row.get("rank", i + 1)))
            data["votes"].append(int(row.get("votes", 0)))
            data["color"].append(str(row.get("color", self.color)))
        factors = list(reversed(list(order) if order is not None else data["key"]))
        # A FactorRange lists bottom to top, so reverse to put rank 1 at the top.
        if (self.owns_range or order is not None) and list(self.figure.y_range.factors) != factors:
            self.figure.y_range.factors = factors
        if data["key"]:
            fit_range(self.figure.x_range, min(data["low"]), max(data["high"]))
        self.source.data = data

    @property
    def keys_by_rank(self) -> list[str]:
        return list(self.source.data["key"])


# ---------------------------------------------------------------- throughput over time


class ThroughputChart:
    """Live vote count (left axis) and throughput in votes per minute (right axis) against wall-clock time.

    New points are streamed into the source, with a rollover, so the browser only receives what is new.
    """

    _COLUMNS = ("t", "count", "rate")
    RATE_WINDOW = 5.0

    def __init__(
        self,
        *,
        title: str = "Responses over time",
        width: int = 600,
        height: int = 260,
        sizing_mode: str | None = None,
        rollover: int = 1200,
    ) -> None:
        self.rollover = rollover
        self.source = ColumnDataSource(empty_data(self._COLUMNS))
        now_ms = time.time() * 1000.0
        fig = base_figure(
            title,
            width=width,
            height=height,
            sizing_mode=sizing_mode,
            x_axis_type="datetime",
            x_range=Range1d(start=now_ms - 60_000, end=now_ms),
            y_range=Range1d(start=0, end=10),
            y_axis_label="responses",
        )
        fig.extra_y_ranges = {"rate": Range1d(start=0, end=10)}
        fig.add_layout(LinearAxis(y_range_name="rate", axis_label="votes / min"), "right")
        fig.line(x="t", y="count", source=self.source, line_width=2, color=Category10_10[0], legend_label="count")
        fig.line(
            x="t",
            y="rate",
            source=self.source,
            line_width=1.5,
            color=Category10_10[1],
            y_range_name="rate",
            legend_label="votes/min",
        )
        _legend_below(fig)
        self.figure = fig
        self._history: list[tuple[float, float]] = []
        self._rate_max = 10.0

    def push(self, count: float, *, at: float | None = None) -> None:
        """Record the total `count` at time `at` (epoch seconds, default now)."""
        now = time.time() if at is None else at
        if self._history and now <= self._history[-1][0]:
            return
        self._history.append((now, float(count)))
        # Throughput over a sliding window of RATE_WINDOW seconds: one-second differences are too jumpy.
        while len(self._history) > 2 and now - self._history[1][0] >= self.RATE_WINDOW:
            self._history.pop(0)
        t0, c0 = self._history[0]
        rate = max(0.0, (count - c0) * 60.0 / (now - t0)) if now > t0 else 0.0
        if rate > self._rate_max * 0.95:
            self._rate_max = rate * 1.25
            self.figure.extra_y_ranges["rate"].end = self._rate_max
        self.source.stream({"t": [now * 1000.0], "count": [float(count)], "rate": [rate]}, rollover=self.rollover)
        times = self.source.data["t"]
        fit_range(self.figure.x_range, times[0], max(times[-1], times[0] + 10_000.0), pad=0.02)
        fit_range(self.figure.y_range, 0.0, max(10.0, *self.source.data["count"]), floor=0.0)

    def reset(self) -> None:
        self._history = []
        self.source.data = empty_data(self._COLUMNS)

    def seed(self, points: Sequence[tuple[float, float]]) -> None:
        """Start from what is known of the past: (epoch seconds, total count) points, oldest first, e.g.
        `response_history(statuses)`. Replaces what is shown; the rate between two points is their average."""
        data: dict[str, list[Any]] = empty_data(self._COLUMNS)
        previous: tuple[float, float] | None = None
        for at, count in sorted(points):
            if previous is not None and at <= previous[0]:
                continue
            rate = 0.0 if previous is None else max(0.0, (count - previous[1]) * 60.0 / (at - previous[0]))
            data["t"].append(at * 1000.0)
            data["count"].append(float(count))
            data["rate"].append(rate)
            previous = (at, float(count))
        self._history = [previous] if previous is not None else []
        self._rate_max = max([10.0, *(r * 1.25 for r in data["rate"])])  # no points yet: the floor
        self.figure.extra_y_ranges["rate"].end = self._rate_max
        self.source.data = data
        if data["t"]:
            times = data["t"]
            fit_range(self.figure.x_range, times[0], max(times[-1], times[0] + 10_000.0), pad=0.02)
            fit_range(self.figure.y_range, 0.0, max(10.0, *data["count"]), floor=0.0)

    @property
    def last_count(self) -> float | None:
        return self._history[-1][1] if self._history else None


def response_history(statuses: Sequence[Any]) -> list[tuple[float, float]]:
    """What item statuses tell of a flow's responses over time, as (epoch seconds, total) points: none when its
    first item started, and each ended item's final count added at its end. Live items' counts are the live
    part (`ThroughputChart.push`)."""
    started = [float(st.started_at) for st in statuses if getattr(st, "started_at", None)]
    if not started:
        return []
    points = [(min(started), 0.0)]
    total = 0.0
    ended = [st for st in statuses if st.is_terminal and getattr(st, "ended_at", None) and st.started_at]
    for st in sorted(ended, key=lambda st: float(st.ended_at)):
        total += float(st.response_count)
        points.append((float(st.ended_at), total))
    return points


# ---------------------------------------------------------------- per-item progress


class ItemProgressChart:
    """One bar per flow item: votes so far, coloured by state, with ticks at the item's min and max thresholds."""

    _COLUMNS = ("item", "count", "min", "max", "state", "color", "label")

    def __init__(
        self,
        *,
        title: str = "Items: responses towards min / max",
        width: int = 600,
        height: int = 260,
        sizing_mode: str | None = None,
    ) -> None:
        self.source = ColumnDataSource(empty_data(self._COLUMNS))
        fig = base_figure(
            title,
            width=width,
            height=height,
            sizing_mode=sizing_mode,
            y_range=FactorRange(factors=[]),
            x_range=Range1d(start=0, end=10),
            x_axis_label="responses",
        )
        fig.ygrid.grid_line_color = None
        fig.hbar(y="item", right="max", height=0.7, source=self.source, fill_color="#eeeeee", line_color="#cccccc")
        fig.hbar(y="item", right="count", height=0.7, source=self.source, fill_color="color", line_color=None)
        fig.scatter(
            x="min",
            y="item",
            source=self.source,
            marker="dash",
            angle=math.pi / 2,
            size=16,
            line_color="#333333",
            line_width=2,
        )
        fig.add_tools(
            HoverTool(
                tooltips=[("item", "@item"), ("state", "@state"), ("responses", "@count"), ("min / max", "@min / @max")]
            )
        )
        self.figure = fig

    def update(self, statuses: Sequence[Any], *, totals: Callable[[Any], tuple[int, int]] | None = None) -> None:
        """Show `statuses` (SDK `FlowItemStatus`-like objects with id, state, response_count, thresholds).

        `totals(status)` gives an item's (min, max) over the whole item where its kind's thresholds count per
        datapoint (a kind view's `totals`); without it the thresholds are taken as counted per item.
        """
        data: dict[str, list[Any]] = empty_data(self._COLUMNS)
        for st in statuses:
            state = str(getattr(st.state, "value", st.state))
            low, high = totals(st) if totals else (int(st.min_response_threshold), int(st.max_response_threshold))
            data["item"].append(_short_id(str(st.id)))
            data["count"].append(int(st.response_count))
            data["min"].append(low)
            data["max"].append(high)
            data["state"].append(state)
            data["color"].append(STATE_COLORS.get(state, "#1f77b4"))
            data["label"].append(f"{int(st.response_count)}/{high}")
        factors = list(reversed(data["item"]))  # oldest on top
        if list(self.figure.y_range.factors) != factors:
            self.figure.y_range.factors = factors
        if data["max"]:
            fit_range(self.figure.x_range, 0.0, float(max(data["max"] + data["count"])), pad=0.03, floor=0.0)
        self.source.data = data


def _short_id(item_id: str) -> str:
    return item_id if len(item_id) <= 14 else item_id[:14] + "…"


# ---------------------------------------------------------------- annotators


class AnnotatorActivityChart:
    """Votes per annotator, coloured by agreement with gold answers (grey where no gold was answered yet).

    The busiest `max_annotators` are drawn, a row of `row_height` pixels each: the figure grows with the rows
    (from `height`, its least), so names never overlap, and a note under the axis says how many more there are.
    """

    _COLUMNS = ("name", "votes", "agreement", "agreement_text", "color")
    # Room around the rows: title, toolbar, the axis, its label and the note, in pixels.
    CHROME_PX = 120
    MAX_NAME_CHARS = 28

    def __init__(
        self,
        *,
        title: str = "Annotator activity (colour: gold agreement)",
        width: int = 600,
        height: int = 300,
        sizing_mode: str | None = None,
        max_annotators: int = 25,
        row_height: int = 18,
    ) -> None:
        self.max_annotators = max_annotators
        self.row_height = row_height
        self.min_height = height
        self.hidden = 0  # annotators left out (fewer votes than the ones shown)
        self.source = ColumnDataSource(empty_data(self._COLUMNS))
        fig = base_figure(
            title,
            width=width,
            height=height,
            sizing_mode=sizing_mode,
            y_range=FactorRange(factors=[]),
            x_range=Range1d(start=0, end=10),
            x_axis_label="votes",
        )
        fig.ygrid.grid_line_color = None
        fig.yaxis.major_label_text_font_size = "9pt"
        bars = fig.hbar(y="name", right="votes", height=0.75, source=self.source, fill_color="color", line_color=None)
        self.note = Title(text="", text_font_size="9pt", text_font_style="italic", text_color="#555555")
        fig.add_layout(self.note, "below")
        # What the colours mean, beside the bars. Each swatch is a hidden bar with a row: a legend draws nothing
        # for a renderer with no rows (the swatches were blank), and a hidden one is still drawn in full colour.
        swatches = [
            LegendItem(
                label=label,
                renderers=[fig.hbar(y=[0], right=[0], height=0.75, fill_color=color, line_color=None, visible=False)],
            )
            for label, color in AGREEMENT_BANDS
        ]
        fig.add_layout(
            Legend(
                items=swatches,
                title="gold agreement",
                label_text_font_size="9pt",
                title_text_font_size="9pt",
                glyph_width=14,
                glyph_height=14,
                border_line_color=None,
                location="top_left",
            ),
            "right",
        )
        fig.add_tools(
            HoverTool(
                renderers=[bars],
                tooltips=[("annotator", "@name"), ("votes", "@votes"), ("gold agreement", "@agreement_text")],
            )
        )
        self.figure = fig

    def update(self, annotators: Sequence[Any]) -> None:
        """Show `annotators` (SDK `AnnotatorStats`-like: id, name, votes, gold_agreement), busiest first."""
        everyone = sorted(annotators, key=lambda a: -int(a.votes))
        ranked = everyone[: self.max_annotators]
        data: dict[str, list[Any]] = empty_data(self._COLUMNS)
        names = [_clip_name(str(a.name), self.MAX_NAME_CHARS) for a in ranked]
        twice = {n for n in names if names.count(n) > 1}
        for a, name in zip(ranked, names, strict=True):
            if name in twice:  # factors must be unique; names need not be: the end of the id tells them apart
                name = f"{name} · {str(a.id)[-6:]}"
            agreement = a.gold_agreement
            data["name"].append(name)
            data["votes"].append(int(a.votes))
            data["agreement"].append(float("nan") if agreement is None else float(agreement))
            data["agreement_text"].append("–" if agreement is None else f"{agreement:.0%}")
            data["color"].append(_agreement_color(agreement))
        factors = list(reversed(data["name"]))
        if list(self.figure.y_range.factors) != factors:
            self.figure.y_range.factors = factors
        self.hidden = len(everyone) - len(ranked)
        note = (
            f"The {len(ranked)} busiest of {len(everyone)} annotators; +{self.hidden} more with fewer votes"
            if self.hidden
            else ""
        )
        if self.note.text != note:
            self.note.text = note
        height = max(self.min_height, self.CHROME_PX + self.row_height * len(ranked))
        if self.figure.height != height:
            self.figure.height = height
        if data["votes"]:
            fit_range(self.figure.x_range, 0.0, float(max(1, *data["votes"])), pad=0.03, floor=0.0)
        self.source.data = data


def _clip_name(name: str, n: int) -> str:
    return name if len(name) <= n else name[: n - 1] + "…"


# Red below chance, through amber, to green at perfect agreement; grey until an annotator answers gold.
AGREEMENT_BANDS = (
    ("no gold yet", "#b0b0b0"),
    ("< 50 %", "#d62728"),
    ("50–75 %", "#ff7f0e"),
    ("75–90 %", "#bcbd22"),
    ("≥ 90 %", "#2ca02c"),
)


def _agreement_color(agreement: float | None) -> str:
    if agreement is None or math.isnan(agreement):
        return AGREEMENT_BANDS[0][1]
    a = min(1.0, max(0.0, float(agreement)))
    band = 1 if a < 0.5 else 2 if a < 0.75 else 3 if a < 0.9 else 4
    return AGREEMENT_BANDS[band][1]


def _legend_below(fig: Any) -> None:
    """Move the figure's legend under the plot, in a row, where it cannot cover the lines."""
    legend = fig.legend[0]
    fig.center.remove(legend)
    legend.orientation = "horizontal"
    legend.label_text_font_size = "9pt"
    fig.add_layout(legend, "below")


# ---------------------------------------------------------------- reward curve


class RewardCurveChart:
    """Mean reward per training step with a band (e.g. a 95 % interval), an optional horizontal reference, and
    an optional second curve to compare against (say, a quantity only a simulation knows)."""

    _COLUMNS = ("step", "reward", "low", "high", "compare")

    def __init__(
        self,
        *,
        title: str = "Reward per step",
        y_axis_label: str = "reward",
        width: int = 600,
        height: int = 280,
        sizing_mode: str | None = None,
        reference: float | None = None,
        label: str = "reward",
        compare_label: str | None = None,
    ) -> None:
        self.source = ColumnDataSource(empty_data(self._COLUMNS))
        self.reference = reference
        self.compare_label = compare_label
        fig = base_figure(
            title,
            width=width,
            height=height,
            sizing_mode=sizing_mode,
            x_axis_label="step",
            y_axis_label=y_axis_label,
            x_range=Range1d(start=0, end=1),
            y_range=Range1d(start=0, end=1),
        )
        color = Category10_10[2]
        fig.varea(x="step", y1="low", y2="high", source=self.source, fill_color=color, fill_alpha=0.2)
        fig.line(x="step", y="reward", source=self.source, line_width=2, color=color, legend_label=label)
        fig.scatter(x="step", y="reward", source=self.source, size=6, color=color)
        if compare_label is not None:
            fig.line(
                x="step",
                y="compare",
                source=self.source,
                line_width=2,
                line_dash="dashed",
                color=Category10_10[4],
                legend_label=compare_label,
            )
        if reference is not None:
            fig.add_layout(Span(location=reference, dimension="width", line_dash="dotted", line_color="#777777"))
        fig.legend.location = "bottom_right"
        fig.legend.background_fill_alpha = 0.6
        self.figure = fig

    def append(
        self,
        step: float,
        reward: float,
        *,
        low: float | None = None,
        high: float | None = None,
        compare: float | None = None,
    ) -> None:
        self.source.stream(
            {
                "step": [step],
                "reward": [reward],
                "low": [reward if low is None else low],
                "high": [reward if high is None else high],
                "compare": [float("nan") if compare is None else compare],
            }
        )
        self.fit_range()

    def update(
        self,
        steps: Sequence[float],
        rewards: Sequence[float],
        *,
        low: Sequence[float] | None = None,
        high: Sequence[float] | None = None,
        compare: Sequence[float] | None = None,
    ) -> None:
        self.source.data = {
            "step": list(steps),
            "reward": list(rewards),
            "low": list(low if low is not None else rewards),
            "high": list(high if high is not None else rewards),
            "compare": list(compare if compare is not None else [float("nan")] * len(steps)),
        }
        self.fit_range()

    def fit_range(self) -> None:
        data = self.source.data
        if not data["step"]:
            return
        fit_range(self.figure.x_range, float(min(data["step"])), float(max(data["step"])), pad=0.03)
        ys = [*data["low"], *data["high"], *([self.reference] if self.reference is not None else [])]
        ys += [c for c in data["compare"] if math.isfinite(c)]
        fit_range(self.figure.y_range, float(min(ys)), float(max(ys)))
