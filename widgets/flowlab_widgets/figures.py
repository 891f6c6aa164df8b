"""Bokeh figure factories shared by the notebook widgets and the dashboard: built once, updated via their sources."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from bokeh.models import (
    BasicTicker,
    ColumnDataSource,
    FactorRange,
    HoverTool,
    LinearAxis,
    LinearColorMapper,
    Range1d,
)
from bokeh.models.annotations import ColorBar, Legend, LegendItem, Span, Title
from bokeh.palettes import Blues256, Category10_10
from bokeh.plotting import figure

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
]

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

# Light to dark: zero votes should read as empty paper, not as a colour.
_HEAT_PALETTE = tuple(reversed(Blues256))
# Above this many datapoints the per-cell numbers are unreadable, so the heatmap shows colour only.
_MAX_LABELLED_KEYS = 12


def _base_figure(title: str, *, width: int, height: int, sizing_mode: str | None, **kwargs: Any) -> Any:
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


def _empty(columns: Iterable[str]) -> dict[str, list[Any]]:
    return {name: [] for name in columns}


def _fit(rng: Any, low: float, high: float, *, pad: float = 0.06, floor: float | None = None) -> None:
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


# ---------------------------------------------------------------- win-loss heatmap


class WinLossHeatmap:
    """A win-loss matrix as a heatmap: row = winner, column = loser, cell = votes for the row over the column.

    `update()` takes the DataFrame that `FlowItem.get_win_loss_matrix()` returns and swaps the source's data;
    `to_frame()` reads the shown matrix back, so tests can compare it with the server's.
    """

    _COLUMNS = ("winner", "loser", "count", "label", "share", "text_color")

    def __init__(
        self,
        *,
        title: str = "Win-loss matrix (row beat column)",
        width: int = 440,
        height: int = 400,
        sizing_mode: str | None = None,
    ) -> None:
        self.source = ColumnDataSource(_empty(self._COLUMNS))
        self.color_mapper = LinearColorMapper(palette=_HEAT_PALETTE, low=0, high=1)
        fig = _base_figure(
            title,
            width=width,
            height=height,
            sizing_mode=sizing_mode,
            x_range=FactorRange(factors=[]),
            y_range=FactorRange(factors=[]),
            x_axis_label="loser",
            y_axis_label="winner",
        )
        fig.grid.grid_line_color = None
        fig.axis.axis_line_color = None
        fig.axis.major_tick_line_color = None
        fig.xaxis.major_label_orientation = math.pi / 4
        fig.rect(
            x="loser",
            y="winner",
            width=0.95,
            height=0.95,
            source=self.source,
            fill_color={"field": "count", "transform": self.color_mapper},
            line_color=None,
        )
        fig.text(
            x="loser",
            y="winner",
            text="label",
            source=self.source,
            text_align="center",
            text_baseline="middle",
            text_font_size="9pt",
            text_color="text_color",
        )
        fig.add_layout(ColorBar(color_mapper=self.color_mapper, width=10, ticker=BasicTicker()), "right")
        fig.add_tools(HoverTool(tooltips=[("", "@winner over @loser"), ("votes", "@count"), ("share", "@share")]))
        self.figure = fig
        self.keys: list[str] = []

    def update(self, matrix: pd.DataFrame) -> None:
        """Show `matrix` (indexed and columned by datapoint key, cell [a, b] = votes for a over b)."""
        keys = [str(k) for k in matrix.index]
        counts = np.asarray(matrix.to_numpy(dtype=float), dtype=float)
        n = len(keys)
        winners = np.repeat(keys, n).tolist()
        losers = np.tile(keys, n).tolist()
        flat = counts.reshape(-1) if n else np.zeros(0)
        # share = how often the row won against this column, among their head-to-head votes.
        head_to_head = counts + counts.T if n else np.zeros((0, 0))
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(head_to_head > 0, counts / np.where(head_to_head > 0, head_to_head, 1), np.nan)
        share_text = ["" if math.isnan(s) else f"{s:.0%}" for s in share.reshape(-1)]
        labelled = n <= _MAX_LABELLED_KEYS
        labels = [_fmt_count(counts[i, j]) if labelled and i != j else "" for i in range(n) for j in range(n)]
        if keys != self.keys:
            # Rows read top-down in the matrix's own order, like a printed table.
            self.figure.x_range.factors = keys
            self.figure.y_range.factors = list(reversed(keys))
            self.keys = keys
        high = max(1.0, float(flat.max()) if flat.size else 1.0)
        self.color_mapper.high = high
        self.source.data = {
            "winner": winners,
            "loser": losers,
            "count": flat.tolist(),
            "label": labels,
            "share": share_text,
            # Dark cells get white numbers so the count stays readable.
            "text_color": ["#ffffff" if c > 0.6 * high else "#222222" for c in flat.tolist()],
        }

    def to_frame(self) -> pd.DataFrame:
        """The matrix currently shown, shaped like `get_win_loss_matrix()` (same labels, int when whole)."""
        data = self.source.data
        n = len(self.keys)
        counts = np.asarray(data["count"], dtype=float).reshape(n, n) if n else np.zeros((0, 0))
        frame = pd.DataFrame(
            counts, index=pd.Index(self.keys, name="winner"), columns=pd.Index(self.keys, name="loser")
        )
        if np.all(np.mod(counts, 1) == 0):
            frame = frame.astype(int)
        return frame

    @property
    def total(self) -> float:
        """Votes shown in the heatmap (a tie counts half to each side, so this is the response count)."""
        return float(sum(self.source.data["count"]))


def _fmt_count(c: float) -> str:
    return str(int(c)) if float(c).is_integer() else f"{c:.1f}"


# ---------------------------------------------------------------- ranking with intervals


def ranking_rows(result: Any, *, scale: str = "bt") -> list[dict[str, Any]]:
    """Rows for `RankingChart.update` from an SDK `FlowItemResult` (or anything with `.datapoints`).

    `scale="elo"` puts the Bradley–Terry estimate and interval on the Elo scale of the same result.
    """
    rows = []
    for dp in getattr(result, "details", None) or getattr(result, "datapoints", result):
        score, low, high = float(dp.score), float(dp.ci_low), float(dp.ci_high)
        if scale == "elo":
            offset = float(dp.elo) - ELO_PER_LOGIT * score
            score, low, high = (float(dp.elo), offset + ELO_PER_LOGIT * low, offset + ELO_PER_LOGIT * high)
        rows.append(
            {"key": str(dp.key), "score": score, "low": low, "high": high, "rank": int(dp.rank), "votes": int(dp.votes)}
        )
    return rows


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
        self.source = ColumnDataSource(_empty(self._COLUMNS))
        fig = _base_figure(
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
        data: dict[str, list[Any]] = _empty(self._COLUMNS)
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
            _fit(self.figure.x_range, min(data["low"]), max(data["high"]))
        self.source.data = data

    @property
    def keys_by_rank(self) -> list[str]:
        return list(self.source.data["key"])


# ---------------------------------------------------------------- classify answers


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
        self.source = ColumnDataSource(_empty(self._COLUMNS))
        fig = _base_figure(
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
        data: dict[str, list[Any]] = _empty(self._COLUMNS)
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
        _fit(self.figure.x_range, 0, max(most, 1), floor=0)
        self.source.data = data

    def to_frame(self) -> pd.DataFrame:
        """Answers per datapoint (rows) and category (columns), as shown."""
        frame = pd.DataFrame({k: self.source.data[k] for k in ("key", "value", "count")})
        if frame.empty:
            return frame
        return frame.pivot_table(index="key", columns="value", values="count", aggfunc="sum", fill_value=0)


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
        self.source = ColumnDataSource(_empty(self._COLUMNS))
        now_ms = time.time() * 1000.0
        fig = _base_figure(
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
        _fit(self.figure.x_range, times[0], max(times[-1], times[0] + 10_000.0), pad=0.02)
        _fit(self.figure.y_range, 0.0, max(10.0, *self.source.data["count"]), floor=0.0)

    def reset(self) -> None:
        self._history = []
        self.source.data = _empty(self._COLUMNS)

    @property
    def last_count(self) -> float | None:
        return self._history[-1][1] if self._history else None


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
        self.source = ColumnDataSource(_empty(self._COLUMNS))
        fig = _base_figure(
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

    def update(self, statuses: Sequence[Any]) -> None:
        """Show `statuses` (SDK `FlowItemStatus`-like objects with id, state, response_count, thresholds)."""
        data: dict[str, list[Any]] = _empty(self._COLUMNS)
        for st in statuses:
            state = str(getattr(st.state, "value", st.state))
            data["item"].append(_short_id(str(st.id)))
            data["count"].append(int(st.response_count))
            data["min"].append(int(st.min_response_threshold))
            data["max"].append(int(st.max_response_threshold))
            data["state"].append(state)
            data["color"].append(STATE_COLORS.get(state, "#1f77b4"))
            data["label"].append(f"{int(st.response_count)}/{int(st.max_response_threshold)}")
        factors = list(reversed(data["item"]))  # oldest on top
        if list(self.figure.y_range.factors) != factors:
            self.figure.y_range.factors = factors
        if data["max"]:
            _fit(self.figure.x_range, 0.0, float(max(data["max"] + data["count"])), pad=0.03, floor=0.0)
        self.source.data = data


def _short_id(item_id: str) -> str:
    return item_id if len(item_id) <= 14 else item_id[:14] + "…"


# ---------------------------------------------------------------- annotators


class AnnotatorActivityChart:
    """Votes per annotator, coloured by agreement with gold answers (grey where no gold was answered yet)."""

    _COLUMNS = ("name", "votes", "agreement", "agreement_text", "color")

    def __init__(
        self,
        *,
        title: str = "Annotator activity (colour: gold agreement)",
        width: int = 600,
        height: int = 300,
        sizing_mode: str | None = None,
        max_annotators: int = 25,
    ) -> None:
        self.max_annotators = max_annotators
        self.source = ColumnDataSource(_empty(self._COLUMNS))
        fig = _base_figure(
            title,
            width=width,
            height=height,
            sizing_mode=sizing_mode,
            y_range=FactorRange(factors=[]),
            x_range=Range1d(start=0, end=10),
            x_axis_label="votes",
        )
        fig.ygrid.grid_line_color = None
        fig.hbar(y="name", right="votes", height=0.75, source=self.source, fill_color="color", line_color=None)
        # What the colours mean, below the bars: one swatch per band of gold agreement.
        swatches = [
            LegendItem(label=label, renderers=[fig.scatter(x=[], y=[], marker="square", size=10, color=color)])
            for label, color in AGREEMENT_BANDS
        ]
        fig.add_layout(
            Legend(items=swatches, orientation="horizontal", title="gold agreement", label_text_font_size="9pt"),
            "below",
        )
        fig.add_tools(
            HoverTool(tooltips=[("annotator", "@name"), ("votes", "@votes"), ("gold agreement", "@agreement_text")])
        )
        self.figure = fig

    def update(self, annotators: Sequence[Any]) -> None:
        """Show `annotators` (SDK `AnnotatorStats`-like: name, votes, gold_agreement), busiest first."""
        ranked = sorted(annotators, key=lambda a: -int(a.votes))[: self.max_annotators]
        data: dict[str, list[Any]] = _empty(self._COLUMNS)
        seen: set[str] = set()
        for a in ranked:
            name = str(a.name)
            if name in seen:  # factors must be unique; names need not be
                name = f"{name} ({a.id})"
            seen.add(name)
            agreement = a.gold_agreement
            data["name"].append(name)
            data["votes"].append(int(a.votes))
            data["agreement"].append(float("nan") if agreement is None else float(agreement))
            data["agreement_text"].append("–" if agreement is None else f"{agreement:.0%}")
            data["color"].append(_agreement_color(agreement))
        factors = list(reversed(data["name"]))
        if list(self.figure.y_range.factors) != factors:
            self.figure.y_range.factors = factors
        if data["votes"]:
            _fit(self.figure.x_range, 0.0, float(max(1, *data["votes"])), pad=0.03, floor=0.0)
        self.source.data = data


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
        self.source = ColumnDataSource(_empty(self._COLUMNS))
        self.reference = reference
        self.compare_label = compare_label
        fig = _base_figure(
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
        self._fit()

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
        self._fit()

    def _fit(self) -> None:
        data = self.source.data
        if not data["step"]:
            return
        _fit(self.figure.x_range, float(min(data["step"])), float(max(data["step"])), pad=0.03)
        ys = [*data["low"], *data["high"], *([self.reference] if self.reference is not None else [])]
        ys += [c for c in data["compare"] if math.isfinite(c)]
        _fit(self.figure.y_range, float(min(ys)), float(max(ys)))


# ---------------------------------------------------------------- RLHF annotations


class RlhfCharts:
    """An RLHF item at a glance: each model's mean rating per scale dimension with its 95 % interval, how
    often annotators chose each model, and the distribution of the Likert strength.

    `figures` lists the three figures; `update(result)` takes an `RlhfFlowItemResult` and refills their
    sources in place. Rewrites and justifications are not drawn; `latest_justifications` hands back a few
    (those of the last tasks) as plain text for the caller to show escaped.
    """

    _RATING_COLUMNS = ("row", "model", "dimension", "mean", "low", "high", "n", "color")

    def __init__(self, *, width: int = 430, height: int = 360, sizing_mode: str | None = None) -> None:
        self.ratings_source = ColumnDataSource(_empty(self._RATING_COLUMNS))
        ratings = _base_figure(
            "Mean rating per model and dimension (95 % CI)",
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
        self.share_source = ColumnDataSource(_empty(("model", "share", "chosen", "color")))
        share = _base_figure(
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
        self.likert_source = ColumnDataSource(_empty(("point", "count")))
        likert = _base_figure(
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
        data: dict[str, list[Any]] = _empty(self._RATING_COLUMNS)
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
            _fit(self.ratings.x_range, min(low_all), max(high_all))
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
        _fit(self.likert.y_range, 0, max(totals.values(), default=1), floor=0)
        why = [j for task in result.tasks for j in task.justifications]
        self.latest_justifications = why[-keep:]
