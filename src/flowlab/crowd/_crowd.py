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
from urllib.parse import urlsplit

import httpx
import msgspec

from flowlab import schemas
from flowlab.client._transport import resolve
from flowlab.crowd._chat import ChatScript
from flowlab.crowd._kinds import SKIP, strategy_for, view_content
from flowlab.crowd._oracle import acceptable_above, datapoint_content, true_score
from flowlab.crowd._wire import KeepAliveHTTP, WireError, WireResponse


@dataclass
class AnnotatorProfile:
    """One simulated person: how often they follow their judgement, how fast, and whether they are a spammer."""

    name: str
    accuracy: float  # chance of answering from the oracle rather than at random
    mean_seconds: float  # mean time spent on a task
    spammer: bool = False
    # Chance of picking the pair's first-shown (left) side without reading: a position habit, not a judgement.
    left_bias: float = 0.0
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
    ended: dict[str, str] = field(default_factory=dict)  # enrolled people whose work ended: name -> why (a code)

    def error(self, exc: BaseException) -> None:
        self.errors += 1
        cause = f"{type(exc).__name__}: {str(exc)[:120]}" if str(exc) else type(exc).__name__
        self.error_causes[cause] = self.error_causes.get(cause, 0) + 1


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
    left_biased_fraction, left_bias
        Share of annotators with a position habit: they pick a pair's first-shown (left) side without reading
        with probability `left_bias`, and judge otherwise.
    bulk
        Fetch and answer tasks in batches (the crowd endpoints) instead of one at a time like a page.
    enroll
        An audience's enrollment link: each person enrolls through it as a participant of its platform would
        (Prolific's PROLIFIC_PID, STUDY_ID and SESSION_ID, or the link's id parameter; a team invitation gets their
        name), instead of being made by the researcher's key. A person whose work ends (their quota done, screened
        out, suspended) stops, and `stats.ended` says why.
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
        left_biased_fraction: float = 0.0,
        left_bias: float = 0.8,
        enroll: str | None = None,
    ) -> None:
        if annotators < 1:
            raise ValueError("annotators must be at least 1")
        if rate <= 0:
            raise ValueError("rate is votes per minute and must be positive")
        if not all(0.0 <= x <= 1.0 for x in (accuracy, spammer_fraction, left_biased_fraction, left_bias)):
            raise ValueError(
                "accuracy, spammer_fraction, left_biased_fraction and left_bias are probabilities in [0, 1]"
            )
        self.url, self.api_key = resolve(url, api_key)
        self.rate = rate
        self.bulk = bulk
        self.batch_size = batch_size
        self.response_time_cv = response_time_cv
        self.rng = random.Random(seed)
        n_spam = round(annotators * spammer_fraction)
        n_biased = round(annotators * left_biased_fraction)  # the last ones: a crowd may be both
        mean = annotators * 60.0 / rate
        self.profiles = [
            AnnotatorProfile(
                f"{name}-{i:03d}",
                accuracy,
                mean,
                spammer=i < n_spam,
                left_bias=left_bias if i >= annotators - n_biased else 0.0,
            )
            for i in range(annotators)
        ]
        self.stats = CrowdStats()
        self.enroll = enroll
        self.chat = chat or ChatScript()
        self._scores: dict[str, list[float] | None] = {}
        self._thresholds: dict[str, list[float] | None] = {}  # item -> acceptability thresholds
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
            if self.enroll is not None:
                await self._enroll_all(http)
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

    async def _enroll_all(self, http: httpx.AsyncClient) -> None:
        """Every person opens the enrollment link, as many at once as a study's launch brings."""
        path = "/v1/enroll/" + urlsplit(self.enroll or "").path.rstrip("/").rsplit("/", 1)[-1]
        r = await http.get(path)
        r.raise_for_status()
        info = msgspec.json.decode(r.content, type=schemas.LinkInfo)

        async def one(i: int, p: AnnotatorProfile) -> None:
            body: dict[str, Any]
            if info.platform == "prolific":
                body = {"params": {"PROLIFIC_PID": p.name, "STUDY_ID": "sim-study", "SESSION_ID": f"sim-{i}"}}
            elif info.platform is not None:
                body = {"params": {info.id_param or "": p.name}}
            else:
                body = {"name": p.name}
            while True:
                r = await http.post(path, json=body)
                if r.status_code != 429:
                    break
                await asyncio.sleep(float(r.headers.get("retry-after", "1")) * random.random())
            r.raise_for_status()
            made = msgspec.json.decode(r.content, type=schemas.Enrolled)
            p.token, p.id = made.token, made.annotator_id

        await asyncio.gather(*(one(i, p) for i, p in enumerate(self.profiles) if not p.token))

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
                    if r.status == 403 and self._ended(p, r):
                        return
                    if r.status == 204:
                        self.stats.idle_polls += 1
                        await asyncio.sleep(float(r.header("x-poll-interval", "0.5") or 0.5) * rng.uniform(0.5, 1.0))
                        continue
                    _raise_for_status(r)
                    pending.append(_task_decoder.decode(r.body))
                task = pending.pop()
                started = time.monotonic()
                body = await self._answer(own, oracle, p, task, rng)
                think = self._think_time(p, rng) - (time.monotonic() - started)
                if think > 0:
                    await asyncio.sleep(think)
                path = f"/v1/tasks/{task.task_id}/answer"
                r = await own.post(path, _encode({**body, "fetch_next": True}))
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
        if r.status == 403 and self._ended(p, r):
            await asyncio.sleep(3600)  # this person's work is over; the crowd's stop cancels the wait
        _raise_for_status(r)
        batch = _batch_decoder.decode(r.body)
        if not batch.tasks:
            await asyncio.sleep(batch.poll_interval)
            return
        answers = []
        for t in batch.tasks:
            body = await self._answer(own, oracle, p, t, rng)
            if set(body) != {"choice"}:  # an annotation goes by the single-answer route
                r = await own.post(f"/v1/tasks/{t.task_id}/answer", _encode(body))
                if r.status == 200:
                    self._count(p, _ack_decoder.decode(r.body))
                else:
                    self.stats.rejected += 1
                continue
            answers.append({"task_id": t.task_id, **body})
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

    def _ended(self, p: AnnotatorProfile, r: WireResponse) -> bool:
        """An enrolled person was told their work is over (finished, screened out, suspended): note why."""
        try:
            code = msgspec.json.decode(r.body).get("code")
        except msgspec.DecodeError:
            return False
        if code in ("finished", "screened_out", "suspended"):
            self.stats.ended[p.name] = code
            return True
        return False

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

    async def _answer(
        self, own: KeepAliveHTTP, oracle: KeepAliveHTTP, p: AnnotatorProfile, task: schemas.Task, rng: random.Random
    ) -> dict[str, Any]:
        """The answer body the task's kind's strategy makes; a task once taken is always answered or handed back,
        never dropped."""
        try:
            return await strategy_for(task.kind).answer(self, own, oracle, p, task, rng)
        except (WireError, ValueError) as exc:
            if isinstance(exc, ValueError):
                self.stats.error(exc)
            return SKIP

    def encode(self, body: Any) -> bytes:
        return _encode(body)

    async def _lookup(self, oracle: KeepAliveHTTP, path: str, type: Any) -> Any:
        """A researcher read for the oracle, decoded; None when the key may not read it (another's flow)."""
        r = await oracle.get(path)
        if r.status == 404:
            return None
        _raise_for_status(r)
        return msgspec.json.decode(r.body, type=type)

    async def item_detail(self, oracle: KeepAliveHTTP, item_id: str) -> list[schemas.Datapoint] | None:
        if item_id not in self._details:
            detail = await self._lookup(oracle, f"/v1/items/{item_id}/detail", schemas.ItemDetail)
            self._details[item_id] = None if detail is None else detail.datapoints
            _forget_oldest(self._details)
        return self._details[item_id]

    async def item_scores(self, oracle: KeepAliveHTTP, item_id: str) -> list[float] | None:
        if item_id not in self._scores:
            details = await self.item_detail(oracle, item_id)
            self._scores[item_id] = (
                None if details is None else [true_score(d.private_metadata, datapoint_content(d)) for d in details]
            )
            _forget_oldest(self._scores)
        return self._scores[item_id]

    async def item_thresholds(self, oracle: KeepAliveHTTP, item_id: str) -> list[float] | None:
        """Each datapoint's acceptability threshold (`acceptable_above` in its private metadata, else 0)."""
        if item_id not in self._thresholds:
            details = await self.item_detail(oracle, item_id)
            self._thresholds[item_id] = (
                None if details is None else [acceptable_above(d.private_metadata) for d in details]
            )
            _forget_oldest(self._thresholds)
        return self._thresholds[item_id]

    async def gold_labels(self, oracle: KeepAliveHTTP, flow_id: str) -> dict[str, list[str]]:
        """Content -> its right answers, for the gold labels of a classify flow (empty for another's flow)."""
        known = self._gold_labels_of.get(flow_id)
        if known is None:
            path = _gold_path(flow_id, "labels")
            labels = await self._lookup(oracle, path, list[schemas.ValidationLabel]) or []
            known = self._gold_labels_of[flow_id] = {_gold_content(g.datapoint): g.truths for g in labels}
        return known

    async def gold_answer(self, oracle: KeepAliveHTTP, task: schemas.Task) -> str | None:
        known = self._gold.get(task.flow_id)
        if known is None:
            path = _gold_path(task.flow_id, "pairs")
            known = {}
            for pair in await self._lookup(oracle, path, list[schemas.ValidationPair]) or []:
                a, b = _gold_content(pair.a), _gold_content(pair.b)
                known[(a, b)] = pair.answer
                known[(b, a)] = {"a": "b", "b": "a"}.get(pair.answer, pair.answer)
            self._gold[task.flow_id] = known
        if not known or task.b is None:
            return None
        return known.get((view_content(task.a), view_content(task.b)))


CACHED_ITEMS = 4096  # items whose detail the crowd remembers: a long batch project must not grow its memory


def _forget_oldest(cache: dict[str, Any]) -> None:
    while len(cache) > CACHED_ITEMS:
        del cache[next(iter(cache))]


def _gold_path(flow_id: str, what: str) -> str:
    """Where the gold of a task's flow is read; an audience's qualification quiz names the audience instead."""
    if flow_id.startswith("aud_"):
        return f"/v1/audiences/{flow_id}/quiz-{what}"
    return f"/v1/flows/{flow_id}/validation-{what}"


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
