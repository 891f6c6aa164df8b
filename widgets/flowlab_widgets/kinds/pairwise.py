"""Pairwise items: a win-loss heatmap and the Bradley–Terry ranking with 95 % intervals; an absolute flow's
ranking also shows each datapoint's P(acceptable) with its interval."""

from __future__ import annotations

import math
from typing import Any, ClassVar

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
from bokeh.models.annotations import ColorBar, Span
from bokeh.palettes import Blues256
from bokeh.transform import dodge

from flowlab_widgets._common import esc
from flowlab_widgets.figures import ELO_PER_LOGIT, RankingChart, base_figure, empty_data
from flowlab_widgets.kinds._view import RESULTS, KindView, Read, Reading

__all__ = ["AcceptabilitySeries", "PairwiseView", "WinLossHeatmap", "acceptability_rows", "ranking_rows"]

# Light to dark: zero votes should read as empty paper, not as a colour.
_HEAT_PALETTE = tuple(reversed(Blues256))
# Above this many datapoints the per-cell numbers are unreadable, so the heatmap shows colour only.
_MAX_LABELLED_KEYS = 12


class PairwiseView(KindView):
    """Votes between two datapoints: the item's win-loss matrix as a heatmap (row beat column, ties count half)
    next to its Bradley–Terry ranking. Thresholds count votes per item."""

    kind = "pairwise"
    unit = "votes"
    has_matrix = True
    reads: ClassVar[tuple[Read, ...]] = (Read("matrix", "get_win_loss_matrix"), RESULTS)
    matrix_title: ClassVar[str] = "Win-loss matrix (row beat column)"
    ranking_title: ClassVar[str] = "Ranking (Bradley–Terry, 95 % interval)"

    def __init__(self, *, width: int = 860, height: int = 380, sizing_mode: str | None = None) -> None:
        super().__init__(width=width, height=height, sizing_mode=sizing_mode)
        half = width // 2
        self.heatmap = WinLossHeatmap(title=self.matrix_title, width=half, height=height, sizing_mode=sizing_mode)
        self.ranking = RankingChart(title=self.ranking_title, width=half, height=height, sizing_mode=sizing_mode)
        self.acceptability = AcceptabilitySeries(self.ranking.figure)
        self.figures = [self.heatmap.figure, self.ranking.figure]
        self.sources = {"win-loss matrix": self.heatmap.source, "ranking": self.ranking.source}

    def show(self, reading: Reading) -> None:
        matrix, result = reading.get("matrix"), reading.get("result")
        if matrix is not None:
            self.heatmap.update(matrix)
        if result is not None:
            self.ranking.update(ranking_rows(result))
            self.acceptability.update(acceptability_rows(result))
            # Only an absolute flow's ranking has this panel; a plain one's is not reported empty for lacking it.
            if self.acceptability.shown:
                self.sources["P(acceptable)"] = self.acceptability.source
            else:
                self.sources.pop("P(acceptable)", None)

    @classmethod
    def settings(cls, config: Any) -> list[str]:
        parts = [f"pairs: {esc(config.pair_selection)}", f"ties {'on' if config.allow_ties else 'off'}"]
        if getattr(config, "absolute", False):
            parts.append("both good / both bad")
        stop = getattr(config, "stop_when", None)
        if stop is not None:
            parts.append(f"stops: {esc(stop.rule)} at {stop.confidence:.0%}")
        return parts


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
        self.source = ColumnDataSource(empty_data(self._COLUMNS))
        self.color_mapper = LinearColorMapper(palette=_HEAT_PALETTE, low=0, high=1)
        fig = base_figure(
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


class AcceptabilitySeries:
    """An absolute flow's P(acceptable) with its 95 % interval, drawn on a ranking chart as a second series: its
    own axis from 0 to 1 along the top, a dashed line at one half, and a diamond and bar just below each
    datapoint's score. Hidden (axis and line too) while the results have no P(acceptable)."""

    _COLUMNS = ("key", "p", "low", "high", "votes")
    COLOR = "#d95f02"

    def __init__(self, figure: Any) -> None:
        self.source = ColumnDataSource(empty_data(self._COLUMNS))
        figure.extra_x_ranges = {**figure.extra_x_ranges, "p_acceptable": Range1d(start=0, end=1)}
        self.axis = LinearAxis(x_range_name="p_acceptable", axis_label="P(acceptable), 95 % interval", visible=False)
        self.axis.axis_label_text_color = self.COLOR
        figure.add_layout(self.axis, "above")
        self.half = Span(
            location=0.5,
            dimension="height",
            x_range_name="p_acceptable",
            line_color=self.COLOR,
            line_dash="dashed",
            line_alpha=0.6,
            visible=False,
        )
        figure.add_layout(self.half)
        below = dodge("key", -0.25, range=figure.y_range)
        bars = figure.segment(
            x0="low",
            y0=below,
            x1="high",
            y1=below,
            source=self.source,
            x_range_name="p_acceptable",
            line_color=self.COLOR,
            line_width=2,
            line_alpha=0.5,
        )
        marks = figure.scatter(
            x="p",
            y=below,
            source=self.source,
            x_range_name="p_acceptable",
            marker="diamond",
            size=10,
            fill_color=self.COLOR,
            line_color="white",
        )
        figure.add_tools(
            HoverTool(
                renderers=[bars, marks],
                tooltips=[("", "@key"), ("P(acceptable)", "@p{0.00}"), ("interval", "@low{0.00} – @high{0.00}")],
            )
        )
        self.shown = False

    def update(self, rows: list[dict[str, Any]]) -> None:
        """Show `rows` (`acceptability_rows`); no rows hides the series."""
        data: dict[str, list[Any]] = empty_data(self._COLUMNS)
        for row in rows:
            for column in self._COLUMNS:
                data[column].append(row[column])
        self.shown = bool(rows)
        self.axis.visible = self.half.visible = self.shown
        self.source.data = data


def acceptability_rows(result: Any) -> list[dict[str, Any]]:
    """Rows for `AcceptabilitySeries.update` from an SDK result: each datapoint's P(acceptable) and interval;
    none for a flow made without `absolute=True`."""
    details = getattr(result, "details", None) or getattr(result, "datapoints", result)
    return [
        {
            "key": str(dp.key),
            "p": float(dp.p_acceptable),
            "low": float(dp.p_acceptable_low),
            "high": float(dp.p_acceptable_high),
            "votes": int(dp.votes),
        }
        for dp in details
        if getattr(dp, "p_acceptable", None) is not None
    ]


def _fmt_count(c: float) -> str:
    return str(int(c)) if float(c).is_integer() else f"{c:.1f}"


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
