"""The annotator protocol: lease the next task, answer it once, in ones or in bulk."""

from __future__ import annotations

from litestar import Request, Response, get, post
from litestar.response import ServerSentEvent

from flowlab import schemas
from flowlab.server import events
from flowlab.server.routes import annotator
from flowlab.server.routes.flows import SSE_HEADERS


@post("/v1/tasks/next", status_code=200)
async def next_task(request: Request, data: schemas.TaskRequest | None = None) -> Response[schemas.Task | None]:
    service, who = annotator(request)
    task = await service.wait_for_task(who, data.wait if data else 0.0)
    if task is None:
        return Response(None, status_code=204, headers={"X-Poll-Interval": f"{service.poll_interval:g}"})
    return Response(task)


@post("/v1/tasks/next-batch", status_code=200)
async def next_tasks(request: Request, data: schemas.TaskBatchRequest) -> schemas.TaskBatch:
    service, who = annotator(request)
    tasks = await service.wait_for_tasks(who, data.n, data.wait)
    return schemas.TaskBatch(tasks=tasks, poll_interval=service.poll_interval)


@post("/v1/tasks/{task_id:str}/answer", status_code=200)
async def answer(request: Request, task_id: str, data: schemas.Answer) -> schemas.Ack:
    service, who = annotator(request)
    return await service.answer(who, task_id, data)


@post("/v1/tasks/answers", status_code=200)
async def answers(request: Request, data: schemas.AnswerBatch) -> schemas.AckBatch:
    service, who = annotator(request)
    return schemas.AckBatch(results=await service.answer_batch(who, data.answers))


@get("/v1/annotator/events")
async def annotator_events(request: Request) -> ServerSentEvent:
    service, _ = annotator(request)
    return ServerSentEvent(events.annotator_stream(service), headers=SSE_HEADERS)


handlers = [next_task, next_tasks, answer, answers, annotator_events]
