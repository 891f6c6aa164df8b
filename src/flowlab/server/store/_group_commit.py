"""Group commit, shared by every store: one writer thread, many waiters per transaction, and recovery.

Submissions queue up while the previous transaction commits, then share the next one; each caller's future
resolves once its transaction is durable, in submission order. When the database cannot be written (a lost
connection, a lock held past the busy timeout, a full disk) the writer fails the waiting submissions with
`StoreUnavailable` — nothing of theirs was kept, so nothing is acknowledged — keeps the ones marked `retry`,
and probes until the database is back; meanwhile `submit` refuses at once and `degraded` says why. A
submission the database rejects on its own merits fails alone; the rest of its group still commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from flowlab.server.store import Fenced, Op, Row, StoreRejected, StoreUnavailable

log = logging.getLogger("flowlab.store")

CLOSE_GRACE = 5.0  # seconds close() waits for queued writes while the database is away


@dataclass(slots=True)
class _Submission:
    ops: Sequence[Op]
    future: asyncio.Future[None]
    retry: bool


class GroupCommitStore:
    def __init__(self, *, max_batch: int = 4096, probe_every: float = 0.25, max_probe_gap: float = 2.0) -> None:
        self.max_batch = max_batch
        self.probe_every = probe_every
        self.max_probe_gap = max_probe_gap
        self._pending: deque[_Submission] = deque()
        self._wake: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flowlab-writer")
        self.degraded: str | None = None
        self.degraded_since: float | None = None
        self.commits = 0
        self.outages = 0
        self._inflight: list[_Submission] = []  # the group being committed now
        self._kept: list[_Submission] = []  # writes marked retry, held through an outage
        self._last_outage_end = 0.0
        self._gap = probe_every
        # What to do once a commit finds this process fenced off (a cluster's process that others declared
        # dead): by default, refuse the commit like any outage.
        self.on_fenced: Callable[[Fenced], None] | None = None

    # ------------------------------------------------------------ what each database provides

    def _commit(self, batches: list[Sequence[Op]]) -> None:
        """Apply every batch in one transaction; raise on failure, leaving nothing applied."""
        raise NotImplementedError

    def _probe(self) -> None:
        """Reconnect if need be and check that a write transaction can start; raise while it cannot."""
        raise NotImplementedError

    def _transient(self, exc: BaseException) -> bool:
        """True for failures of the database rather than of the statements: worth waiting out."""
        raise NotImplementedError

    def _close_connections(self) -> None:
        raise NotImplementedError

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        raise NotImplementedError

    # ------------------------------------------------------------ the protocol

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._writer = asyncio.create_task(self._run(), name="flowlab-group-commit")

    async def close(self) -> None:
        if self._writer is not None:
            # Let queued, committing and kept writes finish: they may already be promised to someone. What
            # cannot land in time is failed, never left hanging; writes marked retry are re-derived at the
            # next start (ended items are finalised again).
            give_up = time.monotonic() + (CLOSE_GRACE if self.degraded else 6 * CLOSE_GRACE)
            while (self._pending or self._inflight or self._kept) and time.monotonic() < give_up:
                await asyncio.sleep(0.005)
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            for sub in [*self._inflight, *self._kept, *self._pending]:
                if not sub.future.done():
                    sub.future.set_exception(StoreUnavailable("the server is shutting down"))
            self._pending.clear()
            self._inflight, self._kept = [], []
        self._thread.shutdown(wait=True)
        self._close_connections()

    async def write(self, ops: Sequence[Op], *, retry: bool = False) -> None:
        await self.submit(ops, retry=retry)

    def submit(self, ops: Sequence[Op], *, retry: bool = False) -> asyncio.Future[None]:
        if self.degraded is not None and not retry:
            raise StoreUnavailable(f"the database cannot be written just now ({self.degraded})")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Submission(ops, fut, retry))
        assert self._wake is not None, "start() was not called"
        self._wake.set()
        return fut

    def write_now(self, ops: Sequence[Op]) -> None:
        """Synchronous write for start-up work that happens before the event loop serves anyone."""
        self._commit([ops])

    async def aread(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return await asyncio.to_thread(self.read, sql, params)

    # ------------------------------------------------------------ the writer

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch: list[_Submission] = []
                n_ops = 0
                while self._pending and n_ops < self.max_batch:
                    sub = self._pending.popleft()
                    batch.append(sub)
                    n_ops += len(sub.ops)
                await self._commit_group(batch)

    async def _commit_group(self, batch: list[_Submission]) -> None:
        loop = asyncio.get_running_loop()
        self._inflight = batch
        try:
            await loop.run_in_executor(self._thread, self._commit, [s.ops for s in batch])
        except Fenced as exc:
            self._fenced(batch, exc)
            return
        except Exception as exc:
            if self._transient(exc):
                await self._outage(batch, exc)
            else:
                await self._one_by_one(batch)
            return
        finally:
            self._inflight = []
        self.commits += 1
        for sub in batch:
            if not sub.future.done():
                sub.future.set_result(None)

    async def _one_by_one(self, batch: list[_Submission]) -> None:
        """A statement failed: find which submission it belongs to, and commit the others."""
        loop = asyncio.get_running_loop()
        for i, sub in enumerate(batch):
            try:
                await loop.run_in_executor(self._thread, self._commit, [sub.ops])
            except Fenced as exc:
                self._fenced(batch[i:], exc)
                return
            except Exception as exc:
                if self._transient(exc):
                    await self._outage(batch[i:], exc)
                    return
                log.error("the database refused a write: %s", exc)
                if not sub.future.done():
                    sub.future.set_exception(StoreRejected(f"the database refused this write: {exc}"))
                continue
            self.commits += 1
            if not sub.future.done():
                sub.future.set_result(None)

    def _fenced(self, batch: list[_Submission], exc: Fenced) -> None:
        """Nothing of this group landed, and nothing this process commits ever will: fail every waiter."""
        log.critical("%s", exc)
        for sub in [*batch, *self._pending, *self._kept]:
            if not sub.future.done():
                sub.future.set_exception(exc)
        self._pending.clear()
        self._kept = []
        if self.on_fenced is not None:
            self.on_fenced(exc)

    async def _outage(self, batch: list[_Submission], exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exc}".strip()
        log.error("commit failed (%s); answering 503 until the database is back", reason)
        self.degraded, self.degraded_since = reason, time.time()
        self.outages += 1
        err = StoreUnavailable(f"the database could not commit ({reason})")
        self._inflight = []
        self._kept = [sub for sub in [*self._kept, *batch, *self._pending] if sub.retry]
        for sub in [*batch, *self._pending]:
            if not sub.retry and not sub.future.done():
                sub.future.set_exception(err)
        self._pending.clear()
        await self._wait_until_writable()
        # Writes that must land go first, in their order, ahead of anything submitted since.
        self._pending.extendleft(reversed(self._kept))
        self._kept = []
        self.degraded, self.degraded_since = None, None
        self._last_outage_end = time.monotonic()
        log.warning("the database is writable again")

    async def _wait_until_writable(self) -> None:
        loop = asyncio.get_running_loop()
        # An outage right after the last one (a disk still full: the probe can pass while real writes fail)
        # carries on its backoff instead of probing from scratch, so the state does not flap.
        recent = time.monotonic() - self._last_outage_end < 2 * self.max_probe_gap
        gap = min(self.max_probe_gap, 2 * self._gap) if recent else self.probe_every
        while True:
            await asyncio.sleep(gap)
            try:
                await loop.run_in_executor(self._thread, self._probe)
                self._gap = gap
                return
            except Exception as exc:
                self.degraded = f"{type(exc).__name__}: {exc}".strip()
                gap = min(self.max_probe_gap, gap * 2)
