"""Chat models behind an OpenAI-compatible chat-completions endpoint (vLLM, TGI, llama.cpp's server, Ollama): the
call the server makes for a reply, streamed, every way it can fail (with whether asking again can help), and what
the calls showed of each endpoint."""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import httpx
import msgspec

from flowlab import schemas

FRESH = 60.0  # seconds an endpoint's last answer vouches for it being there


class EndpointFailure(Exception):
    """A call that gave no reply: the relay's error code, the sentence the annotator reads, and whether
    retrying can help."""

    def __init__(self, code: str, detail: str, *, retry: bool = True) -> None:
        super().__init__(detail)
        self.code, self.detail, self.retry = code, detail, retry


class Endpoint:
    """What the calls to one model's endpoint showed: when it last answered (a reply, or part of one), and the
    last call's failure when it came after that."""

    __slots__ = ("answered_at", "error_code", "last_error")

    def __init__(self) -> None:
        self.answered_at: float | None = None
        self.last_error: str | None = None
        self.error_code: str | None = None

    def answered(self, now: float) -> None:
        self.answered_at = now
        self.last_error = self.error_code = None

    def failed(self, failure: EndpointFailure) -> None:
        self.last_error, self.error_code = failure.detail, failure.code

    def attached(self, now: float) -> bool:
        return self.last_error is None and self.answered_at is not None and now - self.answered_at < FRESH

    def reachable(self) -> bool:
        """False only when its last call could not reach it (nobody called it yet: taken to be there)."""
        return self.error_code != "model_detached"


async def complete(
    http: httpx.AsyncClient, model: schemas.ChatModel, messages: list[schemas.ChatMessage]
) -> AsyncGenerator[Any, None]:
    """The reply as the endpoint sends it: each event's text (None for an event without any, a role or a finish
    reason; whatever else an endpoint put there, for the caller to refuse), a non-streamed answer in one piece.
    Every failure, whatever escapes the HTTP client included, is an `EndpointFailure`."""
    try:
        async for text in _stream(http, model, messages):
            yield text
    except EndpointFailure:
        raise
    except (httpx.ConnectError, httpx.ConnectTimeout):
        raise EndpointFailure(
            "model_detached", "The model is offline: its endpoint cannot be reached. Try again later."
        ) from None
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        raise EndpointFailure(
            "model_error", f"The model's endpoint address is unusable ({_cause(exc)}): skip this task.", retry=False
        ) from None
    except (httpx.HTTPError, msgspec.DecodeError, ValueError) as exc:
        raise EndpointFailure("model_error", f"The model's endpoint failed: {_cause(exc)}") from None
    except Exception as exc:  # said now, with its cause, rather than left for the reply's timeout
        raise EndpointFailure(
            "model_error", f"The model's endpoint could not be called: {_cause(exc)}", retry=False
        ) from None


async def _stream(
    http: httpx.AsyncClient, model: schemas.ChatModel, messages: list[schemas.ChatMessage]
) -> AsyncIterator[Any]:
    assert model.url is not None
    body: dict[str, Any] = {
        "model": model.model or model.name,
        "messages": [{"role": m.role, "content": m.content} for m in messages],
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
    async with http.stream("POST", url, json=body, headers=headers) as resp:
        if resp.status_code >= 400:
            text = (await resp.aread()).decode(errors="replace")[:300]
            # A client error other than a timeout or a rate limit (an unknown model, a bad key, a request the
            # endpoint cannot take) will be answered the same way again.
            retry = resp.status_code >= 500 or resp.status_code in (408, 429)
            then = "" if retry else " Retrying will not help: skip this task."
            raise EndpointFailure(
                "model_error", f"The model's endpoint answered {resp.status_code}: {text}{then}", retry=retry
            )
        if resp.headers.get("content-type", "").startswith("application/json"):  # it ignored "stream"
            yield _content(msgspec.json.decode(await resp.aread()), "message")
            return
        async for line in resp.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                return
            yield _content(msgspec.json.decode(data), "delta")


def _content(event: Any, part: str) -> Any:
    """The text of an OpenAI chat-completions event: choices[0].delta.content (streamed) or .message.content;
    None when it holds no text (a role announcement, a finish reason)."""
    if isinstance(event, dict) and isinstance(event.get("error"), dict | str):
        raise ValueError(f"the endpoint reported an error: {str(event['error'])[:200]}")
    try:
        return event["choices"][0][part].get("content")
    except (KeyError, IndexError, TypeError, AttributeError):
        raise ValueError("the endpoint's answer is not a chat completion") from None


def _cause(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300] if str(exc) else type(exc).__name__
