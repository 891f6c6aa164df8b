"""RLHF tasks, the third task kind (seed 001): an annotator reads a prompt (or a conversation) and two or
more model responses, shown anonymised in a shuffled order; rates every response on the flow's dimensions,
may rewrite responses, then picks the better one, says how strongly (a Likert scale) and why. Thresholds count
completed annotations per task, as classify flows count answers per datapoint.

A live item keeps numeric ratings, choices and Likert values in flat numpy columns, so that aggregating an item
of thousands of annotations is a few `bincount`s; the annotations themselves (rewrites, justifications) are
kept as stored, for results and records.
"""

from __future__ import annotations

import contextlib
import gc
import math
import random
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

import msgspec
import numpy as np
from scipy import stats

from flowlab import ranking, schemas
from flowlab.server.datapoints import datapoint_view, response_view
from flowlab.server.errors import Invalid
from flowlab.server.kinds import Refusal
from flowlab.server.kinds._assign import Assignments, PerDatapointThresholds, next_task
from flowlab.server.kinds._base import KindBase, refuse_conversation
from flowlab.server.kinds._form import annotation_op, check_justification, check_likert, check_ratings
from flowlab.server.kinds._log import AnswerLog

if TYPE_CHECKING:
    from flowlab.server.model import FlowConfig, ItemRecord, Lease
    from flowlab.server.store import Op, Row

MAX_DIMENSIONS = 20
MAX_OPTIONS = 12
MAX_SCALE_POINTS = 11
_annotation = msgspec.json.Decoder(schemas.Annotation)


def numeric(dim: schemas.Dimension) -> bool:
    return dim.type != "text"


def value_names(dim: schemas.Dimension) -> list[str]:
    """The values of a numeric dimension, in order, as results name them."""
    if dim.type == "scale":
        return [str(v) for v in range(dim.min, dim.max + 1)]
    if dim.type == "boolean":
        return ["false", "true"]
    return list(dim.options)


def as_number(dim: schemas.Dimension, value: Any) -> float:
    """A checked rating as the number aggregates use: the scale point, 0/1, or the option's index."""
    if value is None:
        return math.nan
    if dim.type == "boolean":
        return float(bool(value))
    if dim.type == "category":
        return float(dim.options.index(value))
    return float(value)


class Columns:
    """Growable float64 columns, appended a row at a time: the numeric ratings of a live item."""

    __slots__ = ("_data", "n")

    def __init__(self, width: int, capacity: int = 256) -> None:
        self._data = np.empty((capacity, width))
        self.n = 0

    def extend(self, rows: Sequence[tuple[float, ...]]) -> None:
        need = self.n + len(rows)
        if need > len(self._data):
            grown = np.empty((max(need, 2 * len(self._data)), self._data.shape[1]))
            grown[: self.n] = self._data[: self.n]
            self._data = grown
        if rows:
            self._data[self.n : need] = rows
        self.n = need

    @property
    def rows(self) -> np.ndarray:
        return self._data[: self.n]


class RatedTally(Assignments):
    """What the RLHF and chat tallies share: who annotates what, numeric ratings as (task, response, dimension,
    value) rows, choices as (task, response, annotator) rows, Likert values oriented to the researcher's order,
    the answers that count as stored (`records`) and those of suspended people (`aside`)."""

    __slots__ = ("aside", "choices", "likert", "ratings", "records")

    def __init__(self, n: int, max_answers: int) -> None:
        super().__init__(n, max_answers)
        self.aside: list[Any] = []
        self._clear()

    def _clear(self) -> None:
        self.ratings = Columns(4)
        self.choices = AnswerLog()
        self.likert = Columns(2)  # (task, value with 1 = the first given response much better)
        self.records: list[Any] = []

    def recount(self, excluded: Collection[str], add: Callable[[Any], None]) -> int:
        """Count every answer again with `add`, setting aside those of `excluded` people (and putting back the
        set-aside answers of the others); returns the answers that count."""
        every = self.records + self.aside
        self._clear()
        self.clear_answers()
        self.aside = [r for r in every if r.annotator_id in excluded]
        for record in every:
            if record.annotator_id not in excluded:
                add(record)
        return len(self.records)


class RlhfTally(RatedTally):
    """A live RLHF item's tally (`RatedTally`), its responses indexed in the order the researcher gave them."""

    __slots__ = ("spec",)

    def __init__(self, n: int, spec: schemas.RlhfSpec, max_answers: int) -> None:
        super().__init__(n, max_answers)
        self.spec = spec

    def add(self, record: schemas.Annotation, responses: list[schemas.Response]) -> None:
        index = {r.source_id: j for j, r in enumerate(responses)}
        d = record.datapoint
        rows: list[tuple[float, ...]] = []
        for k, dim in enumerate(self.spec.dimensions):
            if not numeric(dim):
                continue
            for source, given in record.ratings.items():
                if dim.key in given:
                    rows.append((d, index[source], k, as_number(dim, given[dim.key])))
        self.ratings.extend(rows)
        annotator = self.answer(d, record.annotator_id)
        if record.selected is not None:
            self.choices.append(d, index[record.selected], annotator)
        if record.likert is not None:
            # As answered, 1 means the first shown much better; in the researcher's order it may be the second.
            value = record.likert if index[record.order[0]] == 0 else self.spec.likert_scale + 1 - record.likert
            self.likert.extend([(d, value)])
        self.records.append(record)

    def texts(self) -> Iterator[tuple[int, dict[str, str], str | None]]:
        """Per annotation: its task, its rewrites by source, its justification."""
        for rec in self.records:
            yield rec.datapoint, rec.rewrites, rec.justification


class Rlhf(PerDatapointThresholds, KindBase):
    name = "rlhf"
    title = "RLHF"
    create_call = "client.flow.create_rlhf_flow()"
    min_datapoints = 1
    answers_table = "annotations"
    answers_path = "annotations"
    result_type = schemas.RlhfResults
    default_lease = 600.0  # reading, rating and rewriting responses takes minutes
    owns = ("rlhf",)

    def check_config(self, cfg: FlowConfig) -> None:
        spec = cfg.rlhf
        if spec is None:
            raise Invalid(
                "An RLHF flow needs its form (dimensions, rewrite, likert_scale, justification).", field="rlhf"
            )
        check_spec(spec)
        check_min_answers(cfg, "annotation")

    def complete(self, cfg: FlowConfig) -> FlowConfig:
        return cfg if cfg.rlhf is not None else msgspec.structs.replace(cfg, rlhf=schemas.RlhfSpec())

    def check_datapoint(self, d: schemas.DatapointIn, where: str) -> None:
        refuse_conversation(d, where)
        if d.responses is None:
            raise Invalid(
                "Each datapoint of an RLHF flow is a task: {id, prompt, responses: [{source_id, content}, ...]}.",
                field=f"{where}.responses",
            )
        self.check_assets(d, where)

    def new_tally(self, item: ItemRecord, seed: float) -> RlhfTally:
        spec = item.config.rlhf
        assert spec is not None
        tally = RlhfTally(len(item.datapoints), spec, item.config.max_response_threshold)
        tally.cap = self.annotator_cap(item.config)
        return tally

    def replay(self, item: ItemRecord, rows: list[Row]) -> None:
        for r in rows:
            self._add(item, _annotation.decode(r["body"]))

    def _add(self, item: ItemRecord, record: schemas.Annotation) -> None:
        item.tally.add(record, item.datapoints[record.datapoint].responses or [])
        item.response_count += 1

    # ------------------------------------------------------------ asking

    def ask(
        self, item: ItemRecord, rng: random.Random, annotator_id: str, now: float
    ) -> tuple[tuple[int, tuple[int, ...]] | None, None]:
        """The least-annotated task this annotator has not had, with the order its responses are shown in."""
        d = next_task(item, annotator_id, rng, now)
        if d is None:
            return None, None
        order = list(range(len(item.datapoints[d].responses or ())))
        if "no_shuffle" not in item.config.settings:
            rng.shuffle(order)
        return (d, tuple(order)), None

    def closed(self, lease: Lease) -> None:
        lease.item.tally.unlease(lease.question[0])

    def task_view(self, lease: Lease, rng: random.Random, now: float) -> schemas.Task:
        item = lease.item
        cfg = item.config
        d, order = lease.question
        dp = item.datapoints[d]
        responses = dp.responses or []
        assert cfg.rlhf is not None
        return self.single_view_task(
            lease,
            now,
            datapoint_view(dp),
            rlhf=schemas.RlhfTaskView(
                prompt=dp.prompt or [], responses=[response_view(responses[j]) for j in order], spec=cfg.rlhf
            ),
        )

    # ------------------------------------------------------------ answering

    def check(self, lease: Lease, answer: schemas.Answer) -> schemas.Annotation:
        if answer.choice != "submit" or answer.rlhf is None:
            raise Refusal(
                "invalid_annotation",
                "Answer an RLHF task with choice 'submit' and the annotation in 'rlhf' (or choice 'skip').",
                "rlhf",
            )
        item = lease.item
        d, order = lease.question
        responses = item.datapoints[d].responses or []
        assert item.config.rlhf is not None
        return check_answer(item.config.rlhf, answer.rlhf, [responses[j] for j in order], d, lease)

    def answer_ops(self, lease: Lease, checked: schemas.Annotation, annotator_id: str, now: float) -> list[Op]:
        return [annotation_op(lease, checked, annotator_id, now)]

    def count(self, lease: Lease, checked: schemas.Annotation) -> None:
        self._add(lease.item, checked)

    def release(self, lease: Lease, *, defer: bool, now: float) -> None:
        pass  # a released task is simply less annotated again, so it is asked next

    def recount(self, item: ItemRecord, excluded: Collection[str]) -> None:
        tally: RlhfTally = item.tally
        item.response_count = tally.recount(
            excluded, lambda record: tally.add(record, item.datapoints[record.datapoint].responses or [])
        )

    # ------------------------------------------------------------ aggregates

    def delta(self, item: ItemRecord, start: int, stop: int) -> list[tuple[int, int, int]]:
        rows = item.tally.choices.rows[start:stop]
        return [(int(d), int(r), 0) for d, r, _ in rows]

    def snapshot(self, item: ItemRecord) -> list[list[float]]:
        counts = np.zeros((len(item.datapoints), max(len(d.responses or ()) for d in item.datapoints)))
        rows = item.tally.choices.rows
        np.add.at(counts, (rows[:, 0], rows[:, 1]), 1)
        return counts.tolist()  # type: ignore[no-any-return]

    async def results(self, item: ItemRecord) -> schemas.RlhfResults:
        return aggregate(item)

    def final(self, item: ItemRecord) -> tuple[schemas.RlhfResults, None]:
        return aggregate(item), None

    def votes(self, rows: list[Row]) -> list[schemas.Annotation]:
        return [marked(_annotation.decode(r["body"]), r) for r in rows]


def marked(answer: Any, row: Row) -> Any:
    """A stored answer decoded from its JSON body, marked from its row: whether results leave it out."""
    answer.excluded = bool(row.get("excluded"))
    return answer


# ---------------------------------------------------------------- the form


def check_min_answers(cfg: FlowConfig, unit: str) -> None:
    if cfg.min_response_threshold < 1:
        raise Invalid(f"min_response_threshold must be at least 1 {unit} per task.", field="min_response_threshold")


def check_spec(spec: schemas.RlhfSpec) -> None:
    """Refuse, naming the field, a form annotators could not fill in."""
    dims = spec.dimensions
    if not 1 <= len(dims) <= MAX_DIMENSIONS:
        raise Invalid(f"An RLHF flow rates 1 to {MAX_DIMENSIONS} dimensions; got {len(dims)}.", field="rlhf.dimensions")
    keys = [d.key for d in dims]
    if len(set(keys)) != len(keys):
        raise Invalid("Dimension keys must be unique.", field="rlhf.dimensions")
    for i, dim in enumerate(dims):
        where = f"rlhf.dimensions[{i}]"
        if not dim.key.strip() or dim.key in ("rewrite", "selected_model_id", "likert_value", "justification"):
            raise Invalid(
                "Every dimension needs a key, and not one the record uses itself (rewrite, selected_model_id, "
                "likert_value, justification).",
                field=f"{where}.key",
            )
        if dim.type == "scale":
            points = dim.max - dim.min + 1
            if not 2 <= points <= MAX_SCALE_POINTS:
                raise Invalid(
                    f"A scale runs over 2 to {MAX_SCALE_POINTS} points (e.g. min 1, max 5); got {dim.min}..{dim.max}.",
                    field=f"{where}.max",
                )
            if dim.anchors and len(dim.anchors) not in (2, points):
                raise Invalid(
                    f"Anchors name the two ends of the scale or all {points} points; got {len(dim.anchors)}.",
                    field=f"{where}.anchors",
                )
        elif dim.type == "category":
            if not 2 <= len(dim.options) <= MAX_OPTIONS or len(set(dim.options)) != len(dim.options):
                raise Invalid(
                    f"A category dimension needs 2 to {MAX_OPTIONS} distinct options.", field=f"{where}.options"
                )
        elif dim.options or dim.anchors:
            raise Invalid(f"A {dim.type} dimension takes no options or anchors.", field=f"{where}.options")
    if spec.likert_scale != 0 and not 2 <= spec.likert_scale <= MAX_SCALE_POINTS:
        raise Invalid(
            f"likert_scale is the number of points (2 to {MAX_SCALE_POINTS}, e.g. 7), or 0 to not ask for strength.",
            field="rlhf.likert_scale",
        )
    if not 0 <= spec.justification_min_chars <= 2000:
        raise Invalid("justification_min_chars is 0 to 2000.", field="rlhf.justification_min_chars")
    if not 1 <= spec.max_rewrite_chars <= 200_000:
        raise Invalid("max_rewrite_chars is 1 to 200000.", field="rlhf.max_rewrite_chars")


def check_answer(
    spec: schemas.RlhfSpec, given: schemas.RlhfAnswer, responses: list[schemas.Response], d: int, lease: Lease
) -> schemas.Annotation:
    """The annotation as stored (responses by source id), or a Refusal naming what is missing or wrong.
    `responses` are the task's responses in the order the annotator saw them."""

    def refuse(field: str, detail: str) -> Refusal:
        return Refusal("invalid_annotation", detail, f"rlhf.{field}")

    shown = [r.source_id for r in responses]
    k = len(shown)
    if len(given.ratings) != k:
        raise refuse("ratings", f"Rate each of the {k} responses: ratings needs {k} entries, got {len(given.ratings)}.")
    ratings = {
        source: check_ratings(spec.dimensions, answer, f"Response {j + 1}", f"ratings[{j}]", refuse)
        for j, (source, answer) in enumerate(zip(shown, given.ratings, strict=True))
    }
    rewrites: dict[str, str] = {}
    if len(given.rewrites) > k:
        raise refuse("rewrites", f"There are {k} responses; rewrites has {len(given.rewrites)} entries.")
    changed = (
        [j for j, r in enumerate(given.rewrites) if r is not None and r.strip() and r != responses[j].text]
        if len(given.rewrites) <= k
        else []
    )
    if spec.rewrite == "off" and changed:
        raise refuse("rewrites", "This flow asks for no rewrites.")
    for j, text in enumerate(given.rewrites):
        if text is None or not text.strip() or text == responses[j].text:  # unchanged is not a rewrite
            continue
        if responses[j].kind != "text":
            raise refuse(f"rewrites[{j}]", "Only text responses can be rewritten.")
        if len(text) > spec.max_rewrite_chars:
            raise refuse(f"rewrites[{j}]", f"A rewrite holds at most {spec.max_rewrite_chars:,} characters.")
        rewrites[shown[j]] = text
    if given.selected is None or not 0 <= given.selected < k:
        raise refuse("selected", f"Choose the better response (1 to {k}).")
    selected = shown[given.selected]
    if spec.rewrite == "required" and selected not in rewrites and responses[given.selected].kind == "text":
        raise refuse(f"rewrites[{given.selected}]", "Rewrite the response you chose (this flow needs a rewrite of it).")
    likert = given.likert
    asks_likert = spec.likert_scale > 0 and k == 2
    if asks_likert:
        likert = check_likert(spec.likert_scale, likert, given.selected == 0, "response", refuse)
    elif likert is not None:
        raise refuse("likert", "This task asks no preference strength; leave likert out.")
    justification = check_justification(spec.justification, spec.justification_min_chars, given.justification, refuse)
    return schemas.Annotation(
        task_id=lease.task_id,
        annotator_id=lease.annotator_id,
        datapoint=d,
        order=shown,
        ratings=ratings,
        rewrites=rewrites,
        selected=selected,
        likert=likert if asks_likert else None,
        justification=justification,
        created_at=0.0,
    )


# ---------------------------------------------------------------- aggregation


def aggregate(item: ItemRecord) -> schemas.RlhfResults:
    """Per task, response and dimension: mean, 95 % interval and distribution; who was chosen how often; the
    mean Likert value; per model over the item; Krippendorff's alpha per dimension; rewrites and why.

    It builds tens of thousands of small objects that all live on in the answer, each allocation burst making
    the cyclic collector walk every annotation held in memory: with it paused (for some 40 ms at 1,000 tasks)
    the aggregate takes about 0.6× the time. Nothing here makes reference cycles."""
    with _collector_paused():
        return summarise(item, [[r.source_id for r in d.responses or ()] for d in item.datapoints])


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def summarise(item: ItemRecord, responses: list[list[str]]) -> schemas.RlhfResults:
    """The aggregate of an item whose tally holds (task, response, dimension, value) ratings, choices and
    Likert rows: `responses` names each task's responses (source ids) in the order the rows index them."""
    tally = item.tally
    spec = tally.spec
    n = len(item.datapoints)
    width = max(1, max(len(r) for r in responses))
    groups = n * width
    rows = tally.ratings.rows
    d, r, k, v = (rows[:, c] for c in range(4))
    g = (d * width + r).astype(np.int64)
    # Every (task, response) gets a global source index, so models are summarised across tasks.
    sources: list[str] = []
    code: dict[str, int] = {}
    source_of = np.full(groups, -1, dtype=np.int64)
    for i, names in enumerate(responses):
        for j, source_id in enumerate(names):
            c = code.get(source_id)
            if c is None:
                c = code[source_id] = len(sources)
                sources.append(source_id)
            source_of[i * width + j] = c
    per_group: list[list[schemas.DimensionStat]] = [[] for _ in range(groups)]
    per_model: list[list[schemas.DimensionStat]] = [[] for _ in sources]
    agreement: dict[str, float | None] = {}
    for dk, dim in enumerate(spec.dimensions):
        if not numeric(dim):
            continue
        mine = k == dk
        gd, vd = g[mine], v[mine]
        rated = ~np.isnan(vd)
        names = value_names(dim)
        offset = dim.min if dim.type == "scale" else 0
        averaged = dim.type != "category"  # a mean of option indices would mean nothing
        for stats_list, keys, size in ((per_group, gd, groups), (per_model, source_of[gd], len(sources))):
            for idx, stat in enumerate(_dimension_stats(dim.key, keys, vd, rated, size, names, offset)):
                if not averaged:
                    stat.mean = stat.ci_low = stat.ci_high = None
                stats_list[idx].append(stat)
        level: Literal["interval", "nominal"] = "interval" if dim.type == "scale" else "nominal"
        agreement[dim.key] = ranking.krippendorff_alpha(gd[rated], vd[rated], level=level)
    answered = tally.answered
    chosen = np.bincount(
        (tally.choices.rows[:, 0].astype(np.int64) * width + tally.choices.rows[:, 1]), minlength=groups
    )
    rewrites: dict[tuple[int, str], list[str]] = {}
    why: list[list[str]] = [[] for _ in range(n)]
    for datapoint, rewritten, justification in tally.texts():
        for source, text in rewritten.items():
            rewrites.setdefault((datapoint, source), []).append(text)
        if justification:
            why[datapoint].append(justification)
    lk = tally.likert.rows
    likert_n = np.bincount(lk[:, 0].astype(np.int64), minlength=n)
    likert_sum = np.bincount(lk[:, 0].astype(np.int64), weights=lk[:, 1], minlength=n)
    likert_counts = np.zeros((n, max(spec.likert_scale, 1)), dtype=np.int64)
    if len(lk):
        np.add.at(likert_counts, (lk[:, 0].astype(np.int64), lk[:, 1].astype(np.int64) - 1), 1)
    tasks = []
    for i, dp in enumerate(item.datapoints):
        a = int(answered[i])
        out = []
        for j, source_id in enumerate(responses[i]):
            c = int(chosen[i * width + j])
            out.append(
                schemas.ResponseResult(
                    source_id=source_id,
                    ratings=per_group[i * width + j],
                    selected=c,
                    selected_share=c / a if a else None,
                    rewrites=rewrites.get((i, source_id), []),
                )
            )
        two = len(responses[i]) == 2 and spec.likert_scale > 0
        tasks.append(
            schemas.RlhfTaskResult(
                key=dp.key,
                index=i,
                annotations=a,
                responses=out,
                likert_mean=float(likert_sum[i] / likert_n[i]) if likert_n[i] else None,
                likert_distribution=(
                    {str(p + 1): int(x) for p, x in enumerate(likert_counts[i][: spec.likert_scale])} if two else {}
                ),
                justifications=why[i],
            )
        )
    models = _models(item, sources, source_of, chosen, answered, width, per_model)
    return schemas.RlhfResults(
        item_id=item.id,
        state=item.state,  # type: ignore[arg-type]
        total_responses=item.response_count,
        partial=item.state not in schemas.TERMINAL_STATES,
        tasks=tasks,
        models=models,
        agreement=agreement,
        version=item.version,
        annotators=len({r.annotator_id for r in tally.records}),  # people whose answers count
    )


# Half a rating's worth of prior weight on every point of a scale (Jeffreys' choice for a multinomial).
RATING_PRIOR = 0.5


def _mean_interval(dist: np.ndarray, offset: int, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """A 95 % interval for the mean rating of each group, from the counts per scale point (one row per group).

    With a handful of ratings on a short scale a t-interval fails often: three 5s give a zero-width interval at
    5 whatever the truth, and at three ratings per response it covered 76 % in simulation. The posterior of
    the mean under a Dirichlet prior of half a rating per point never collapses and covers 93-96 % from three
    ratings up (`benchmarks/bench_regimes.py`); it is centred on the posterior mean, kept within the scale,
    and widened where needed to contain the plain mean that is reported beside it.
    """
    points = offset + np.arange(dist.shape[1], dtype=float)
    a = dist + RATING_PRIOR
    total = a.sum(axis=1)
    p = a / total[:, None]
    centre = p @ points
    var = np.maximum(p @ (points * points) - centre * centre, 0.0) / (total + 1)
    half = float(stats.norm.ppf(0.5 + level / 2)) * np.sqrt(var)
    return np.maximum(centre - half, points[0]), np.minimum(centre + half, points[-1])


def _dimension_stats(
    key: str, groups: np.ndarray, values: np.ndarray, rated: np.ndarray, size: int, names: list[str], offset: int
) -> list[schemas.DimensionStat]:
    """One DimensionStat per group, from the ratings of one dimension, vectorised over the groups."""
    gr, vr = groups[rated], values[rated]
    count = np.bincount(gr, minlength=size)
    total = np.bincount(gr, weights=vr, minlength=size)
    na = np.bincount(groups[~rated], minlength=size)
    width = len(names)
    dist = np.bincount(gr * width + (vr - offset).astype(np.int64), minlength=size * width).reshape(size, width)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
    low, high = _mean_interval(dist, offset)
    # The interval holds the plain mean reported beside it (the prior's pull could leave it just outside).
    low, high = np.fmin(low, mean), np.fmax(high, mean)
    # Plain Python values once, then one Struct per group: per-element numpy indexing cost most of the time.
    stat = schemas.DimensionStat
    out = []
    for c, m, lo, hi, row, a in zip(
        count.tolist(), mean.tolist(), low.tolist(), high.tolist(), dist.tolist(), na.tolist(), strict=True
    ):
        rated_any = c > 0
        out.append(
            stat(
                dimension=key,
                n=c,
                mean=m if rated_any else None,
                ci_low=lo if rated_any else None,
                ci_high=hi if rated_any else None,
                distribution=dict(zip(names, row, strict=True)),
                not_applicable=a,
            )
        )
    return out


def _models(
    item: ItemRecord,
    sources: list[str],
    source_of: np.ndarray,
    chosen: np.ndarray,
    answered: np.ndarray,
    width: int,
    ratings: list[list[schemas.DimensionStat]],
) -> list[schemas.ModelSummary]:
    present = source_of >= 0
    task_of = np.arange(len(source_of)) // width
    tasks = np.bincount(source_of[present], minlength=len(sources))
    selected = np.bincount(source_of[present], weights=chosen[present], minlength=len(sources))
    offered = np.bincount(source_of[present], weights=answered[task_of[present]], minlength=len(sources))
    return [
        schemas.ModelSummary(
            source_id=s,
            tasks=int(tasks[i]),
            selected=int(selected[i]),
            selected_share=float(selected[i] / offered[i]) if offered[i] else None,
            ratings=ratings[i],
        )
        for i, s in enumerate(sources)
    ]


RLHF = Rlhf()
