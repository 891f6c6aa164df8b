"""Who is answering what, for kinds whose thresholds count answers per datapoint (classify, RLHF): answers
and leases out per datapoint, how many datapoints are full or can take another lease, and which datapoints
each annotator already has, so that nobody answers one twice and every threshold check is O(1)."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from flowlab.server.model import ItemRecord


# Seconds before a task someone handed back is offered to them again (to everyone else it is open at once).
RETURN_DELAY = 5.0
WAITING = "waiting for other annotators"  # an item's status while everyone asking has given it their share


class Assignments:
    __slots__ = (
        "annotators",
        "answered",
        "cap",
        "leased",
        "leased_total",
        "max",
        "n_full",
        "n_open",
        "returned",
        "taken",
    )

    def __init__(self, n: int, max_answers: int, cap: int | None = None) -> None:
        self.max = max_answers
        self.cap = cap  # tasks of the item one annotator may take (None: all of them, each once)
        self.answered = np.zeros(n, dtype=np.int64)
        self.leased = np.zeros(n, dtype=np.int64)
        self.leased_total = 0
        self.n_full = 0  # datapoints with all the answers they need
        self.n_open = n  # datapoints that can take another lease
        self.annotators: dict[str, int] = {}  # annotator id -> a small index, in order of first answer
        self.taken: dict[str, np.ndarray] = {}  # annotator -> datapoints leased to or answered by them
        self.returned: dict[str, dict[int, float]] = {}  # annotator -> datapoint handed back -> open to them again

    def annotator(self, annotator_id: str) -> int:
        return self.annotators.setdefault(annotator_id, len(self.annotators))

    def has_work_for(self, annotator_id: str) -> bool:
        """Whether some datapoint could still be leased to this annotator."""
        ok = (self.answered + self.leased) < self.max
        taken = self.taken.get(annotator_id)
        return bool((ok & ~taken).any() if taken is not None else ok.any())

    def next_for(self, annotator_id: str, rng: random.Random, now: float) -> int | None:
        """The least-answered datapoint (counting leases out) this annotator has not had yet, leased to them;
        one they handed back only once its delay has passed."""
        load = self.answered + self.leased
        ok = load < self.max
        taken = self.taken.get(annotator_id)
        if taken is not None:
            if self.cap is not None and int(taken.sum()) >= self.cap:
                return None
            ok &= ~taken
        returned = self.returned.get(annotator_id)
        if returned:
            for d, until in list(returned.items()):
                if until > now:
                    ok[d] = False
                else:
                    del returned[d]
        if not ok.any():
            return None
        low = load[ok].min()
        candidates = np.flatnonzero(ok & (load == low))
        d = int(candidates[rng.randrange(len(candidates))])
        self.lease(d, annotator_id)
        return d

    def lease(self, d: int, annotator_id: str) -> None:
        before = int(self.answered[d] + self.leased[d])
        self.leased[d] += 1
        self.leased_total += 1
        self._load_changed(d, before)
        self._taken(annotator_id)[d] = True

    def give_back(self, d: int, annotator_id: str, now: float) -> None:
        """A lease of `d` ended unanswered and its task goes back to the pool: to everyone else at once, to this
        annotator after `RETURN_DELAY` (they answered nothing for it, so they may still answer it once)."""
        taken = self.taken.get(annotator_id)
        if taken is not None:
            taken[d] = False
        self.returned.setdefault(annotator_id, {})[d] = now + RETURN_DELAY

    def unlease(self, d: int) -> None:
        before = int(self.answered[d] + self.leased[d])
        self.leased[d] -= 1
        self.leased_total -= 1
        self._load_changed(d, before)

    def answer(self, d: int, annotator_id: str) -> int:
        """Count an answer to datapoint `d`; returns the annotator's index."""
        before = int(self.answered[d] + self.leased[d])
        self.answered[d] += 1
        if self.answered[d] == self.max:
            self.n_full += 1
        self._load_changed(d, before)
        self._taken(annotator_id)[d] = True
        return self.annotator(annotator_id)

    def clear_answers(self) -> None:
        """Forget every answer counted (before counting some of them again); leases out and who had what stay."""
        self.answered[:] = 0
        self.n_full = 0
        self.n_open = int((self.leased < self.max).sum())

    def _load_changed(self, d: int, before: int) -> None:
        after = int(self.answered[d] + self.leased[d])
        if before < self.max <= after:
            self.n_open -= 1
        elif after < self.max <= before:
            self.n_open += 1

    def _taken(self, annotator_id: str) -> np.ndarray:
        mask = self.taken.get(annotator_id)
        if mask is None:
            mask = self.taken[annotator_id] = np.zeros(len(self.answered), dtype=bool)
        return mask


def next_task(item: ItemRecord, annotator_id: str, rng: random.Random, now: float) -> int | None:
    """The datapoint to lease to this annotator (see `Assignments.next_for`), saying on the item's status when
    it could take more answers but not theirs: it waits for other people."""
    d: int | None = item.tally.next_for(annotator_id, rng, now)
    note_waiting(item, d is not None)
    return d


def note_waiting(item: ItemRecord, served: bool) -> None:
    item.waiting = None if served or not item.kind.room(item) else WAITING


class PerDatapointThresholds:
    """The thresholds of a kind whose tally is `Assignments`: a datapoint is full at the maximum; an item is
    enough when it averages the minimum per datapoint (as hosted: a few hard datapoints do not sink it)."""

    def full(self, item: ItemRecord) -> bool:
        return bool(item.tally.n_full == len(item.datapoints))

    def enough(self, item: ItemRecord) -> bool:
        return item.response_count >= item.config.min_response_threshold * len(item.datapoints)

    def room(self, item: ItemRecord) -> bool:
        return bool(item.tally.n_open > 0)

    def shortfall(self, item: ItemRecord) -> int:
        wanted = item.config.min_response_threshold * len(item.datapoints)
        return max(0, wanted - item.response_count - int(item.tally.leased_total))
