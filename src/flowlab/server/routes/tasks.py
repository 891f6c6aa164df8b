"""The annotator protocol: lease the next task, say when it is on screen, answer it once, in ones or in bulk."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import msgspec
from litestar import Request, Response, get, post
from litestar.response import ServerSentEvent

from flowlab import schemas
from flowlab.server import events, routing
from flowlab.server.cluster import task_node
from flowlab.server.routes import annotator
from flowlab.server.routes.flows import SSE_HEADERS


@contextlib.asynccontextmanager
async def hang_up_watch(request: Request, wait: float) -> AsyncIterator[Callable[[], bool]]:
    """While a long poll waits, notice if the client goes away, so no task is leased to nobody."""
    if wait <= 0:
        yield lambda: False
        return
    watcher = asyncio.ensure_future(request.receive())  # after the body, the next message is the disconnect
    try:
        yield watcher.done
    finally:
        watcher.cancel()


@post("/v1/tasks/next", status_code=200)
async def next_task(request: Request, data: schemas.TaskRequest | None = None) -> Response[schemas.Task | None]:
    service, who = annotator(request)
    wait = data.wait if data else 0.0
    async with hang_up_watch(request, wait) as gone:
        found = await service.answers.wait_for_tasks(who, 1, wait, gone, routing.tasks_elsewhere(request))
    task = found[0] if found else None
    if task is None:
        return Response(None, status_code=204, headers={"X-Poll-Interval": f"{service.poll_interval:g}"})
    return Response(task)


@post("/v1/tasks/next-batch", status_code=200)
async def next_tasks(request: Request, data: schemas.TaskBatchRequest) -> schemas.TaskBatch:
    service, who = annotator(request)
    async with hang_up_watch(request, data.wait) as gone:
        tasks = await service.answers.wait_for_tasks(who, data.n, data.wait, gone, routing.tasks_elsewhere(request))
    return schemas.TaskBatch(tasks=tasks, poll_interval=service.poll_interval)


@post("/v1/tasks/{task_id:str}/answer", status_code=200)
async def answer(request: Request, task_id: str, data: schemas.Answer) -> schemas.Ack:
    service, who = annotator(request)
    return await service.answers.answer(who, task_id, data)


@post("/v1/tasks/{task_id:str}/shown", status_code=200)
async def shown(request: Request, task_id: str) -> schemas.Shown:
    """The page put the task on screen: its lease's clock starts again (once), so time it spent held behind
    another task is not the annotator's. Its path names the task, so a cluster forwards it to the task's node."""
    service, who = annotator(request)
    return service.answers.shown(who, task_id)


@post("/v1/tasks/answers", status_code=200)
async def answers(request: Request, data: schemas.AnswerBatch) -> schemas.AckBatch:
    service, who = annotator(request)
    cluster = routing.cluster_of(request)
    if cluster is None or routing.is_forwarded(request):
        return schemas.AckBatch(results=await service.answers.answer_batch(who, data.answers))
    # In a cluster, each answer goes to the node that leased its task: all at once, results in order.
    nodes = [task_node(a.task_id) for a in data.answers]
    if all(cluster.url_of(n) is None for n in nodes):
        return schemas.AckBatch(results=await service.answers.answer_batch(who, data.answers))

    async def here(at: list[int]) -> list[schemas.Ack]:
        return await service.answers.answer_batch(who, [data.answers[i] for i in at])

    results = await routing.scatter(
        request,
        nodes,
        here,
        lambda at: schemas.AnswerBatch(answers=[data.answers[i] for i in at]),
        lambda body: msgspec.json.decode(body, type=schemas.AckBatch).results,
    )
    return schemas.AckBatch(results=results)


@get("/v1/annotator/events")
async def annotator_events(request: Request) -> ServerSentEvent:
    service, who = annotator(request)
    return ServerSentEvent(events.annotator_stream(service, who), headers=SSE_HEADERS)


handlers = [next_task, next_tasks, answer, shown, answers, annotator_events]
