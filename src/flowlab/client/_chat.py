"""Chat flows from the SDK: the flow's request body, its tasks, and `serve_model`, which serves a Python
`generate(messages)` to the flow's annotators without the model needing an address of its own: worker threads
ask the server for work by long poll and post each reply back as it is written."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx
import msgspec

from flowlab import schemas
from flowlab.client._errors import ValidationError
from flowlab.client._flows import _dimension, settings_option

log = logging.getLogger("flowlab.serve_model")

Generate = Callable[[list[dict[str, str]]], "str | Iterable[str]"]
POLL_WAIT = 20.0  # seconds a worker's long poll waits for work
HEARTBEAT = 1.0  # seconds between a writing worker's "still here" (an empty chunk): a dead one is noticed in 3 s
_JSON_NATIVE = (int, float, bool, list, dict)


def chat_options(
    models: Sequence[Any] | None,
    max_turns: int,
    dimensions: Sequence[Any] | None,
    likert_scale: int,
    justification: str,
    justification_min_chars: int,
    max_reply_chars: int,
    reply_timeout: float,
    max_branches: int,
    lease_seconds: float | None,
    drain_seconds: float | None,
    settings: Any,
) -> dict[str, Any]:
    """A chat flow's request body. `models`: None for one model named "model", or names (str) or dicts."""
    spec: dict[str, Any] = {
        "max_turns": max_turns,
        "likert_scale": likert_scale,
        "justification": justification,
        "justification_min_chars": justification_min_chars,
        "max_reply_chars": max_reply_chars,
        "reply_timeout": reply_timeout,
        "max_branches": max_branches,
    }
    if models is not None:
        if isinstance(models, str | Mapping):
            raise ValidationError(422, "models is a list of model names.", field="models")
        spec["models"] = [_model(m, i) for i, m in enumerate(models)]
    if dimensions is not None:
        if isinstance(dimensions, str | Mapping):
            raise ValidationError(422, "dimensions is a list of dimensions.", field="dimensions")
        spec["dimensions"] = [_dimension(d, i) for i, d in enumerate(dimensions)]
    options: dict[str, Any] = {"kind": "chat", "chat": spec, **settings_option(settings, stacklevel=5)}
    if lease_seconds is not None:  # else the server's default for chat tasks, 15 minutes
        options["lease_seconds"] = lease_seconds
    if drain_seconds is not None:
        options["drain_seconds"] = drain_seconds
    return options


def served_model(config: schemas.Flow, model: str | None) -> str:
    """The name of the flow's model that `serve_model(model=...)` serves: the one given, or the only one
    without an endpoint; a clear error otherwise."""
    spec = config.chat or schemas.ChatSpec()
    names = [m.name for m in spec.models]
    served = [m.name for m in spec.models if m.url is None]
    if model is None:
        if len(served) != 1:
            raise ValidationError(
                422,
                f"This flow has models {served} to serve: say which one this is, serve_model(..., model=NAME).",
                field="model",
            )
        return served[0]
    if model not in names:
        raise ValidationError(422, f"This flow has no model {model!r}; its models are {names}.", field="model")
    if model not in served:
        raise ValidationError(
            422, f"Model {model!r} is behind its endpoint's url; the server calls it, nobody serves it.", field="model"
        )
    return model


def _model(m: Any, i: int) -> dict[str, Any]:
    if isinstance(m, str):
        return {"name": m}
    if isinstance(m, schemas.ChatModel):
        return msgspec.structs.asdict(m)
    if isinstance(m, Mapping):
        return dict(m)
    raise ValidationError(422, f"models[{i}] is a model name; got {type(m).__name__}.", field=f"models[{i}]")


def chat_task(d: Any, where: str) -> dict[str, Any]:
    """A chat task as the server takes it: `{"id", "messages": [{role, content}, ...], "guidance",
    "private_metadata"}`; a bare list of messages is a task without id or guidance."""
    if isinstance(d, list | tuple):
        d = {"messages": d}
    if not isinstance(d, Mapping):
        raise ValidationError(
            422,
            f"{where}: a chat task is a dict {{id, messages, guidance}}, not {type(d).__name__}.",
            field=where,
        )
    extra = sorted(set(d) - {"id", "messages", "guidance", "private_metadata", "name"})
    if extra:
        raise ValidationError(
            422, f"{where}: a chat task has id, messages and guidance; {extra} are not among them.", field=where
        )
    messages = d.get("messages") or []
    if not isinstance(messages, list | tuple) or not all(isinstance(m, Mapping) for m in messages):
        raise ValidationError(
            422, f"{where}.messages is a list of {{role, content}} messages.", field=f"{where}.messages"
        )
    out: dict[str, Any] = {"messages": [{"role": m.get("role"), "content": m.get("content")} for m in messages]}
    for key in ("id", "guidance", "private_metadata", "name"):
        if d.get(key) is not None:
            out[key] = d[key]
    return out


class ModelHandle:
    """A model being served to a chat flow by worker threads in this process. `stop()` (or leaving a `with`
    block) detaches it: from then on the flow's annotators are told at once that the model is offline.

    `served` counts replies written, `failed` those whose `generate` raised or gave something not text; the
    last few failures are in `errors`."""

    def __init__(
        self,
        url: str,
        api_key: str | None,
        flow_id: str,
        model: str,
        generate: Generate,
        workers: int,
        *,
        poll_wait: float = POLL_WAIT,
    ) -> None:
        if not callable(generate):
            raise ValidationError(422, "generate is a function of the messages (a list of {role, content}).")
        if workers < 1:
            raise ValidationError(422, "workers is at least 1.", field="workers")
        self.flow_id = flow_id
        self.model = model
        self.generate = generate
        self.served = 0
        self.failed = 0
        self.errors: list[str] = []
        self._url = url
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._wait = poll_wait
        self._stop = threading.Event()
        self._lock = threading.Lock()
        base = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.worker_ids = [f"{base}-{n}" for n in range(workers)]
        self._base = f"/v1/flows/{flow_id}/models/{quote(model, safe='')}"
        self._threads = [
            threading.Thread(target=self._run, args=(w,), name=f"flowlab-model-{w}", daemon=True)
            for w in self.worker_ids
        ]
        for t in self._threads:
            t.start()

    @property
    def alive(self) -> bool:
        return not self._stop.is_set() and any(t.is_alive() for t in self._threads)

    def stop(self, timeout: float = 10.0) -> None:
        """Detach the model: workers finish the chunk they are sending and leave."""
        if self._stop.is_set():
            return
        self._stop.set()
        with httpx.Client(base_url=self._url, headers=self._headers, timeout=5.0) as http:
            for w in self.worker_ids:
                with contextlib.suppress(httpx.HTTPError):  # a server gone has nothing to detach from
                    http.delete(f"{self._base}/workers/{quote(w, safe='')}")
        for t in self._threads:
            t.join(timeout)

    def __enter__(self) -> ModelHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "serving" if self.alive else "stopped"
        n = len(self.worker_ids)
        return f"<ModelHandle {self.model!r} on {self.flow_id} {state} workers={n} served={self.served}>"

    # ------------------------------------------------------------ workers

    def _run(self, worker: str) -> None:
        with httpx.Client(base_url=self._url, headers=self._headers, timeout=self._wait + 15.0) as http:
            while not self._stop.is_set():
                try:
                    resp = http.get(f"{self._base}/next", params={"worker": worker, "wait": self._wait})
                except httpx.HTTPError as exc:
                    self._note(f"cannot reach the server ({exc}); retrying")
                    self._stop.wait(1.0)
                    continue
                if resp.status_code == 204:
                    continue
                if resp.status_code >= 400:
                    self._note(f"the server refused to hand out work ({resp.status_code}: {resp.text[:200]})")
                    if resp.status_code in (401, 403, 404):  # the flow or the key is gone: nothing to serve
                        self._stop.set()
                        return
                    self._stop.wait(1.0)
                    continue
                if self._stop.is_set():
                    return
                self._write(http, msgspec.json.decode(resp.content, type=schemas.GenerationRequest))

    def _write(self, http: httpx.Client, req: schemas.GenerationRequest) -> None:
        path = f"/v1/flows/{self.flow_id}/generations/{req.generation_id}"
        messages = [{"role": m.role, "content": m.content} for m in req.messages]
        sending = threading.Lock()  # the heartbeat's posts and the reply's share the worker's connection
        written = threading.Event()

        def post(body: dict[str, Any]) -> bool:
            """Send a part of the reply; False when the server wants no more of it."""
            try:
                with sending:
                    resp = http.post(
                        path, content=msgspec.json.encode(body), headers={"Content-Type": "application/json"}
                    )
            except httpx.HTTPError as exc:
                self._note(f"a reply could not be sent ({exc})")
                return False
            if resp.status_code == 422:
                self._failed(f"the server refused the reply: {_detail(resp)}")
            elif resp.status_code >= 400 and resp.status_code != 410:  # 410: the annotator no longer waits
                self._note(f"the server refused a chunk ({resp.status_code}: {_detail(resp)})")
            return resp.status_code < 400

        def heartbeat() -> None:
            # An empty chunk says the worker is alive while `generate` thinks: if this process dies, the
            # annotator hears that the model went offline within seconds, not after the flow's reply_timeout.
            while post({"text": ""}) and not written.wait(HEARTBEAT):
                pass

        beats = threading.Thread(target=heartbeat, name=f"flowlab-heartbeat-{req.generation_id}", daemon=True)
        beats.start()
        try:
            out = self.generate(messages)
            chunks: Iterator[Any] = iter([out]) if isinstance(out, str) or not _iterable(out) else iter(out)
            for chunk in chunks:
                if self._stop.is_set() or chunk is None:
                    continue
                if not isinstance(chunk, str) and not isinstance(chunk, _JSON_NATIVE):
                    chunk = {"python_type": type(chunk).__name__}  # still not text: the server says so
                if not post({"text": chunk}):
                    _close(chunks)
                    return
            if post({"done": True}):
                with self._lock:
                    self.served += 1
        except Exception as exc:  # the model's own failure: the annotator is told, and may retry
            self._failed(f"generate raised {type(exc).__name__}: {exc}")
            post({"error": f"{type(exc).__name__}: {exc}"})
        finally:
            written.set()

    def _failed(self, message: str) -> None:
        with self._lock:
            self.failed += 1
        self._note(message)

    def _note(self, message: str) -> None:
        log.warning("model %r of flow %s: %s", self.model, self.flow_id, message)
        with self._lock:
            self.errors = [*self.errors[-9:], message]


def _iterable(value: Any) -> bool:
    return isinstance(value, Iterable) and not isinstance(value, bytes | dict | Mapping)


def _close(chunks: Iterator[Any]) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        close()


def _detail(resp: httpx.Response) -> str:
    try:
        return str(resp.json().get("detail", resp.text))[:300]
    except (ValueError, AttributeError):
        return resp.text[:300]
