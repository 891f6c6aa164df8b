"""Keeps a view fresh: server-sent events on the running asyncio loop, throttled, with a polling fallback."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, Literal, TypeVar

T = TypeVar("T")
Mode = Literal["off", "sse", "polling", "thread"]


class LiveUpdates(Generic[T]):
    """Runs `fetch` (blocking I/O) and then `apply` (touches widgets or figures) whenever the data changes.

    In a Jupyter kernel (or any running asyncio loop) it subscribes to `subscribe()`, an SSE stream, on that
    loop; every event marks the view dirty and a refresher applies at most one fetch per `throttle` seconds,
    so a crowd voting at 6,000 a minute costs the kernel a few requests a second, not one per vote. `fetch`
    runs in a worker thread so the loop (and the notebook) never waits on the network; `apply` runs on the
    loop's own thread, which is where ipywidgets expect to be touched. If the stream cannot be opened or
    fails, it falls back to polling every `poll_interval` seconds. Without a running loop (plain scripts,
    pytest) a daemon thread polls instead.
    """

    def __init__(
        self,
        fetch: Callable[[], T],
        apply: Callable[[T], None],
        *,
        subscribe: Callable[[], AsyncIterator[Any]] | None = None,
        tick: Callable[[], bool] | None = None,
        throttle: float = 0.5,
        poll_interval: float = 1.0,
        safety_interval: float = 10.0,
    ) -> None:
        self.fetch = fetch
        self.apply = apply
        self.subscribe = subscribe
        self.tick = tick
        self.throttle = throttle
        self.poll_interval = poll_interval
        # Even with a healthy stream, refresh now and then: a TTL can end with no vote to announce it.
        self.safety_interval = safety_interval
        self.mode: Mode = "off"
        self.events = 0
        self.refreshes = 0
        self.error: BaseException | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._dirty: asyncio.Event | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._on_mode: list[Callable[[Mode], None]] = []

    # ------------------------------------------------------------ control

    def on_mode_change(self, callback: Callable[[Mode], None]) -> None:
        self._on_mode.append(callback)

    def _set_mode(self, mode: Mode) -> None:
        self.mode = mode
        for cb in self._on_mode:
            cb(mode)

    @property
    def running(self) -> bool:
        return self.mode != "off"

    def start(self) -> None:
        """Start on the running loop if there is one, else on a polling thread. Idempotent."""
        if self.running:
            return
        self._stop.clear()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flowlab-live")
            self._dirty = asyncio.Event()
            self._dirty.set()
            self._set_mode("sse" if self.subscribe is not None else "polling")
            self._tasks = [loop.create_task(self._refresher())]
            if self.subscribe is not None:
                self._tasks.append(loop.create_task(self._listen()))
            else:
                self._tasks.append(loop.create_task(self._poll()))
            if self.tick is not None:
                self._tasks.append(loop.create_task(self._ticker()))
        else:
            self._set_mode("thread")
            self._thread = threading.Thread(target=self._thread_main, name="flowlab-live", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        self._thread = None
        if self.running:
            self._set_mode("off")

    def poke(self) -> None:
        """Ask for a refresh soon (after a local change such as update_config)."""
        if self._dirty is not None:
            self._dirty.set()

    # ------------------------------------------------------------ asyncio mode

    async def _listen(self) -> None:
        assert self.subscribe is not None and self._dirty is not None
        try:
            async for _event in self.subscribe():
                self.events += 1
                self._dirty.set()
            return  # the stream ended on purpose (e.g. the flow was deleted): nothing more will change
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any failure to stream: keep the view alive by polling
            self.error = exc
        if not self._stop.is_set():
            self._set_mode("polling")
            await self._poll()

    async def _poll(self) -> None:
        assert self._dirty is not None
        while not self._stop.is_set():
            self._dirty.set()
            await asyncio.sleep(self.poll_interval)

    async def _ticker(self) -> None:
        assert self.tick is not None and self._dirty is not None
        last_refresh = time.monotonic()
        seen = self.refreshes
        while not self._stop.is_set():
            await asyncio.sleep(1.0)
            wants_refresh = False
            with contextlib.suppress(Exception):
                wants_refresh = bool(self.tick())
            if self.refreshes != seen:
                seen, last_refresh = self.refreshes, time.monotonic()
            if wants_refresh or time.monotonic() - last_refresh > self.safety_interval:
                self._dirty.set()
                last_refresh = time.monotonic()

    async def _refresher(self) -> None:
        assert self._dirty is not None
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            await self._dirty.wait()
            self._dirty.clear()
            try:
                snapshot = await loop.run_in_executor(self._executor, self.fetch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.error = exc
            else:
                if self._stop.is_set():
                    return
                try:
                    self.apply(snapshot)
                    self.refreshes += 1
                except Exception as exc:
                    self.error = exc
            await asyncio.sleep(self.throttle)

    # ------------------------------------------------------------ thread mode

    def _thread_main(self) -> None:
        while not self._stop.is_set():
            try:
                snapshot = self.fetch()
                if self._stop.is_set():
                    return
                self.apply(snapshot)
                self.refreshes += 1
            except Exception as exc:
                self.error = exc
            if self.tick is not None:
                with contextlib.suppress(Exception):
                    self.tick()
            self._stop.wait(self.poll_interval)
