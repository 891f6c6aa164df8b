"""Write items: prompts done of the total, demonstrations per prompt, their length against time on task, and a
table of the demonstrations (author, length, seconds) with the best per prompt marked once a review has rated
them."""

from __future__ import annotations

import inspect
import statistics
from typing import Any

from bokeh.models import ColumnDataSource, FactorRange, HoverTool, Range1d

from flowlab import Timeout
from flowlab_widgets._common import esc
from flowlab_widgets.figures import base_figure, empty_data, fit_range
from flowlab_widgets.kinds._view import RESULTS, KindView, Read, Reading

__all__ = ["WriteCharts", "WriteView"]

MAX_ROWS = 50  # demonstrations listed in the table; the count says how many more there are
CLIP = 80  # characters of a demonstration shown in the table


class _ReviewedBest(Read):
    """`item.best_demonstrations(timeout=0)`: the best per prompt once the item (and its review item, if the
    flow has a review stage) has ended; None while either still runs, which is no error worth showing."""

    def call(self, item: Any) -> Any:
        try:
            made = item.best_demonstrations(timeout=0)
        except Timeout:
            return None
        if not inspect.isawaitable(made):
            return made

        async def settle() -> Any:
            try:
                return await made
            except Timeout:
                return None

        return settle()


STATUS = Read("status", "get_progress", optional=True)
BEST = _ReviewedBest("best", "best_demonstrations", optional=True)


class WriteView(KindView):
    """What people wrote for each prompt: how many demonstrations each prompt has, their length against the
    seconds spent writing them, and a table of them below the figures (escaped text, never markup). Thresholds
    count demonstrations per prompt."""

    kind = "write"
    unit = "demonstrations"
    per = "prompt"
    reads = (RESULTS, STATUS, BEST)
    caption = (
        '<span class="flowlab-caption" style="color:#555">A write item has no win-loss matrix: each prompt collects '
        "demonstrations written by people.</span>"
    )

    def __init__(self, *, width: int = 860, height: int = 380, sizing_mode: str | None = None) -> None:
        super().__init__(width=width, height=height, sizing_mode=sizing_mode)
        self.charts = WriteCharts(width=width // 2, height=height, sizing_mode=sizing_mode)
        self.figures = list(self.charts.figures)
        self.rows: list[dict[str, Any]] = []  # the table below the figures, one row per demonstration
        self.sources = {
            "demonstrations per prompt": self.charts.count_source,
            "length and time on task": self.charts.length_source,
            "demonstrations table": {"row": []},
        }

    def show(self, reading: Reading) -> None:
        result = reading.get("result")
        if result is None:
            return
        status = reading.get("status")
        most = int(status.max_response_threshold) if status is not None else None
        self.charts.update(result, most=most)
        best = {(b["key"], b["annotator_id"]) for b in reading.get("best") or () if b["reviewed"]}
        self.rows = demonstration_rows(result, best)
        self.sources["demonstrations table"] = {"row": list(range(len(self.rows)))}
        self.notes = summary_html(result, most, reviewed=bool(best)) + table_html(self.rows, reviewed=bool(best))

    @classmethod
    def settings(cls, config: Any) -> list[str]:
        spec = getattr(config, "write", None)
        if spec is None:
            return []
        parts = [f"{spec.min_chars:,}–{spec.max_chars:,} characters"]
        if not spec.allow_paste:
            parts.append("no pasting")
        if spec.review_flow_id is not None:
            parts.append(f"reviewed in {esc(spec.review_flow_id)}")
        return parts


def demonstration_rows(result: Any, best: set[tuple[str, str]]) -> list[dict[str, Any]]:
    """A row per demonstration, in the order each prompt's were written: prompt, author, length, seconds, a clip
    of the text, and whether reviewers picked it as the prompt's best."""
    return [
        {
            "prompt": task.key,
            "author": d.annotator_id,
            "chars": int(d.chars),
            "seconds": None if d.seconds is None else round(float(d.seconds), 1),
            "pasted": f"{d.pasted_share:.0%}",
            "best": (task.key, d.annotator_id) in best,
            "text": d.text if len(d.text) <= CLIP else d.text[: CLIP - 1] + "…",
        }
        for task in result.tasks
        for d in task.demonstrations
    ]


def summary_html(result: Any, most: int | None, *, reviewed: bool) -> str:
    """One line: prompts done of the total, demonstrations written, the median length and time on task."""
    demos = [d for task in result.tasks for d in task.demonstrations]
    total = len(result.tasks)
    if most is not None:
        done = sum(len(task.demonstrations) >= most for task in result.tasks)
        parts = [f"<b>{done}</b> of {total} prompts done ({most} demonstrations each)"]
    else:
        parts = [f"<b>{sum(bool(t.demonstrations) for t in result.tasks)}</b> of {total} prompts written for"]
    parts.append(f"{len(demos)} demonstrations")
    if demos:
        parts.append(f"median {statistics.median(d.chars for d in demos):,.0f} characters")
        seconds = [float(d.seconds) for d in demos if d.seconds is not None]
        if seconds:
            parts.append(f"median {statistics.median(seconds):,.0f} s on task")
    if reviewed:
        parts.append("★ the best per prompt, as reviewed")
    return f'<div class="flowlab-write-summary">{" · ".join(parts)}</div>'


def table_html(rows: list[dict[str, Any]], *, reviewed: bool) -> str:
    """The demonstrations as an HTML table, every cell escaped (people wrote them)."""
    if not rows:
        return ""
    columns = ["prompt", "author", "chars", "seconds", "pasted", "text"]
    head = ("<th></th>" if reviewed else "") + "".join(f"<th>{c}</th>" for c in columns)
    body = []
    for row in rows[:MAX_ROWS]:
        mark = f"<td>{'★' if row['best'] else ''}</td>" if reviewed else ""
        cells = "".join(f"<td>{esc('–' if row[c] is None else row[c])}</td>" for c in columns)
        body.append(f"<tr>{mark}{cells}</tr>")
    more = len(rows) - MAX_ROWS
    tail = f'<div style="color:#666">… and {more} more demonstration(s)</div>' if more > 0 else ""
    return (
        f'<table class="flowlab-results flowlab-demonstrations"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>{tail}"
    )


class WriteCharts:
    """A write item at a glance: demonstrations per prompt (against the flow's maximum, when known) and each
    demonstration's length against the seconds spent writing it.

    `figures` lists the two figures; `update(result, most=)` takes a `WriteResults` and refills their sources
    in place.
    """

    def __init__(self, *, width: int = 430, height: int = 360, sizing_mode: str | None = None) -> None:
        self.count_source = ColumnDataSource(empty_data(("prompt", "count", "most")))
        counts = base_figure(
            "Demonstrations per prompt",
            width=width,
            height=height,
            sizing_mode=sizing_mode,
            x_range=FactorRange(factors=[]),
            y_range=Range1d(start=0, end=1),
            y_axis_label="demonstrations",
        )
        counts.vbar(x="prompt", top="count", width=0.7, source=self.count_source, fill_color="#1f77b4")
        counts.add_tools(HoverTool(tooltips=[("prompt", "@prompt"), ("demonstrations", "@count / @most")]))
        counts.xaxis.major_label_orientation = 0.8
        self.length_source = ColumnDataSource(empty_data(("chars", "seconds", "prompt", "author")))
        lengths = base_figure(
            "Length and time on task",
            width=width,
            height=height,
            sizing_mode=sizing_mode,
            x_range=Range1d(start=0, end=1),
            y_range=Range1d(start=0, end=1),
            x_axis_label="characters",
            y_axis_label="seconds on task",
        )
        lengths.scatter(x="chars", y="seconds", size=7, alpha=0.7, source=self.length_source, color="#ff7f0e")
        lengths.add_tools(
            HoverTool(
                tooltips=[("prompt", "@prompt"), ("author", "@author"), ("characters", "@chars"), ("s", "@seconds")]
            )
        )
        self.counts, self.lengths = counts, lengths
        self.figures = [counts, lengths]

    def update(self, result: Any, *, most: int | None = None) -> None:
        prompts = [task.key for task in result.tasks]
        if list(self.counts.x_range.factors) != prompts:
            self.counts.x_range.factors = prompts
        count = [len(task.demonstrations) for task in result.tasks]
        self.count_source.data = {
            "prompt": prompts,
            "count": count,
            "most": [most if most is not None else "?" for _ in prompts],
        }
        fit_range(self.counts.y_range, 0, max([*count, most or 1]), floor=0)
        timed = [(task.key, d) for task in result.tasks for d in task.demonstrations if d.seconds is not None]
        self.length_source.data = {
            "chars": [int(d.chars) for _, d in timed],
            "seconds": [float(d.seconds) for _, d in timed],
            "prompt": [key for key, _ in timed],
            "author": [d.annotator_id for _, d in timed],
        }
        if timed:
            fit_range(self.lengths.x_range, 0, max(d.chars for _, d in timed), floor=0)
            fit_range(self.lengths.y_range, 0, max(float(d.seconds) for _, d in timed), floor=0)
