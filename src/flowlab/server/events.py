"""Live updates: coalesced, resumable Server-Sent Events per item and per flow, and long polls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import msgspec
from litestar.response.sse import ServerSentEventMessage

from flowlab import schemas
from flowlab.server import lifecycle
from flowlab.server.auth import Principal
from flowlab.server.evals import EvalRecord
from flowlab.server.history import EndedItem
from flowlab.server.model import FlowRecord, ItemRecord
from flowlab.server.service import FlowService

COALESCE_SECONDS = 0.1  # at most ten messages a second per subscriber
KEEPALIVE_SECONDS = 15.0
MAX_DELTA_ROWS = 5_000  # votes in one message; past this a stream sends a snapshot instead

_encode = msgspec.json.Encoder().encode


def parse_last_event_id(value: str | None) -> int | None:
    if value is None or not value.strip():
        return None
    try:
        return max(-1, int(value.strip()))
    except ValueError:
        return None


async def _coalesce(last_sent: float) -> float:
    gap = time.monotonic() - last_sent
    if gap < COALESCE_SECONDS:
        await asyncio.sleep(COALESCE_SECONDS - gap)
    return time.monotonic()


async def item_stream(
    service: FlowService, item: ItemRecord | EndedItem, last_event_id: int | None
) -> AsyncIterator[ServerSentEventMessage]:
    """A first message with the whole win-loss matrix, then each message with the votes since the previous
    one, so a client keeps the matrix without refetching; a resumed stream carries on from its id."""
    yield ServerSentEventMessage(data=None, retry=1000, comment="flowlab item stream")
    if isinstance(item, EndedItem):
        status = item.record.status
        if last_event_id is None or last_event_id != status.version:
            matrix = service.items.ended_counts(item)
            event = schemas.ItemEvent(
                item_id=item.id,
                flow_id=item.flow_id,
                version=status.version,
                state=status.state,
                response_count=status.response_count,
                leases_out=0,
                delta=[],
                full=True,
                counts=matrix,
            )
            yield ServerSentEventMessage(data=_encode(event).decode(), id=event.version, event="item")
        return
    # A resumed stream carries on from its answer position, unless the item was recounted since (someone was
    # suspended or reinstated): then the counts are sent anew.
    resumed = last_event_id is not None and item.recounted_version <= last_event_id <= item.version
    sent_votes = last_event_id // 8 - item.recount_offset if resumed and last_event_id is not None else 0
    sent_version = last_event_id if resumed and last_event_id is not None else -1
    full = not resumed
    last_sent = 0.0
    while True:
        if service.items.live.get(item.id) is not item and not lifecycle.is_terminal(item.state):
            return  # the flow was deleted
        if sent_version == item.version and lifecycle.is_terminal(item.state):
            return  # resumed at the very end: nothing more will ever come
        if item.version != sent_version:
            last_sent = await _coalesce(last_sent)
            count = item.response_count
            # A subscriber this far behind gets the counts again, not every vote it missed: no message grows
            # with how long a client stopped reading.
            full = full or count - sent_votes > MAX_DELTA_ROWS or sent_version < item.recounted_version
            event = schemas.ItemEvent(
                item_id=item.id,
                flow_id=item.flow.id,
                version=item.version,
                state=item.state,  # type: ignore[arg-type]
                response_count=count,
                leases_out=item.leases_out,
                delta=[] if full else item.kind.delta(item, sent_votes, count),
                full=full,
                counts=item.kind.snapshot(item) if full else None,
            )
            yield ServerSentEventMessage(data=_encode(event).decode(), id=event.version, event="item")
            sent_votes, sent_version, full = count, event.version, False
            if lifecycle.is_terminal(item.state):
                return
            continue
        if not await item.changed.wait(KEEPALIVE_SECONDS):
            yield ServerSentEventMessage(data=None, comment="keep-alive")


async def flow_stream(
    service: FlowService, flow: FlowRecord, last_event_id: int | None
) -> AsyncIterator[ServerSentEventMessage]:
    """Summaries of the items that changed; a (re)connecting subscriber first gets every item, ended ones
    from the database."""
    sent: dict[str, int] = {}
    sent_flow_version = -1
    last_sent = 0.0
    first = True
    yield ServerSentEventMessage(data=None, retry=1000, comment="flowlab flow stream")
    while True:
        if service.flows.flows.get(flow.id) is not flow:
            event = schemas.FlowEvent(
                flow_id=flow.id,
                version=flow.version,
                instruction=flow.config.instruction,
                config_version=flow.config.config_version,
                items=[],
                deleted=True,
            )
            yield ServerSentEventMessage(data=_encode(event).decode(), id=flow.version, event="flow")
            return
        if flow.version != sent_flow_version:
            last_sent = await _coalesce(last_sent)
            version = flow.version
            if first:
                summaries = await service.items.summaries(flow)
                first = False
            else:
                summaries = [_summary(i) for i in list(flow.items.values()) if sent.get(i.id) != i.version]
            event = schemas.FlowEvent(
                flow_id=flow.id,
                version=version,
                instruction=flow.config.instruction,
                config_version=flow.config.config_version,
                items=summaries,
            )
            sent_flow_version = version
            # Only live items can change again: what was sent about ended ones need not be remembered.
            sent = {s.id: s.version for s in summaries if s.id in flow.items} | {
                k: v for k, v in sent.items() if k in flow.items
            }
            yield ServerSentEventMessage(data=_encode(event).decode(), id=event.version, event="flow")
            continue
        if not await flow.changed.wait(KEEPALIVE_SECONDS):
            yield ServerSentEventMessage(data=None, comment="keep-alive")


def _summary(i: ItemRecord) -> schemas.ItemSummary:
    return schemas.ItemSummary(
        id=i.id,
        state=i.state,  # type: ignore[arg-type]
        response_count=i.response_count,
        max_response_threshold=i.config.max_response_threshold,
        min_response_threshold=i.config.min_response_threshold,
        deadline=i.deadline,
        version=i.version,
    )


async def wait_for_item(
    service: FlowService, item: ItemRecord | EndedItem, since: int, timeout: float
) -> schemas.ItemStatus:
    """Long poll: returns as soon as the item's version passes `since`, or after `timeout` seconds."""
    if isinstance(item, EndedItem):
        return service.items.ended_status(item)  # nothing about it will change again
    deadline = time.monotonic() + max(0.0, min(timeout, 60.0))
    while item.version <= since and service.items.live.get(item.id) is item:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        await item.changed.wait(left)
    return service.items.status(item)


MAX_WAIT_ITEMS = 1_000


async def wait_for_items(
    service: FlowService, items: list[ItemRecord | EndedItem], timeout: float
) -> list[schemas.ItemStatus]:
    """Long poll on several items: returns once every one has ended, or after `timeout` seconds, with their
    statuses in the order asked."""
    deadline = time.monotonic() + max(0.0, min(timeout, 60.0))
    for item in items:
        while isinstance(item, ItemRecord) and not lifecycle.is_terminal(item.state):
            left = deadline - time.monotonic()
            if left <= 0 or service.items.live.get(item.id) is not item:
                break
            await item.changed.wait(left)
    return [
        service.items.ended_status(item) if isinstance(item, EndedItem) else service.items.status(item)
        for item in items
    ]


async def wait_for_flow(service: FlowService, flow: FlowRecord, since: int, timeout: float) -> schemas.Flow:
    deadline = time.monotonic() + max(0.0, min(timeout, 60.0))
    while flow.version <= since and service.flows.flows.get(flow.id) is flow:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        await flow.changed.wait(left)
    return service.flows.view(flow)


async def annotator_stream(service: FlowService, who: Principal) -> AsyncIterator[ServerSentEventMessage]:
    """Tells an idle page or crowd that work arrived, that a researcher preheated the server, or that tasks it
    holds were taken back because their item ended (`withdrawn`, with their task ids)."""
    service.annotator_listeners += 1
    service.leases.listen(who.id, +1)
    try:
        hot_seen = service.hot_until
        yield ServerSentEventMessage(
            retry=1000, event="hello", data=_encode({"poll_interval": service.poll_interval}).decode()
        )
        while not who.revoked:
            woke = await service.work.wait(KEEPALIVE_SECONDS)
            taken = service.leases.take_withdrawn(who.id)
            if taken:
                yield ServerSentEventMessage(event="withdrawn", data=_encode({"task_ids": taken}).decode())
            if service.hot_until != hot_seen:
                hot_seen = service.hot_until
                yield ServerSentEventMessage(event="preheat", data=_encode({"hot_until": hot_seen}).decode())
            elif woke:
                yield ServerSentEventMessage(event="work", data="{}")
            else:
                yield ServerSentEventMessage(data=None, comment="keep-alive")
    finally:
        service.annotator_listeners -= 1
        service.leases.listen(who.id, -1)


async def eval_stream(
    service: FlowService, record: EvalRecord, last_event_id: int | None
) -> AsyncIterator[ServerSentEventMessage]:
    """An eval's events, `eval.checkpoint` and `eval.divergence` (the SSE event name is the type): first the
    latest of each checkpoint that the subscriber has not had (all of them on a new subscription), then each
    as it happens."""
    yield ServerSentEventMessage(data=None, retry=1000, comment="flowlab eval stream")
    sent = -1 if last_event_id is None else last_event_id
    last_sent = 0.0
    while service.evals.evals.get(record.id) is record:
        fresh = sorted((seq, event) for seq, event in record.latest.values() if seq > sent)
        if fresh:
            last_sent = await _coalesce(last_sent)
            for seq, event in fresh:
                yield ServerSentEventMessage(data=_encode(event).decode(), id=seq, event=event.type)
                sent = seq
            continue
        if not await record.changed.wait(KEEPALIVE_SECONDS):
            yield ServerSentEventMessage(data=None, comment="keep-alive")
