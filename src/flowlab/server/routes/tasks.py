"""The annotator protocol: lease the next task, answer it once, in ones or in bulk."""

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


@post("/v1/tasks/answers", status_code=200)
async def answers(request: Request, data: schemas.AnswerBatch) -> schemas.AckBatch:
    service, who = annotator(request)
    cluster = routing.cluster_of(request)
    if cluster is None or routing.is_forwarded(request):
        return schemas.AckBatch(results=await service.answers.answer_batch(who, data.answers))
    # In a cluster, each answer goes to the node that leased its task: all at once, results in order.
    groups = routing.by_node(cluster, (a.task_id for a in data.answers), task_node)
    if list(groups) == [None]:
        return schemas.AckBatch(results=await service.answers.answer_batch(who, data.answers))

    async def group(url: str | None, at: list[int]) -> list[schemas.Ack] | Response[bytes]:
        part = [data.answers[i] for i in at]
        if url is None:
            return await service.answers.answer_batch(who, part)
        reply = await routing.relay(request, url, schemas.AnswerBatch(answers=part))
        if reply.status_code != 200:
            return reply
        return msgspec.json.decode(reply.content, type=schemas.AckBatch).results  # type: ignore[arg-type]

    replies = await asyncio.gather(*(group(url, at) for url, at in groups.items()))
    results: list[schemas.Ack | None] = [None] * len(data.answers)
    for at, reply in zip(groups.values(), replies, strict=True):
        if isinstance(reply, Response):
            raise routing.Relayed(reply)  # that node's answers were not counted: a retry counts the others once
        for i, ack in zip(at, reply, strict=True):
            results[i] = ack
    return schemas.AckBatch(results=[r for r in results if r is not None])


@get("/v1/annotator/events")
async def annotator_events(request: Request) -> ServerSentEvent:
    service, who = annotator(request)
    return ServerSentEvent(events.annotator_stream(service, who), headers=SSE_HEADERS)


handlers = [next_task, next_tasks, answer, answers, annotator_events]
