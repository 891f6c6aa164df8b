"""Leases: the tasks out with annotators, when they expire, and what became of recent ones."""

from __future__ import annotations

import heapq
from collections import OrderedDict

from flowlab.server.clock import Clock
from flowlab.server.model import ItemRecord, Lease

RECENT_OUTCOMES = 50_000  # task ids remembered for clear refusals; accepted ones are also in the database
COMMIT_RECHECK = 0.5  # seconds: a lease whose answer is committing is looked at again this much later


class LeaseBook:
    """Every lease out, keyed by task id, with a heap of expiry times; live, never stored.

    `outcome` remembers what recently became of a task (accepted, skipped, expired, ...) so a late or
    repeated answer gets a precise answer; past that memory, an accepted task is found in the database."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.tasks: dict[str, Lease] = {}
        self._heap: list[tuple[float, str]] = []
        self._outcomes: OrderedDict[str, tuple[str, str]] = OrderedDict()  # task_id -> (outcome, annotator)
        # Tasks taken back because their item ended, per annotator whose page is listening (see `listen`).
        self.withdrawn: dict[str, list[str]] = {}
        self._listening: dict[str, int] = {}

    def listen(self, annotator_id: str, delta: int) -> None:
        """An annotator's event stream opened (+1) or closed (−1); only those listening hear of withdrawals."""
        count = self._listening.get(annotator_id, 0) + delta
        if count > 0:
            self._listening[annotator_id] = count
        else:
            self._listening.pop(annotator_id, None)
            self.withdrawn.pop(annotator_id, None)

    def take_withdrawn(self, annotator_id: str) -> list[str]:
        return self.withdrawn.pop(annotator_id, [])

    def add(self, lease: Lease) -> None:
        self.tasks[lease.task_id] = lease
        if lease.gold is None:
            lease.item.leases[lease.task_id] = lease
        heapq.heappush(self._heap, (lease.expires_at, lease.task_id))
        if len(self._heap) > 2 * len(self.tasks) + 1024:
            # Answered leases leave their entry behind until it would expire: at 30,000 votes/s and 60 s
            # leases that is millions of entries, so rebuild from the leases still out instead.
            self._heap = [(lease.expires_at, task_id) for task_id, lease in self.tasks.items()]
            heapq.heapify(self._heap)

    def get(self, task_id: str) -> Lease | None:
        return self.tasks.get(task_id)

    def next_expiry(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def remember(self, task_id: str, outcome: str, annotator_id: str) -> None:
        self._outcomes[task_id] = (outcome, annotator_id)
        if len(self._outcomes) > RECENT_OUTCOMES:
            self._outcomes.popitem(last=False)

    def outcome(self, task_id: str) -> tuple[str, str] | None:
        return self._outcomes.get(task_id)

    def close(self, lease: Lease, outcome: str) -> None:
        """The lease is over (answered, or given up): forget it, remember how it ended."""
        self.tasks.pop(lease.task_id, None)
        if lease.item.leases.pop(lease.task_id, None) is not None:
            lease.item.kind.closed(lease)
        self.remember(lease.task_id, outcome, lease.annotator_id)

    def release(self, lease: Lease, outcome: str, *, requeue: bool, defer: bool = False) -> None:
        """End a lease without an answer. Its question is asked again: next (an expired lease), or after fresh
        ones (`defer`, a skip, so the annotator who skipped it is not handed it straight back)."""
        held = lease.gold is None and lease.task_id in lease.item.leases
        self.close(lease, outcome)
        if held:
            if requeue:
                lease.item.kind.release(lease, defer=defer, now=self.clock.now())
            lease.item.touch()

    def drop_item(self, item: ItemRecord, outcome: str) -> None:
        """The item ended: its leases end too, gold ones included, except those whose answer is already
        committing."""
        ended = list(item.leases.values()) + [g for g in self.tasks.values() if g.item is item and g.gold is not None]
        for lease in ended:
            if lease.committing is None:
                self.close(lease, outcome)
                if lease.annotator_id in self._listening:
                    taken = self.withdrawn.setdefault(lease.annotator_id, [])
                    if len(taken) < 1000:  # a page holds a handful; past that, the answer's 409 says it
                        taken.append(lease.task_id)

    def pause(self, lease: Lease, now: float) -> None:
        """Stop the lease's clock (a model is writing a reply for its annotator)."""
        if lease.paused_at is None:
            lease.paused_at = now

    def resume(self, lease: Lease, now: float) -> None:
        """Start the clock again, the lease longer by the time it stood still."""
        if lease.paused_at is None:
            return
        lease.expires_at += max(0.0, now - lease.paused_at)
        lease.paused_at = None
        if lease.task_id in self.tasks:
            heapq.heappush(self._heap, (lease.expires_at, lease.task_id))

    def show(self, lease: Lease, now: float) -> None:
        """The annotator's page put the task on screen: the first time, the lease's clock starts again, so the
        time it waited behind another task is not taken from the person. Only ever later, and never past the
        item's deadline; a task held and never shown still expires at its usual time."""
        if lease.shown_at is not None:
            return
        lease.shown_at = now
        # While a model writes a reply the clock stands still; `resume` adds the whole pause afterwards.
        start = now if lease.paused_at is None else min(now, lease.paused_at)
        restarted = min(start + lease.item.config.lease_seconds, lease.item.deadline)
        if restarted > lease.expires_at:
            lease.expires_at = restarted
            if lease.task_id in self.tasks:
                heapq.heappush(self._heap, (lease.expires_at, lease.task_id))

    def of_annotator(self, annotator_id: str) -> list[Lease]:
        return [lease for lease in self.tasks.values() if lease.annotator_id == annotator_id]

    def expire(self, now: float) -> bool:
        """Release every lease past its expiry; True if any was."""
        heap = self._heap
        expired_any = False
        while heap and heap[0][0] <= now:
            _, task_id = heapq.heappop(heap)
            lease = self.tasks.get(task_id)
            if lease is None or lease.expires_at > now:
                continue
            if lease.committing is not None or lease.paused_at is not None:
                # Its answer arrived in time and is being made durable, or a model is writing a reply for it
                # (that wait is not the annotator's): not expired, look again shortly.
                heapq.heappush(heap, (now + COMMIT_RECHECK, task_id))
                continue
            self.release(lease, "lease_expired", requeue=True)
            expired_any = True
        return expired_any
