"""A load of annotators over HTTP that records exactly which answers the server acknowledged."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from dataclasses import dataclass, field

import httpx


@dataclass
class Outcomes:
    accepted: set[str] = field(default_factory=set)  # answered 200 "accepted": must be counted, and stored once
    abandoned: set[str] = field(default_factory=set)  # answered 503 and never sent again: must count nowhere
    unknown: set[str] = field(default_factory=set)  # the connection broke mid-answer: may or may not be stored
    unavailable: int = 0  # 503s seen
    retried: int = 0  # answers sent again after a 503
    after: dict[str, float] = field(default_factory=dict)  # task id -> when it was acknowledged


class AnswerLoad:
    """`annotators` people fetching and answering as fast as the server lets them. After a 503 an answer is
    sent again (while its lease lasts) or, with probability `give_up`, abandoned."""

    def __init__(
        self, url: str | list[str], api_key: str, *, annotators: int = 6, give_up: float = 0.5, seed: int = 0
    ) -> None:
        # Several URLs (a cluster's processes): annotator i talks to the i-th, in turn.
        self.urls = [url] if isinstance(url, str) else list(url)
        url = self.urls[0]
        self.url = url
        self.api_key = api_key
        self.n = annotators
        self.give_up = give_up
        self.rng = random.Random(seed)
        self.out = Outcomes()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tokens = [
            httpx.post(
                f"{url}/v1/annotators",
                json={"name": f"load-{i}"},
                headers={"Authorization": f"Bearer {api_key}"},
            )
            .raise_for_status()
            .json()["token"]
            for i in range(annotators)
        ]

    def __enter__(self) -> AnswerLoad:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None

    def urls_alive(self, urls: list[str]) -> None:
        """From now on, spread the annotators over these URLs only (a process died)."""
        self.urls = list(urls)

    async def _main(self) -> None:
        async with httpx.AsyncClient(timeout=10.0) as http:
            await asyncio.gather(
                *(
                    self._annotate(http, i, token, random.Random(self.rng.random()))
                    for i, token in enumerate(self._tokens)
                )
            )

    async def _annotate(self, http: httpx.AsyncClient, i: int, token: str, rng: random.Random) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        while not self._stop.is_set():
            base = self.urls[i % len(self.urls)]
            try:
                r = await http.post(f"{base}/v1/tasks/next", json={"wait": 0.5}, headers=headers)
            except httpx.HTTPError:
                await asyncio.sleep(0.1)
                continue
            if r.status_code != 200:
                await asyncio.sleep(0.05)
                continue
            task = r.json()
            await self._answer(http, i, headers, task, rng)

    async def _answer(
        self, http: httpx.AsyncClient, i: int, headers: dict[str, str], task: dict, rng: random.Random
    ) -> None:
        task_id = task["task_id"]
        body = {"choice": rng.choice("ab")}
        while True:
            base = self.urls[i % len(self.urls)]
            try:
                r = await http.post(f"{base}/v1/tasks/{task_id}/answer", json=body, headers=headers)
            except httpx.HTTPError:
                self.out.unknown.add(task_id)
                return
            if r.status_code == 502:  # a cluster's process forwarded it to one that died: as a broken connection
                self.out.unknown.add(task_id)
                return
            if r.status_code == 200 and r.json()["status"] == "accepted":
                self.out.accepted.add(task_id)
                self.out.after[task_id] = time.monotonic()
                self.out.abandoned.discard(task_id)
                return
            if r.status_code != 503:
                return  # refused (lease expired, item ended): not counted, and not expected to be
            self.out.unavailable += 1
            assert r.headers.get("retry-after"), "a 503 says when to come back"
            if rng.random() < self.give_up or time.time() > task["lease_expires_at"] - 0.5:
                self.out.abandoned.add(task_id)
                return
            self.out.retried += 1
            await asyncio.sleep(min(0.2, float(r.headers["retry-after"])))
