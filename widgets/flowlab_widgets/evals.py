"""EvalMonitor: an eval of a training run in a notebook — the human win rate against the anchor per checkpoint,
with its 95 % band, one line per tag, the trainer's proxy reward on a second axis, and the steps where the
sentinel saw the two diverge. `EvalChart` is the figure factory the widget and the dashboard share."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets
from bokeh.models import ColumnDataSource, LinearAxis, Range1d
from bokeh.palettes import Category10_10

from flowlab import AsyncClient
from flowlab_widgets._common import bokeh_widget, client_for, connection_of, esc, live_badge
from flowlab_widgets.figures import base_figure, fit_range
from flowlab_widgets.live import LiveUpdates, Mode

__all__ = ["EvalChart", "EvalMonitor", "EvalSnapshot", "summary_html"]

ALL = "all"
PROXY_COLOR = "#555555"
DIVERGENCE_COLOR = "#d62728"


def _number(value: Any) -> float:
    """A cell as a float for a source (NaN for a missing value, which bokeh leaves as a gap)."""
    if value is None:
        return math.nan
    value = float(value)
    return value if math.isfinite(value) else math.nan


class EvalChart:
    """Win rate against the anchor per step, with its band, one line per tag (`"all"` thickest); the proxy reward
    (dashed, right axis); the steps where the sentinel fired, marked. Built once for the eval's tags; `update`
    replaces each source's data."""

    _LINE = ("step", "win_rate", "low", "high", "votes")

    def __init__(
        self,
        tags: Sequence[str] = (),
        *,
        title: str = "Human win rate against the anchor",
        width: int = 640,
        height: int = 300,
        sizing_mode: str | None = None,
    ) -> None:
        self.tags = [ALL, *[t for t in tags if t != ALL]]
        self.sources = {tag: ColumnDataSource({c: [] for c in self._LINE}) for tag in self.tags}
        self.proxy_source = ColumnDataSource({"step": [], "proxy": []})
        self.divergence_source = ColumnDataSource({"step": [], "win_rate": []})
        fig = base_figure(
            title,
            width=width,
            height=height,
            sizing_mode=sizing_mode,
            x_axis_label="step",
            y_axis_label="win rate",
            x_range=Range1d(start=0, end=1),
            y_range=Range1d(start=0, end=1),
        )
        fig.extra_y_ranges = {"proxy": Range1d(start=0, end=1)}
        fig.add_layout(LinearAxis(y_range_name="proxy", axis_label="proxy reward"), "right")
        for i, tag in enumerate(self.tags):
            color = Category10_10[i % len(Category10_10)]
            source = self.sources[tag]
            fig.varea(x="step", y1="low", y2="high", source=source, fill_color=color, fill_alpha=0.15)
            fig.line(
                x="step",
                y="win_rate",
                source=source,
                color=color,
                line_width=3 if tag == ALL else 1.5,
                legend_label=tag,
            )
            fig.scatter(x="step", y="win_rate", source=source, color=color, size=5)
        fig.line(
            x="step",
            y="proxy",
            source=self.proxy_source,
            y_range_name="proxy",
            color=PROXY_COLOR,
            line_dash="dashed",
            line_width=2,
            legend_label="proxy reward",
        )
        fig.scatter(
            x="step",
            y="win_rate",
            source=self.divergence_source,
            marker="inverted_triangle",
            size=14,
            color=DIVERGENCE_COLOR,
            legend_label="divergence",
        )
        fig.legend.location = "top_left"
        fig.legend.background_fill_alpha = 0.6
        fig.legend.click_policy = "hide"
        self.figure = fig

    def update(self, rows: Sequence[Any]) -> None:
        """From the history's rows (objects or dicts with its columns), any order."""
        got = [r if isinstance(r, dict) else {c: getattr(r, c) for c in _ROW} for r in rows]
        got.sort(key=lambda r: r["step"])
        for tag, source in self.sources.items():
            mine = [r for r in got if r["tag"] == tag]
            source.data = {
                "step": [r["step"] for r in mine],
                "win_rate": [_number(r["win_rate"]) for r in mine],
                "low": [_number(r["win_low"]) for r in mine],
                "high": [_number(r["win_high"]) for r in mine],
                "votes": [r["votes"] for r in mine],
            }
        everything = [r for r in got if r["tag"] == ALL]
        self.proxy_source.data = {
            "step": [r["step"] for r in everything if r["proxy_reward"] is not None],
            "proxy": [_number(r["proxy_reward"]) for r in everything if r["proxy_reward"] is not None],
        }
        fired = [r for r in everything if r["divergence"]]
        self.divergence_source.data = {
            "step": [r["step"] for r in fired],
            "win_rate": [0.02 if math.isnan(_number(r["win_rate"])) else _number(r["win_rate"]) for r in fired],
        }
        steps = [r["step"] for r in everything]
        if steps:
            fit_range(self.figure.x_range, min(steps), max(steps) if len(steps) > 1 else min(steps) + 1)
        proxies = [p for p in self.proxy_source.data["proxy"] if not math.isnan(p)]
        if proxies:
            low, high = min(proxies), max(proxies)
            fit_range(self.figure.extra_y_ranges["proxy"], low, high if high > low else low + 1)


_ROW = ("step", "tag", "win_rate", "win_low", "win_high", "votes", "wins", "proxy_reward", "divergence")


@dataclass
class EvalSnapshot:
    """What one refresh read: the eval, its history's rows (dicts) and the sentinel's latest check."""

    info: Any  # flowlab.schemas.Eval
    rows: list[dict[str, Any]]
    divergence: Any  # flowlab.schemas.EvalDivergence | None


def summary_html(snapshot: EvalSnapshot) -> str:
    """The latest checkpoint's win rate per tag, and what the sentinel says."""
    everything = [r for r in snapshot.rows if r["tag"] == ALL]
    if not everything:
        return (
            '<span class="flowlab-eval-summary">No checkpoints yet: call <code>ev.checkpoint(step, ...)</code>.</span>'
        )
    step = everything[-1]["step"]
    parts = []
    for r in (r for r in snapshot.rows if r["step"] == step):
        rate = r["win_rate"]
        shown = "–" if rate is None or (isinstance(rate, float) and math.isnan(rate)) else f"{rate:.0%}"
        parts.append(f"{esc(r['tag'])} {shown} ({r['votes']:g} votes)")
    found = snapshot.divergence
    if found is None:
        sentinel = '<span class="flowlab-eval-sentinel">sentinel: waiting for a full window</span>'
    elif found.fired:
        sentinel = (
            f'<span class="flowlab-eval-sentinel" style="color:{DIVERGENCE_COLOR}"><b>divergence at step '
            f"{found.step}</b>: {esc(found.reason)}</span>"
        )
    else:
        sentinel = f'<span class="flowlab-eval-sentinel">sentinel: {esc(found.reason)}</span>'
    return f'<span class="flowlab-eval-summary">step {step}: {" · ".join(parts)}</span><br>{sentinel}'


class EvalMonitor(widgets.VBox):
    """Follow an eval live: the chart (`EvalChart`, or what `figure_factory(tags)` builds) and a summary line.

    Updates follow the eval's SSE stream (`eval.checkpoint`, `eval.divergence`) on the kernel's event loop,
    throttled to one refresh per `throttle` seconds, falling back to polling; outside an event loop a background
    thread polls. `live=False` leaves refreshing to `refresh()`.
    """

    def __init__(
        self,
        ev: Any,
        *,
        live: bool = True,
        throttle: float = 0.5,
        poll_interval: float = 1.0,
        figure_factory: Callable[[Sequence[str]], EvalChart] | None = None,
    ) -> None:
        self.eval_id: str = ev.id
        self._url, self._api_key = connection_of(ev)
        self._client = client_for(ev)
        info = ev.info
        tags = sorted({t for ts in info.tags for t in ts})
        self.chart = (figure_factory or (lambda t: EvalChart(t)))(tags)
        self.snapshot: EvalSnapshot | None = None
        self.header = widgets.HTML(
            f'<b style="font-size:120%">{esc(info.name)}</b> <code>{esc(info.id)}</code> '
            f'<span style="color:#555">{len(info.prompts)} prompts · anchor {esc(info.anchor)} · '
            f"flow <code>{esc(info.flow_id)}</code></span>"
        )
        self.live_status = widgets.HTML()
        self.summary = widgets.HTML()
        super().__init__(
            [
                widgets.HBox([self.header, self.live_status], layout=widgets.Layout(justify_content="space-between")),
                bokeh_widget(self.chart.figure),
                self.summary,
            ],
            layout=widgets.Layout(border="1px solid #ddd", padding="8px"),
        )
        self.add_class("flowlab-eval")
        self.live = LiveUpdates(
            self.fetch, self.apply, subscribe=self._events, throttle=throttle, poll_interval=poll_interval
        )
        self.live.on_mode_change(self._show_mode)
        self._show_mode("off")
        if live:
            self.live.start()
        else:
            self.refresh()

    def fetch(self) -> EvalSnapshot:
        """The eval, its history and the sentinel's check (blocking; no widget is touched)."""
        ev = self._client.evals.get(self.eval_id)
        frame = ev.history()
        rows = [
            {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
            for row in frame.to_dict("records")
        ]
        return EvalSnapshot(ev.info, rows, ev.divergence())

    def apply(self, snapshot: EvalSnapshot) -> None:
        self.snapshot = snapshot
        self.chart.update(snapshot.rows)
        self.summary.value = summary_html(snapshot)

    def refresh(self) -> EvalSnapshot:
        """Fetch and show now (blocking)."""
        snapshot = self.fetch()
        self.apply(snapshot)
        return snapshot

    async def _events(self) -> AsyncIterator[Any]:
        async with AsyncClient(url=self._url, api_key=self._api_key) as aclient:
            aev = await aclient.evals.get(self.eval_id)
            async for event in aev.watch():
                yield event

    def _show_mode(self, mode: Mode) -> None:
        self.live_status.value = live_badge(mode)

    def stop(self) -> None:
        self.live.stop()

    def close(self) -> None:
        self.live.stop()
        self._client.close()
        super().close()
