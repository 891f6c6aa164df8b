"""Listwise ranking: an annotator sees k of an item's datapoints and orders them (or picks the best and the
worst); answers aggregate into a Plackett–Luce fit, results in the shape of ranking flows.

Which k are shown is chosen from the current fit: mostly the k whose relative order is least certain, with a
share drawn uniformly so gaps the fit thinks settled are still checked. Independence, as for pairs: nobody is
shown the same k-set of an item twice, and one person gives at most a share of an item's answers."""

from __future__ import annotations

import json
import math
import random
from collections import Counter, deque
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.special import ndtr

from flowlab import ranking, schemas
from flowlab.server import lifecycle
from flowlab.server.datapoints import datapoint_view
from flowlab.server.errors import Invalid
from flowlab.server.kinds import Refusal
from flowlab.server.kinds._assign import note_waiting
from flowlab.server.kinds._base import KindBase
from flowlab.server.kinds.pairwise import LOOKS, SPREAD, _settled_reason, build_results, people_from

if TYPE_CHECKING:
    from flowlab.server.model import FlowConfig, ItemRecord, Lease
    from flowlab.server.store import Op, Row

# Half the k-sets are drawn uniformly: sets chosen only from earlier answers stop checking gaps that came out
# too wide, and the results' intervals stop covering (as ACTIVE_EXPLORATION for pairs). A fifth was enough for
# 8 datapoints but covered 88–92 % at 16, where a k-set leaves more of the item unchecked; a half covers 94 %
# at both (benchmarks/bench_listwise.py).
EXPLORATION = 0.5
RANDOM_TRIES = 64
Shown = tuple[int, ...]


def implied(order: Shown, mode: str) -> list[tuple[int, int]]:
    """The (winner, loser) pairs a stored answer implies."""
    if mode == "best_worst":
        return [tuple(p) for p in ranking.implied_pairs([], [(order, order[0], order[-1])]).tolist()]  # type: ignore[misc]
    return [(order[i], order[j]) for i in range(len(order)) for j in range(i + 1, len(order))]


class ListTally:
    """An item's listwise answers (datapoint indices, as stored), who gave them, the implied win matrix, who was
    shown which k-sets, and the fits."""

    def __init__(self, n: int, k: int, mode: str, rng: random.Random, cap: int | None) -> None:
        self.n, self.k, self.mode, self.rng, self.cap = n, min(k, n), mode, rng, cap
        self.answers: list[Shown] = []  # counted answers, in order
        self.voters: list[int] = []  # person index of each counted answer
        self.aside: list[tuple[Shown, int]] = []  # answers of suspended people
        self.voter_index: dict[str, int] = {}
        self.wins = np.zeros((n, n))
        self.seen: dict[str, set[frozenset[int]]] = {}
        self.by_annotator: Counter[str] = Counter()
        self.requeue: deque[Shown] = deque()
        self.fit: Any = None
        self.fit_version = -1
        self.changes = 0  # grows with every answer counted and every recount: the fit's cache key
        self.next_look = 0

    def has_share(self, annotator_id: str) -> bool:
        return self.cap is None or self.by_annotator[annotator_id] < self.cap

    def give(self, annotator_id: str, shown: Shown) -> None:
        self.seen.setdefault(annotator_id, set()).add(frozenset(shown))
        self.by_annotator[annotator_id] += 1

    def add(self, order: Shown, annotator_id: str) -> None:
        person = self.voter_index.setdefault(annotator_id, len(self.voter_index))
        self.answers.append(order)
        self.voters.append(person)
        self.changes += 1
        for w, lo in implied(order, self.mode):
            self.wins[w, lo] += 1

    def recount(self, excluded: Collection[str]) -> int:
        out = {self.voter_index[a] for a in excluded if a in self.voter_index}
        every = list(zip(self.answers, self.voters, strict=True)) + self.aside
        self.answers, self.voters, self.aside = [], [], []
        self.wins = np.zeros((self.n, self.n))
        for order, person in every:
            if person in out:
                self.aside.append((order, person))
                continue
            self.answers.append(order)
            self.voters.append(person)
            for w, lo in implied(order, self.mode):
                self.wins[w, lo] += 1
        self.changes += 1
        return len(self.answers)

    def fit_now(self, item: ItemRecord) -> ranking.PlackettLuceResult:
        if self.fit is None or self.fit_version != self.changes:
            init = None if self.fit is None else self.fit.scores
            self.fit = fit(item, self.answers, init)
            self.fit_version = self.changes
        return self.fit  # type: ignore[no-any-return]


def fit(item: ItemRecord, answers: list[Shown], init: np.ndarray | None = None) -> ranking.PlackettLuceResult:
    """The Plackett–Luce fit of an item's answers (a best–worst answer as best above all shown, worst below)."""
    n = len(item.keys)
    if _mode(item.config) == "best_worst":
        bw = [(a, a[0], a[-1]) for a in answers]
        return ranking.fit_plackett_luce([], n, best_worst=bw, init=init, starting_elo=item.config.starting_elo)
    return ranking.fit_plackett_luce(answers, n, init=init, starting_elo=item.config.starting_elo)


def _mode(cfg: FlowConfig) -> str:
    return cfg.listwise.mode if cfg.listwise is not None else "order"


def choose_set(
    fit: Any, k: int, rng: random.Random, *, rule: str | None = None, top: int = 1, exploration: float = EXPLORATION
) -> Shown:
    """The k datapoints whose relative order the fit is least sure of (greedily, from a random seed weighted by
    uncertainty), or with probability `exploration` k drawn uniformly. With a stopping rule about the top,
    pairs that could still change the top set weigh more."""
    n = len(fit.scores)
    if rng.random() < exploration or fit is None:
        return tuple(rng.sample(range(n), k))
    theta, cov = fit.scores, fit.covariance
    var = np.diagonal(cov)
    sd = np.sqrt(np.maximum(var[:, None] + var[None, :] - 2 * cov, 1e-12))
    doubt = ndtr(-np.abs(theta[:, None] - theta[None, :]) / sd)  # chance the fitted order of i, j is wrong
    np.fill_diagonal(doubt, 0.0)
    if rule in ("top", "top_k"):
        contender = (fit.rank_low <= top).astype(float)
        doubt *= 0.1 + 0.9 * np.maximum(contender[:, None], contender[None, :])
    weight = doubt.sum(axis=1) + 1e-9
    chosen = [int(np.random.default_rng(rng.getrandbits(32)).choice(n, p=weight / weight.sum()))]
    while len(chosen) < k:
        gain = doubt[chosen].sum(axis=0)
        gain[chosen] = -1.0
        best = np.flatnonzero(gain >= gain.max() - 1e-12)
        chosen.append(int(best[rng.randrange(len(best))]))
    return tuple(chosen)


class Listwise(KindBase):
    name = "listwise"
    title = "listwise"
    create_call = "client.flow.create_listwise_flow()"
    min_datapoints = 2  # an item with fewer datapoints than k shows them all (two: an ordered pair)
    compares_sets = True
    answers_table = "rankings"
    answers_path = "rankings"
    result_type = schemas.ItemResults
    default_lease = 120.0  # reading k texts takes longer than two
    default_live_items = 100
    owns = ("listwise", "stop_when")

    def check_config(self, cfg: FlowConfig) -> None:
        if cfg.pair_selection != "uniform":
            raise Invalid(
                "pair_selection is for pairwise ranking flows; a listwise flow always chooses its k-sets from "
                "the current fit.",
                field="pair_selection",
            )

    def complete(self, cfg: FlowConfig) -> FlowConfig:
        import msgspec

        return cfg if cfg.listwise is not None else msgspec.structs.replace(cfg, listwise=schemas.ListwiseSpec())

    def tasks_in(self, n_datapoints: int) -> int:
        return 1  # thresholds count answers per item, as a ranking item's votes

    def annotator_cap(self, cfg: FlowConfig) -> int | None:
        return cfg.max_votes_per_annotator or max(1, math.ceil(cfg.max_response_threshold / SPREAD))

    def new_tally(self, item: ItemRecord, seed: float) -> ListTally:
        spec = item.config.listwise or schemas.ListwiseSpec()
        return ListTally(len(item.datapoints), spec.k, spec.mode, random.Random(seed), self.annotator_cap(item.config))

    def replay(self, item: ItemRecord, rows: list[Row]) -> None:
        tally: ListTally = item.tally
        for r in rows:
            order = tuple(json.loads(r["ordering"]))
            tally.add(order, r["annotator_id"])
            tally.give(r["annotator_id"], order)
        item.response_count += len(rows)
        self._look(item)

    # ------------------------------------------------------------ thresholds: answers per item

    def full(self, item: ItemRecord) -> bool:
        return item.response_count >= item.config.max_response_threshold or item.settled

    def enough(self, item: ItemRecord) -> bool:
        return item.response_count >= item.config.min_response_threshold

    def room(self, item: ItemRecord) -> bool:
        return not item.settled and item.response_count + item.leases_out < item.config.max_response_threshold

    def shortfall(self, item: ItemRecord) -> int:
        return item.config.min_response_threshold - item.response_count - item.leases_out

    # ------------------------------------------------------------ asking

    def ask(self, item: ItemRecord, rng: random.Random, annotator_id: str, now: float) -> tuple[Shown | None, None]:
        """k datapoints this person has not been shown together in this item, while they have a share left."""
        tally: ListTally = item.tally
        shown = (
            self._next_set(item, rng, tally.seen.get(annotator_id, set())) if tally.has_share(annotator_id) else None
        )
        note_waiting(item, shown is not None)
        if shown is None:
            return None, None
        tally.give(annotator_id, shown)
        if "no_shuffle" in item.config.settings:
            return tuple(sorted(shown)), None
        order = list(shown)
        rng.shuffle(order)  # the page's order says nothing about the fit's
        return tuple(order), None

    def _next_set(self, item: ItemRecord, rng: random.Random, seen: set[frozenset[int]]) -> Shown | None:
        tally: ListTally = item.tally
        for i, shown in enumerate(tally.requeue):
            if frozenset(shown) not in seen:
                del tally.requeue[i]
                return shown
        rule = item.config.stop_when
        candidate = choose_set(
            tally.fit_now(item),
            tally.k,
            rng,
            rule=None if rule is None else rule.rule,
            top=1 if rule is None else rule.k,
        )
        if frozenset(candidate) not in seen:
            return candidate
        for _ in range(RANDOM_TRIES):
            candidate = tuple(rng.sample(range(tally.n), tally.k))
            if frozenset(candidate) not in seen:
                return candidate
        return None  # (nearly) every k-set of this item was shown to this person

    def closed(self, lease: Lease) -> None:
        pass

    def task_view(self, lease: Lease, rng: random.Random, now: float) -> schemas.Task:
        item = lease.item
        cfg = item.config
        views = [datapoint_view(item.datapoints[i]) for i in lease.question]
        return self.single_view_task(
            lease,
            now,
            views[0],
            listwise=schemas.ListwiseTaskView(datapoints=views, mode=_mode(cfg)),  # type: ignore[arg-type]
        )

    # ------------------------------------------------------------ answering

    def check(self, lease: Lease, answer: schemas.Answer) -> Shown:
        """The answer as stored: datapoint indices, best first (best–worst: best, the others as shown, worst)."""
        shown: Shown = lease.question
        k = len(shown)
        mode = _mode(lease.item.config)
        body = answer.listwise
        if answer.choice != "submit" or body is None:
            raise Refusal(
                "invalid_choice", "Answer a listwise task with choice 'submit' and the order in 'listwise', or 'skip'."
            )
        if mode == "order":
            order = body.order
            if order is None or sorted(order) != list(range(k)):
                raise Refusal(
                    "invalid_order",
                    f"'order' must list the positions 0 to {k - 1} of the {k} shown datapoints, each once, best first.",
                    field="listwise.order",
                )
            return tuple(shown[p] for p in order)
        best, worst = body.best, body.worst
        if best is None or worst is None or not (0 <= best < k and 0 <= worst < k) or best == worst:
            raise Refusal(
                "invalid_best_worst",
                f"Pick a 'best' and a different 'worst' among the positions 0 to {k - 1} of the shown datapoints.",
                field="listwise.best",
            )
        middle = tuple(shown[p] for p in range(k) if p not in (best, worst))
        return (shown[best], *middle, shown[worst])

    def answer_ops(self, lease: Lease, checked: Shown, annotator_id: str, now: float) -> list[Op]:
        return [
            (
                "INSERT OR IGNORE INTO rankings (task_id, item_id, annotator_id, ordering, mode, created_at, "
                "shown_at) VALUES (?,?,?,?,?,?,?)",
                (
                    lease.task_id,
                    lease.item.id,
                    annotator_id,
                    json.dumps(list(checked)),
                    _mode(lease.item.config),
                    now,
                    lease.on_screen_since,
                ),
            )
        ]

    def count(self, lease: Lease, checked: Shown) -> None:
        lease.item.tally.add(checked, lease.annotator_id)
        lease.item.response_count += 1
        self._look(lease.item)

    def release(self, lease: Lease, *, defer: bool, now: float) -> None:
        item = lease.item
        tally: ListTally = item.tally
        tally.by_annotator[lease.annotator_id] -= 1  # unanswered: not one of their answers (the set stays seen)
        if not defer and not lifecycle.is_terminal(item.state):
            tally.requeue.append(tuple(sorted(lease.question)))

    # ------------------------------------------------------------ aggregates

    def matrix(self, item: ItemRecord) -> schemas.WinLossMatrix:
        """The win-loss matrix of the pairs the answers imply (an order of k gives k(k − 1)/2, a best–worst
        answer 2k − 3), so unlike a ranking flow's it sums to more than the response count."""
        return schemas.WinLossMatrix(
            keys=item.keys, counts=item.tally.wins.tolist(), response_count=item.response_count, version=item.version
        )

    def delta(self, item: ItemRecord, start: int, stop: int) -> list[tuple[int, int, int]]:
        tally: ListTally = item.tally
        return [(w, lo, 0) for order in tally.answers[start:stop] for w, lo in implied(order, tally.mode)]

    def snapshot(self, item: ItemRecord) -> list[list[float]]:
        return item.tally.wins.tolist()  # type: ignore[no-any-return]

    async def results(self, item: ItemRecord) -> schemas.ItemResults:
        return self._results(item)

    def final(self, item: ItemRecord) -> tuple[schemas.ItemResults, schemas.WinLossMatrix]:
        return self._results(item), self.matrix(item)

    def _results(self, item: ItemRecord) -> schemas.ItemResults:
        tally: ListTally = item.tally
        version, count, state = item.version, item.response_count, item.state
        fitted = tally.fit_now(item)
        n = len(item.keys)
        m = max(len(tally.voter_index), 1)
        who = np.array(tally.voters[:count], dtype=np.int64)
        cells = np.array([d * m + p for order, p in zip(tally.answers, tally.voters, strict=True) for d in order])
        people = np.bincount(np.unique(cells) // m, minlength=n) if len(cells) else np.zeros(n, dtype=np.int64)
        per_person = np.bincount(who, minlength=m) if count else np.zeros(0, dtype=np.int64)
        return build_results(
            item, tally.wins, fitted, version, count, state, people_from(people, per_person, tally.voter_index)
        )

    async def consensus(self, store: Any, mine: str, params: list[Any]) -> list[tuple[str, int, int]]:
        # An answer is the pairs it implies (k(k-1)/2 for an order, 2k-3 for best and worst), each agreeing as a
        # pairwise vote does: when more of the item's other implied pairs on that pair chose the same winner than
        # the other. Rankings of different k-sets rarely coincide, but their pairs do. SQL cannot unpack the
        # stored orders portably, so the count is made here, over the items these answers belong to.
        own = await store.aread(
            f"SELECT m.item_id, m.annotator_id, m.ordering, m.mode, m.excluded FROM rankings m WHERE {mine}", params
        )
        counts: dict[str, Counter[tuple[int, int]]] = {}
        for item_id in {r["item_id"] for r in own}:
            rows = await store.aread(
                "SELECT ordering, mode FROM rankings WHERE item_id = ? AND excluded = 0", [item_id]
            )
            counts[item_id] = Counter(p for r in rows for p in implied(tuple(json.loads(r["ordering"])), r["mode"]))
        out: dict[str, list[int]] = {}
        for r in own:
            n = counts[r["item_id"]]
            tally = out.setdefault(r["annotator_id"], [0, 0])
            for w, lose in implied(tuple(json.loads(r["ordering"])), r["mode"]):
                same = n[(w, lose)] - (0 if r["excluded"] else 1)  # the answer itself is no part of the consensus
                other = n[(lose, w)]
                tally[0] += same + other > 0
                tally[1] += same > other
        return [(who, compared, agreed) for who, (compared, agreed) in out.items()]

    def answered_by(self, item: ItemRecord) -> Collection[str]:
        return item.tally.voter_index.keys()  # type: ignore[no-any-return]

    def recount(self, item: ItemRecord, excluded: Collection[str]) -> None:
        tally: ListTally = item.tally
        item.response_count = tally.recount(excluded)
        tally.next_look = 0

    def pair_votes(self, rows: list[Row]) -> list[schemas.Vote]:
        # Each ranking as the decisive pairs it implies, by its annotator, as the win-loss matrix counts them.
        return [
            schemas.Vote(
                task_id=r.task_id,
                annotator_id=r.annotator_id,
                winner=w,
                loser=lose,
                tie=False,
                created_at=r.created_at,
                shown_at=r.shown_at,
                excluded=r.excluded,
            )
            for r in self.votes(rows)
            for w, lose in implied(tuple(r.order), r.mode)
        ]

    def votes(self, rows: list[Row]) -> list[schemas.Ranking]:
        return [
            schemas.Ranking(
                task_id=r["task_id"],
                annotator_id=r["annotator_id"],
                order=json.loads(r["ordering"]),
                mode=r["mode"],
                created_at=r["created_at"],
                shown_at=r.get("shown_at"),
                excluded=bool(r.get("excluded")),
            )
            for r in rows
        ]

    # ------------------------------------------------------------ stopping when the answer is settled

    def _look(self, item: ItemRecord) -> None:
        """The flow's stopping rule, looked at most fifty times over the item's maximum, once past its minimum
        and one answer per datapoint."""
        rule = item.config.stop_when
        tally: ListTally = item.tally
        count = item.response_count
        if rule is None or item.settled or count < tally.next_look:
            return
        cfg = item.config
        first = max(cfg.min_response_threshold, len(item.keys), 1)
        if count < first:
            tally.next_look = first
            return
        tally.next_look = count + max(1, -(-cfg.max_response_threshold // LOOKS))
        fitted = tally.fit_now(item)
        verdict = ranking.settlement(fitted.scores, fitted.covariance, rule.rule, k=rule.k, confidence=rule.confidence)  # type: ignore[arg-type]
        if verdict.settled:
            item.settled = True
            item.reason = _settled_reason(item, verdict, count).replace(" votes:", " rankings:")


LISTWISE = Listwise()
