"""Batch projects: create one on a flow, upload its tasks, start, pause, resume, follow it, export it."""

from __future__ import annotations

import msgspec
from litestar import Request, delete, get, post

from flowlab import schemas
from flowlab.server import routing
from flowlab.server.routes import researcher


@post("/v1/projects", status_code=201)
async def create_project(request: Request, data: schemas.ProjectCreate) -> schemas.ProjectStatus:
    """A batch project on one of the key's flows, open for its tasks until it is started."""
    service, who = researcher(request)
    cluster = routing.cluster_of(request)
    if cluster is not None and not routing.is_forwarded(request):
        node = cluster.node_of_flow(data.flow_id)
        if cluster.in_between(node):
            raise routing.Relayed(routing.moved())
        url = cluster.url_of(node)
        if url is not None:  # made where its flow is served
            raise routing.Relayed(await routing.relay(request, url, data))
    return await service.projects.create(who, data)


@get("/v1/projects")
async def list_projects(request: Request) -> list[schemas.ProjectStatus]:
    service, who = researcher(request)
    mine = service.projects.listing(who)
    cluster = routing.cluster_of(request)
    if cluster is None or routing.is_forwarded(request):
        return mine
    for _, reply in await routing.gather(request, "/v1/projects"):
        if reply.status_code == 200:
            mine += msgspec.json.decode(reply.content, type=list[schemas.ProjectStatus])
    return sorted(mine, key=lambda p: p.created_at)


@get("/v1/projects/{project_id:str}")
async def project_status(request: Request, project_id: str) -> schemas.ProjectStatus:
    """Progress: tasks and answers done of the total, the rate over the last minute and the time left."""
    service, who = researcher(request)
    return service.projects.status(service.projects.get(who, project_id))


@post("/v1/projects/{project_id:str}/tasks")
async def add_project_tasks(request: Request, project_id: str, data: schemas.ProjectTasks) -> schemas.ProjectStatus:
    """Queue up to 500 items (flow batches without a time-to-live) of an open project; each is checked
    against the flow, and a bad one refuses the request whole."""
    service, who = researcher(request)
    return await service.projects.add_tasks(who, project_id, data)


@post("/v1/projects/{project_id:str}/start")
async def start_project(request: Request, project_id: str) -> schemas.ProjectStatus:
    service, who = researcher(request)
    return await service.projects.start(who, project_id)


@post("/v1/projects/{project_id:str}/pause")
async def pause_project(request: Request, project_id: str) -> schemas.ProjectStatus:
    """Hand out no more of its tasks until resumed; tasks already out may still be answered."""
    service, who = researcher(request)
    return await service.projects.pause(who, project_id)


@post("/v1/projects/{project_id:str}/resume")
async def resume_project(request: Request, project_id: str) -> schemas.ProjectStatus:
    service, who = researcher(request)
    return await service.projects.resume(who, project_id)


@get("/v1/projects/{project_id:str}/wait")
async def wait_project(request: Request, project_id: str, timeout: float = 25.0) -> schemas.ProjectStatus:
    """Long poll: the status once the project completes, or after `timeout` seconds (at most 60)."""
    service, who = researcher(request)
    return await service.projects.wait(who, project_id, timeout)


@get("/v1/projects/{project_id:str}/export")
async def export_project(
    request: Request, project_id: str, after: str = "", limit: int = 200
) -> schemas.ProjectExportPage:
    """A page of the project's ended items in dataset order, each with its datapoints, results and answers;
    pass `next` back as `after` for the following page."""
    service, who = researcher(request)
    return await service.projects.export(who, project_id, after, limit)


@delete("/v1/projects/{project_id:str}", status_code=204)
async def delete_project(request: Request, project_id: str) -> None:
    """Drop the project's queue and stop its live items; what it already delivered stays in its flow."""
    service, who = researcher(request)
    await service.projects.delete(who, project_id)


handlers = [
    delete_project,
    create_project,
    list_projects,
    project_status,
    add_project_tasks,
    start_project,
    pause_project,
    resume_project,
    wait_project,
    export_project,
]
