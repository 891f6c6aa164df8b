"""The relay between a chat task's annotator and the flow's models.

A model served from Python (`flow.serve_model(generate)`) has no address: its workers ask the server for work
by long poll (`GET /v1/flows/{id}/models/{name}/next`) and post the reply back in chunks. The page asks for a
reply (`POST /v1/tasks/{task_id}/generate`) and reads the chunks as they arrive, one JSON object a line. While
a reply is being written the annotator's lease clock stands still. A model nobody serves is refused at once;
one that stays silent for the flow's `reply_timeout`, fails, or sends something that is not text (or too much
of it) ends the reply with a reason the page shows beside a retry."""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import httpx
import msgspec

from flowlab import schemas
from flowlab.server import lifecycle
from flowlab.server.errors import Conflict, Invalid, NotFound, ServiceError, Unavailable
from flowlab.server.kinds.chat import MAX_USER_CHARS, ChatSession, Reply
from flowlab.server.model import FlowRecord, Lease, Signal
from flowlab.server.people import new_id

if TYPE_CHECKING:
    from flowlab.server.clock import Clock
    from flowlab.server.leases import LeaseBook

DETACH_AFTER = 3.0  # seconds since a worker last asked for work (and is not writing a reply): it is gone
MAX_CHUNK_CHARS = 100_000
_json = msgspec.json.Encoder()


class Gone(ServiceError):
    status, title = 410, "Gone"


class Generation:
    """A reply being written: the conversation it answers and the chunks on their way to the page."""

    __slots__ = ("caller", "chars", "id", "messages", "model", "queue", "spec", "worker")

    def __init__(self, model: str, messages: list[schemas.ChatMessage], spec: schemas.ChatSpec) -> None:
        self.id = new_id("gen")
        self.model = model
        self.messages = messages
        self.spec = spec
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.worker: str | None = None
        self.caller: asyncio.Task[None] | None = None  # an endpoint's model: the request to it
        self.chars = 0


class Served:
    """A model served from Python: replies waiting for a worker, and the workers (last seen, polling now)."""

    __slots__ = ("busy", "leaving", "pending", "polling", "seen", "signal")

    def __init__(self) -> None:
        self.pending: deque[Generation] = deque()
        self.signal = Signal()
        self.seen: dict[str, float] = {}  # worker id -> when it last asked for work
        self.polling: dict[str, int] = {}  # worker id -> long polls open
        self.busy: dict[str, int] = {}  # worker id -> replies it is writing
        self.leaving: set[str] = set()  # workers that said they stop while a long poll of theirs was open

    def attached(self, now: float) -> bool:
        return bool(self.polling or self.busy) or any(now - t < DETACH_AFTER for t in self.seen.values())


class Relay:
    def __init__(self, clock: Clock, leases: LeaseBook) -> None:
        self.clock = clock
        self.leases = leases
        self.served: dict[tuple[str, str], Served] = {}
        self.running: dict[str, Generation] = {}
        self._flow_of: dict[str, str] = {}  # generation id -> its flow
        self._http: httpx.AsyncClient | None = None  # for models behind an OpenAI-compatible endpoint

    def _served(self, flow_id: str, name: str) -> Served:
        found = self.served.get((flow_id, name))
        if found is None:
            found = self.served[(flow_id, name)] = Served()
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
        if worker in served.polling:
            served.leaving.add(worker)
        served.signal.fire()  # its open long poll (if any) returns

    def deliver(self, flow: FlowRecord, generation_id: str, body: Any) -> None:
        """A chunk of a reply, its end (`done`), or the model's failure (`error`), from a worker."""
        gen = self.running.get(generation_id)
        if gen is None or (flow.config.chat is None) or self._flow_of.get(generation_id) != flow.id:
            raise Gone(
                f"No reply {generation_id!r} is being written: the annotator left, it timed out, or it ended.",
                code="generation_gone",
            )
        if not isinstance(body, dict) or set(body) - {"text", "done", "error"}:
            self._fail(gen, "model_garbage", "The model sent something that is not a reply.")
            raise Invalid(
                'A chunk is {"text": "..."}, {"done": true} (optionally with a last "text"), or {"error": "..."}.'
            )
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

    def _fail(self, gen: Generation, code: str, detail: str) -> None:
        gen.queue.put_nowait(("error", (code, detail)))
        self._end(gen)

    def _end(self, gen: Generation) -> None:
        if self.running.pop(gen.id, None) is None:
            return
        if gen.caller is not None and gen.caller is not asyncio.current_task():
            gen.caller.cancel()
        flow_id = self._flow_of.pop(gen.id, "")
        served = self.served.get((flow_id, gen.model))
        if served is not None and gen.worker is not None:
            left = served.busy.get(gen.worker, 1) - 1
            if left > 0:
                served.busy[gen.worker] = left
            else:
                served.busy.pop(gen.worker, None)
                if gen.worker in served.seen:
                    served.seen[gen.worker] = self.clock.now()

    def status(self, flow: FlowRecord) -> list[schemas.ChatModelStatus]:
        spec = flow.config.chat
        if spec is None:
            raise NotFound(f"Flow {flow.id!r} is not a chat flow; it has no models.")
        now = self.clock.now()
        out = []
        for m in spec.models:
            served = self.served.get((flow.id, m.name))
            out.append(
                schemas.ChatModelStatus(
                    name=m.name,
                    attached=served is not None and served.attached(now),
                    workers=0 if served is None else len(set(served.seen) | set(served.polling) | set(served.busy)),
                    waiting=0 if served is None else len(served.pending),
                )
            )
        return out

    def forget_flow(self, flow_id: str) -> None:
        for key in [k for k in self.served if k[0] == flow_id]:
            self.served.pop(key).signal.fire()

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
        gen = Generation(model.name, [*system, *msgs], spec)
        self.running[gen.id] = gen
        self._flow_of[gen.id] = item.flow.id
        if model.url is not None:
            gen.caller = asyncio.create_task(self._call(gen, model), name=f"flowlab-{gen.id}")
        else:
            served.pending.append(gen)
            served.signal.fire()
        session.generating = gen.id
        self.leases.pause(lease, now)
        return gen

    async def _call(self, gen: Generation, model: schemas.ChatModel) -> None:
        """Ask an OpenAI-compatible endpoint for the reply, streamed, passing its chunks on as they come."""
        assert model.url is not None
        if self._http is None:
            # A long read timeout: each flow's own reply_timeout is kept by `stream`.
            self._http = httpx.AsyncClient(timeout=httpx.Timeout(600.0, connect=5.0))
        body: dict[str, Any] = {
            "model": model.model or model.name,
            "messages": [{"role": m.role, "content": m.content} for m in gen.messages],
            "stream": True,
        }
        if model.temperature is not None:
            body["temperature"] = model.temperature
        if model.max_tokens is not None:
            body["max_tokens"] = model.max_tokens
        headers = {"Accept": "text/event-stream"}
        key = os.environ.get(model.api_key_env) if model.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        url = model.url.rstrip("/") + "/chat/completions"
        try:
            async with self._http.stream("POST", url, json=body, headers=headers) as resp:
                if resp.status_code >= 400:
                    text = (await resp.aread()).decode(errors="replace")[:300]
                    self._fail(gen, "model_error", f"The model's endpoint answered {resp.status_code}: {text}")
                    return
                if resp.headers.get("content-type", "").startswith("application/json"):  # it ignored "stream"
                    whole = _content(msgspec.json.decode(await resp.aread()), "message")
                    if self._accept(gen, whole) is None:
                        gen.queue.put_nowait(("done", None))
                    return
                async for line in resp.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    if self._accept(gen, _content(msgspec.json.decode(data), "delta")) is not None:
                        return
                gen.queue.put_nowait(("done", None))
        except httpx.ConnectError:
            self._fail(gen, "model_detached", "The model is offline: its endpoint cannot be reached. Try again later.")
        except (httpx.HTTPError, msgspec.DecodeError, ValueError) as exc:
            self._fail(gen, "model_error", f"The model's endpoint failed: {type(exc).__name__}: {exc}"[:300])

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def stream(self, lease: Lease, gen: Generation, model: int) -> AsyncIterator[bytes]:
        """The reply's events, one JSON object a line: chunks, then `done` (with the whole reply and the
        lease's new expiry) or `error` (with a code and the sentence the annotator reads)."""
        session: ChatSession = lease.question
        spec = gen.spec
        parts: list[str] = []
        ended: dict[str, Any] | None = None
        try:
            while ended is None:
                try:
                    kind, value = await asyncio.wait_for(gen.queue.get(), spec.reply_timeout)
                except TimeoutError:
                    self._end(gen)
                    ended = _error(
                        "model_timeout",
                        f"The model did not answer within {spec.reply_timeout:g} s. Try again, or skip this task.",
                    )
                    break
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
                    ended = _error(*value)
            self._settle(lease, session, gen)
            ended["lease_expires_at"] = lease.expires_at
            yield _json.encode(ended) + b"\n"
        finally:
            # The page went away (or the stream ended): the reply is abandoned; the worker hears so when it
            # next posts; the lease's clock runs again.
            self._end(gen)
            self._settle(lease, session, gen)

    def _settle(self, lease: Lease, session: ChatSession, gen: Generation) -> None:
        if session.generating == gen.id:
            session.generating = None
            self.leases.resume(lease, self.clock.now())


def _content(event: Any, part: str) -> Any:
    """The text of an OpenAI chat-completions event: choices[0].delta.content (streamed) or .message.content;
    None when it holds no text (a role announcement, a finish reason)."""
    if isinstance(event, dict) and isinstance(event.get("error"), dict | str):
        raise ValueError(f"the endpoint reported an error: {str(event['error'])[:200]}")
    try:
        return event["choices"][0][part].get("content")
    except (KeyError, IndexError, TypeError, AttributeError):
        raise ValueError("the endpoint's answer is not a chat completion") from None


def _error(code: str, detail: str) -> dict[str, Any]:
    return {"type": "error", "code": code, "detail": detail, "retry": True}
