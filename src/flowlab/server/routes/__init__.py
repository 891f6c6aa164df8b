"""Thin HTTP handlers: parse the request, call one service operation, return its answer."""

from __future__ import annotations

from litestar import Request

from flowlab.server.auth import Principal
from flowlab.server.service import FlowService


def service_of(request: Request) -> FlowService:
    return request.app.state.service  # type: ignore[no-any-return]


def researcher(request: Request) -> tuple[FlowService, Principal]:
    service = service_of(request)
    return service, service.auth.researcher(request.headers.get("authorization"))


def annotator(request: Request) -> tuple[FlowService, Principal]:
    service = service_of(request)
    return service, service.auth.annotator(request.headers.get("authorization"))
