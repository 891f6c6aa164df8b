"""Evals of a training run: create one, submit checkpoints, read its history, follow its events."""

from __future__ import annotations

import msgspec
from litestar import Request, get, post
from litestar.response import ServerSentEvent

from flowlab import schemas
from flowlab.server import events, routing
from flowlab.server.routes import researcher
from flowlab.server.routes.flows import SSE_HEADERS


@post("/v1/evals", status_code=201)
async def create_eval(request: Request, data: schemas.EvalCreate) -> schemas.Eval:
    """Held-out prompts (with tags) and an anchor; a flow of the eval's kind carries its comparisons."""
    service, who = researcher(request)
    return await service.evals.create(who, data)


@get("/v1/evals")
async def list_evals(request: Request) -> list[schemas.Eval]:
    service, who = researcher(request)
    mine = service.evals.listing(who)
    cluster = routing.cluster_of(request)
    if cluster is None or routing.is_forwarded(request):
        return mine
    for _, reply in await routing.gather(request, "/v1/evals"):  # in a cluster, each process holds its flows' evals
        if reply.status_code == 200:
            mine += msgspec.json.decode(reply.content, type=list[schemas.Eval])
    return sorted(mine, key=lambda e: e.created_at)


@get("/v1/evals/{eval_id:str}")
async def get_eval(request: Request, eval_id: str) -> schemas.Eval:
    service, who = researcher(request)
    return service.evals.view(service.evals.get(who, eval_id))


@post("/v1/evals/{eval_id:str}/checkpoints", status_code=201)
async def add_checkpoint(request: Request, eval_id: str, data: schemas.CheckpointCreate) -> schemas.EvalCheckpoint:
    """The policy's completions at a step: one comparison per prompt is pushed, and the answer comes at once."""
    service, who = researcher(request)
    return await service.evals.checkpoint(who, eval_id, data)


@get("/v1/evals/{eval_id:str}/history")
async def eval_history(request: Request, eval_id: str) -> schemas.EvalHistory:
    """Win rate against the anchor and Bradley–Terry score per checkpoint and tag, the proxy reward, and the
    sentinel's latest check."""
    service, who = researcher(request)
    return service.evals.results(who, eval_id)


@get("/v1/evals/{eval_id:str}/wait")
async def wait_eval(request: Request, eval_id: str, timeout: float = 25.0) -> schemas.EvalHistory:
    """Long poll: the history once every checkpoint so far has ended, or after `timeout` seconds (at most 60)."""
    service, who = researcher(request)
    return await service.evals.wait(who, eval_id, timeout)


@get("/v1/evals/{eval_id:str}/events")
async def eval_events(request: Request, eval_id: str) -> ServerSentEvent:
    """Server-Sent Events `eval.checkpoint` and `eval.divergence`, resumable with Last-Event-ID."""
    service, who = researcher(request)
    record = service.evals.get(who, eval_id)
    last = events.parse_last_event_id(request.headers.get("last-event-id"))
    return ServerSentEvent(events.eval_stream(service, record, last), headers=SSE_HEADERS)


handlers = [create_eval, list_evals, get_eval, add_checkpoint, eval_history, wait_eval, eval_events]
