"""Chat tasks' models: the page asks for a reply and reads it as it streams; workers serving a model from
Python ask for work by long poll and post replies back in chunks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from litestar import Request, Response, delete, get, post
from litestar.response import Stream

from flowlab import schemas
from flowlab.server.errors import BadRequest, NotFound
from flowlab.server.routes import annotator, researcher
from flowlab.server.routes.tasks import hang_up_watch

if TYPE_CHECKING:
    from flowlab.server.auth import Principal
    from flowlab.server.model import Lease
    from flowlab.server.service import FlowService

MAX_WAIT = 60.0


@post("/v1/tasks/{task_id:str}/generate", status_code=200)
async def generate(request: Request, task_id: str, data: schemas.ChatGenerate) -> Stream:
    """The next reply on a branch of a chat task, streamed as it is written: one JSON object a line."""
    service, who = annotator(request)
    lease = _lease(service, who, task_id)
    gen = service.relay.start(lease, data)
    return Stream(
        service.relay.stream(lease, gen, data.model),
        media_type="application/x-ndjson",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@get("/v1/tasks/{task_id:str}/models")
async def task_models(request: Request, task_id: str) -> list[schemas.ChatModelPresence]:
    """Whether each of a chat task's models can answer now, by position: the page says so before a turn is sent."""
    service, who = annotator(request)
    return service.relay.presence(_lease(service, who, task_id))


@get("/v1/flows/{flow_id:str}/models")
async def models(request: Request, flow_id: str) -> list[schemas.ChatModelStatus]:
    service, who = researcher(request)
    return service.relay.status(service.flows.get(who, flow_id))


@get("/v1/flows/{flow_id:str}/models/{name:str}/next")
async def next_request(
    request: Request, flow_id: str, name: str, worker: str, wait: float = 20.0
) -> Response[schemas.GenerationRequest | None]:
    """A reply for this worker to write, or 204 after `wait` seconds without one."""
    service, who = researcher(request)
    flow = service.flows.get(who, flow_id)
    wait = min(max(wait, 0.0), MAX_WAIT)
    async with hang_up_watch(request, wait) as gone:
        work = await service.relay.next_request(flow, name, worker, wait, gone)
    return Response(work, status_code=200 if work is not None else 204)


@delete("/v1/flows/{flow_id:str}/models/{name:str}/workers/{worker:str}", status_code=204)
async def detach(request: Request, flow_id: str, name: str, worker: str) -> None:
    service, who = researcher(request)
    service.relay.detach(service.flows.get(who, flow_id), name, worker)


@post("/v1/flows/{flow_id:str}/generations/{generation_id:str}", status_code=200)
async def deliver(request: Request, flow_id: str, generation_id: str) -> dict[str, Any]:
    """A chunk of a reply (`{"text"}`), its end (`{"done": true}`) or the model's failure (`{"error"}`)."""
    service, who = researcher(request)
    flow = service.flows.get(who, flow_id)
    try:
        body = msgspec.json.decode(await request.body())
    except msgspec.DecodeError:
        raise BadRequest("The body is not JSON.") from None
    service.relay.deliver(flow, generation_id, body)
    return {"ok": True}


def _lease(service: FlowService, who: Principal, task_id: str) -> Lease:
    lease = service.leases.get(task_id)
    if lease is None or lease.annotator_id != who.id:
        raise NotFound(f"Task {task_id!r} is not out with you (it ended, expired or was never leased).")
    return lease


handlers = [generate, task_models, models, next_request, detach, deliver]
