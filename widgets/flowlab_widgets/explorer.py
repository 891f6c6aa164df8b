"""RankingExplorer: Elo next to Bradley–Terry for one item's votes, with K, prior and quality weighting."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets
import numpy as np
import pandas as pd
from bokeh.layouts import row
from bokeh.models import FactorRange

from flowlab import ranking
from flowlab_widgets._common import bokeh_widget, esc
from flowlab_widgets.figures import RankingChart

__all__ = ["ExplorerFit", "RankingExplorer", "votes_array"]


def votes_array(votes: Any) -> tuple[np.ndarray, list[str]]:
    """(annotator, winner, loser, tie) rows and the annotator ids, from `FlowItem.get_votes()` or an array.

    An array may be (m, 2) or (m, 3) ``(winner, loser[, tie])`` (one anonymous annotator) or (m, 4)
    ``(annotator, winner, loser, tie)`` with integer annotator indices.
    """
    if isinstance(votes, pd.DataFrame):
        ids = pd.Index(pd.unique(votes["annotator_id"].astype(str)))
        annotator = ids.get_indexer(votes["annotator_id"].astype(str))
        tie = votes["tie"].astype(int).to_numpy() if "tie" in votes else np.zeros(len(votes), dtype=int)
        rows = np.stack([annotator, votes["winner"].to_numpy(), votes["loser"].to_numpy(), tie], axis=1)
        return rows.astype(np.int64).reshape(-1, 4), [str(i) for i in ids]
    arr = np.asarray(votes, dtype=np.int64)
    if arr.size == 0:
        return np.zeros((0, 4), dtype=np.int64), []
    if arr.ndim != 2 or arr.shape[1] not in (2, 3, 4):
        raise ValueError(f"votes must be a DataFrame from get_votes() or an (m, 2|3|4) array; got {arr.shape}.")
    if arr.shape[1] == 2:
        arr = np.column_stack([arr, np.zeros(len(arr), dtype=np.int64)])
    if arr.shape[1] == 3:
        arr = np.column_stack([np.zeros(len(arr), dtype=np.int64), arr])
    n_ann = int(arr[:, 0].max()) + 1
    return arr, [f"annotator {i}" for i in range(n_ann)]


@dataclass
class ExplorerFit:
    """What the explorer last computed."""

    keys: list[str]
    bt: Any  # ranking.BradleyTerryResult
    elo: Any  # ranking.EloResult
    quality: Any  # ranking.AnnotatorQuality
    reliability: np.ndarray | None  # Crowd-BT's per-annotator reliability, when weighting is on
    dropped_annotators: list[str]  # excluded from Elo as spammers, when weighting is on
    kendall_tau: float  # agreement between the BT and Elo orders


# Each column's alignment, shared by its header and its cells so they line up: names left, numbers right.
_CELL = [f"padding:2px 8px;text-align:{side}" for side in ("left", "right", "right", "right", "left")]


class RankingExplorer(widgets.VBox):
    """Compare Elo and Bradley–Terry on one item's votes.

    Left: Bradley–Terry scores with 95 % intervals (Wald; with quality weighting on, Crowd-BT, which fits a
    reliability per annotator so random clickers stop counting). Right: online Elo ratings with an
    interval from a bootstrap of the votes, resampled and replayed in random order (Elo depends on vote
    order, BT does not). Sliders set Elo's K-factor and the Bradley–Terry prior precision; both charts
    list datapoints in Bradley–Terry order so disagreements stand out. A table shows per-annotator quality:
    votes, consensus agreement, reliability and spammer flags.
    """

    fit: ExplorerFit  # the latest fit; set by recompute(), which the constructor runs

    def __init__(
        self,
        item: Any = None,
        *,
        votes: Any = None,
        keys: list[str] | None = None,
        gold: Any = None,
        annotator_names: dict[str, str] | None = None,
        k: float = 8.0,
        prior: float = ranking.DEFAULT_PRIOR,
        quality_weighting: bool = False,
        n_bootstrap: int = 100,
        seed: int = 0,
    ) -> None:
        if item is None and votes is None:
            raise ValueError("RankingExplorer needs a flow item or votes.")
        if votes is None:
            if not hasattr(item, "get_votes"):
                raise TypeError(
                    f"RankingExplorer compares rankings fitted to pairwise votes, and {type(item).__name__} items "
                    "have none; FlowMonitor(flow, item=item) shows any kind of item."
                )
            votes = item.get_votes()
        if keys is None and item is not None:
            keys = list(item.keys)
        self.votes, self.annotator_ids = votes_array(votes)
        n = int(self.votes[:, 1:3].max()) + 1 if len(self.votes) else 0
        self.datapoint_keys = list(keys) if keys is not None else [str(i) for i in range(n)]
        self.gold = gold
        self.annotator_names = dict(annotator_names or {})
        self.n_bootstrap = n_bootstrap
        self.seed = seed

        self.k_slider = widgets.FloatSlider(
            value=k, min=1.0, max=64.0, step=1.0, description="Elo K", continuous_update=False
        )
        self.prior_slider = widgets.FloatLogSlider(
            value=max(prior, 1e-3),
            base=10,
            min=-3,
            max=1,
            step=0.1,
            description="BT prior",
            continuous_update=False,
            readout_format=".3f",
        )
        self.weighting = widgets.Checkbox(
            value=quality_weighting, description="Annotator-quality weighting", indent=False
        )
        for control in (self.k_slider, self.prior_slider, self.weighting):
            control.observe(lambda _c: self.recompute(), names="value")
        shared = FactorRange(factors=[])
        self.bt_chart = RankingChart(
            title="Bradley–Terry (95 % interval)", x_axis_label="score (logit)", width=420, height=360, y_range=shared
        )
        self.elo_chart = RankingChart(
            title="Elo (bootstrap interval)",
            x_axis_label="rating",
            width=420,
            height=360,
            y_range=shared,
            color="#d62728",
        )
        # One widget (one bokeh document) for both charts: they share a y-range, and a bokeh model can only
        # belong to one document.
        self.charts_widget = bokeh_widget(row(self.bt_chart.figure, self.elo_chart.figure))
        self.summary = widgets.HTML()
        self.annotator_table = widgets.HTML()
        super().__init__(
            [
                widgets.HBox(
                    [self.k_slider, self.prior_slider, self.weighting], layout=widgets.Layout(align_items="center")
                ),
                self.charts_widget,
                self.summary,
                self.annotator_table,
            ],
            layout=widgets.Layout(border="1px solid #ddd", padding="8px"),
        )
        self.add_class("flowlab-explorer")
        self.recompute()

    def recompute(self) -> ExplorerFit:
        """Refit both models with the current controls and update the charts' sources."""
        n, n_ann = len(self.datapoint_keys), max(1, len(self.annotator_ids))
        prior = float(self.prior_slider.value)
        comparisons = self.votes[:, 1:4]
        quality = ranking.annotator_quality(self.votes, n, n_ann, gold=self.gold, prior=max(prior, 1e-3))
        reliability = None
        dropped: list[str] = []
        elo_votes = comparisons
        if self.weighting.value and len(self.votes):
            crowd = ranking.fit_crowd_bradley_terry(self.votes, n, n_ann, prior=max(prior, 1e-3))
            bt, reliability = crowd.fit, crowd.reliability
            # Elo takes no weights: leave out the votes of annotators flagged as random clickers instead.
            spam = np.asarray(quality.spammer, dtype=bool)
            dropped = [self.annotator_ids[i] for i in np.flatnonzero(spam)]
            elo_votes = comparisons[~spam[self.votes[:, 0]]]
        else:
            bt = ranking.fit_bradley_terry(comparisons, n, prior=prior)
        elo = ranking.elo_ratings(
            elo_votes, n, k=float(self.k_slider.value), n_bootstrap=self.n_bootstrap, rng=self.seed
        )
        order = [self.datapoint_keys[i] for i in np.argsort(-np.asarray(bt.scores), kind="stable")]
        self.bt_chart.update(self._rows(bt.scores, bt.ci_low, bt.ci_high, bt.ranks, bt.votes), order=order)
        self.elo_chart.update(self._rows(elo.ratings, elo.ci_low, elo.ci_high, elo.ranks, bt.votes), order=order)
        tau = _kendall_tau(np.asarray(bt.scores), np.asarray(elo.ratings))
        self.fit = ExplorerFit(self.datapoint_keys, bt, elo, quality, reliability, dropped, tau)
        self._render_summary()
        return self.fit

    def _rows(self, values: Any, low: Any, high: Any, ranks: Any, votes: Any) -> list[dict[str, Any]]:
        return [
            {
                "key": key,
                "score": float(values[i]),
                "low": float(low[i]),
                "high": float(high[i]),
                "rank": int(ranks[i]),
                "votes": int(votes[i]),
            }
            for i, key in enumerate(self.datapoint_keys)
        ]

    def _render_summary(self) -> None:
        fit = self.fit
        weighting = ""
        if self.weighting.value:
            weighting = (
                f" Quality weighting: Crowd-BT for Bradley–Terry; Elo leaves out {len(fit.dropped_annotators)}"
                " annotator(s) flagged as spammers."
            )
        self.summary.value = (
            f"<b>{len(self.votes)}</b> votes from <b>{len(self.annotator_ids)}</b> annotator(s). "
            f'Kendall τ between the two orders: <b class="flowlab-tau">{fit.kendall_tau:.2f}</b>.{esc(weighting)}'
        )
        q = fit.quality
        rows = []
        # Least trustworthy first: that is where a reader looks.
        agreement = np.asarray(q.consensus_agreement, dtype=float)
        order = np.argsort(np.where(np.isnan(agreement), np.inf, agreement), kind="stable")
        for i in order[:15]:
            rel = "" if fit.reliability is None else f"{fit.reliability[i]:.2f}"
            flag = "⚠ spammer" if bool(q.spammer[i]) else ""
            cons = agreement[i]
            who = self.annotator_names.get(self.annotator_ids[i], self.annotator_ids[i])
            cells = [f"<code>{esc(who)}</code>", int(q.n_votes[i]), "" if np.isnan(cons) else f"{cons:.0%}", rel, flag]
            rows.append("<tr>" + "".join(f'<td style="{_CELL[j]}">{c}</td>' for j, c in enumerate(cells)) + "</tr>")
        head = ["annotator", "votes", "consensus agreement", "reliability (Crowd-BT)", ""]
        self.annotator_table.value = (
            '<table class="flowlab-annotators" style="font-size:12px;border-collapse:collapse">'
            '<caption style="text-align:left">Annotators, least consistent first</caption><tr>'
            + "".join(f'<th style="{_CELL[j]}">{h}</th>' for j, h in enumerate(head))
            + "</tr>"
            + "".join(rows)
            + "</table>"
        )

    def to_dataframe(self) -> pd.DataFrame:
        """Both rankings side by side, one row per datapoint, best (by Bradley–Terry) first."""
        fit = self.fit
        frame = pd.DataFrame(
            {
                "bt_rank": fit.bt.ranks,
                "bt_score": fit.bt.scores,
                "bt_low": fit.bt.ci_low,
                "bt_high": fit.bt.ci_high,
                "elo_rank": fit.elo.ranks,
                "elo": fit.elo.ratings,
                "elo_low": fit.elo.ci_low,
                "elo_high": fit.elo.ci_high,
                "votes": fit.bt.votes,
            },
            index=pd.Index(self.datapoint_keys, name="key"),
        )
        return frame.sort_values("bt_rank")


def _kendall_tau(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's τ-a between two score vectors (pairs tied in either count as neither)."""
    n = len(a)
    if n < 2:
        return 1.0
    i, j = np.triu_indices(n, 1)
    s = np.sign(a[i] - a[j]) * np.sign(b[i] - b[j])
    return float(s.sum() / len(s))
