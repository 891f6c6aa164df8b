"""The relay between a chat task's annotator and the flow's models.

A model served from Python (`flow.serve_model(generate)`) has no address: its workers ask the server for work
by long poll (`GET /v1/flows/{id}/models/{name}/next`) and post the reply back in chunks. The page asks for a
reply (`POST /v1/tasks/{task_id}/generate`) and reads the chunks as they arrive, one JSON object a line. While
a reply is being written the annotator's lease clock stands still. A model nobody serves is refused at once;
one that stays silent for the flow's `reply_timeout`, fails, or sends something that is not text (or too much
of it) ends the reply with a reason the page shows beside a retry (or says that retrying will not help).

A worker that says it is alive while it writes (`{"text": ""}`, as the SDK's workers do every second) is
declared gone after a few seconds of silence, so a model that dies mid-reply is reported at once, not after the
flow's `reply_timeout`. A model behind an endpoint is known by its calls: when it last answered, and why its
last call failed."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import httpx
import msgspec

from flowlab import schemas
from flowlab.server import endpoints, lifecycle
from flowlab.server.errors import Conflict, Invalid, NotFound, ServiceError, Unavailable
from flowlab.server.kinds.chat import MAX_USER_CHARS, ChatSession, Reply
from flowlab.server.model import FlowRecord, Lease, Signal
from flowlab.server.people import new_id

if TYPE_CHECKING:
    from flowlab.server.clock import Clock
    from flowlab.server.leases import LeaseBook

DETACH_AFTER = 3.0  # seconds since a worker was last heard from (asking for work, or writing): it is gone
WATCH_EVERY = 0.5  # seconds between checks, while a reply is awaited, that its model is still there
MAX_CHUNK_CHARS = 100_000
_json = msgspec.json.Encoder()


class Gone(ServiceError):
    status, title = 410, "Gone"


class Generation:
    """A reply being written: the conversation it answers and the chunks on their way to the page."""

    __slots__ = ("caller", "chars", "flow_id", "id", "messages", "model", "queue", "spec", "worker")

    def __init__(self, flow_id: str, model: str, messages: list[schemas.ChatMessage], spec: schemas.ChatSpec) -> None:
        self.id = new_id("gen")
        self.flow_id = flow_id
        self.model = model
        self.messages = messages
        self.spec = spec
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.worker: str | None = None
        self.caller: asyncio.Task[None] | None = None  # an endpoint's model: the request to it
        self.chars = 0


class Served:
    """A model served from Python: replies waiting for a worker, and the workers (last heard from, polling now,
    writing now)."""

    __slots__ = ("beating", "busy", "leaving", "pending", "polling", "seen", "signal")

    def __init__(self) -> None:
        self.pending: deque[Generation] = deque()
        self.signal = Signal()
        self.seen: dict[str, float] = {}  # worker id -> when it last asked for work or sent part of a reply
        self.polling: dict[str, int] = {}  # worker id -> long polls open
        self.busy: dict[str, int] = {}  # worker id -> replies it is writing
        self.leaving: set[str] = set()  # workers that said they stop while a long poll of theirs was open
        self.beating: set[str] = set()  # workers that say they are alive while they write (`{"text": ""}`)

    def alive(self, worker: str, now: float) -> bool:
        """Polling, or heard from in the last few seconds; a worker writing a reply without saying it is alive
        meanwhile is taken to be (only the reply's timeout tells otherwise)."""
        if worker in self.polling or now - self.seen.get(worker, -DETACH_AFTER) < DETACH_AFTER:
            return True
        return worker in self.busy and worker not in self.beating

    def workers(self, now: float) -> int:
        return sum(self.alive(w, now) for w in set(self.seen) | set(self.polling) | set(self.busy))

    def attached(self, now: float) -> bool:
        return self.workers(now) > 0


class Relay:
    def __init__(self, clock: Clock, leases: LeaseBook) -> None:
        self.clock = clock
        self.leases = leases
        self.served: dict[tuple[str, str], Served] = {}
        self.endpoint_of: dict[tuple[str, str], endpoints.Endpoint] = {}
        self.running: dict[str, Generation] = {}
        self._http: httpx.AsyncClient | None = None  # for models behind an OpenAI-compatible endpoint

    def _served(self, flow_id: str, name: str) -> Served:
        found = self.served.get((flow_id, name))
        if found is None:
            found = self.served[(flow_id, name)] = Served()
        return found

    def _endpoint(self, flow_id: str, name: str) -> endpoints.Endpoint:
        found = self.endpoint_of.get((flow_id, name))
        if found is None:
            found = self.endpoint_of[(flow_id, name)] = endpoints.Endpoint()
        return found

    # ------------------------------------------------------------ the model's side

    @staticmethod
    def model_of(flow: FlowRecord, name: str) -> schemas.ChatModel:
        spec = flow.config.chat
        if spec is None:
            raise NotFound(f"Flow {flow.id!r} is not a chat flow; only chat flows are served models.")
        for m in spec.models:
            if m.name == name:
                return m
        raise NotFound(f"Flow {flow.id!r} has no model {name!r}; its models are {[m.name for m in spec.models]}.")

    async def next_request(
        self, flow: FlowRecord, name: str, worker: str, wait: float, gone: Callable[[], bool]
    ) -> schemas.GenerationRequest | None:
        """The next reply a worker of model `name` should write, waiting up to `wait` seconds for one."""
        self.model_of(flow, name)
        if not worker or len(worker) > 100:
            raise Invalid("worker is the id of the asking worker (1 to 100 characters).", field="worker")
        served = self._served(flow.id, name)
        served.polling[worker] = served.polling.get(worker, 0) + 1
        deadline = self.clock.now() + wait
        try:
            while True:
                if worker in served.leaving:
                    return None
                served.seen[worker] = self.clock.now()
                while served.pending:
                    gen = served.pending.popleft()
                    if gen.id in self.running:  # not abandoned meanwhile
                        gen.worker = worker
                        served.busy[worker] = served.busy.get(worker, 0) + 1
                        return schemas.GenerationRequest(generation_id=gen.id, model=name, messages=gen.messages)
                left = deadline - self.clock.now()
                if left <= 0 or gone():
                    return None
                await served.signal.wait(min(left, 1.0))
        finally:
            if worker in served.leaving:
                served.leaving.discard(worker)
                served.seen.pop(worker, None)
            else:
                served.seen[worker] = self.clock.now()
            count = served.polling.get(worker, 1) - 1
            if count > 0:
                served.polling[worker] = count
            else:
                served.polling.pop(worker, None)

    def detach(self, flow: FlowRecord, name: str, worker: str) -> None:
        """A worker stops serving: without others, requests to the model fail at once from now on."""
        self.model_of(flow, name)
        served = self._served(flow.id, name)
        served.seen.pop(worker, None)
        served.busy.pop(worker, None)
        served.beating.discard(worker)
        if worker in served.polling:
            served.leaving.add(worker)
        served.signal.fire()  # its open long poll (if any) returns

    def deliver(self, flow: FlowRecord, generation_id: str, body: Any) -> None:
        """A chunk of a reply, its end (`done`), or the model's failure (`error`), from a worker."""
        gen = self.running.get(generation_id)
        if gen is None or (flow.config.chat is None) or gen.flow_id != flow.id:
            raise Gone(
                f"No reply {generation_id!r} is being written: the annotator left, it timed out, or it ended.",
                code="generation_gone",
            )
        if not isinstance(body, dict) or set(body) - {"text", "done", "error"}:
            self._fail(gen, "model_garbage", "The model sent something that is not a reply.")
            raise Invalid(
                'A chunk is {"text": "..."}, {"done": true} (optionally with a last "text"), or {"error": "..."}.'
            )
        served = self.served.get((flow.id, gen.model))
        if served is not None and gen.worker is not None:  # a sign of life: see `Served.alive`
            served.seen[gen.worker] = self.clock.now()
            if body.get("text") == "":
                served.beating.add(gen.worker)
        if body.get("error") is not None:
            error = str(body["error"])[:500]
            self._fail(gen, "model_error", f"The model failed: {error}")
            return
        reason = self._accept(gen, body.get("text"))
        if reason is not None:
            raise Invalid(reason, field="text")
        if body.get("done"):
            gen.queue.put_nowait(("done", None))

    def _accept(self, gen: Generation, text: Any) -> str | None:
        """Pass a chunk on to the page; a chunk that is not text, or one past the flow's length, ends the reply
        and is the reason returned."""
        if text is None:
            return None
        if not isinstance(text, str):
            reason = f"The model's reply was not text (a chunk was {type(text).__name__})."
        elif gen.chars + len(text) > gen.spec.max_reply_chars or len(text) > MAX_CHUNK_CHARS:
            reason = f"The model's reply passed this flow's limit of {gen.spec.max_reply_chars:,} characters."
        else:
            gen.chars += len(text)
            if text:
                gen.queue.put_nowait(("chunk", text))
            return None
        self._fail(gen, "model_garbage", reason)
        return reason

    def _fail(self, gen: Generation, code: str, detail: str, *, retry: bool = True) -> None:
        gen.queue.put_nowait(("error", (code, detail, retry)))
        self._end(gen)

    def _end(self, gen: Generation) -> None:
        if self.running.pop(gen.id, None) is None:
            return
        if gen.caller is not None and gen.caller is not asyncio.current_task():
            gen.caller.cancel()
        served = self.served.get((gen.flow_id, gen.model))
        if served is not None and gen.worker is not None:
            # A worker done with a reply asks for work next: it counts as seen, unless it was found gone.
            seen = served.alive(gen.worker, self.clock.now())
            left = served.busy.get(gen.worker, 1) - 1
            if left > 0:
                served.busy[gen.worker] = left
            else:
                served.busy.pop(gen.worker, None)
                if seen and gen.worker in served.seen:
                    served.seen[gen.worker] = self.clock.now()

    def status(self, flow: FlowRecord) -> list[schemas.ChatModelStatus]:
        spec = flow.config.chat
        if spec is None:
            raise NotFound(f"Flow {flow.id!r} is not a chat flow; it has no models.")
        now = self.clock.now()
        out = []
        for m in spec.models:
            if m.url is not None:
                endpoint = self.endpoint_of.get((flow.id, m.name)) or endpoints.Endpoint()
                out.append(
                    schemas.ChatModelStatus(
                        name=m.name,
                        attached=endpoint.attached(now),
                        workers=0,
                        waiting=0,
                        endpoint=True,
                        answered_at=endpoint.answered_at,
                        last_error=endpoint.last_error,
                    )
                )
                continue
            served = self.served.get((flow.id, m.name))
            out.append(
                schemas.ChatModelStatus(
                    name=m.name,
                    attached=served is not None and served.attached(now),
                    workers=0 if served is None else served.workers(now),
                    waiting=0 if served is None else len(served.pending),
                )
            )
        return out

    def presence(self, lease: Lease) -> list[schemas.ChatModelPresence]:
        """Whether each of a chat task's models can answer now, by its position on the page (never its name): a
        model served from Python while a worker is there; one behind an endpoint unless its last call could not
        reach it (an endpoint nobody called yet is taken to be there)."""
        spec = lease.item.config.chat
        session = lease.question
        if spec is None or not isinstance(session, ChatSession):
            raise Invalid("Only chat tasks have models.")
        now = self.clock.now()
        out = []
        for position, k in enumerate(session.order):
            m = spec.models[k]
            if m.url is None:
                served = self.served.get((lease.item.flow.id, m.name))
                online = served is not None and served.attached(now)
            else:
                endpoint = self.endpoint_of.get((lease.item.flow.id, m.name))
                online = endpoint is None or endpoint.reachable()
            out.append(schemas.ChatModelPresence(model=position, online=online))
        return out

    def forget_flow(self, flow_id: str) -> None:
        for key in [k for k in self.served if k[0] == flow_id]:
            self.served.pop(key).signal.fire()
        for key in [k for k in self.endpoint_of if k[0] == flow_id]:
            del self.endpoint_of[key]

    # ------------------------------------------------------------ the annotator's side

    def start(self, lease: Lease, req: schemas.ChatGenerate) -> Generation:
        """Check a request for a reply and queue it for the model, or refuse it (a detached model at once)."""
        item = lease.item
        spec = item.config.chat
        session = lease.question
        if spec is None or not isinstance(session, ChatSession):
            raise Invalid("Only chat tasks ask a model for replies.")
        if lifecycle.is_terminal(item.state):
            raise Conflict("This task's item has ended; its conversation cannot go on.", code="item_ended")
        now = self.clock.now()
        if now > lease.expires_at:
            raise Conflict("This task's lease has expired.", code="lease_expired")
        if session.generating is not None:
            raise Conflict("A reply is still being written for this task; wait for it first.", code="busy")
        if not 0 <= req.model < len(session.order):
            raise Invalid(f"model is a position from 0 to {len(session.order) - 1}.", field="model")
        msgs = req.messages
        if not msgs or msgs[-1].role != "user":
            raise Invalid("The conversation to answer ends with the user's turn.", field="messages")
        for j, m in enumerate(msgs):
            if m.role == "system" or (j and msgs[j - 1].role == m.role):
                raise Invalid(
                    "User and assistant messages take turns (system messages are the flow's).", field="messages"
                )
            if not m.content.strip() or len(m.content) > max(MAX_USER_CHARS, spec.max_reply_chars):
                raise Invalid("Every message needs text, within the flow's limits.", field=f"messages[{j}].content")
        if sum(m.role == "user" for m in msgs) > spec.max_turns:
            raise Invalid(f"A branch holds at most {spec.max_turns} user turns.", field="messages")
        model = spec.models[session.order[req.model]]
        served = self._served(item.flow.id, model.name)
        if model.url is None and not served.attached(now):
            raise Unavailable(
                "The model is offline: nobody is serving it right now. Try again in a moment, or skip this task.",
                code="model_detached",
            )
        system = [m for m in item.datapoints[session.d].prompt or () if m.role == "system"]
        gen = Generation(item.flow.id, model.name, [*system, *msgs], spec)
        self.running[gen.id] = gen
        if model.url is not None:
            gen.caller = asyncio.create_task(self._call(gen, model), name=f"flowlab-{gen.id}")
        else:
            served.pending.append(gen)
            served.signal.fire()
        session.generating = gen.id
        self.leases.pause(lease, now)
        return gen

    async def _call(self, gen: Generation, model: schemas.ChatModel) -> None:
        """Ask the model's endpoint for the reply, passing its chunks on as they come; a failure ends the reply
        at once with its cause."""
        endpoint = self._endpoint(gen.flow_id, model.name)
        if self._http is None:
            # A long read timeout: each flow's own reply_timeout is kept by `stream`.
            self._http = httpx.AsyncClient(timeout=httpx.Timeout(600.0, connect=5.0))
        try:
            async with contextlib.aclosing(endpoints.complete(self._http, model, gen.messages)) as reply:
                async for text in reply:
                    endpoint.answered(self.clock.now())
                    if self._accept(gen, text) is not None:
                        return
        except endpoints.EndpointFailure as failure:
            endpoint.failed(failure)
            self._fail(gen, failure.code, failure.detail, retry=failure.retry)
            return
        gen.queue.put_nowait(("done", None))

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def stream(self, lease: Lease, gen: Generation, model: int) -> AsyncIterator[bytes]:
        """The reply's events, one JSON object a line: chunks, then `done` (with the whole reply and the
        lease's new expiry) or `error` (with a code, the sentence the annotator reads, and whether a retry
        can help)."""
        session: ChatSession = lease.question
        spec = gen.spec
        loop = asyncio.get_running_loop()
        parts: list[str] = []
        ended: dict[str, Any] | None = None
        getter: asyncio.Future[tuple[str, Any]] | None = None
        last = loop.time()  # the model's last chunk (or the request): reply_timeout counts from here
        try:
            while ended is None:
                if getter is None:
                    getter = asyncio.ensure_future(gen.queue.get())
                left = last + spec.reply_timeout - loop.time()
                done, _ = await asyncio.wait({getter}, timeout=max(0.0, min(WATCH_EVERY, left)))
                if not done:
                    gone = self._gone(gen)
                    if gone is not None:
                        self._end(gen)
                        ended = _error("model_detached", gone)
                    elif loop.time() - last >= spec.reply_timeout:
                        self._end(gen)
                        ended = _error(
                            "model_timeout",
                            f"The model did not answer within {spec.reply_timeout:g} s. Try again, or skip this task.",
                        )
                    continue
                kind, value = getter.result()
                getter = None
                last = loop.time()
                if kind == "chunk":
                    parts.append(value)
                    yield _json.encode({"type": "chunk", "text": value}) + b"\n"
                elif kind == "done":
                    self._end(gen)
                    text = "".join(parts)
                    if not text.strip():
                        ended = _error("model_garbage", "The model's reply was empty. Try again.")
                    else:
                        plain = [(m.role, m.content) for m in gen.messages if m.role != "system"]
                        session.replies[gen.id] = Reply(model=session.order[model], messages=plain, text=text)
                        ended = {"type": "done", "generation_id": gen.id, "text": text}
                else:
                    code, detail, retry = value
                    ended = _error(code, detail, retry=retry)
            self._settle(lease, session, gen)
            ended["lease_expires_at"] = lease.expires_at
            yield _json.encode(ended) + b"\n"
        finally:
            # The page went away (or the stream ended): the reply is abandoned; the worker hears so when it
            # next posts; the lease's clock runs again.
            if getter is not None:
                getter.cancel()
            self._end(gen)
            self._settle(lease, session, gen)

    def _gone(self, gen: Generation) -> str | None:
        """Why a served model's reply will never come, or None while it may: its worker stopped saying it is
        alive mid-reply, or every worker left while the request waited for one. (An endpoint's call reports
        its own failures.)"""
        served = self.served.get((gen.flow_id, gen.model))
        if gen.caller is not None or served is None:
            return None
        now = self.clock.now()
        if gen.worker is None and not served.attached(now):
            return "The model went offline before it could answer. Try again in a moment, or skip this task."
        if gen.worker is not None and not served.alive(gen.worker, now):
            return "The model went offline while writing its reply. Try again in a moment, or skip this task."
        return None

    def _settle(self, lease: Lease, session: ChatSession, gen: Generation) -> None:
        if session.generating == gen.id:
            session.generating = None
            self.leases.resume(lease, self.clock.now())


def _error(code: str, detail: str, *, retry: bool = True) -> dict[str, Any]:
    return {"type": "error", "code": code, "detail": detail, "retry": retry}
