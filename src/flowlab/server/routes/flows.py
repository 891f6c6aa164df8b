"""Flows: create, list, read, reconfigure, delete, and their live events."""

from __future__ import annotations

from typing import Annotated, Literal

from litestar import Request, delete, get, patch, post
from litestar.params import Parameter
from litestar.response import ServerSentEvent

from flowlab import schemas
from flowlab.server import events
from flowlab.server.routes import researcher

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@post("/v1/flows", status_code=201)
async def create_flow(request: Request, data: schemas.FlowCreate) -> schemas.Flow:
    service, who = researcher(request)
    return await service.flows.create(who, data)


@get("/v1/flows")
async def list_flows(
    request: Request,
    limit: Annotated[int, Parameter(ge=1, le=1000)] = 10,
    offset: Annotated[int, Parameter(ge=0)] = 0,
    name: str = "",
) -> list[schemas.Flow]:
    """Newest first; `name` keeps the flows whose name contains it."""
    service, who = researcher(request)
    return service.flows.listing(who, limit, offset=offset, name=name)


@get("/v1/flows/{flow_id:str}")
async def get_flow(request: Request, flow_id: str) -> schemas.Flow:
    service, who = researcher(request)
    return service.flows.view(service.flows.get(who, flow_id))


@patch("/v1/flows/{flow_id:str}")
async def update_flow(request: Request, flow_id: str, data: schemas.FlowConfigUpdate) -> schemas.Flow:
    service, who = researcher(request)
    return await service.flows.update(who, flow_id, data)


@delete("/v1/flows/{flow_id:str}", status_code=204)
async def delete_flow(request: Request, flow_id: str) -> None:
    service, who = researcher(request)
    await service.delete_flow(who, flow_id)


@post("/v1/flows/{flow_id:str}/items", status_code=201)
async def create_item(request: Request, flow_id: str, data: schemas.ItemCreate) -> schemas.ItemStatus:
    service, who = researcher(request)
    return await service.create_item(who, flow_id, data)


@get("/v1/flows/{flow_id:str}/items")
async def list_items(
    request: Request,
    flow_id: str,
    limit: Annotated[int | None, Parameter(ge=1)] = None,
    offset: Annotated[int, Parameter(ge=0)] = 0,
    order: Literal["oldest", "newest"] = "oldest",
) -> list[schemas.ItemStatus]:
    """Every item, oldest first; or a page of `limit` from `offset`, in `order` ("oldest" or "newest")."""
    service, who = researcher(request)
    return await service.list_items(who, flow_id, limit=limit, offset=offset, order=order)


@get("/v1/flows/{flow_id:str}/validation-pairs")
async def validation_pairs(request: Request, flow_id: str) -> list[schemas.ValidationPair]:
    service, who = researcher(request)
    return service.flows.get(who, flow_id).config.validation_pairs


@get("/v1/flows/{flow_id:str}/validation-labels")
async def validation_labels(request: Request, flow_id: str) -> list[schemas.ValidationLabel]:
    service, who = researcher(request)
    return service.flows.get(who, flow_id).config.validation_labels


@post("/v1/validation-sets", status_code=201)
async def create_validation_set(request: Request, data: schemas.ValidationSetCreate) -> schemas.ValidationSet:
    service, who = researcher(request)
    return await service.flows.create_validation_set(who, data)


@get("/v1/validation-sets/{set_id:str}")
async def get_validation_set(request: Request, set_id: str) -> schemas.ValidationSet:
    service, who = researcher(request)
    return (await service.flows.validation_set(who, set_id))[0]


@get("/v1/validation-sets")
async def list_validation_sets(
    request: Request,
    limit: Annotated[int, Parameter(ge=1, le=1000)] = 10,
    offset: Annotated[int, Parameter(ge=0)] = 0,
    name: str = "",
) -> list[schemas.ValidationSet]:
    """Newest first; `name` keeps the sets whose name contains it."""
    service, who = researcher(request)
    return await service.flows.validation_sets(who, limit, offset=offset, name=name)


@patch("/v1/validation-sets/{set_id:str}")
async def update_validation_set(
    request: Request, set_id: str, data: schemas.ValidationSetUpdate
) -> schemas.ValidationSet:
    """Change a set's dimensions, whether a wrong gold answer is explained (`should_alert`), `can_be_flagged`;
    flows made from the set from then on copy it so."""
    service, who = researcher(request)
    return await service.flows.update_validation_set(who, set_id, data)


@delete("/v1/validation-sets/{set_id:str}", status_code=204)
async def delete_validation_set(request: Request, set_id: str) -> None:
    """Forget the set; flows made from it keep the gold questions they copied."""
    service, who = researcher(request)
    await service.flows.delete_validation_set(who, set_id)


@get("/v1/flows/{flow_id:str}/wait")
async def wait_flow(request: Request, flow_id: str, since: int = -1, timeout: float = 25.0) -> schemas.Flow:
    service, who = researcher(request)
    return await events.wait_for_flow(service, service.flows.get(who, flow_id), since, timeout)


@get("/v1/flows/{flow_id:str}/events")
async def flow_events(request: Request, flow_id: str) -> ServerSentEvent:
    service, who = researcher(request)
    flow = service.flows.get(who, flow_id)
    last = events.parse_last_event_id(request.headers.get("last-event-id"))
    return ServerSentEvent(events.flow_stream(service, flow, last), headers=SSE_HEADERS)


handlers = [
    create_flow,
    list_flows,
    get_flow,
    update_flow,
    delete_flow,
    create_item,
    list_items,
    validation_pairs,
    validation_labels,
    create_validation_set,
    get_validation_set,
    list_validation_sets,
    update_validation_set,
    delete_validation_set,
    wait_flow,
    flow_events,
]
