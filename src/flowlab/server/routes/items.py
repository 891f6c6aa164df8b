"""Flow items: status, results, win-loss matrix, votes, stop, long poll and live events."""

from __future__ import annotations

import msgspec
from litestar import Request, get, post
from litestar.response import ServerSentEvent

from flowlab import schemas
from flowlab.server import events, routing
from flowlab.server.errors import Invalid
from flowlab.server.routes import researcher
from flowlab.server.routes.flows import SSE_HEADERS


@get("/v1/items/{item_id:str}")
async def item_status(request: Request, item_id: str) -> schemas.ItemStatus:
    service, who = researcher(request)
    return await service.items.status_of(who, item_id)


@get("/v1/items/{item_id:str}/detail")
async def item_detail(request: Request, item_id: str) -> schemas.ItemDetail:
    service, who = researcher(request)
    return await service.items.detail_of(who, item_id)


@get("/v1/items/{item_id:str}/results")
async def item_results(
    request: Request, item_id: str
) -> schemas.ItemResults | schemas.ClassifyResults | schemas.RlhfResults | schemas.WriteResults:
    service, who = researcher(request)
    return await service.items.results_of(who, item_id)


@get("/v1/items/{item_id:str}/matrix")
async def item_matrix(request: Request, item_id: str) -> schemas.WinLossMatrix:
    service, who = researcher(request)
    return await service.items.matrix_of(who, item_id)


@get("/v1/items/{item_id:str}/votes")
async def item_votes(request: Request, item_id: str) -> list[schemas.Vote]:
    service, who = researcher(request)
    return await service.items.answers_of(who, item_id, "votes")


@get("/v1/items/{item_id:str}/labels")
async def item_labels(request: Request, item_id: str) -> list[schemas.Label]:
    service, who = researcher(request)
    return await service.items.answers_of(who, item_id, "labels")


@get("/v1/items/{item_id:str}/annotations")
async def item_annotations(request: Request, item_id: str) -> list[schemas.Annotation]:
    service, who = researcher(request)
    return await service.items.answers_of(who, item_id, "annotations")


@get("/v1/items/{item_id:str}/rankings")
async def item_rankings(request: Request, item_id: str) -> list[schemas.Ranking]:
    service, who = researcher(request)
    return await service.items.answers_of(who, item_id, "rankings")


@get("/v1/items/{item_id:str}/conversations")
async def item_conversations(request: Request, item_id: str) -> list[schemas.Conversation]:
    service, who = researcher(request)
    return await service.items.answers_of(who, item_id, "conversations")


@get("/v1/items/{item_id:str}/demonstrations")
async def item_demonstrations(request: Request, item_id: str) -> list[schemas.Demonstration]:
    service, who = researcher(request)
    return await service.items.answers_of(who, item_id, "demonstrations")


@get("/v1/items/{item_id:str}/annotators")
async def item_annotators(request: Request, item_id: str) -> list[schemas.ItemAnnotator]:
    service, who = researcher(request)
    return await service.items.annotators_of(who, item_id)


@post("/v1/items/{item_id:str}/stop", status_code=200)
async def stop_item(request: Request, item_id: str) -> schemas.ItemStatus:
    service, who = researcher(request)
    return await service.items.stop(who, item_id)


@get("/v1/items/{item_id:str}/wait")
async def wait_item(request: Request, item_id: str, since: int = -1, timeout: float = 25.0) -> schemas.ItemStatus:
    service, who = researcher(request)
    return await events.wait_for_item(service, await service.items.find(who, item_id), since, timeout)


@post("/v1/items/wait", status_code=200)
async def wait_items(request: Request, data: schemas.ItemsWait) -> list[schemas.ItemStatus]:
    """Wait for several items at once (e.g. every prompt group of a training step): one long poll."""
    service, who = researcher(request)
    if not 1 <= len(data.item_ids) <= events.MAX_WAIT_ITEMS:
        raise Invalid(f"Wait for 1 to {events.MAX_WAIT_ITEMS} items at a time.", field="item_ids")
    cluster = routing.cluster_of(request)
    if cluster is None or routing.is_forwarded(request):
        found = [await service.items.find(who, item_id) for item_id in data.item_ids]
        return await events.wait_for_items(service, found, data.timeout)
    # In a cluster, the items of each node are waited for there, all at once.
    nodes = [await routing.node_of(cluster, {"item_id": i}) for i in data.item_ids]
    if any(cluster.in_between(n) for n in nodes):
        cluster.poke()
        raise routing.Relayed(routing.moved())

    async def here(at: list[int]) -> list[schemas.ItemStatus]:
        found = [await service.items.find(who, data.item_ids[i]) for i in at]
        return await events.wait_for_items(service, found, data.timeout)

    return await routing.scatter(
        request,
        nodes,
        here,
        lambda at: schemas.ItemsWait(item_ids=[data.item_ids[i] for i in at], timeout=data.timeout),
        lambda body: msgspec.json.decode(body, type=list[schemas.ItemStatus]),
    )


@get("/v1/items/{item_id:str}/events")
async def item_events(request: Request, item_id: str) -> ServerSentEvent:
    service, who = researcher(request)
    item = await service.items.find(who, item_id)
    last = events.parse_last_event_id(request.headers.get("last-event-id"))
    return ServerSentEvent(events.item_stream(service, item, last), headers=SSE_HEADERS)


handlers = [
    item_status,
    item_detail,
    item_results,
    item_matrix,
    item_votes,
    item_labels,
    item_annotations,
    item_conversations,
    item_rankings,
    item_demonstrations,
    item_annotators,
    stop_item,
    wait_item,
    wait_items,
    item_events,
]
