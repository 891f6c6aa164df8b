"""Webhook endpoints, their delivery log and a test delivery."""

from __future__ import annotations

from litestar import Request, delete, get, post

from flowlab import schemas
from flowlab.server.routes import researcher


@post("/v1/webhooks", status_code=201)
async def add_webhook(request: Request, data: schemas.WebhookCreate) -> schemas.WebhookCreated:
    """Push events (`item.completed`, `answer.created`) to a URL, signed in the Standard Webhooks scheme with
    the secret returned here (shown once)."""
    service, who = researcher(request)
    if data.flow_id is not None:
        service.flows.get(who, data.flow_id)  # 404 unless the key's own
    return await service.webhooks.add(who, data)


@get("/v1/webhooks")
async def list_webhooks(request: Request) -> list[schemas.Webhook]:
    service, who = researcher(request)
    return service.webhooks.listing(who)


@delete("/v1/webhooks/{webhook_id:str}", status_code=204)
async def remove_webhook(request: Request, webhook_id: str) -> None:
    service, who = researcher(request)
    await service.webhooks.remove(who, webhook_id)


@get("/v1/webhooks/{webhook_id:str}/deliveries")
async def webhook_deliveries(request: Request, webhook_id: str, limit: int = 50) -> list[schemas.WebhookDelivery]:
    """The endpoint's deliveries, newest first: status, attempts, the last HTTP status or error."""
    service, who = researcher(request)
    return await service.webhooks.deliveries(who, webhook_id, limit)


@post("/v1/webhooks/{webhook_id:str}/test", status_code=202)
async def test_webhook(request: Request, webhook_id: str) -> schemas.WebhookDelivery:
    """Send a `webhook.test` event to the endpoint now; follow it in the delivery log."""
    service, who = researcher(request)
    return await service.webhooks.test(who, webhook_id)


handlers = [add_webhook, list_webhooks, remove_webhook, webhook_deliveries, test_webhook]
