"""What the SDK gives back: item states, statuses and results, with pandas views."""

from __future__ import annotations

import enum
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


class FlowItemResult(msgspec.Struct):
    """A ranking item's results. As hosted: `datapoints` maps each datapoint's key to its Elo-scale score
    (the flow's `starting_elo`, 1200 by default, plus 400/ln 10 per Bradley–Terry logit) and `total_votes`
    counts the votes. Beyond hosted: `details` has each datapoint's Bradley–Terry score, 95 % interval, rank
    range, votes and wins (best first); `results[key]` is one of them; `to_dataframe()`, `rewards()`."""

    item_id: str
    state: FlowItemState
    total_votes: int
    partial: bool
    datapoints: dict[str, float]
    details: list[schemas.DatapointResult]
    version: int
    annotators: int = 0  # different people whose votes count (each datapoint's are in `details`)
    top_annotator_share: float | None = None  # above a half, one person's view makes the ranking

    @classmethod
    def from_wire(cls, r: schemas.ItemResults) -> FlowItemResult:
        return cls(
            item_id=r.item_id,
            state=FlowItemState(r.state),
            total_votes=r.total_votes,
            partial=r.partial,
            datapoints={d.key: d.elo for d in r.datapoints},
            details=r.datapoints,
            version=r.version,
            annotators=r.annotators,
            top_annotator_share=r.top_annotator_share,
        )

    def __getitem__(self, key: str) -> schemas.DatapointResult:
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

    def rewards(self, *, unvoted_as_none: bool = False, **options: Any) -> dict[str, float | None]:
        """Per-datapoint rewards for RL from these results; options go to `flowlab.ranking.rewards_from_scores`.
        With `unvoted_as_none`, a datapoint no one voted on gets None (and stays out of the normalisation)
        instead of the reward of an average datapoint."""
        import numpy as np

        from flowlab import ranking

        ordered = sorted(self.details, key=lambda d: d.index)
        counted = [d for d in ordered if d.votes > 0] if unvoted_as_none else ordered
        out: dict[str, float | None] = {d.key: None for d in ordered}
        if counted:
            values = ranking.rewards_from_scores(np.array([d.score for d in counted]), **options)
            out.update({d.key: float(v) for d, v in zip(counted, values, strict=True)})
        return out

    def to_dataframe(self) -> pd.DataFrame:
        import pandas as pd

        rows = [msgspec.structs.asdict(d) for d in self.details]
        return pd.DataFrame(rows).set_index("key").sort_values("rank") if rows else pd.DataFrame()


class ClassifyDatapointResult(schemas.ClassifyDatapointResult):
    """One datapoint of a classify item: `majority_value` (None on a tie or without answers), `distribution`
    (every category's value, zero-filled) and `response_count`, as hosted; plus `weighted_value` and its
    `confidence`, from annotators weighed by their estimated reliability."""


class ClassifyFlowItemResult(msgspec.Struct):
    """`datapoints` maps each datapoint's key to its `ClassifyDatapointResult`; `total_responses` counts every
    answer. `partial` is True while the item still runs."""

    item_id: str
    state: FlowItemState
    total_responses: int
    partial: bool
    datapoints: dict[str, ClassifyDatapointResult]
    version: int
    annotators: int = 0  # different people whose answers count

    @classmethod
    def from_wire(cls, r: schemas.ClassifyResults) -> ClassifyFlowItemResult:
        return cls(
            item_id=r.item_id,
            state=FlowItemState(r.state),
            total_responses=r.total_responses,
            partial=r.partial,
            datapoints={d.key: ClassifyDatapointResult(**msgspec.structs.asdict(d)) for d in r.datapoints},
            version=r.version,
            annotators=r.annotators,
        )

    def to_dataframe(self) -> pd.DataFrame:
        """One row per datapoint: majority, weighted value and confidence, answers, and a column per category."""
        import pandas as pd

        rows = []
        for d in self.datapoints.values():
            row = {k: v for k, v in msgspec.structs.asdict(d).items() if k != "distribution"}
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
        columns=["task_id", "annotator_id", "winner", "loser", "tie", "created_at", "chose_first", "shown_at"],
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
