"""In a cluster, every request reaches the process that serves what it is about.

A request about one flow, item, project or task (its path names it) goes to the node serving that flow: the
middleware here forwards it, streaming the reply back (long polls and SSE included), before anything else runs.
Requests that span flows — the next task, a batch of answers, waiting on items of several flows, the project
list — are split or gathered by their handlers, with `relay` and `gather`. A forwarded request carries
`X-Flowlab-Forwarded`, and is never forwarded again: a node that no longer serves what it names (it moved
a moment ago) answers 503, which clients retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import msgspec
from litestar import Request, Response
from litestar.types import ASGIApp, Receive, Scope, Send

from flowlab import schemas
from flowlab.server.cluster import Cluster, task_node

T = TypeVar("T")
FORWARDED = "x-flowlab-forwarded"
HOP_BY_HOP = {
    b"connection",
    b"keep-alive",
    b"proxy-authenticate",
    b"proxy-authorization",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
    b"host",
}
MOVED = (
    "What this request names is served by another flowlab process of the cluster right now (it moved a moment "
    "ago, or that process is being replaced). Nothing was done; retry in a moment."
)
LOST = (
    "The flowlab process serving this request stopped before it answered, so whether it took effect is unknown. "
    "Send it again in a moment: another process serves it by then, and a retried answer counts once."
)
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)  # the request never left this node
_problem = msgspec.json.Encoder()


def is_forwarded(request: Request) -> bool:
    return FORWARDED in request.headers


def cluster_of(request: Request) -> Cluster | None:
    return request.app.state.cluster  # type: ignore[no-any-return]


# ------------------------------------------------------------ the middleware


def forwarder(app: ASGIApp) -> ASGIApp:
    """Forward each request about another node's flow to that node (Litestar middleware: it runs once the
    route, and so the path's ids, are known, and before authentication reads anything)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        cluster: Cluster | None = scope["app"].state.cluster
        if scope["type"] != "http" or cluster is None:
            await app(scope, receive, send)
            return
        params = scope.get("path_params") or {}
        node = await node_of(cluster, params)
        url = cluster.url_of(node)
        if cluster.in_between(node):
            cluster.poke()
            await _refuse(send, 503, MOVED)
        elif url is None:
            changes = None if scope["method"] in ("GET", "HEAD", "OPTIONS") else _changes(scope["path"], params)
            if changes is None:
                await app(scope, receive, send)
                return
            status = 0

            async def watch(message: Any) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            await app(scope, receive, watch)
            if 200 <= status < 300:
                cluster.announce(*changes)
        elif any(name == FORWARDED.encode() for name, _ in scope["headers"]):
            await _refuse(send, 503, MOVED)
        else:
            await _proxy(cluster, url, scope, receive, send)

    return middleware


async def node_of(cluster: Cluster, params: dict[str, Any]) -> str | None:
    """The node serving what the path names; None for this node, or for something unknown (a 404 here)."""
    service = cluster.service
    if "flow_id" in params:
        if params["flow_id"] not in service.flows.flows:
            await cluster.learn_flow(params["flow_id"])  # made by another node a moment ago?
        return cluster.node_of_flow(params["flow_id"])
    if "item_id" in params:
        item = service.items.live.get(params["item_id"])
        if item is not None:
            return item.flow.node
        return await cluster.node_of_row("items", params["item_id"])
    if "project_id" in params:
        project = service.projects.projects.get(params["project_id"])
        if project is not None:
            return cluster.id
        return await cluster.node_of_row("projects", params["project_id"])
    if "eval_id" in params:
        record = service.evals.evals.get(params["eval_id"])
        if record is not None:
            return record.flow.node
        return await cluster.node_of_row("evals", params["eval_id"])
    if "task_id" in params:
        node = task_node(params["task_id"])
        # A task of a node that died is answered here, from the database (a retry of a counted answer).
        return node if node in cluster.peers else None
    return None


def _changes(path: str, params: dict[str, Any]) -> tuple[str, set[str] | None] | None:
    """What the other nodes must read again once this (successful) write is done here."""
    parts = path.split("/")
    if len(parts) < 3:
        return None
    if parts[2] == "flows":
        return ("flows", None) if "flow_id" not in params else ("flows", {params["flow_id"]})
    if parts[2] in ("keys", "annotators"):
        return ("people", None)
    if parts[2] == "webhooks":
        return ("webhooks", None)
    return None


async def _proxy(cluster: Cluster, url: str, scope: Scope, receive: Receive, send: Send) -> None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    headers = [(k, v) for k, v in scope["headers"] if k.lower() not in HOP_BY_HOP]
    headers.append((FORWARDED.encode(), cluster.id.encode()))
    target = url + scope["raw_path"].decode("latin-1")
    if scope.get("query_string"):
        target += "?" + scope["query_string"].decode("latin-1")
    request = cluster.http.build_request(scope["method"], target, headers=headers, content=b"".join(chunks))
    try:
        response = await cluster.http.send(request, stream=True)
    except NOT_SENT:
        cluster.poke()
        await _refuse(send, 503, MOVED)
        return
    except httpx.TransportError:
        cluster.poke()
        await _refuse(send, 502, LOST)
        return
    try:
        out = [(k, v) for k, v in response.headers.raw if k.lower() not in HOP_BY_HOP]
        await send({"type": "http.response.start", "status": response.status_code, "headers": out})
        pump = asyncio.ensure_future(_pump(response, send))
        gone = asyncio.ensure_future(_disconnected(receive))
        await asyncio.wait({pump, gone}, return_when=asyncio.FIRST_COMPLETED)
        for task in (pump, gone):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    finally:
        await response.aclose()


async def _pump(response: httpx.Response, send: Send) -> None:
    with contextlib.suppress(httpx.TransportError):
        async for chunk in response.aiter_raw():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _refuse(send: Send, status: int, detail: str) -> None:
    problem = _failure(status, detail)
    headers = [(b"content-type", b"application/problem+json"), (b"retry-after", b"1")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": _problem.encode(problem)})


def _failure(status: int, detail: str) -> schemas.Problem:
    title, code = ("Service Unavailable", "moved") if status == 503 else ("Bad Gateway", "outcome_unknown")
    return schemas.Problem(title=title, status=status, detail=detail, code=code)


# ------------------------------------------------------------ for the handlers that split or gather


class Relayed(Exception):
    """Raised by a handler to answer with `response` (another node's reply, or a `moved`) instead of its own
    return type, which stays what the API document says it is."""

    def __init__(self, response: Response[bytes]) -> None:
        super().__init__(response.status_code)
        self.response = response


def answer_relayed(_: Request, exc: Relayed) -> Response[bytes]:
    return exc.response


def moved() -> Response[bytes]:
    """The 503 for a request about something that is moving between nodes: retry in a moment."""
    return Response(
        _problem.encode(_failure(503, MOVED)),
        status_code=503,
        media_type="application/problem+json",
        headers={"Retry-After": "1"},
    )


async def relay(request: Request, url: str, body: Any = None) -> Response[bytes]:
    """This request (with `body` instead of its own, if given), answered by the node at `url`."""
    cluster = cluster_of(request)
    assert cluster is not None
    headers = {k: v for k, v in request.headers.items() if k.encode() not in HOP_BY_HOP and k != "content-length"}
    headers[FORWARDED] = cluster.id
    content = await request.body() if body is None else msgspec.json.encode(body)
    try:
        reply = await cluster.http.request(
            request.method, url + request.url.path, params=request.query_params.dict(), headers=headers, content=content
        )
    except httpx.TransportError as exc:
        cluster.poke()
        if isinstance(exc, NOT_SENT):
            return moved()
        return Response(
            _problem.encode(_failure(502, LOST)),
            status_code=502,
            media_type="application/problem+json",
            headers={"Retry-After": "1"},
        )
    kept = {"content-type", "retry-after", "x-poll-interval"}
    return Response(
        reply.content,
        status_code=reply.status_code,
        headers={k: v for k, v in reply.headers.items() if k in kept},
        media_type=reply.headers.get("content-type"),
    )


async def gather(request: Request, path: str) -> list[tuple[str, httpx.Response]]:
    """GET `path` from every other node at once (forwarded: each answers for itself only)."""
    cluster = cluster_of(request)
    assert cluster is not None
    headers = {"authorization": request.headers.get("authorization", ""), FORWARDED: cluster.id}

    async def one(node: str, url: str) -> tuple[str, httpx.Response] | None:
        with contextlib.suppress(httpx.TransportError):
            return node, await cluster.http.get(url + path, headers=headers)
        cluster.poke()
        return None

    replies = await asyncio.gather(*(one(n, u) for n, u in list(cluster.peers.items())))
    return [r for r in replies if r is not None]


def tasks_elsewhere(request: Request) -> Callable[[int], Awaitable[list[schemas.Task]]] | None:
    """For an annotator's long poll: lease up to n tasks from the other nodes, asking one at a time (a lease
    is a promise, so never more than asked for), each in its turn first."""
    cluster = cluster_of(request)
    if cluster is None or is_forwarded(request):
        return None
    auth = request.headers.get("authorization", "")
    turn = itertools.count()

    async def lease(n: int) -> list[schemas.Task]:
        peers = list(cluster.peers.items())
        if not peers:
            return []
        start = next(turn) % len(peers)
        headers = {"authorization": auth, FORWARDED: cluster.id}
        for _, url in peers[start:] + peers[:start]:
            try:
                reply = await cluster.http.post(url + "/v1/tasks/next-batch", json={"n": n, "wait": 0}, headers=headers)
            except httpx.TransportError:
                cluster.poke()
                continue
            if reply.status_code == 200:
                tasks = msgspec.json.decode(reply.content, type=schemas.TaskBatch).tasks
                if tasks:
                    return tasks
        return []

    return lease


async def scatter(
    request: Request,
    nodes: list[str | None],
    here: Callable[[list[int]], Awaitable[list[T]]],
    there: Callable[[list[int]], Any],
    decode: Callable[[bytes], list[T]],
) -> list[T]:
    """A request that spans nodes, done part by part and all at once: `nodes[i]` serves position i; this
    node's positions are done by `here`, each other node's by relaying the body `there(positions)` to it and
    decoding its reply. The results come back in the positions' order. A part that fails fails the request
    with that part's answer (a retry of the whole is safe: what was done counts once)."""
    cluster = cluster_of(request)
    assert cluster is not None
    groups: dict[str | None, list[int]] = {}
    for i, node in enumerate(nodes):
        groups.setdefault(cluster.url_of(node), []).append(i)

    async def part(url: str | None, at: list[int]) -> list[T]:
        if url is None:
            return await here(at)
        reply = await relay(request, url, there(at))
        if reply.status_code != 200:
            raise Relayed(reply)
        return decode(reply.content)

    results: list[Any] = [None] * len(nodes)
    done = await asyncio.gather(*(part(url, at) for url, at in groups.items()))
    for at, got in zip(groups.values(), done, strict=True):
        for i, result in zip(at, got, strict=True):
            results[i] = result
    return results
