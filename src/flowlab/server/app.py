"""The Litestar application factory: wires the store, the service, the lifecycle ticker and the routes."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import re
from collections.abc import AsyncIterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import msgspec
from litestar import Litestar, Request, Response
from litestar._openapi.plugin import OpenAPIPlugin  # the generated document, to complete it
from litestar.datastructures import State
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import OpenAPIConfig

from flowlab import schemas
from flowlab.server import openapi, routing
from flowlab.server.clock import Clock, SystemClock
from flowlab.server.cluster import Cluster
from flowlab.server.errors import BadRequest, Invalid, ServiceError, Unsupported
from flowlab.server.items import RETAIN_ENDED
from flowlab.server.media import MediaStore
from flowlab.server.routes import admin, audiences, chat, evals, flows, items, pages, projects, tasks, webhooks
from flowlab.server.service import FlowService
from flowlab.server.store import StoreRejected, StoreUnavailable
from flowlab.server.store._group_commit import GroupCommitStore
from flowlab.server.store.sqlite import SQLiteStore
from flowlab.server.webhooks import RETRY_SECONDS

log = logging.getLogger("flowlab.server")
PROBLEM = "application/problem+json"
RETRY_AFTER = 1  # seconds, on 503s while the database is away


def _problem(
    status: int, title: str, detail: str, *, field: str | None = None, code: str | None = None
) -> Response[schemas.Problem]:
    return Response(
        schemas.Problem(title=title, status=status, detail=detail, field=field, code=code),
        status_code=status,
        media_type=PROBLEM,
    )


def _service_error(_: Request, exc: ServiceError) -> Response[schemas.Problem]:
    answer = _problem(exc.status, exc.title, exc.detail, field=exc.field, code=exc.code)
    if exc.status == 429:
        answer.headers["Retry-After"] = "1"
    return answer


def _validation_error(_: Request, exc: ValidationException) -> Response[schemas.Problem]:
    # Litestar reports msgspec's complaint per field; name the first one so the SDK can point at it.
    extra = exc.extra if isinstance(exc.extra, list) else []
    first = extra[0] if extra and isinstance(extra[0], dict) else {}
    field = first.get("key") or None
    message = first.get("message") or exc.detail
    unknown = re.search(r"unknown field `([^`]+)`", message)
    if unknown:
        field = unknown.group(1)
        message = f"unknown field (misspelt, or not part of this request); remove {field!r}"
    elif field == "data":
        field = None
    if field:
        detail = f"Field {field!r}: {message}. Fix that field and send the request again."
    else:
        detail = f"The request body is not valid: {message}. Send JSON matching the API's schema (/schema)."
    return _problem(400, "Bad Request", detail, field=field)


def _http_error(_: Request, exc: HTTPException) -> Response[schemas.Problem]:
    detail = exc.detail
    if exc.status_code == 413:
        detail = "The request body is larger than this server accepts; send a smaller file or batch."
    try:
        title = HTTPStatus(exc.status_code).phrase
    except ValueError:
        title = type(exc).__name__
    response = _problem(exc.status_code, title, str(detail))
    for name, value in (exc.headers or {}).items():  # e.g. the Allow header of a 405
        response.headers[name] = value
    return response


def _store_unavailable(_: Request, exc: StoreUnavailable) -> Response[schemas.Problem]:
    response = _problem(
        503,
        "Service Unavailable",
        f"{exc}. Nothing in this request was kept or counted; the server reconnects by itself, so retry in a "
        "moment (a retried answer counts once). GET /v1/health says when writes work again.",
        code="store_unavailable",
    )
    response.headers["Retry-After"] = str(RETRY_AFTER)
    return response


def _store_rejected(_: Request, exc: StoreRejected) -> Response[schemas.Problem]:
    log.error("write refused by the database: %s", exc)
    return _problem(
        500,
        "Internal Server Error",
        f"{exc}. Nothing in this request was kept; the server log has the details.",
    )


def _too_deep(_: Request, exc: RecursionError) -> Response[schemas.Problem]:
    return _problem(400, "Bad Request", "The JSON body is nested too deeply; flatten it (private_metadata included).")


def _unexpected(_: Request, exc: Exception) -> Response[schemas.Problem]:
    log.exception("unhandled error", exc_info=exc)
    return _problem(
        500,
        "Internal Server Error",
        "flowlab hit an unexpected error; the server log has the traceback. Nothing in this request was acknowledged.",
    )


JSON_BODY_MAX = 32 * 1024 * 1024  # a batch of long texts fits; media uploads have their own limit (--max-upload-mb)


async def _before(request: Request) -> Response[None] | None:
    """Before any handler runs: every API route but health and enrollment needs a known key or token, checked
    before anything reads the body (an anonymous client gets 401 however big or broken its body, and the server
    never buffers it); then a JSON body is checked strictly against its schema (no "300" for a number, no "true" for a
    boolean), so a bad one is refused naming the field."""
    if request.method == "OPTIONS":
        return _options(request)
    path = request.scope["path"]
    if not path.startswith("/v1/") or path == "/v1/health":
        return None
    if not path.startswith("/v1/enroll/"):  # an enrollment link's secret is its own capability
        request.app.state.service.auth.identify(request.headers.get("authorization"))
    decoder = _body_decoder(request.route_handler)
    if decoder is None:
        return None
    body = await request.body()
    if not body:
        return None  # a missing body is the handler's (Litestar's) to report
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise Unsupported(
            f"Send the request body as JSON with 'Content-Type: application/json' (got {media_type or 'none'!r}).",
            field="body",
        )
    try:
        decoder.decode(body)
    except msgspec.ValidationError as exc:
        if "got `float`" not in str(exc):
            raise _invalid_body(str(exc)) from None
        # JSON Schema counts 5.0 as an integer; so does this server (but not "5", nor 5.5).
        try:
            msgspec.convert(_integral(msgspec.json.decode(body)), decoder.type, strict=True)
        except msgspec.ValidationError as again:
            raise _invalid_body(str(again)) from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"The body is not valid JSON ({exc}); send a JSON object.", field="body") from None
    return None


def _integral(value: Any) -> Any:
    """`value` with every whole-number float made an int, at any depth."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_integral(v) for v in value]
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    return value


def _options(request: Request) -> Response[None]:
    """Every method of the path in `Allow` (Litestar's own answer lists only those of the first handler
    registered for a path)."""
    methods: set[str] = set()
    for path in request.route_handler.paths:
        methods |= set(request.app.route_handler_method_map.get(path, {}))
    return Response(None, status_code=204, headers={"Allow": ", ".join(sorted(methods | {"OPTIONS"}))})


_DECODERS: dict[int, msgspec.json.Decoder[Any] | None] = {}
_AT = re.compile(r" - at `\$\.?(.*)`$")
_CONSTRAINT = re.compile(r"Expected `[^`]+` (of length )?(>=|<=|>|<)")


def _body_decoder(handler: Any) -> msgspec.json.Decoder[Any] | None:
    """A strict decoder for the handler's `data` body, made once per handler (None when it takes none)."""
    key = id(handler)
    if key not in _DECODERS:
        data = handler.parsed_fn_signature.parameters.get("data")
        _DECODERS[key] = None if data is None else msgspec.json.Decoder(data.annotation, strict=True)
    return _DECODERS[key]


def _invalid_body(message: str) -> ServiceError:
    """msgspec's complaint as a problem naming the field: 422 for a value out of its range, 400 otherwise."""
    at = _AT.search(message)
    field = at.group(1) if at else None
    text = _AT.sub("", message)
    missing = re.search(r"missing required field `([^`]+)`", text)
    unknown = re.search(r"unknown field `([^`]+)`", text)
    if missing:
        field = f"{field}.{missing.group(1)}" if field else missing.group(1)
        text = "this field is required"
    elif unknown:
        field = f"{field}.{unknown.group(1)}" if field else unknown.group(1)
        text = f"unknown field (misspelt, or not part of this request); remove {unknown.group(1)!r}"
    where = f"Field {field!r}" if field else "The request body"
    detail = f"{where}: {text}. Fix it and send the request again (limits: docs/http-api.md)."
    if _CONSTRAINT.search(text):
        return Invalid(detail, field=field)
    return BadRequest(detail, field=field)


async def _ticker(service: FlowService) -> None:
    """Wakes at the next deadline, drain window or lease expiry (or when a new item arrives)."""
    while True:
        try:
            wake = service.tick()
        except Exception:
            log.exception("lifecycle tick failed")
            wake = service.clock.now() + 1.0
        delay = max(0.0, wake - service.clock.now())
        await service.wakeup.wait(min(delay, 1.0) + 0.0005)


def _sole_server(db: Path) -> int:
    """Hold `<db>.lock` for as long as this process lives: a SQLite database has one server. (Several share a
    PostgreSQL database instead: docs/cluster.md.)"""
    db.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(f"{db}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise SystemExit(
            f"flowlab: another flowlab server already uses {db}; a SQLite database is served by one process. "
            "Stop that one, give this one its own --data-dir, or run several on PostgreSQL "
            "(--db postgresql://…, docs/cluster.md)."
        ) from None
    return fd


def create_app(
    data_dir: Path,
    *,
    db: Path | str | None = None,
    clock: Clock | None = None,
    admin_key: str | None = None,
    public_url: str | None = None,
    max_upload_mb: float = 64.0,
    seed: int | None = None,
    retain_ended: float = RETAIN_ENDED,
    webhook_retry_seconds: tuple[float, ...] = RETRY_SECONDS,
    advertise_url: str | None = None,
) -> Litestar:
    """Build the app. The database defaults to `<data_dir>/flowlab.sqlite3`; media live in `<data_dir>/media`.
    On PostgreSQL the process joins the database's cluster (others may share it: `cluster`), where the other
    processes reach it at `advertise_url`."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    store: GroupCommitStore
    sole: int | None = None  # SQLite: the lock that keeps a second process off the same database
    if isinstance(db, str) and db.startswith(("postgres://", "postgresql://")):
        from flowlab.server.store.postgres import PostgresStore

        store = PostgresStore(db)
    else:
        path = Path(db) if db else data_dir / "flowlab.sqlite3"
        sole = _sole_server(path)
        store = SQLiteStore(path)
    service = FlowService(
        store,
        MediaStore(data_dir / "media"),
        clock or SystemClock(),
        seed=seed,
        retain_ended=retain_ended,
        webhook_retry_seconds=webhook_retry_seconds,
    )
    cluster: Cluster | None = None
    generated = service.bootstrap(data_dir, admin_key, items=isinstance(store, SQLiteStore))
    if not isinstance(store, SQLiteStore):
        cluster = Cluster(service, store, advertise_url or public_url or "http://127.0.0.1:8787")  # type: ignore[arg-type]
    if generated:
        print(
            f"flowlab: created the admin API key (also saved in {data_dir / 'admin_key'}):\n  {generated}", flush=True
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        openapi.complete(app.plugins.get(OpenAPIPlugin).provide_openapi_schema())  # before anyone reads it
        await store.start()
        if cluster is not None:
            await cluster.start()  # takes the flows no live process serves, before anyone is answered
        service.resume()
        ticker = asyncio.create_task(_ticker(service), name="flowlab-lifecycle")
        pusher = asyncio.create_task(service.webhooks.run(), name="flowlab-webhooks")
        follower = asyncio.create_task(service.evals.run(), name="flowlab-evals")
        try:
            yield
        finally:
            for task in (ticker, pusher, follower):
                task.cancel()
            await asyncio.wait({ticker, pusher, follower}, timeout=5.0)  # bounded, whatever a loop does with its cancel
            await service.items.drain()
            await service.relay.close()
            if cluster is not None:
                await cluster.close()
            await store.close()
            if sole is not None:
                os.close(sole)

    return Litestar(
        route_handlers=[
            *flows.handlers,
            *items.handlers,
            *tasks.handlers,
            *admin.handlers,
            *webhooks.handlers,
            *projects.handlers,
            *evals.handlers,
            *chat.handlers,
            *pages.handlers,
            *audiences.handlers,
        ],
        lifespan=[lifespan],
        state=State(
            {
                "service": service,
                "cluster": cluster,
                "public_url": public_url,
                "max_upload_bytes": int(max_upload_mb * 2**20),
            }
        ),
        middleware=[] if cluster is None else [routing.forwarder],
        before_request=_before,
        exception_handlers={
            ServiceError: _service_error,
            ValidationException: _validation_error,
            HTTPException: _http_error,
            StoreUnavailable: _store_unavailable,
            StoreRejected: _store_rejected,
            routing.Relayed: routing.answer_relayed,
            RecursionError: _too_deep,
            Exception: _unexpected,
        },
        openapi_config=OpenAPIConfig(
            title="flowlab", version="1.0", description="Continuous human feedback for RLHF: flows, items, votes."
        ),
        request_max_body_size=JSON_BODY_MAX,
        debug=False,
    )
