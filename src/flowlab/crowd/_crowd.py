"""A simulated crowd of annotators that speaks the same HTTP protocol as the annotator page."""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec

from flowlab import schemas
from flowlab.client._transport import resolve
from flowlab.crowd._chat import ChatScript, converse, last_event
from flowlab.crowd._oracle import (
    content_utility,
    datapoint_content,
    prefer_probability,
    true_category,
    true_score,
)
from flowlab.crowd._rlhf import annotate, response_scores
from flowlab.crowd._wire import KeepAliveHTTP, WireError, WireResponse


@dataclass
class AnnotatorProfile:
    """One simulated person: how often they follow their judgement, how fast, and whether they are a spammer."""

    name: str
    accuracy: float  # chance of answering from the oracle rather than at random
    mean_seconds: float  # mean time spent on a task
    spammer: bool = False
    token: str = ""
    id: str = ""


@dataclass
class CrowdStats:
    votes: int = 0
    rejected: int = 0
    skipped: int = 0
    errors: int = 0
    unavailable: int = 0  # 503s while the server's database was away; those answers were sent again
    idle_polls: int = 0  # asked for work and found none
    replies: int = 0  # chat tasks: replies the crowd asked models for
    by_annotator: dict[str, int] = field(default_factory=dict)
    error_causes: dict[str, int] = field(default_factory=dict)  # what went wrong, with how often

    def error(self, exc: BaseException) -> None:
        self.errors += 1
        cause = f"{type(exc).__name__}: {str(exc)[:120]}" if str(exc) else type(exc).__name__
        self.error_causes[cause] = self.error_causes.get(cause, 0) + 1


CHAT_RETRY_SECONDS = 0.25  # between tries at a failed reply (for ChatScript.patience, then the task goes back)
_task_decoder = msgspec.json.Decoder(schemas.Task)
_ack_decoder = msgspec.json.Decoder(schemas.Ack)
_batch_decoder = msgspec.json.Decoder(schemas.TaskBatch)
_acks_decoder = msgspec.json.Decoder(schemas.AckBatch)


class SimulatedCrowd:
    """Annotators with accuracies, response-time distributions and optional spammers, voting over HTTP.

    Parameters
    ----------
    url, api_key
        The server and a researcher key (used to make annotator tokens and to read the oracle's true scores);
        default to FLOWLAB_URL / FLOWLAB_API_KEY, else the embedded local server.
    annotators
        How many people.
    rate
        Votes per minute for the whole crowd while there is work (default 6,000).
    accuracy
        Chance an honest annotator answers from their judgement (a Bradley–Terry draw on the true scores)
        rather than at random.
    spammer_fraction
        Share of annotators who answer at random.
    bulk
        Fetch and answer tasks in batches (the crowd endpoints) instead of one at a time like a page.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        annotators: int = 20,
        rate: float = 6000.0,
        accuracy: float = 0.9,
        spammer_fraction: float = 0.0,
        response_time_cv: float = 0.5,
        seed: int = 0,
        bulk: bool = False,
        batch_size: int = 50,
        name: str = "sim",
        chat: ChatScript | None = None,
    ) -> None:
        if annotators < 1:
            raise ValueError("annotators must be at least 1")
        if rate <= 0:
            raise ValueError("rate is votes per minute and must be positive")
        if not 0.0 <= accuracy <= 1.0 or not 0.0 <= spammer_fraction <= 1.0:
            raise ValueError("accuracy and spammer_fraction are probabilities in [0, 1]")
        self.url, self.api_key = resolve(url, api_key)
        self.rate = rate
        self.bulk = bulk
        self.batch_size = batch_size
        self.response_time_cv = response_time_cv
        self.rng = random.Random(seed)
        n_spam = round(annotators * spammer_fraction)
        mean = annotators * 60.0 / rate
        self.profiles = [
            AnnotatorProfile(f"{name}-{i:03d}", accuracy, mean, spammer=i < n_spam) for i in range(annotators)
        ]
        self.stats = CrowdStats()
        self.chat = chat or ChatScript()
        self._scores: dict[str, list[float] | None] = {}
        self._details: dict[str, list[schemas.Datapoint] | None] = {}
        self._gold: dict[str, dict[tuple[str, str], str]] = {}
        self._gold_labels_of: dict[str, dict[str, list[str]]] = {}
        self._tls: ssl.SSLContext | None = None
        self._interrupted = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # ------------------------------------------------------------ running

    def start(self) -> SimulatedCrowd:
        """Run the crowd in a background thread until `stop()`."""
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._thread_main, name="flowlab-crowd", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> CrowdStats:
        if self._thread is not None and self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(30)
            self._thread = None
        return self.stats

    def __enter__(self) -> SimulatedCrowd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def run(self, duration: float) -> CrowdStats:
        """Vote for `duration` seconds in the foreground (or until `interrupt()`, e.g. from a signal handler)."""

        async def main() -> None:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            self._loop.call_later(0 if self._interrupted else duration, self._stop.set)
            await self.arun(self._stop)

        asyncio.run(main())
        return self.stats

    def interrupt(self) -> None:
        """End a foreground `run()` early, cleanly; safe to call from a signal handler."""
        self._interrupted = True  # in case the run has not started its loop yet
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    def _thread_main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            await self.arun(self._stop, ready=self._ready)

        try:
            asyncio.run(main())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def arun(self, stop: asyncio.Event, *, ready: threading.Event | None = None) -> None:
        """Run every annotator on the current event loop until `stop` is set."""
        limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)  # sign-up
        async with httpx.AsyncClient(base_url=self.url, limits=limits, timeout=30.0) as http:
            research = {"Authorization": f"Bearer {self.api_key}"}
            for p in self.profiles:
                if not p.token:
                    r = await http.post("/v1/annotators", json={"name": p.name}, headers=research)
                    r.raise_for_status()
                    made = msgspec.json.decode(r.content, type=schemas.AnnotatorCreated)
                    p.token, p.id = made.token, made.id
            if ready is not None:
                ready.set()
            workers = [asyncio.create_task(self._annotate(p, stop)) for p in self.profiles]
            await stop.wait()
            for w in workers:
                w.cancel()
            for w in workers:
                with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                    await w

    # ------------------------------------------------------------ one annotator

    async def _annotate(self, p: AnnotatorProfile, stop: asyncio.Event) -> None:
        # Each person has a connection of their own, as a browser would, and a lean one: a shared pool scanned
        # every connection on every request (250 votes/s), a general-purpose client per person cost the crowd
        # most of a core at 850 votes/s.
        if self._tls is None:  # made once: loading the CA bundle costs ~30 ms a client
            self._tls = ssl.create_default_context()
        own = KeepAliveHTTP(self.url, p.token, tls=self._tls)
        # The oracle's lookups (true scores, gold) go with the researcher's key over a lean connection too.
        oracle = KeepAliveHTTP(self.url, self.api_key or "", tls=self._tls)
        try:
            await self._work(own, oracle, p, stop)
        finally:
            own.close()
            oracle.close()

    async def _work(self, own: KeepAliveHTTP, oracle: KeepAliveHTTP, p: AnnotatorProfile, stop: asyncio.Event) -> None:
        """One annotator's loop: tasks over `own` connection, the oracle's lookups over `oracle`."""
        rng = random.Random(self.rng.random())
        # Stagger the start so the crowd does not arrive in lockstep.
        await asyncio.sleep(rng.random() * min(p.mean_seconds, 1.0))
        pending: list[schemas.Task] = []
        while not stop.is_set():
            try:
                if self.bulk:
                    await self._bulk_round(own, oracle, p, rng)
                    continue
                if not pending:
                    r = await own.post("/v1/tasks/next", _NEXT_BODY)
                    if r.status == 204:
                        self.stats.idle_polls += 1
                        await asyncio.sleep(float(r.header("x-poll-interval", "0.5") or 0.5) * rng.uniform(0.5, 1.0))
                        continue
                    _raise_for_status(r)
                    pending.append(_task_decoder.decode(r.body))
                task = pending.pop()
                started = time.monotonic()
                if task.kind == "chat":
                    choice = await self._chat(own, p, task, rng)
                else:
                    choice = await self._choose_or_skip(oracle, p, task, rng)
                think = self._think_time(p, rng) - (time.monotonic() - started)
                if think > 0:
                    await asyncio.sleep(think)
                path = f"/v1/tasks/{task.task_id}/answer"
                r = await own.post(path, _encode(_answer_body(choice, fetch_next=True, kind=task.kind)))
                if r.status in (409, 422):  # too late, or an answer the server refuses: hand the task back
                    self.stats.rejected += 1
                    if r.status == 422:
                        self.stats.error(RuntimeError(f"refused: {r.text[:200]}"))
                        await own.post(path, _SKIP_BODY)
                    continue
                if r.status == 503:  # nothing was counted: answer again, as a person would, while the lease lasts
                    self.stats.unavailable += 1
                    await asyncio.sleep(_retry_after(r))
                    if time.time() < task.lease_expires_at:
                        pending.append(task)
                    continue
                _raise_for_status(r)
                ack = _ack_decoder.decode(r.body)
                self._count(p, ack)
                if ack.next is not None:
                    pending.append(ack.next)
            except (WireError, httpx.HTTPError, msgspec.DecodeError) as exc:
                self.stats.error(exc)
                await asyncio.sleep(0.2)

    async def _bulk_round(
        self, own: KeepAliveHTTP, oracle: KeepAliveHTTP, p: AnnotatorProfile, rng: random.Random
    ) -> None:
        r = await own.post("/v1/tasks/next-batch", _encode({"n": self.batch_size, "wait": 2.0}))
        _raise_for_status(r)
        batch = _batch_decoder.decode(r.body)
        if not batch.tasks:
            await asyncio.sleep(batch.poll_interval)
            return
        answers = []
        for t in batch.tasks:
            if t.kind == "chat":
                choice = await self._chat(own, p, t, rng)
            else:
                choice = await self._choose_or_skip(oracle, p, t, rng)
            if isinstance(choice, dict):  # an annotation goes by the single-answer route
                r = await own.post(f"/v1/tasks/{t.task_id}/answer", _encode(_answer_body(choice, kind=t.kind)))
                if r.status == 200:
                    self._count(p, _ack_decoder.decode(r.body))
                else:
                    self.stats.rejected += 1
                continue
            answers.append({"task_id": t.task_id, "choice": choice})
        await asyncio.sleep(sum(self._think_time(p, rng) for _ in batch.tasks))
        if not answers:
            return
        body = _encode({"answers": answers})
        r = await own.post("/v1/tasks/answers", body)
        while r.status == 503 and time.time() < min(t.lease_expires_at for t in batch.tasks):
            self.stats.unavailable += 1
            await asyncio.sleep(_retry_after(r))
            r = await own.post("/v1/tasks/answers", body)
        _raise_for_status(r)
        for ack in _acks_decoder.decode(r.body).results:
            self._count(p, ack)

    def _count(self, p: AnnotatorProfile, ack: schemas.Ack) -> None:
        if ack.status == "accepted":
            self.stats.votes += 1
            self.stats.by_annotator[p.name] = self.stats.by_annotator.get(p.name, 0) + 1
        elif ack.status == "skipped":
            self.stats.skipped += 1
        elif ack.status == "rejected":
            self.stats.rejected += 1

    def _think_time(self, p: AnnotatorProfile, rng: random.Random) -> float:
        # Log-normal response times with the profile's mean and the crowd's coefficient of variation.
        cv = self.response_time_cv
        if cv <= 0:
            return p.mean_seconds
        sigma2 = math.log(1 + cv * cv)
        return rng.lognormvariate(math.log(p.mean_seconds) - sigma2 / 2, math.sqrt(sigma2))

    # ------------------------------------------------------------ the oracle

    async def _choose_or_skip(
        self, oracle: KeepAliveHTTP, p: AnnotatorProfile, task: schemas.Task, rng: random.Random
    ) -> str | dict[str, Any]:
        try:
            return await self._choose(oracle, p, task, rng)
        except WireError:
            return "skip"  # a task once taken is always answered or handed back, never dropped

    async def _choose(
        self, oracle: KeepAliveHTTP, p: AnnotatorProfile, task: schemas.Task, rng: random.Random
    ) -> str | dict[str, Any]:
        if task.kind == "classify":
            return await self._classify(oracle, p, task, rng)
        if task.kind == "rlhf":
            return await self._rlhf(oracle, p, task, rng)
        assert task.b is not None
        if p.spammer or rng.random() > p.accuracy:
            return rng.choice(("a", "b", "tie") if task.allow_ties else ("a", "b"))
        gold = await self._gold_answer(oracle, task)
        if gold is not None:
            return gold
        scores = await self._item_scores(oracle, task.item_id)
        if scores is not None and 0 <= task.a.ref < len(scores) and 0 <= task.b.ref < len(scores):
            sa, sb = scores[task.a.ref], scores[task.b.ref]
        else:  # another researcher's item: this key cannot read its metadata, so judge by content
            sa, sb = content_utility(_view_content(task.a)), content_utility(_view_content(task.b))
        return "a" if rng.random() < prefer_probability(sa, sb) else "b"

    async def _chat(
        self, own: KeepAliveHTTP, p: AnnotatorProfile, task: schemas.Task, rng: random.Random
    ) -> str | dict[str, Any]:
        """Talk with the task's models by the crowd's script, then annotate; "skip" when a model fails."""

        async def generate(messages: list[dict[str, str]], model: int) -> dict[str, Any] | None:
            # As a person would: an offline model or a failed reply is tried again, a moment apart, for a while;
            # a failure that says retrying will not help (or a refusal) hands the task back at once.
            body = _encode({"messages": messages, "model": model})
            give_up = time.monotonic() + self.chat.patience
            while True:
                r = await own.post(f"/v1/tasks/{task.task_id}/generate", body)
                if r.status == 200:
                    self.stats.replies += 1
                    event = last_event(r.body)
                    if event is not None and event.get("type") == "done":
                        return event
                    if event is not None and event.get("retry") is False:
                        return None
                elif r.status != 503:
                    return None
                if time.monotonic() >= give_up:
                    return None
                await asyncio.sleep(CHAT_RETRY_SECONDS * rng.uniform(0.5, 1.5))

        try:
            body = await converse(task, self.chat, generate, p.accuracy, p.spammer, rng)
        except WireError:
            body = None
        return "skip" if body is None else body

    async def _classify(
        self, oracle: KeepAliveHTTP, p: AnnotatorProfile, task: schemas.Task, rng: random.Random
    ) -> str:
        """The true category with the annotator's accuracy, else one of the others at random (so a crowd at
        80 % accuracy answers right 80 % of the time); spammers pick any category."""
        values = [c.value for c in task.categories or []]
        if p.spammer:
            return rng.choice(values)
        gold = await self._gold_labels(oracle, task.flow_id)
        details = await self._item_detail(oracle, task.item_id)
        if _view_content(task.a) in gold:  # a gold question: the set says what is right (by value or label)
            truths = gold[_view_content(task.a)]
            truth = next(c.value for c in task.categories or [] if c.value in truths or c.label in truths)
        elif details is not None and 0 <= task.a.ref < len(details):
            d = details[task.a.ref]
            truth = true_category(d.private_metadata, datapoint_content(d), values)
        else:  # another researcher's item: judge by content
            truth = true_category(None, _view_content(task.a), values)
        if rng.random() < p.accuracy:
            return truth
        return rng.choice([v for v in values if v != truth] or values)

    async def _rlhf(
        self, oracle: KeepAliveHTTP, p: AnnotatorProfile, task: schemas.Task, rng: random.Random
    ) -> dict[str, Any]:
        """The `rlhf` body of an answer, from the true scores of the responses shown (found by content in the
        item's detail; another researcher's item is judged by content alone)."""
        assert task.rlhf is not None
        dims = task.rlhf.spec.dimensions
        details = await self._item_detail(oracle, task.item_id)
        given: list[schemas.Response] = []
        if details is not None and 0 <= task.a.ref < len(details):
            given = details[task.a.ref].responses or []
        by_content = {(r.text, r.url or (f"/media/{r.media}" if r.media else None)): r for r in given}
        shown = [by_content.get((v.text, v.url), v) for v in task.rlhf.responses]
        scores = [response_scores(r, dims) for r in shown]
        return annotate(task.rlhf, scores, p.accuracy, p.spammer, rng)

    async def _lookup(self, oracle: KeepAliveHTTP, path: str, type: Any) -> Any:
        """A researcher read for the oracle, decoded; None when the key may not read it (another's flow)."""
        r = await oracle.get(path)
        if r.status == 404:
            return None
        _raise_for_status(r)
        return msgspec.json.decode(r.body, type=type)

    async def _item_detail(self, oracle: KeepAliveHTTP, item_id: str) -> list[schemas.Datapoint] | None:
        if item_id not in self._details:
            detail = await self._lookup(oracle, f"/v1/items/{item_id}/detail", schemas.ItemDetail)
            self._details[item_id] = None if detail is None else detail.datapoints
            _forget_oldest(self._details)
        return self._details[item_id]

    async def _item_scores(self, oracle: KeepAliveHTTP, item_id: str) -> list[float] | None:
        if item_id not in self._scores:
            details = await self._item_detail(oracle, item_id)
            self._scores[item_id] = (
                None if details is None else [true_score(d.private_metadata, datapoint_content(d)) for d in details]
            )
            _forget_oldest(self._scores)
        return self._scores[item_id]

    async def _gold_labels(self, oracle: KeepAliveHTTP, flow_id: str) -> dict[str, list[str]]:
        """Content -> its right answers, for the gold labels of a classify flow (empty for another's flow)."""
        known = self._gold_labels_of.get(flow_id)
        if known is None:
            path = f"/v1/flows/{flow_id}/validation-labels"
            labels = await self._lookup(oracle, path, list[schemas.ValidationLabel]) or []
            known = self._gold_labels_of[flow_id] = {_gold_content(g.datapoint): g.truths for g in labels}
        return known

    async def _gold_answer(self, oracle: KeepAliveHTTP, task: schemas.Task) -> str | None:
        known = self._gold.get(task.flow_id)
        if known is None:
            path = f"/v1/flows/{task.flow_id}/validation-pairs"
            known = {}
            for pair in await self._lookup(oracle, path, list[schemas.ValidationPair]) or []:
                a, b = _gold_content(pair.a), _gold_content(pair.b)
                known[(a, b)] = pair.answer
                known[(b, a)] = {"a": "b", "b": "a"}.get(pair.answer, pair.answer)
            self._gold[task.flow_id] = known
        if not known or task.b is None:
            return None
        return known.get((_view_content(task.a), _view_content(task.b)))


CACHED_ITEMS = 4096  # items whose detail the crowd remembers: a long batch project must not grow its memory


def _forget_oldest(cache: dict[str, Any]) -> None:
    while len(cache) > CACHED_ITEMS:
        del cache[next(iter(cache))]


def _answer_body(choice: str | dict[str, Any], *, fetch_next: bool = False, kind: str = "rlhf") -> dict[str, Any]:
    if isinstance(choice, dict):  # an annotation: an RLHF task's or a chat task's
        return {"choice": "submit", "chat" if kind == "chat" else "rlhf": choice, "fetch_next": fetch_next}
    return {"choice": choice, "fetch_next": fetch_next}


def _retry_after(r: WireResponse) -> float:
    try:
        return min(5.0, max(0.05, float(r.header("retry-after", "1") or 1)))
    except ValueError:
        return 1.0


def _raise_for_status(r: WireResponse) -> None:
    if r.status >= 400:
        raise WireError(f"HTTP {r.status}: {r.text[:200]}")


_encode = msgspec.json.Encoder().encode
_NEXT_BODY = _encode({"wait": 2.0})
_SKIP_BODY = _encode({"choice": "skip"})


def _gold_content(d: schemas.DatapointIn) -> str:
    if d.media is not None:
        return f"/media/{d.media}"
    return d.text if d.text is not None else (d.url or "")


def _view_content(v: schemas.DatapointView) -> str:
    return v.text if v.text is not None else (v.url or "")
