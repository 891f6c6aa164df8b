"""Pairwise comparison, the first task kind: an annotator sees two datapoints and picks one (or a tie);
votes aggregate into a win-loss matrix and a Bradley–Terry fit.

An absolute flow (`absolute=True`) also takes "both_good" and "both_bad": such an answer is stored as a tie with
a `level` ('good' / 'bad'), counts half a win each way in the win-loss matrix (so the matrix still sums to the
response count and older readers see a tie), and enters the results' fit (`ranking.fit_absolute`) as two
absolute judgements rather than as a relative tie: in that model "both good" already says both are above the
threshold, and counting it as a tie as well would count the same answer twice."""

from __future__ import annotations

import asyncio
import functools
import math
import random
from array import array
from collections import deque
from collections.abc import Collection
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from flowlab import ranking, schemas
from flowlab.server import lifecycle
from flowlab.server.datapoints import datapoint_view, gold_view
from flowlab.server.kinds import Refusal
from flowlab.server.kinds._assign import note_waiting
from flowlab.server.kinds._base import KindBase
from flowlab.server.kinds._log import AnswerLog

if TYPE_CHECKING:
    from flowlab.server.model import FlowConfig, ItemRecord, Lease
    from flowlab.server.store import Op, Row

ACTIVE_BATCH = 16  # pairs chosen per fit in active mode
# A tenth of actively chosen pairs are drawn uniformly: choosing every pair from earlier votes keeps gaps that
# came out too wide (settled pairs stop being asked), and a few pairs chosen blind keep the results' intervals
# honest (benchmarks/bench_regimes.py: 93 % -> 95 % coverage at θ ~ N(0, 1)).
ACTIVE_EXPLORATION = 0.1
INLINE_FIT_MAX = 200  # datapoints; above this, fits run on a worker thread
# By default an item's votes come from at least this many people: one person gives at most this share of them.
SPREAD = 3
RANDOM_TRIES = 64  # random draws for a pair a person has not seen, before listing every pair

Pair = tuple[int, int]

# What an answer to a pair said, as the vote log's third column keeps it.
DECIDED, TIE, BOTH_GOOD, BOTH_BAD = 0, 1, 2, 3
LEVELS = {BOTH_GOOD: "good", BOTH_BAD: "bad"}  # the votes table's `level` column
CODE_OF_LEVEL = {level: code for code, level in LEVELS.items()}
BOTH_CHOICES = {"both_good": BOTH_GOOD, "both_bad": BOTH_BAD}


def answer_code(tie: Any, level: str | None) -> int:
    """A stored vote's code from its `tie` and `level` columns."""
    return CODE_OF_LEVEL[level] if level else (TIE if tie else DECIDED)


def _unordered(pair: Pair) -> Pair:
    a, b = pair
    return (a, b) if a < b else (b, a)


def _take(queue: deque[Pair], seen: set[Pair] | frozenset[Pair]) -> Pair | None:
    """Remove and return the first pair of `queue` not in `seen` (unordered), or None."""
    for i, pair in enumerate(queue):
        if _unordered(pair) not in seen:
            del queue[i]
            return pair
    return None


class PairQueue:
    """Uniform pairs in rounds: each round is a random matching that shows every datapoint once."""

    __slots__ = ("_given", "_queue", "_rng", "n")

    def __init__(self, n: int, rng: random.Random, given: list[Pair] | None = None) -> None:
        self.n = n
        self._rng = rng
        self._given = given  # when set, each round is these pairs, shuffled
        self._queue: deque[Pair] = deque()

    def next_pair(self, seen: set[Pair] | frozenset[Pair] = frozenset()) -> Pair | None:
        """The next pair of the covering rounds not in `seen` (a person's pairs so far); None when every pair
        this item compares is in it."""
        pair = _take(self._queue, seen)
        if pair is None and len(self._queue) < self.n:  # at most a round or two queued, however often asked
            self._refill()
            pair = _take(self._queue, seen)
        return pair if pair is not None else self._unseen(seen)

    def _unseen(self, seen: set[Pair] | frozenset[Pair]) -> Pair | None:
        """A pair outside the rounds queued now that is not in `seen` (rounds are random matchings, so a person
        who saw much of the item may need one they would never reach)."""
        if self._given is not None:
            fresh = [p for p in self._given if _unordered(p) not in seen]
            return self._rng.choice(fresh) if fresh else None
        n = self.n
        if len(seen) >= n * (n - 1) // 2:
            return None
        for _ in range(RANDOM_TRIES):
            a, b = self._rng.sample(range(n), 2)
            if _unordered((a, b)) not in seen:
                return (a, b)
        fresh = [(a, b) for a in range(n) for b in range(a + 1, n) if (a, b) not in seen]
        return self._rng.choice(fresh)

    def defer(self, pair: Pair) -> None:
        """Serve `pair` again, but after at least one fresh round."""
        if len(self._queue) < 2:
            self._refill()
        self._queue.append(pair)

    def _refill(self) -> None:
        if self._given is not None:
            pairs = list(self._given)
            self._rng.shuffle(pairs)
            self._queue.extend(pairs)
            return
        order = list(range(self.n))
        self._rng.shuffle(order)
        pairs = [(order[i], order[i + 1]) for i in range(0, self.n - 1, 2)]
        if self.n % 2:
            last = order[-1]
            other = self._rng.choice(order[:-1])
            pairs.append((last, other))
        self._queue.extend(pairs)


# "Both good" and "both bad" counts, and the answers behind them with who gave each (see `PairTally.levels`).
Levels = tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]
NO_LEVELS: Levels = (None, None, None)


class PairTally:
    """A pairwise item's live aggregate: counts, the vote log, the pair queues and a warm fit."""

    __slots__ = (
        "active_queue",
        "aside",
        "aside_voters",
        "bad",
        "by_annotator",
        "cap",
        "fit",
        "fit_version",
        "good",
        "log",
        "looking",
        "next_look",
        "pair_queue",
        "refitting",
        "requeue",
        "result_fit",
        "result_version",
        "seen",
        "ties",
        "voter_index",
        "voters",
        "wins",
    )

    def __init__(self, n: int, rng: random.Random, given: list[Pair] | None = None, cap: int | None = None) -> None:
        self.wins = np.zeros((n, n), dtype=np.float64)
        self.ties: np.ndarray | None = None  # symmetric tie counts, from the first tie on (also in `wins`, as halves)
        # Absolute flows: symmetric counts of "both good" / "both bad" answers, from the first on (also in `wins`).
        self.good: np.ndarray | None = None
        self.bad: np.ndarray | None = None
        self.log = AnswerLog()  # (winner, loser, code): 12 bytes a vote; live streams read deltas from it
        self.requeue: deque[Pair] = deque()
        self.active_queue: deque[Pair] = deque()
        self.pair_queue = PairQueue(n, rng, given)
        self.fit: Any = None  # for choosing pairs (and for results, unless those need a fit of their own)
        self.fit_version = -1
        self.refitting = False
        self.result_fit: Any = None  # for results of actively chosen pairs (empirical-Bayes prior)
        self.result_version = -1
        self.next_look = 0  # the vote count at which a stopping rule next looks
        self.looking = False  # a look at a large item is running on a worker thread
        self.cap = cap  # votes one annotator may give the item (leases out count)
        self.by_annotator: dict[str, int] = {}  # annotator -> votes given and leases out
        self.seen: dict[str, set[Pair]] = {}  # annotator -> pairs (smaller index first) leased to them
        self.voter_index: dict[str, int] = {}  # annotator -> a small index, in order of first vote
        self.voters = array("i")  # who gave each vote of `log`, by that index: 4 bytes a vote
        self.aside = AnswerLog(4)  # votes of suspended people: kept out of `wins` and `log` until reinstated
        self.aside_voters = array("i")

    def give(self, annotator_id: str, pair: Pair) -> None:
        """`pair` is leased to this annotator: one more of their share, and a pair they will not see again."""
        self.by_annotator[annotator_id] = self.by_annotator.get(annotator_id, 0) + 1
        self.seen.setdefault(annotator_id, set()).add(_unordered(pair))

    def has_share(self, annotator_id: str) -> bool:
        return self.cap is None or self.by_annotator.get(annotator_id, 0) < self.cap

    def snapshot(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Copies of the counts, for a fit that runs while votes keep landing."""
        return self.wins.copy(), None if self.ties is None else self.ties.copy()

    def levels(self) -> Levels:
        """Copies of the "both good" / "both bad" counts (None where there were none) and, once two people have
        answered, the answers that make them as ``(annotator, winner, loser, code)`` rows: an absolute fit
        then weighs each person by a fitted reliability."""
        answers = None
        if len(self.voter_index) > 1:
            answers = np.column_stack([np.frombuffer(self.voters, dtype=np.int32), self.log.rows]).astype(np.int64)
        return (
            None if self.good is None else self.good.copy(),
            None if self.bad is None else self.bad.copy(),
            answers,
        )

    def add(self, winner: int, loser: int, code: int, annotator_id: str) -> None:
        self._count(winner, loser, code, self.voter_index.setdefault(annotator_id, len(self.voter_index)))

    def recount(self, excluded: Collection[str]) -> int:
        """Count every vote again, setting aside those of `excluded` people (and putting back the set-aside
        votes of the others); returns the votes that count."""
        out = {self.voter_index[a] for a in excluded if a in self.voter_index}
        rows = np.concatenate([self.log.rows, self.aside.rows])
        who = list(self.voters) + list(self.aside_voters)
        self.log, self.voters, self.aside, self.aside_voters = AnswerLog(), array("i"), AnswerLog(4), array("i")
        self.wins[:] = 0.0
        self.ties = self.good = self.bad = None
        for (winner, loser, code), person in zip(rows.tolist(), who, strict=True):
            if person in out:
                self.aside.append(winner, loser, code)
                self.aside_voters.append(person)
            else:
                self._count(winner, loser, code, person)
        return self.log.n

    def _count(self, winner: int, loser: int, code: int, person: int) -> None:
        self.voters.append(person)
        self.log.append(winner, loser, code)
        if code == DECIDED:
            self.wins[winner, loser] += 1.0
            return
        self.wins[winner, loser] += 0.5
        self.wins[loser, winner] += 0.5
        name = {TIE: "ties", BOTH_GOOD: "good", BOTH_BAD: "bad"}[code]
        counts = getattr(self, name)
        if counts is None:
            counts = np.zeros_like(self.wins)
            setattr(self, name, counts)
        counts[winner, loser] += 1.0
        counts[loser, winner] += 1.0


class Pairwise(KindBase):
    name = "pairwise"
    title = "ranking"
    create_call = "client.flow.create_ranking_flow()"
    min_datapoints = 2
    answers_table = "votes"
    answers_path = "votes"
    result_type = schemas.ItemResults
    default_live_items = 200  # an item is one small comparison task: many at once keep a crowd busy
    owns = ("stop_when", "validation_pairs", "absolute")
    gold = "pairs"  # a validation set of gold pairs serves its flows
    takes_pairs = True

    def check_config(self, cfg: FlowConfig) -> None:
        pass  # every ranking option is checked with the flow (thresholds, pair selection, gold pairs)

    def tasks_in(self, n_datapoints: int) -> int:
        return 1  # a ranking item is one comparison task, however many datapoints it holds

    def annotator_cap(self, cfg: FlowConfig) -> int | None:
        return cfg.max_votes_per_annotator or max(1, math.ceil(cfg.max_response_threshold / SPREAD))

    def new_tally(self, item: ItemRecord, seed: float) -> PairTally:
        return PairTally(len(item.datapoints), random.Random(seed), item.pairs, self.annotator_cap(item.config))

    def replay(self, item: ItemRecord, rows: list[Row]) -> None:
        tally: PairTally = item.tally
        for v in rows:
            tally.add(v["winner"], v["loser"], answer_code(v["tie"], v.get("level")), v["annotator_id"])
            tally.give(v["annotator_id"], (v["winner"], v["loser"]))
        item.response_count += len(rows)
        self._look(item)  # an item that settled just before a restart ends now

    # ------------------------------------------------------------ thresholds: votes per item

    def full(self, item: ItemRecord) -> bool:
        return item.response_count >= item.config.max_response_threshold or item.settled

    def enough(self, item: ItemRecord) -> bool:
        return item.response_count >= item.config.min_response_threshold

    def room(self, item: ItemRecord) -> bool:
        # Leases out count against the maximum, so an item is never over-served; a settled one serves no more.
        return not item.settled and item.response_count + item.leases_out < item.config.max_response_threshold

    def shortfall(self, item: ItemRecord) -> int:
        return item.config.min_response_threshold - item.response_count - item.leases_out

    # ------------------------------------------------------------ asking

    def ask(
        self, item: ItemRecord, rng: random.Random, annotator_id: str, now: float
    ) -> tuple[Pair | None, schemas.ValidationPair | None]:
        """A pair this annotator has not been given in this item, while they have a share of its votes left
        (then, now and then, a gold pair instead); nothing when they have given it their share."""
        tally: PairTally = item.tally
        pair = (
            self._next_pair(item, rng, tally.seen.get(annotator_id, frozenset()))
            if tally.has_share(annotator_id)
            else None
        )
        note_waiting(item, pair is not None)
        if pair is None:
            return None, None
        flow_cfg = item.flow.config
        if flow_cfg.validation_pairs and rng.random() < flow_cfg.gold_rate:
            self._put_back(tally, pair)
            return None, _pick_gold(flow_cfg.validation_pairs, rng, shuffle="no_shuffle" not in item.config.settings)
        tally.give(annotator_id, pair)
        a, b = pair
        if "no_shuffle" in item.config.settings:
            a, b = min(a, b), max(a, b)  # in the order the datapoints were given
        elif rng.random() < 0.5:
            a, b = b, a
        return (a, b), None

    @staticmethod
    def _put_back(tally: PairTally, pair: Pair) -> None:
        tally.requeue.appendleft(pair)  # chosen, then not asked (a gold pair went instead): first next time

    def _next_pair(self, item: ItemRecord, rng: random.Random, seen: set[Pair] | frozenset[Pair]) -> Pair | None:
        """Of the pairs this annotator has not seen: those whose lease expired first; then covering rounds
        (uniform) or the ranking's active choice."""
        tally: PairTally = item.tally
        pair = _take(tally.requeue, seen) if tally.requeue else None
        if pair is not None:
            return pair
        if item.config.pair_selection != "active" or item.pairs is not None:
            return tally.pair_queue.next_pair(seen)
        pair = _take(tally.active_queue, seen)
        if pair is not None:
            return pair
        if not tally.active_queue:
            # A small batch per fit, so a busy item refits once per batch rather than once per lease; pairs
            # out on lease count as pending so the batch does not repeat them.
            out = np.array([lease.question for lease in item.leases.values()], dtype=np.int64).reshape(-1, 2)
            batch = max(2, min(ACTIVE_BATCH, len(item.keys) // 2))
            pairs = ranking.select_pairs(
                tally.wins,
                batch,
                fit=self._fit_for_selection(item),
                rng=np.random.default_rng(rng.getrandbits(32)),
                pending=out,
                exploration=ACTIVE_EXPLORATION,
            )
            tally.active_queue.extend((int(a), int(b)) for a, b in pairs)
        # The active choice's pairs are all ones this annotator has seen: a covering round's instead.
        return _take(tally.active_queue, seen) or tally.pair_queue.next_pair(seen)

    def closed(self, lease: Lease) -> None:
        pass

    def task_view(self, lease: Lease, rng: random.Random, now: float) -> schemas.Task:
        item = lease.item
        cfg = item.config
        if lease.gold is not None:
            # Gold views carry ordinary-looking refs so a page cannot tell them apart from real pairs.
            n = len(item.datapoints)
            a: Any = gold_view(lease.gold.a, rng.randrange(n))
            b: Any = gold_view(lease.gold.b, rng.randrange(n))
        else:
            a = datapoint_view(item.datapoints[lease.question[0]])
            b = datapoint_view(item.datapoints[lease.question[1]])
        return schemas.Task(
            task_id=lease.task_id,
            item_id=item.id,
            flow_id=item.flow.id,
            instruction=cfg.instruction,
            context=item.context,
            context_assets=item.context_assets,
            a=a,
            b=b,
            allow_ties=cfg.ties_allowed,
            render_markdown=cfg.markdown,
            lease_expires_at=lease.expires_at,
            lease_seconds=cfg.lease_seconds,
            server_time=now,
            settings=cfg.settings,
            absolute=cfg.absolute,
        )

    # ------------------------------------------------------------ answering

    def check(self, lease: Lease, answer: schemas.Answer) -> Any:
        """A gold answer's correctness (0/1), or the vote (winner, loser, code)."""
        choice = answer.choice
        absolute = lease.item.config.absolute
        if choice in BOTH_CHOICES and not absolute:
            raise Refusal(
                "level_not_allowed",
                f"{choice!r} is for absolute ranking flows (absolute=True); answer 'a', 'b', 'tie' or 'skip'.",
            )
        if choice not in ("a", "b", "tie", *BOTH_CHOICES):
            both = ", 'both_good', 'both_bad'" if absolute else ""
            raise Refusal(
                "invalid_choice", f"{choice!r} is not an answer to a pair; answer 'a', 'b', 'tie'{both} or 'skip'."
            )
        if choice == "tie" and not lease.item.config.ties_allowed:
            raise Refusal("tie_not_allowed", "This flow does not allow ties; answer 'a' or 'b' (or 'skip').")
        if lease.gold is not None:
            return int(choice == lease.gold.answer)
        a, b = lease.question
        winner, loser = (b, a) if choice == "b" else (a, b)
        return (winner, loser, BOTH_CHOICES.get(choice, TIE if choice == "tie" else DECIDED))

    def answer_ops(self, lease: Lease, checked: Any, annotator_id: str, now: float) -> list[Op]:
        if lease.gold is not None:
            return [
                (
                    "INSERT OR IGNORE INTO gold_answers (task_id, annotator_id, flow_id, correct, created_at) "
                    "VALUES (?,?,?,?,?)",
                    (lease.task_id, annotator_id, lease.item.flow.id, checked, now),
                )
            ]
        winner, loser, code = checked
        # Which side won as the annotator saw it (None for a tie): left-right habits show in it.
        chose_first = None if code else int(winner == lease.question[0])
        # OR IGNORE: a commit whose outcome was lost with its connection may be retried; it lands once.
        return [
            (
                "INSERT OR IGNORE INTO votes (task_id, item_id, annotator_id, winner, loser, tie, created_at, "
                "chose_first, shown_at, level) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    lease.task_id,
                    lease.item.id,
                    annotator_id,
                    winner,
                    loser,
                    int(code != DECIDED),
                    now,
                    chose_first,
                    lease.on_screen_since,
                    LEVELS.get(code),
                ),
            )
        ]

    def consensus_sql(self, mine: str) -> str:
        # A vote agrees when more of the item's other votes on the same pair chose the same winner than the other;
        # it is compared when the pair has other decisive votes. Leaving the vote itself out means a lone vote
        # neither agrees nor disagrees. Ties neither agree nor are compared. The consensus is of the votes that
        # count: a suspended person's (excluded) votes are compared with it but are no part of it.
        return (
            "WITH n AS (SELECT item_id, winner, loser, count(*) AS k FROM votes WHERE tie = 0 AND excluded = 0 "
            "GROUP BY item_id, winner, loser) "
            "SELECT m.annotator_id, "
            "sum(CASE WHEN coalesce(s.k, 0) - 1 + m.excluded + coalesce(o.k, 0) > 0 THEN 1 ELSE 0 END) AS compared, "
            "sum(CASE WHEN coalesce(s.k, 0) - 1 + m.excluded > coalesce(o.k, 0) THEN 1 ELSE 0 END) AS agreed "
            "FROM votes m LEFT JOIN n s ON s.item_id = m.item_id AND s.winner = m.winner AND s.loser = m.loser "
            "LEFT JOIN n o ON o.item_id = m.item_id AND o.winner = m.loser AND o.loser = m.winner "
            f"WHERE m.tie = 0 AND {mine} GROUP BY m.annotator_id"
        )

    def count(self, lease: Lease, checked: Any) -> None:
        if lease.gold is None:
            winner, loser, code = checked
            lease.item.tally.add(winner, loser, code, lease.annotator_id)
            lease.item.response_count += 1
            self._look(lease.item)

    def release(self, lease: Lease, *, defer: bool, now: float) -> None:
        item = lease.item
        if lease.gold is not None:
            return
        tally: PairTally = item.tally
        tally.by_annotator[lease.annotator_id] -= 1  # unanswered: not one of their votes (the pair stays seen)
        if lifecycle.is_terminal(item.state):
            return
        pair = lease.question
        if not defer:
            tally.requeue.append(pair)
        elif item.config.pair_selection != "active" or item.pairs is not None:  # active re-chooses on its own
            tally.pair_queue.defer(pair)

    # ------------------------------------------------------------ aggregates

    def matrix(self, item: ItemRecord) -> schemas.WinLossMatrix:
        return schemas.WinLossMatrix(
            keys=item.keys,
            counts=item.tally.wins.tolist(),
            response_count=item.response_count,
            version=item.version,
        )

    def delta(self, item: ItemRecord, start: int, stop: int) -> list[tuple[int, int, int]]:
        # The third column stays a tie flag on the wire: "both" answers count as ties in the matrix.
        return [(w, lo, min(code, TIE)) for w, lo, code in item.tally.log.slice(start, stop)]

    def snapshot(self, item: ItemRecord) -> list[list[float]]:
        return item.tally.wins.tolist()  # type: ignore[no-any-return]

    async def results(self, item: ItemRecord) -> schemas.ItemResults:
        # Snapshot first: votes may land while the fit runs, and the answer must describe one moment.
        version, count, state = item.version, item.response_count, item.state
        wins, ties = item.tally.snapshot()
        levels = item.tally.levels()
        fit = await self._result_fit_async(item, wins, ties, version, levels)
        return _results(item, wins, fit, version, count, state)

    def final(self, item: ItemRecord) -> tuple[schemas.ItemResults, schemas.WinLossMatrix]:
        """Blocking (a fit of a large item takes a while): run it on a worker thread."""
        tally: PairTally = item.tally
        fit = self._cached_result_fit(item, item.version)
        if fit is None:
            fit = _fit(item, tally.wins, tally.ties, self._warm_start(item), results=True, levels=tally.levels())
        return _results(item, tally.wins, fit, item.version, item.response_count, item.state), self.matrix(item)

    def answered_by(self, item: ItemRecord) -> Collection[str]:
        return item.tally.voter_index.keys()  # type: ignore[no-any-return]

    def recount(self, item: ItemRecord, excluded: Collection[str]) -> None:
        tally: PairTally = item.tally
        item.response_count = tally.recount(excluded)
        tally.next_look = 0  # the stopping rule looks again at the votes that count now

    def votes(self, rows: list[Row]) -> list[schemas.Vote]:
        return [
            schemas.Vote(
                task_id=r["task_id"],
                annotator_id=r["annotator_id"],
                winner=r["winner"],
                loser=r["loser"],
                tie=bool(r["tie"]),
                created_at=r["created_at"],
                chose_first=None if r.get("chose_first") is None else bool(r["chose_first"]),
                shown_at=r.get("shown_at"),
                excluded=bool(r.get("excluded")),
                level=r.get("level"),
            )
            for r in rows
        ]

    # ------------------------------------------------------------ fits

    def _warm_start(self, item: ItemRecord) -> np.ndarray | None:
        # A live refit after a few votes, started from the previous fit, is a couple of Newton steps.
        tally: PairTally = item.tally
        latest = tally.result_fit if tally.result_fit is not None else tally.fit
        return None if latest is None else latest.scores

    def _cached_result_fit(self, item: ItemRecord, version: int) -> Any:
        tally: PairTally = item.tally
        if _own_result_fit(item):
            return tally.result_fit if tally.result_version == version else None
        return tally.fit if tally.fit_version == version else None

    async def _result_fit_async(
        self,
        item: ItemRecord,
        wins: np.ndarray,
        ties: np.ndarray | None,
        version: int,
        levels: Levels = NO_LEVELS,
    ) -> Any:
        """The item's Bradley–Terry fit for results at `version`, computed off the event loop: a fit of a
        large item takes long enough (0.1 s at n = 1,000) that acknowledgements would stall behind it."""
        tally: PairTally = item.tally
        cached = self._cached_result_fit(item, version)
        if cached is not None:
            return cached
        init = self._warm_start(item)
        if len(item.keys) <= INLINE_FIT_MAX:
            fit = _fit(item, wins, ties, init, results=True, levels=levels)
        else:
            fit = await asyncio.to_thread(functools.partial(_fit, item, wins, ties, init, results=True, levels=levels))
        if _own_result_fit(item):
            if version >= tally.result_version:
                tally.result_fit, tally.result_version = fit, version
        elif version >= tally.fit_version:
            tally.fit, tally.fit_version = fit, version
        return fit

    # ------------------------------------------------------------ stopping when the answer is settled

    def _look(self, item: ItemRecord) -> None:
        """Check the flow's stopping rule at most fifty times over the item's maximum, once past its minimum
        and two votes per datapoint; a look at a large item runs on a worker thread."""
        rule = item.config.stop_when
        tally: PairTally = item.tally
        count = item.response_count
        if rule is None or item.settled or tally.looking or count < tally.next_look:
            return
        cfg = item.config
        first = max(cfg.min_response_threshold, 2 * len(item.keys), 1)
        if count < first:
            tally.next_look = first
            return
        tally.next_look = count + max(1, -(-cfg.max_response_threshold // LOOKS))
        if len(item.keys) <= INLINE_FIT_MAX:
            fit = _fit(item, tally.wins, tally.ties, self._warm_start(item), results=True, levels=tally.levels())
            self._settle(item, fit, count)
            return
        tally.looking = True
        look = functools.partial(
            _fit, item, *tally.snapshot(), self._warm_start(item), results=True, levels=tally.levels()
        )
        job = asyncio.ensure_future(asyncio.to_thread(look))

        def landed(done: asyncio.Future[Any]) -> None:
            tally.looking = False
            if not done.cancelled() and done.exception() is None and not lifecycle.is_terminal(item.state):
                self._settle(item, done.result(), count)  # the next tick ends the item

        job.add_done_callback(landed)

    def _settle(self, item: ItemRecord, fit: Any, count: int) -> None:
        rule = item.config.stop_when
        assert rule is not None
        verdict = ranking.settlement(
            fit.scores,
            fit.covariance if fit.covariance is not None else fit.std_errors**2,
            rule.rule,  # type: ignore[arg-type]
            k=rule.k,
            confidence=rule.confidence,
        )
        if verdict.settled:
            item.settled = True
            item.reason = _settled_reason(item, verdict, count)

    def _fit_for_selection(self, item: ItemRecord) -> Any:
        """A fit for choosing pairs, never blocking the lease path on a large item: a stale fit is good
        enough to rank candidate pairs, and a fresh one is computed in the background."""
        tally: PairTally = item.tally
        if tally.fit is not None and tally.fit_version == item.version:
            return tally.fit
        if len(item.keys) <= INLINE_FIT_MAX:
            init = tally.fit.scores if tally.fit is not None else None
            tally.fit = _fit(item, tally.wins, tally.ties, init, results=False)
            tally.fit_version = item.version
            return tally.fit
        if not tally.refitting:
            tally.refitting = True

            def done(_: object) -> None:
                tally.refitting = False

            asyncio.ensure_future(self._selection_fit_async(item, item.version)).add_done_callback(done)
        return tally.fit

    async def _selection_fit_async(self, item: ItemRecord, version: int) -> None:
        tally: PairTally = item.tally
        init = tally.fit.scores if tally.fit is not None else None
        fit = await asyncio.to_thread(_fit, item, *tally.snapshot(), init, results=False)
        if version >= tally.fit_version:
            tally.fit, tally.fit_version = fit, version


LOOKS = 50  # a stopping rule looks at most this many times over an item's maximum number of votes


def _results_prior(item: ItemRecord) -> float | str:
    """The prior for an item's results: fitted to the data (empirical Bayes) where the pairs were chosen
    from earlier votes, whose plain fit comes out stretched with intervals that cover too little."""
    return "auto" if item.config.pair_selection == "active" and item.pairs is None else ranking.DEFAULT_PRIOR


def _own_result_fit(item: ItemRecord) -> bool:
    """Whether results need a fit of their own rather than the one that chooses pairs."""
    return _results_prior(item) == "auto" or item.config.absolute


def _fit(
    item: ItemRecord,
    wins: np.ndarray,
    ties: np.ndarray | None,
    init: np.ndarray | None,
    *,
    results: bool,
    levels: Levels = NO_LEVELS,
) -> Any:
    """A Bradley–Terry fit of the item's votes; ties known as ties, so their intervals are honest. An absolute
    flow's results fit the acceptability threshold too (`ranking.fit_absolute`)."""
    if results and item.config.absolute:
        good, bad, answers = levels
        return ranking.fit_absolute(
            wins,
            len(item.keys),
            both_good=good,
            both_bad=bad,
            tie_counts=ties,
            votes=answers,  # a reliability per annotator, so a spammer's random answers do not pull the level
            starting_elo=item.config.starting_elo,
        )
    return ranking.fit_bradley_terry(
        wins,
        len(item.keys),
        prior=_results_prior(item) if results else ranking.DEFAULT_PRIOR,  # type: ignore[arg-type]
        tie_counts=ties,
        init=init,
        starting_elo=item.config.starting_elo,
    )


def _settled_reason(item: ItemRecord, verdict: ranking.Settlement, count: int) -> str:
    rule = verdict.rule
    shown = ", ".join(repr(item.keys[i]) for i in verdict.leaders[:5])
    more = f" and {len(verdict.leaders) - 5} more" if len(verdict.leaders) > 5 else ""
    claim = {
        "top": f"{shown} is above every other datapoint",
        "top_k": f"the top {len(verdict.leaders)} ({shown}{more}) are above the rest",
        "order": f"the whole order is settled ({shown}{more}, best first)",
    }[rule]
    return (
        f"settled after {count:,} of {item.config.max_response_threshold:,} votes: {claim} "
        f"at {verdict.confidence:.0%} confidence"
    )


# An item is dominated by one person when their share of its counted votes is above this: their view then
# outweighs everyone else's together. Shares at or under it (a third by default, see `SPREAD`) are left unflagged.
DOMINANT_SHARE = 0.5


class People(NamedTuple):
    """Who gave an item's counted votes: different people per datapoint and over the item, the largest share of
    the votes one person gave (None before any vote), and that person when the share is above `DOMINANT_SHARE`."""

    per_datapoint: np.ndarray
    annotators: int
    top_share: float | None
    dominated_by: str | None


def people_from(per_datapoint: np.ndarray, per_person: np.ndarray, voter_index: dict[str, int]) -> People:
    """`People` from people per datapoint and votes per person (by the tally's person index)."""
    count = int(per_person.sum())
    if count == 0:
        return People(per_datapoint, 0, None, None)
    top = int(per_person.argmax())
    share = float(per_person[top] / count)
    ids = {i: a for a, i in voter_index.items()}
    return People(per_datapoint, int((per_person > 0).sum()), share, ids[top] if share > DOMINANT_SHARE else None)


def people_of(tally: PairTally, n: int, count: int) -> People:
    """Who gave the first `count` votes of a pair tally (see `People`)."""
    if count == 0:
        return People(np.zeros(n, dtype=np.int64), 0, None, None)
    rows = tally.log.rows[:count]
    who = np.array(tally.voters[:count], dtype=np.int64)
    m = len(tally.voter_index)
    seen = np.unique(np.concatenate([rows[:, 0] * m + who, rows[:, 1] * m + who]))
    return people_from(np.bincount(seen // m, minlength=n), np.bincount(who, minlength=m), tally.voter_index)


def _results(item: ItemRecord, wins: np.ndarray, fit: Any, version: int, count: int, state: str) -> schemas.ItemResults:
    return build_results(item, wins, fit, version, count, state, people_of(item.tally, len(item.keys), count))


def build_results(
    item: ItemRecord,
    wins: np.ndarray,
    fit: Any,
    version: int,
    count: int,
    state: str,
    who: People,
) -> schemas.ItemResults:
    """A ranking item's results from its win matrix (votes and wins per datapoint), a fit in the shape of
    `ranking.BradleyTerryResult`, and who answered (as `people_of` gives it)."""
    played = wins.sum(axis=1) + wins.sum(axis=0)
    won = wins.sum(axis=1)
    people = who.per_datapoint
    dps = [
        schemas.DatapointResult(
            key=item.keys[i],
            index=i,
            score=float(fit.scores[i]),
            elo=float(fit.elo[i]),
            ci_low=float(fit.ci_low[i]),
            ci_high=float(fit.ci_high[i]),
            rank=int(fit.ranks[i]),
            rank_low=int(fit.rank_low[i]),
            rank_high=int(fit.rank_high[i]),
            votes=round(float(played[i])),
            wins=float(won[i]),
            annotators=int(people[i]),
            source=getattr(item.datapoints[i], "source", None) if i < len(item.datapoints) else None,
            **_acceptability(fit, i),
        )
        for i in range(len(item.keys))
    ]
    dps.sort(key=lambda d: (d.rank, -d.score))
    return schemas.ItemResults(
        item_id=item.id,
        state=state,  # type: ignore[arg-type]
        total_votes=count,
        partial=not lifecycle.is_terminal(state),
        datapoints=dps,
        version=version,
        annotators=who.annotators,
        top_annotator_share=who.top_share,
        dominated_by=who.dominated_by,
    )


def _acceptability(fit: Any, i: int) -> dict[str, float]:
    """P(acceptable) and its interval, from an absolute fit (nothing from a plain one)."""
    if not isinstance(fit, ranking.AbsoluteResult):
        return {}
    return {
        "p_acceptable": float(fit.p_acceptable[i]),
        "p_acceptable_low": float(fit.p_low[i]),
        "p_acceptable_high": float(fit.p_high[i]),
    }


def _pick_gold(pairs: list[schemas.ValidationPair], rng: random.Random, *, shuffle: bool) -> schemas.ValidationPair:
    """A gold pair in a random order (unless the flow asks for none), its answer given for the order shown."""
    pair = rng.choice(pairs)
    if not shuffle or rng.random() < 0.5:
        return pair
    flipped = {"a": "b", "b": "a"}.get(pair.answer, pair.answer)
    return schemas.ValidationPair(a=pair.b, b=pair.a, answer=flipped, explanation=pair.explanation)  # type: ignore[arg-type]


PAIRWISE = Pairwise()
