"""Classification, the second task kind: an annotator sees one datapoint and picks one of the flow's
categories; answers aggregate per datapoint into a majority, a distribution and a reliability-weighted
consensus. Thresholds count answers per datapoint."""

from __future__ import annotations

import random
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

import numpy as np

from flowlab import ranking, schemas
from flowlab.server.datapoints import asset_view, datapoint_view, gold_view
from flowlab.server.errors import Invalid
from flowlab.server.kinds import Refusal
from flowlab.server.kinds._assign import Assignments, PerDatapointThresholds, next_task
from flowlab.server.kinds._base import KindBase
from flowlab.server.kinds._log import AnswerLog

if TYPE_CHECKING:
    from flowlab.server.model import FlowConfig, ItemRecord, Lease
    from flowlab.server.store import Op, Row

MIN_CATEGORIES, MAX_CATEGORIES = 2, 8


class LabelTally(Assignments):
    """A classify item's live aggregate: who answers what (`Assignments`), answers per datapoint and
    category, the answer log (who said what, for the consensus), and the gold record of each annotator
    within this item."""

    __slots__ = ("aside", "counts", "gold", "gold_asked", "log", "values")

    def __init__(self, n: int, values: list[str], max_answers: int) -> None:
        super().__init__(n, max_answers)
        self.values = values
        self.counts = np.zeros((n, len(values)), dtype=np.int64)
        self.log = AnswerLog()  # (datapoint, category, annotator)
        self.aside = AnswerLog(4)  # answers of suspended people, kept out of `counts` and `log` until reinstated
        self.gold: dict[int, list[int]] = {}  # annotator index -> [gold answered, gold correct] in this item
        self.gold_asked: dict[str, set[int]] = {}  # annotator -> the gold labels already put to them here

    def add(self, d: int, category: int, annotator_id: str) -> None:
        self.counts[d, category] += 1
        self.log.append(d, category, self.answer(d, annotator_id))

    def recount(self, excluded: Collection[str]) -> int:
        """Count every answer again, setting aside those of `excluded` people (and putting back the set-aside
        answers of the others); returns the answers that count."""
        out = {self.annotators[a] for a in excluded if a in self.annotators}
        rows = np.concatenate([self.log.rows, self.aside.rows]).tolist()
        self.log, self.aside = AnswerLog(), AnswerLog(4)
        self.counts[:] = 0
        self.clear_answers()
        people = {i: a for a, i in self.annotators.items()}
        for d, category, person in rows:
            if person in out:
                self.aside.append(d, category, person)
            else:
                self.add(d, category, people[person])
        return self.log.n

    def add_gold(self, annotator_id: str, correct: int) -> None:
        record = self.gold.setdefault(self.annotator(annotator_id), [0, 0])
        record[0] += 1
        record[1] += correct

    def gold_arrays(self, m: int) -> tuple[np.ndarray, np.ndarray]:
        answered, correct = np.zeros(m), np.zeros(m)
        for a, (n, c) in self.gold.items():
            answered[a], correct[a] = n, c
        return answered, correct


class Classify(PerDatapointThresholds, KindBase):
    name = "classify"
    title = "classify"
    create_call = "client.flow.create_classify_flow()"
    min_datapoints = 1
    answers_table = "labels"
    answers_path = "labels"
    result_type = schemas.ClassifyResults
    owns = ("categories", "validation_labels")
    gold = "labels"  # a validation set of gold labels serves its flows
    assets_per_datapoint = True

    def check_config(self, cfg: FlowConfig) -> None:
        cats = cfg.categories
        if not MIN_CATEGORIES <= len(cats) <= MAX_CATEGORIES:
            raise Invalid(
                f"A classify flow needs {MIN_CATEGORIES} to {MAX_CATEGORIES} categories; got {len(cats)}.",
                field="categories",
            )
        values = [c.value for c in cats]
        if len(set(values)) != len(values):
            raise Invalid("Category values must be unique; two categories share a value.", field="categories")
        if "skip" in values:
            raise Invalid(
                "'skip' is how an annotator passes on a task; give that category another value.", field="categories"
            )
        if any(not c.label.strip() or not c.value.strip() for c in cats):
            raise Invalid("Every category needs a non-empty label and value.", field="categories")
        if cfg.min_response_threshold < 1:
            raise Invalid("min_responses_per_datapoint must be at least 1.", field="min_response_threshold")
        for i, gold in enumerate(cfg.validation_labels):
            if not gold.truths or not truth_values(gold, cats):
                raise Invalid(
                    f"Gold label {i} names no category of this flow as its truth ({gold.truths}); give category "
                    f"values or labels from {values}.",
                    field=f"validation_labels[{i}].truths",
                )
            unknown = [t for t in gold.truths if t not in values and t not in {c.label for c in cats}]
            if unknown:
                raise Invalid(
                    f"Gold label {i} has truths that are not categories of this flow: {unknown}.",
                    field=f"validation_labels[{i}].truths",
                )

    def new_tally(self, item: ItemRecord, seed: float) -> LabelTally:
        cfg = item.config
        tally = LabelTally(len(item.datapoints), [c.value for c in cfg.categories], cfg.max_response_threshold)
        tally.cap = self.annotator_cap(cfg)
        return tally

    def replay(self, item: ItemRecord, rows: list[Row]) -> None:
        tally: LabelTally = item.tally
        index = {v: i for i, v in enumerate(tally.values)}
        for r in rows:
            if "correct" in r:  # a gold answer given while this item was served
                tally.add_gold(r["annotator_id"], int(r["correct"]))
                continue
            tally.add(r["datapoint"], index[r["value"]], r["annotator_id"])
            item.response_count += 1

    # ------------------------------------------------------------ asking

    def ask(
        self, item: ItemRecord, rng: random.Random, annotator_id: str, now: float
    ) -> tuple[int | None, schemas.ValidationLabel | None]:
        """Now and then a gold label (at the flow's gold rate); else the least-answered datapoint (counting
        leases out) this annotator has not had yet."""
        tally: LabelTally = item.tally
        gold = item.flow.config.validation_labels
        if gold and tally.has_work_for(annotator_id) and rng.random() < item.flow.config.gold_rate:
            # Only beside real work (an annotator who is done gets no more questions), and each gold label
            # once per annotator and item, so an answer cannot be remembered.
            asked = tally.gold_asked.setdefault(annotator_id, set())
            fresh = [i for i in range(len(gold)) if i not in asked]
            if fresh:
                pick = fresh[rng.randrange(len(fresh))]
                asked.add(pick)
                return None, gold[pick]
        return next_task(item, annotator_id, rng, now), None

    def closed(self, lease: Lease) -> None:
        # The datapoint stays taken for this annotator even if they skipped it or let it expire.
        if lease.gold is None:
            lease.item.tally.unlease(lease.question)

    def task_view(self, lease: Lease, rng: random.Random, now: float) -> schemas.Task:
        item = lease.item
        cfg = item.config
        if lease.gold is not None:
            # Looks like any other datapoint of the item: a ref of the item's, the item's context unless the
            # gold question has its own.
            given: schemas.DatapointIn = lease.gold.datapoint
            view = gold_view(given, rng.randrange(len(item.datapoints)))
            context = given.context if given.context is not None else item.context
            assets = [asset_view(a) for a in given.context_assets] if given.context_assets else item.context_assets
        else:
            dp = item.datapoints[lease.question]
            view = datapoint_view(dp)
            context = dp.context if dp.context is not None else item.context
            assets = dp.context_assets if dp.context_assets is not None else item.context_assets
        return self.single_view_task(
            lease,
            now,
            view,
            context=context,
            context_assets=assets,
            categories=cfg.categories,
        )

    # ------------------------------------------------------------ answering

    def check(self, lease: Lease, answer: schemas.Answer) -> int:
        """The category's index; for a gold label, whether it is right (0/1)."""
        values: list[str] = lease.item.tally.values
        try:
            index = values.index(answer.choice)
        except ValueError:
            raise Refusal(
                "unknown_category",
                f"{answer.choice!r} is not a category of this flow; answer one of {values} (or 'skip').",
            ) from None
        if lease.gold is not None:
            return int(answer.choice in truth_values(lease.gold, lease.item.config.categories))
        return index

    def answer_ops(self, lease: Lease, checked: int, annotator_id: str, now: float) -> list[Op]:
        if lease.gold is not None:
            return [
                (
                    "INSERT OR IGNORE INTO gold_answers (task_id, annotator_id, flow_id, correct, created_at, item_id) "
                    "VALUES (?,?,?,?,?,?)",
                    (lease.task_id, annotator_id, lease.item.flow.id, checked, now, lease.item.id),
                )
            ]
        value = lease.item.tally.values[checked]
        return [
            (
                "INSERT OR IGNORE INTO labels (task_id, item_id, annotator_id, datapoint, value, created_at, shown_at) "
                "VALUES (?,?,?,?,?,?,?)",
                (lease.task_id, lease.item.id, annotator_id, lease.question, value, now, lease.on_screen_since),
            )
        ]

    def consensus_sql(self, mine: str) -> str:
        # A label agrees when more of the datapoint's other labels (in its item) equal it than equal any other one
        # value; it is compared when the datapoint has other labels. The label itself is left out of the count.
        # The consensus is of the labels that count: a suspended person's (excluded) labels are no part of it.
        return (
            "WITH n AS (SELECT item_id, datapoint, value, count(*) AS k FROM labels WHERE excluded = 0 "
            "GROUP BY item_id, datapoint, value), "
            "o AS (SELECT x.item_id, x.datapoint, x.value, max(y.k) AS best, sum(y.k) AS total "
            "FROM (SELECT DISTINCT item_id, datapoint, value FROM labels) x "
            "JOIN n y ON y.item_id = x.item_id AND y.datapoint = x.datapoint AND y.value <> x.value "
            "GROUP BY x.item_id, x.datapoint, x.value) "
            "SELECT m.annotator_id, "
            "sum(CASE WHEN coalesce(s.k, 0) - 1 + m.excluded + coalesce(o.total, 0) > 0 THEN 1 ELSE 0 END) "
            "AS compared, "
            "sum(CASE WHEN coalesce(s.k, 0) - 1 + m.excluded > coalesce(o.best, 0) THEN 1 ELSE 0 END) AS agreed "
            "FROM labels m LEFT JOIN n s ON s.item_id = m.item_id AND s.datapoint = m.datapoint AND s.value = m.value "
            "LEFT JOIN o ON o.item_id = m.item_id AND o.datapoint = m.datapoint AND o.value = m.value "
            f"WHERE {mine} GROUP BY m.annotator_id"
        )

    def count(self, lease: Lease, checked: int) -> None:
        if lease.gold is not None:
            lease.item.tally.add_gold(lease.annotator_id, checked)
            return
        lease.item.tally.add(lease.question, checked, lease.annotator_id)
        lease.item.response_count += 1

    def release(self, lease: Lease, *, defer: bool, now: float) -> None:
        pass  # a released datapoint is simply less answered again, so it is asked next

    def recount(self, item: ItemRecord, excluded: Collection[str]) -> None:
        item.response_count = item.tally.recount(excluded)

    # ------------------------------------------------------------ aggregates

    def delta(self, item: ItemRecord, start: int, stop: int) -> list[tuple[int, int, int]]:
        rows = item.tally.log.rows[start:stop]
        return [(int(d), int(c), 0) for d, c, _ in rows]

    def snapshot(self, item: ItemRecord) -> list[list[float]]:
        return item.tally.counts.astype(float).tolist()  # type: ignore[no-any-return]

    async def results(self, item: ItemRecord) -> schemas.ClassifyResults:
        return self._results(item)

    def final(self, item: ItemRecord) -> tuple[schemas.ClassifyResults, None]:
        return self._results(item), None

    def _results(self, item: ItemRecord) -> schemas.ClassifyResults:
        tally: LabelTally = item.tally
        counts = tally.counts
        n, k = counts.shape
        rows = tally.log.rows
        m = max(1, len(tally.annotators))
        gold_answered, gold_correct = tally.gold_arrays(m)
        consensus = ranking.dawid_skene(
            rows[:, 0],
            rows[:, 2],
            rows[:, 1],
            n,
            k,
            n_annotators=m,
            gold_answered=gold_answered,
            gold_correct=gold_correct,
        )
        out = []
        for i, dp in enumerate(item.datapoints):
            answered = int(counts[i].sum())
            top = counts[i].max()
            leaders = np.flatnonzero(counts[i] == top)
            best = int(consensus.posterior[i].argmax())
            out.append(
                schemas.ClassifyDatapointResult(
                    key=dp.key,
                    index=i,
                    majority_value=tally.values[int(leaders[0])] if answered and len(leaders) == 1 else None,
                    distribution={v: int(c) for v, c in zip(tally.values, counts[i], strict=True)},
                    response_count=answered,
                    weighted_value=tally.values[best] if answered else None,
                    confidence=float(consensus.posterior[i, best]) if answered else None,
                    source=getattr(dp, "source", None),
                )
            )
        return schemas.ClassifyResults(
            item_id=item.id,
            state=item.state,  # type: ignore[arg-type]
            total_responses=item.response_count,
            partial=item.state not in schemas.TERMINAL_STATES,
            datapoints=out,
            version=item.version,
            annotators=len(np.unique(rows[:, 2])),  # people whose answers count
        )

    def votes(self, rows: list[Row]) -> list[Any]:
        return [
            schemas.Label(
                task_id=r["task_id"],
                annotator_id=r["annotator_id"],
                datapoint=r["datapoint"],
                value=r["value"],
                created_at=r["created_at"],
                shown_at=r.get("shown_at"),
                excluded=bool(r.get("excluded")),
            )
            for r in rows
        ]


def truth_values(gold: schemas.ValidationLabel, categories: list[schemas.Category]) -> set[str]:
    """The category values a gold label accepts; its truths may name categories by value or by label."""
    truths = set(gold.truths)
    return {c.value for c in categories if c.value in truths or c.label in truths}


CLASSIFY = Classify()
