"""What the SDK gives back: item states, statuses and results, with pandas views."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from flowlab import schemas

if TYPE_CHECKING:
    import pandas as pd


class FlowItemState(enum.StrEnum):
    """A flow item's lifecycle state; compares equal to its name as a string."""

    PENDING = "Pending"
    RUNNING = "Running"
    STOPPING = "Stopping"
    COMPLETED = "Completed"
    INCOMPLETE = "Incomplete"
    STOPPED = "Stopped"
    FAILED = "Failed"

    @property
    def is_terminal(self) -> bool:
        return self.value in schemas.TERMINAL_STATES


class FlowItemStatus(schemas.ItemStatus):
    """A snapshot of an item: state, votes so far, thresholds, deadline. Never waits."""

    state: FlowItemState  # type: ignore[assignment]  # the wire's string, as the SDK's enum

    @property
    def is_terminal(self) -> bool:
        return self.state.is_terminal

    @property
    def time_left(self) -> float:
        """Seconds until the deadline, as of when this status was read (0 once ended)."""
        return 0.0 if self.is_terminal else max(0.0, self.deadline - self.server_time)


# Fields beyond hosted's are kept on the object and in `dataclasses.asdict`, but left out of `==` and `repr`
# (`compare=False, repr=False`), so a result compares and prints as hosted's does.


@dataclass(frozen=True)
class RankedDatapoint:
    """One datapoint of a ranking item's results: its Bradley–Terry score (a logit, mean zero over the item), the
    Elo-scale score, the 95 % interval (logit scale), the rank (1 = best) and its range, votes, wins (ties count
    half), the different people whose votes compared it, and the local file it was uploaded from (`source`)."""

    key: str
    index: int
    score: float
    elo: float
    ci_low: float
    ci_high: float
    rank: int
    rank_low: int
    rank_high: int
    votes: int
    wins: float
    annotators: int = 0
    source: str | None = None
    # Absolute flows: the probability this datapoint is judged acceptable, with its 95 % interval.
    p_acceptable: float | None = None
    p_acceptable_low: float | None = None
    p_acceptable_high: float | None = None

    @classmethod
    def from_wire(cls, d: schemas.DatapointResult) -> RankedDatapoint:
        return cls(**msgspec.structs.asdict(d))


@dataclass(frozen=True)
class FlowItemResult:
    """A ranking item's results, as hosted's frozen dataclass: `FlowItemResult(datapoints, total_votes)`, where
    `datapoints` maps each datapoint's key to its Elo-scale score (the flow's `starting_elo`, 1200 by default, plus
    400/ln 10 per Bradley–Terry logit) and `total_votes` counts the votes; `==` and `repr` look at those two only.

    Beyond hosted, as trailing fields with defaults: `details` has each datapoint's Bradley–Terry score, 95 %
    interval, rank range, votes and wins (best first); `sources` maps the key of each uploaded file to its path as
    given; `results[key]` is one datapoint's details; `to_dataframe()`, `rewards()`."""

    datapoints: dict[str, float]
    total_votes: int
    item_id: str = field(default="", compare=False, repr=False)
    state: FlowItemState | None = field(default=None, compare=False, repr=False)
    partial: bool = field(default=False, compare=False, repr=False)
    details: list[RankedDatapoint] = field(default_factory=list, compare=False, repr=False)
    version: int = field(default=0, compare=False, repr=False)
    # Different people whose votes count (each datapoint's are in `details`).
    annotators: int = field(default=0, compare=False, repr=False)
    # Above a half, one person's view makes the ranking.
    top_annotator_share: float | None = field(default=None, compare=False, repr=False)
    # The annotator id of a person who gave over half the votes (their view is the ranking), else None.
    dominated_by: str | None = field(default=None, compare=False, repr=False)
    # Key -> the local path an uploaded file was given as.
    sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_wire(cls, r: schemas.ItemResults) -> FlowItemResult:
        details = [RankedDatapoint.from_wire(d) for d in r.datapoints]
        return cls(
            datapoints={d.key: d.elo for d in details},
            total_votes=r.total_votes,
            item_id=r.item_id,
            state=FlowItemState(r.state),
            partial=r.partial,
            details=details,
            version=r.version,
            annotators=r.annotators,
            top_annotator_share=r.top_annotator_share,
            dominated_by=r.dominated_by,
            sources={d.key: d.source for d in details if d.source is not None},
        )

    def __getitem__(self, key: str) -> RankedDatapoint:
        for d in self.details:
            if d.key == key:
                return d
        raise KeyError(f"no datapoint with key {key!r}; keys are {[d.key for d in self.details]}")

    @property
    def ranking(self) -> list[str]:
        """Datapoint keys, best first."""
        return [d.key for d in sorted(self.details, key=lambda d: (d.rank, -d.score))]

    def scores(self) -> dict[str, float]:
        """Bradley–Terry scores (logits, centred) by key."""
        return {d.key: d.score for d in self.details}

    @property
    def threshold(self) -> float | None:
        """An absolute flow's acceptability threshold on the scale of the scores (None for other flows):
        `p_acceptable = σ(score − threshold)`."""
        import math

        d = next((d for d in self.details if d.p_acceptable is not None), None)
        if d is None or d.p_acceptable is None:
            return None
        p = min(max(d.p_acceptable, 1e-12), 1 - 1e-12)
        return d.score - math.log(p / (1 - p))

    def rewards(
        self, *, unvoted_as_none: bool = False, absolute: bool | None = None, **options: Any
    ) -> dict[str, float | None]:
        """Per-datapoint rewards for RL from these results; options go to `flowlab.ranking.rewards_from_scores`.
        With `unvoted_as_none`, a datapoint no one voted on gets None (and stays out of the normalisation)
        instead of the reward of an average datapoint. On an absolute flow's results the rewards carry the
        absolute level by default (`absolute=None`): they are measured from the acceptability threshold rather
        than the group's mean, so eight unacceptable completions all get negative rewards; `absolute=False`
        gives the plain relative rewards."""
        import numpy as np

        from flowlab import ranking

        ordered = sorted(self.details, key=lambda d: d.index)
        counted = [d for d in ordered if d.votes > 0] if unvoted_as_none else ordered
        out: dict[str, float | None] = {d.key: None for d in ordered}
        threshold = self.threshold if absolute is not False else None
        if absolute and threshold is None:
            raise ValueError("absolute=True needs an absolute flow's results (create_ranking_flow(absolute=True)).")
        if threshold is not None:
            options.setdefault("threshold", threshold)
        if counted:
            values = ranking.rewards_from_scores(np.array([d.score for d in counted]), **options)
            out.update({d.key: float(v) for d, v in zip(counted, values, strict=True)})
        return out

    def to_dataframe(self) -> pd.DataFrame:
        import pandas as pd

        rows = [dataclasses.asdict(d) for d in self.details]
        frame = pd.DataFrame(rows).set_index("key").sort_values("rank") if rows else pd.DataFrame()
        # Who voted, for the item as a whole (a row per datapoint has no place for it).
        frame.attrs.update(
            annotators=self.annotators, top_annotator_share=self.top_annotator_share, dominated_by=self.dominated_by
        )
        return frame


@dataclass(frozen=True)
class ClassifyDatapointResult:
    """One datapoint of a classify item, as hosted's frozen dataclass: `ClassifyDatapointResult(majority_value,
    distribution, response_count)` — the value chosen most often (None on a tie or without answers), every
    category's value with its count (zero-filled, in the flow's order), and the answers; `==` and `repr` look at
    those three only. Beyond hosted: `weighted_value` and its `confidence`, from annotators weighed by their
    estimated reliability; the datapoint's `key`, `index` and, for an uploaded file, its `source` path."""

    majority_value: str | None
    distribution: dict[str, int]
    response_count: int
    weighted_value: str | None = field(default=None, compare=False, repr=False)
    confidence: float | None = field(default=None, compare=False, repr=False)
    key: str = field(default="", compare=False, repr=False)
    index: int = field(default=0, compare=False, repr=False)
    source: str | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_wire(cls, d: schemas.ClassifyDatapointResult) -> ClassifyDatapointResult:
        return cls(**msgspec.structs.asdict(d))


@dataclass(frozen=True)
class ClassifyFlowItemResult:
    """A classify item's results, as hosted's frozen dataclass: `ClassifyFlowItemResult(datapoints,
    total_responses)`, `datapoints` mapping each datapoint's key to its `ClassifyDatapointResult` and
    `total_responses` counting every answer; `==` and `repr` look at those two only. Beyond hosted: `partial` is
    True while the item still runs; `sources` maps the key of each uploaded file to its path as given."""

    datapoints: dict[str, ClassifyDatapointResult]
    total_responses: int
    item_id: str = field(default="", compare=False, repr=False)
    state: FlowItemState | None = field(default=None, compare=False, repr=False)
    partial: bool = field(default=False, compare=False, repr=False)
    version: int = field(default=0, compare=False, repr=False)
    annotators: int = field(default=0, compare=False, repr=False)  # different people whose answers count
    sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_wire(cls, r: schemas.ClassifyResults) -> ClassifyFlowItemResult:
        datapoints = {d.key: ClassifyDatapointResult.from_wire(d) for d in r.datapoints}
        return cls(
            datapoints=datapoints,
            total_responses=r.total_responses,
            item_id=r.item_id,
            state=FlowItemState(r.state),
            partial=r.partial,
            version=r.version,
            annotators=r.annotators,
            sources={k: d.source for k, d in datapoints.items() if d.source is not None},
        )

    def to_dataframe(self) -> pd.DataFrame:
        """One row per datapoint: majority, weighted value and confidence, answers, and a column per category."""
        import pandas as pd

        rows = []
        for d in self.datapoints.values():
            row = {k: v for k, v in dataclasses.asdict(d).items() if k not in ("distribution", "source")}
            rows.append(row | {f"n_{value}": count for value, count in d.distribution.items()})
        return pd.DataFrame(rows).set_index("key").sort_values("index") if rows else pd.DataFrame()


class RlhfFlowItemResult(msgspec.Struct):
    """An RLHF item's results, aggregated over annotators: per task (`tasks`, or `results[key]`) each
    response's ratings per dimension (mean, 95 % interval, distribution), how often it was chosen, the mean
    Likert value, the rewrites and the justifications; per model over the item (`models`); and Krippendorff's
    alpha per dimension (`agreement`). `total_responses` counts completed annotations."""

    item_id: str
    state: FlowItemState
    total_responses: int
    partial: bool
    tasks: list[schemas.RlhfTaskResult]
    models: list[schemas.ModelSummary]
    agreement: dict[str, float | None]
    version: int
    annotators: int = 0  # different people whose annotations count

    @classmethod
    def from_wire(cls, r: schemas.RlhfResults) -> RlhfFlowItemResult:
        fields = msgspec.structs.asdict(r) | {"state": FlowItemState(r.state)}
        return cls(**fields)

    def __getitem__(self, key: str) -> schemas.RlhfTaskResult:
        for t in self.tasks:
            if t.key == key:
                return t
        raise KeyError(f"no task with key {key!r}; keys are {[t.key for t in self.tasks]}")

    def to_dataframe(self) -> pd.DataFrame:
        """One row per task, response and dimension: n, mean, interval, not-applicable count, and the
        response's share of the choices."""
        import pandas as pd

        rows = [
            {
                "key": t.key,
                "source_id": r.source_id,
                "dimension": s.dimension,
                "n": s.n,
                "mean": s.mean,
                "ci_low": s.ci_low,
                "ci_high": s.ci_high,
                "not_applicable": s.not_applicable,
                "selected_share": r.selected_share,
            }
            for t in self.tasks
            for r in t.responses
            for s in r.ratings
        ]
        return pd.DataFrame(rows)

    def models_frame(self) -> pd.DataFrame:
        """One row per model and dimension, over every task of the item."""
        import pandas as pd

        rows = [
            {
                "source_id": m.source_id,
                "tasks": m.tasks,
                "selected_share": m.selected_share,
                "dimension": s.dimension,
                "n": s.n,
                "mean": s.mean,
                "ci_low": s.ci_low,
                "ci_high": s.ci_high,
            }
            for m in self.models
            for s in m.ratings
        ]
        return pd.DataFrame(rows)


def matrix_frame(m: schemas.WinLossMatrix) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame(m.counts, index=list(m.keys), columns=list(m.keys))
    frame.index.name, frame.columns.name = "winner", "loser"
    if all(float(v).is_integer() for row in m.counts for v in row):
        frame = frame.astype(int)
    return frame


def votes_frame(votes: list[schemas.Vote], keys: list[str]) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame(
        [msgspec.structs.asdict(v) for v in votes],
        columns=["task_id", "annotator_id", "winner", "loser", "tie", "level", "created_at", "chose_first", "shown_at"],
    )
    frame["winner_key"] = [keys[i] for i in frame["winner"]]
    frame["loser_key"] = [keys[i] for i in frame["loser"]]
    return frame


def annotators_frame(annotators: list[schemas.ItemAnnotator]) -> pd.DataFrame:
    import pandas as pd

    columns = list(schemas.ItemAnnotator.__struct_fields__)
    return pd.DataFrame([msgspec.structs.asdict(a) for a in annotators], columns=columns)


def labels_frame(labels: list[schemas.Label], keys: list[str]) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame(
        [msgspec.structs.asdict(v) for v in labels],
        columns=["task_id", "annotator_id", "datapoint", "value", "created_at", "shown_at"],
    )
    frame["key"] = [keys[i] for i in frame["datapoint"]]
    return frame
