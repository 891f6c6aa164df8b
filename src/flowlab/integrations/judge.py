"""A judge that knows when to ask people: routing, blending and the live report behind
`human_reward(flow, judge=..., budget=...)` and `human_pair_reward(flow, judge=..., budget=...)`.

Every completion gets the judge's verdict. Each step, `JudgeCalibration.plan` picks the pairs (within
groups) people should see: those where people are least likely to agree with the judge, by a calibration
fitted on every pair people have decided so far (`flowlab.ranking.fit_agreement_model`: logistic in the
judge's margin, one intercept per tag). Before people have voted it ranks pairs by the judge's margin alone
(least certain first); as votes arrive, the tags where the judge errs rise. A share `explore` of the budget
goes to pairs drawn at random, so the agreement report has an unbiased sample (routed pairs are the hard
ones by design).

`JudgeCalibration.rewards` then gives every group its scores from one model,
`flowlab.ranking.fit_judge_bradley_terry` (Crowd-BT with the judge as one more annotator, people held as
the reference), each judge pair weighted by its own reliability η, the calibrated P(agree) for its margin
and tag: a group with people's votes is scored from both, a group without from the judge alone under the
same model. The module needs numpy only; no server, torch or TRL.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flowlab.ranking import (
    AgreementModel,
    agreement_interval,
    fit_agreement_model,
    fit_judge_bradley_terry,
)

ROUTES = ("uncertain", "random")
_DEFAULT_TAG = ""


@dataclass
class JudgedGroup:
    """One group (GRPO: a prompt's completions; OnlineDPO: a pair) as the judge saw it.

    `pairs` holds `(a, b, p)` rows in the group's own positions, `p` the judge's P(a better than b);
    `margins` how sure it was of each pair (in units of its usual gap), `tag` the group's tag.
    """

    size: int
    pairs: np.ndarray
    margins: np.ndarray
    tag: str = _DEFAULT_TAG

    @staticmethod
    def from_scores(scores: Any, scale: float, tag: str | None = None) -> JudgedGroup:
        """A scoring judge's group: every pair, `p` 1, 0 or ½ by the scores' order, margin `|s_a − s_b| / scale`."""
        s = np.asarray(scores, dtype=float)
        if not np.all(np.isfinite(s)):
            raise ValueError("the judge returned a NaN or infinite score; return a finite number per completion.")
        a, b = np.triu_indices(len(s), 1)
        p = np.where(s[a] > s[b], 1.0, np.where(s[a] < s[b], 0.0, 0.5))
        margins = np.abs(s[a] - s[b]) / (scale if scale > 0 else 1.0)
        return JudgedGroup(len(s), np.stack([a, b, p], 1), margins, tag or _DEFAULT_TAG)

    @staticmethod
    def from_preference(p: float, tag: str | None = None) -> JudgedGroup:
        """A pairwise judge's pair: `p` = P(first better), margin `|logit p|`."""
        if not 0.0 <= p <= 1.0 or math.isnan(p):
            raise ValueError(f"a pairwise judge returns P(first better) in [0, 1]; got {p!r}.")
        q = min(max(p, 1e-6), 1 - 1e-6)
        return JudgedGroup(2, np.array([[0.0, 1.0, p]]), np.array([abs(math.log(q / (1 - q)))]), tag or _DEFAULT_TAG)


def score_scale(groups_scores: list[Any]) -> float:
    """The judge's usual gap: the median `|s_a − s_b|` over the pairs of a call's groups (1 if all tie)."""
    gaps = [
        np.abs(np.subtract.outer(np.asarray(s, float), np.asarray(s, float)))[np.triu_indices(len(s), 1)]
        for s in groups_scores
        if len(s) >= 2
    ]
    flat = np.concatenate(gaps) if gaps else np.zeros(0)
    flat = flat[np.isfinite(flat) & (flat > 0)]
    return float(np.median(flat)) if len(flat) else 1.0


@dataclass(frozen=True)
class Agreement:
    """How often the judge preferred the side people preferred, over `pairs` decided pairs, with its interval."""

    share: float
    low: float
    high: float
    pairs: int


@dataclass
class JudgeCalibration:
    """The live state of a routed judge: what it agreed with people on, how reliable it is per tag, and a
    row per step of what was spent. `reward.calibration` on a judged reward function; pass one in
    (`calibration=`) to carry it across reward functions or runs.

    Parameters
    ----------
    route
        "uncertain" (the pairs where judge and people are most likely to disagree) or "random".
    budget
        Pairs people are asked about per step: a count, or a share of the step's pairs in (0, 1). Each asked
        pair gets the flow's `max_response_threshold` votes.
    explore
        Share of the budget drawn at random instead (an unbiased sample for the agreement report).
    level
        Coverage of the agreement interval.
    seed
        Randomness of the exploring draws.
    """

    route: str = "uncertain"
    budget: float = 0.25
    explore: float = 0.1
    level: float = 0.95
    seed: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    reliability: dict[str, float] = field(default_factory=dict)  # per tag: P(agree) at the judge's usual gap

    def __post_init__(self) -> None:
        if self.route not in ROUTES:
            raise ValueError(f"route is one of {ROUTES}; got {self.route!r}.")
        b = self.budget
        if not (isinstance(b, int | float) and math.isfinite(b) and b >= 0 and (b < 1 or float(b).is_integer())):
            raise ValueError(
                f"budget is the pairs people see per step: a whole number, or a share in (0, 1); got {b!r}."
            )
        if not 0.0 <= self.explore <= 1.0:
            raise ValueError(f"explore is a share of the budget in [0, 1]; got {self.explore!r}.")
        self._rng = random.Random(self.seed)
        self._tags: dict[str, int] = {}
        self._records: list[np.ndarray] = []  # rows: tag index, margin, agree, audit

    # ------------------------------------------------------------ routing

    def _tag(self, tag: str) -> int:
        return self._tags.setdefault(tag, len(self._tags))

    def _records_array(self) -> np.ndarray:
        return np.concatenate(self._records) if self._records else np.zeros((0, 4))

    def _model(self) -> AgreementModel:
        rec = self._records_array()
        return fit_agreement_model(rec[:, 1], rec[:, 2], rec[:, 0].astype(np.int64), len(self._tags))

    def agreement_probability(self, group: JudgedGroup) -> np.ndarray:
        """P(people agree with the judge) on each of the group's pairs, from the calibration so far."""
        return self._model().probability(group.margins, self._tags.get(group.tag, -1))

    def n_to_people(self, n_pairs: int) -> int:
        """How many of a step's `n_pairs` the budget allows."""
        if 0 < self.budget < 1:
            return min(n_pairs, max(1, round(self.budget * n_pairs)))
        return min(n_pairs, int(self.budget))

    def plan(self, groups: list[JudgedGroup]) -> list[tuple[int, int, bool]]:
        """The pairs people should see this step, as `(group, pair, audit)`: `pair` indexes `groups[group].pairs`,
        `audit` marks the exploring draws (uniform over the pairs not routed). With route "uncertain", the
        pairs with the lowest calibrated P(agree) go first."""
        model = self._model()
        candidates: list[tuple[float, int, int]] = []
        for g, group in enumerate(groups):
            agree = model.probability(group.margins, self._tags.get(group.tag, -1))
            candidates += [(float(agree[k]), g, k) for k in range(len(group.pairs))]
        k = self.n_to_people(len(candidates))
        if k == 0:
            return []
        if self.route == "random":
            picked = self._rng.sample(range(len(candidates)), k)
            return sorted((candidates[i][1], candidates[i][2], True) for i in picked)
        n_explore = sum(self._rng.random() < self.explore for _ in range(k))
        order = sorted(range(len(candidates)), key=lambda i: candidates[i][0])
        routed = order[: k - n_explore]
        rest = order[k - n_explore :]
        audits = self._rng.sample(rest, min(n_explore, len(rest)))
        chosen = [(candidates[i][1], candidates[i][2], False) for i in routed]
        chosen += [(candidates[i][1], candidates[i][2], True) for i in audits]
        return sorted(chosen)

    # ------------------------------------------------------------ scoring

    def rewards(
        self,
        groups: list[JudgedGroup],
        wins: dict[int, np.ndarray],
        audits: set[tuple[int, int]] | None = None,
    ) -> list[np.ndarray]:
        """Every group's scores (logits on the people's scale). `wins[g]` is group `g`'s people win matrix
        (`wins[g][a, b]`: votes for `a` over `b`) where people voted; `audits` holds the `(group, pair)` of
        the exploring draws. Records the judge's agreement with people on every pair they decided."""
        audits = audits or set()
        for g, given in wins.items():
            matrix = np.asarray(given, dtype=float)
            if matrix.sum() > 0:
                flags = np.array([(g, k) in audits for k in range(len(groups[g].pairs))], dtype=float)
                self._record(groups[g], matrix, flags)
        model = self._model()
        self.reliability = {tag: float(model.probability(1.0, i)) for tag, i in self._tags.items()}
        out = []
        for g, group in enumerate(groups):
            if group.size < 2 or not len(group.pairs):
                out.append(np.zeros(group.size))
                continue
            voted = wins.get(g)
            people = _people_rows(voted) if voted is not None else np.zeros((0, 3))
            eta = np.maximum(0.5, model.probability(group.margins, self._tags.get(group.tag, -1)))
            rows = np.column_stack([group.pairs, np.arange(len(group.pairs))])  # one reliability per pair
            fit = fit_judge_bradley_terry(people, rows, group.size, n_judges=len(rows), judge_reliability=eta)
            out.append(fit.scores)
        return out

    def _record(self, group: JudgedGroup, matrix: np.ndarray, audit: np.ndarray) -> None:
        a = group.pairs[:, 0].astype(int)
        b = group.pairs[:, 1].astype(int)
        net = matrix[a, b] - matrix[b, a]
        p = group.pairs[:, 2]
        decided = (net != 0) & (p != 0.5)
        agree = ((net > 0) == (p > 0.5)).astype(float)
        rows = np.stack([np.full(len(a), self._tag(group.tag)), group.margins, agree, audit], 1)
        self._records.append(rows[decided])

    # ------------------------------------------------------------ the report

    def agreement(self, tag: str | None = None, *, audits_only: bool = False) -> Agreement:
        """The judge's agreement with people on the pairs people decided (their majority), with a Wilson
        interval at `level`; `tag=` for one tag, `audits_only=True` for the randomly drawn groups alone."""
        rec = self._records_array()
        if tag is not None:
            rec = rec[rec[:, 0] == self._tags.get(tag, -1)]
        if audits_only:
            rec = rec[rec[:, 3] == 1]
        share, low, high = agreement_interval(float(rec[:, 2].sum()), float(len(rec)), self.level)
        return Agreement(share, low, high, len(rec))

    def by_tag(self) -> dict[str, Agreement]:
        """`agreement` for every tag seen (the untagged as "")."""
        return {t: self.agreement(t) for t in self._tags}

    def end_step(
        self, step: int | None, *, groups: int, to_people: int, votes: float, from_people: int, total: int
    ) -> dict[str, Any]:
        """Append the step's row to `history` (and return it)."""
        agreement = self.agreement()
        row: dict[str, Any] = {
            "step": step,
            "groups": groups,
            "to_people": to_people,
            "votes": votes,
            "rewards_from_people": from_people,
            "rewards_from_judge": total - from_people,
            "agreement": agreement.share,
            "agreement_low": agreement.low,
            "agreement_high": agreement.high,
            "agreement_pairs": agreement.pairs,
        }
        for tag, value in sorted(self.reliability.items()):
            row[f"reliability[{tag}]" if tag else "reliability"] = value
        self.history.append(row)
        return row

    def report(self) -> Any:
        """`history` as a pandas DataFrame, one row per step."""
        import pandas as pd

        return pd.DataFrame(self.history)

    @property
    def votes(self) -> float:
        """People's votes spent so far."""
        return float(sum(row["votes"] for row in self.history))


def _people_rows(matrix: np.ndarray) -> np.ndarray:
    """A win matrix as `(winner, loser, count)` rows."""
    matrix = np.asarray(matrix, dtype=float)
    w, loser = np.nonzero(matrix)
    return np.column_stack([w, loser, matrix[w, loser]]).astype(float) if len(w) else np.zeros((0, 3))
