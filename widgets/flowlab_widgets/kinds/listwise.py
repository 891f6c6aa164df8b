"""The workbench's view of listwise flows: the ranking flows' heatmap and ranking, drawn from the pairs the
rankings imply and the Plackett–Luce fit."""

from __future__ import annotations

from typing import Any

from flowlab_widgets.kinds.pairwise import PairwiseView


class ListwiseView(PairwiseView):
    """k datapoints ordered at once (or best and worst picked): the win-loss matrix of the pairs the rankings
    imply next to the Plackett–Luce ranking. Thresholds count rankings per item."""

    kind = "listwise"
    unit = "rankings"
    matrix_title = "Pairs the rankings imply (row above column)"
    ranking_title = "Ranking (Plackett–Luce, 95 % interval)"

    @classmethod
    def settings(cls, config: Any) -> list[str]:
        spec = getattr(config, "listwise", None)
        k, mode = (spec.k, spec.mode) if spec is not None else (4, "order")
        return [f"k = {k}", "best and worst" if mode == "best_worst" else "whole order"]
