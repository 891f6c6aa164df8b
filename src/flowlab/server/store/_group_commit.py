"""Group commit, shared by every store: one writer thread, many waiters per transaction."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from flowlab.server.store import Op, StoreFailed

log = logging.getLogger("flowlab.store")


class GroupCommitStore:
    """Writes queue up while the previous transaction commits, then share the next one.

    Callers get a future per submission that resolves once its transaction is durable; submissions commit in
    the order they were made. A failed commit fails every waiter and stops the store, so nothing is ever
    acknowledged that the database does not hold.
    """

    def __init__(self, *, max_batch: int = 4096) -> None:
        self.max_batch = max_batch
        self._pending: deque[tuple[Sequence[Op], asyncio.Future[None]]] = deque()
        self._wake: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flowlab-writer")
        self._failed: BaseException | None = None
        self.commits = 0

    # Subclasses provide these.
    def _commit(self, batches: list[Sequence[Op]]) -> None:
        raise NotImplementedError

    def _close_connections(self) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._writer = asyncio.create_task(self._run(), name="flowlab-group-commit")

    async def close(self) -> None:
        if self._writer is not None:
            # Let queued writes finish: they may already be promised to someone.
            while self._pending and self._failed is None:
                await asyncio.sleep(0.005)
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        self._thread.shutdown(wait=True)
        self._close_connections()

    async def write(self, ops: Sequence[Op]) -> None:
        await self.submit(ops)

    def submit(self, ops: Sequence[Op]) -> asyncio.Future[None]:
        """Queue ops for the next commit, in call order; the future resolves once they are durable."""
        if self._failed is not None:
            raise StoreFailed(f"the store stopped after a failed commit: {self._failed}")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((ops, fut))
        assert self._wake is not None, "start() was not called"
        self._wake.set()
        return fut

    def write_now(self, ops: Sequence[Op]) -> None:
        """Synchronous write for start-up work that happens before the event loop serves anyone."""
        self._commit([ops])

    async def _run(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, n_ops = [], 0
                while self._pending and n_ops < self.max_batch:
                    ops, fut = self._pending.popleft()
                    batch.append((ops, fut))
                    n_ops += len(ops)
                try:
                    await loop.run_in_executor(self._thread, self._commit, [ops for ops, _ in batch])
                except Exception as exc:
                    log.exception("commit failed; refusing further writes")
                    self._failed = exc
                    err = StoreFailed(f"the store could not commit: {exc}")
                    for _, fut in [*batch, *self._pending]:
                        if not fut.done():
                            fut.set_exception(err)
                    self._pending.clear()
                    return
                self.commits += 1
                for _, fut in batch:
                    if not fut.done():
                        fut.set_result(None)
