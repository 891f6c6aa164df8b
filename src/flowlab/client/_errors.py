"""One rooted exception tree; every message says what to do next."""

from __future__ import annotations

from typing import Any


class FlowlabError(Exception):
    """Base of every error the SDK raises."""


class ConnectError(FlowlabError):
    """The server could not be reached."""


class Timeout(FlowlabError):
    """A wait ran out before the item reached the state asked for."""


class APIError(FlowlabError):
    """The server answered with an error; `status` and `detail` come from its problem JSON."""

    def __init__(
        self, status: int, detail: str, *, field: str | None = None, code: str | None = None, body: Any = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.field = field
        self.code = code
        self.body = body

    def __str__(self) -> str:
        where = f" [field: {self.field}]" if self.field else ""
        return f"{self.detail}{where} (HTTP {self.status})"


class ValidationError(APIError, ValueError):
    """The request was malformed or out of range (400, 413, 415, 422); `field` names the culprit. Also a
    ValueError, which is what hosted-SDK code catches for bad arguments."""


class AuthError(APIError):
    """The key is wrong or revoked (401), or not allowed on this route (403)."""


class NotFound(APIError):
    """No such flow, item, task or annotator for this key (404)."""


class Conflict(APIError):
    """The request clashes with the resource's state (409), e.g. a vote after the item ended."""


class Unavailable(APIError):
    """The server cannot write to its database just now (503); nothing of the request was kept. It
    reconnects by itself: retry after a moment (`GET /v1/health` says when it is back)."""


def error_for(status: int, problem: dict[str, Any] | None, fallback: str) -> APIError:
    problem = problem or {}
    detail = problem.get("detail") or fallback
    kind: type[APIError] = APIError
    if status in (400, 413, 415, 422):
        kind = ValidationError
    elif status in (401, 403):
        kind = AuthError
    elif status == 404:
        kind = NotFound
    elif status == 409:
        kind = Conflict
    elif status == 503:
        kind = Unavailable
    return kind(status, detail, field=problem.get("field"), code=problem.get("code"), body=problem)
