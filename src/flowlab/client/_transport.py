"""The two I/O drivers for the core's operations: one blocking, one asyncio. Nothing else differs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

import httpx
import msgspec

from flowlab import __version__
from flowlab.client import _core as core
from flowlab.client._errors import ConnectError, FlowlabError, Timeout
from flowlab.client._servers import resolve_server
from flowlab.client._sse import SSEParser

T = TypeVar("T")
STREAM_TIMEOUT = httpx.Timeout(connect=10.0, read=60.0, write=10.0, pool=10.0)  # the server pings every 15 s


def resolve(url: str | None, api_key: str | None) -> tuple[str, str | None]:
    """(url, key) by the one rule of `flowlab.client._servers` (an explicit URL, FLOWLAB_URL, the running
    `flowlab serve`, else the embedded local server), for callers that need no reason (the crowd)."""
    server = resolve_server(url, api_key)
    assert server.url is not None  # resolve_server starts the embedded server when it comes to that
    return server.url, server.api_key


def _headers(api_key: str | None) -> dict[str, str]:
    headers = {"User-Agent": f"flowlab-python/{__version__}"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def _translate(exc: httpx.HTTPError, url: str) -> FlowlabError:
    if isinstance(exc, httpx.TimeoutException):
        return Timeout(
            f"The flowlab server at {url} did not answer in time ({exc!r}); retry, or raise the client's timeout=."
        )
    return ConnectError(
        f"Could not reach the flowlab server at {url} ({exc!r}). Is `flowlab serve` running there, and is "
        "FLOWLAB_URL right? `flowlab servers` lists the servers running on this machine."
    )


def _kwargs(call: core.Call) -> dict[str, Any]:
    content, headers = core.body(call)
    kwargs: dict[str, Any] = {"params": call.params, "content": content, "headers": headers}
    if call.timeout is not None:
        kwargs["timeout"] = call.timeout
    return kwargs


class SyncTransport:
    def __init__(
        self, url: str, api_key: str | None, timeout: float, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.url = url
        self.api_key = api_key
        self.http = httpx.Client(base_url=url, headers=_headers(api_key), timeout=timeout, transport=transport)

    def send(self, call: core.Call) -> httpx.Response:
        for _ in range(core.MOVED_TRIES):
            try:
                resp = self.http.request(call.method, call.path, **_kwargs(call))
            except httpx.HTTPError as exc:
                raise _translate(exc, self.url) from exc
            delay = core.moved(resp.status_code, resp.content)
            if delay is None:
                break
            time.sleep(delay)
        core.check(resp.status_code, resp.content, resp.reason_phrase)
        return resp

    def run(self, op: core.Op[T]) -> T:
        reply: Any = None
        error: FlowlabError | None = None
        try:
            while True:
                # A failed request is raised inside the operation, which may handle it (a failed upload
                # it was told to tolerate) or let it propagate from here.
                call = op.send(reply) if error is None else op.throw(error)
                try:
                    reply, error = self.send(call), None
                except FlowlabError as exc:
                    reply, error = None, exc
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    def stream(self, plan: core.StreamPlan) -> Iterator[Any]:
        parser = SSEParser()
        failures = 0
        while True:
            parser.reset()
            headers = {"Accept": "text/event-stream"}
            if parser.last_id is not None:
                headers["Last-Event-ID"] = parser.last_id
            try:
                with self.http.stream("GET", plan.path, headers=headers, timeout=STREAM_TIMEOUT) as resp:
                    if resp.status_code >= 400:
                        body = resp.read()
                        if core.moved(resp.status_code, body) is None:
                            core.check(resp.status_code, body, resp.reason_phrase)
                        raise httpx.TransportError("moved")  # to another process: reconnect in a moment
                    failures = 0
                    for line in resp.iter_lines():
                        msg = parser.feed_line(line)
                        if msg is not None and plan.wants(msg.event):
                            event: Any = msgspec.json.decode(msg.data, type=plan.type)
                            yield event
                            if plan.finished(event):
                                return
            except httpx.TransportError:
                pass  # dropped: reconnect below and resume from the last id
            time.sleep(core.RECONNECT_DELAYS[min(failures, len(core.RECONNECT_DELAYS) - 1)])
            failures += 1

    def close(self) -> None:
        self.http.close()


class AsyncTransport:
    def __init__(
        self, url: str, api_key: str | None, timeout: float, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.url = url
        self.api_key = api_key
        self.http = httpx.AsyncClient(base_url=url, headers=_headers(api_key), timeout=timeout, transport=transport)

    async def send(self, call: core.Call) -> httpx.Response:
        for _ in range(core.MOVED_TRIES):
            try:
                resp = await self.http.request(call.method, call.path, **_kwargs(call))
            except httpx.HTTPError as exc:
                raise _translate(exc, self.url) from exc
            delay = core.moved(resp.status_code, resp.content)
            if delay is None:
                break
            await asyncio.sleep(delay)
        core.check(resp.status_code, resp.content, resp.reason_phrase)
        return resp

    async def run(self, op: core.Op[T]) -> T:
        reply: Any = None
        error: FlowlabError | None = None
        try:
            while True:
                call = op.send(reply) if error is None else op.throw(error)
                try:
                    reply, error = await self.send(call), None
                except FlowlabError as exc:
                    reply, error = None, exc
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    async def stream(self, plan: core.StreamPlan) -> AsyncIterator[Any]:
        parser = SSEParser()
        failures = 0
        while True:
            parser.reset()
            headers = {"Accept": "text/event-stream"}
            if parser.last_id is not None:
                headers["Last-Event-ID"] = parser.last_id
            try:
                async with self.http.stream("GET", plan.path, headers=headers, timeout=STREAM_TIMEOUT) as resp:
                    if resp.status_code >= 400:
                        body = await resp.aread()
                        if core.moved(resp.status_code, body) is None:
                            core.check(resp.status_code, body, resp.reason_phrase)
                        raise httpx.TransportError("moved")  # to another process: reconnect in a moment
                    failures = 0
                    async for line in resp.aiter_lines():
                        msg = parser.feed_line(line)
                        if msg is not None and plan.wants(msg.event):
                            event: Any = msgspec.json.decode(msg.data, type=plan.type)
                            yield event
                            if plan.finished(event):
                                return
            except httpx.TransportError:
                pass
            await asyncio.sleep(core.RECONNECT_DELAYS[min(failures, len(core.RECONNECT_DELAYS) - 1)])
            failures += 1

    async def aclose(self) -> None:
        await self.http.aclose()
