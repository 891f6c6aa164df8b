"""Keys, annotators, media, preheat and health."""

from __future__ import annotations

from typing import Any

from litestar import Request, delete, get, head, post
from litestar.response import File

from flowlab import schemas
from flowlab.server.auth import Principal
from flowlab.server.errors import Conflict, TooLarge
from flowlab.server.reports import Window
from flowlab.server.routes import researcher, service_of
from flowlab.server.service import FlowService


@get("/v1/health")
async def health(request: Request) -> dict[str, Any]:
    """`ok`, or `degraded` with the reason while the database cannot be written (reads keep working)."""
    return service_of(request).health()


@get("/v1/me")
async def me(request: Request) -> schemas.Me:
    service = service_of(request)
    who = service.auth.identify(request.headers.get("authorization"))
    return schemas.Me(id=who.id, name=who.name, role=who.role)


@get("/v1/annotator/me")
async def annotator_me(request: Request) -> schemas.AnnotatorStats:
    service = service_of(request)
    who = service.auth.annotator(request.headers.get("authorization"))
    return service.audiences.stats(service.people.annotators[who.id])


@post("/v1/keys", status_code=201)
async def create_key(request: Request, data: schemas.KeyCreate) -> schemas.KeyCreated:
    service, who = researcher(request)
    return await service.people.create_key(who, data.name)


@get("/v1/keys")
async def list_keys(request: Request) -> list[schemas.KeyInfo]:
    service, who = researcher(request)
    return service.people.list_keys(who)


@delete("/v1/keys/{key_id:str}", status_code=204)
async def revoke_key(request: Request, key_id: str) -> None:
    service, who = researcher(request)
    await service.people.revoke_key(who, key_id)


@post("/v1/keys/{key_id:str}/rotate", status_code=200)
async def rotate_key(request: Request, key_id: str) -> schemas.KeyCreated:
    service, who = researcher(request)
    return await service.people.rotate_key(who, key_id)


@post("/v1/annotators", status_code=201)
async def create_annotator(request: Request, data: schemas.AnnotatorCreate) -> schemas.AnnotatorCreated:
    service, who = researcher(request)
    return await service.people.create_annotator(who, data.name, link_base(request))


def link_base(request: Request) -> str:
    """Where annotators reach this server: `--public-url`, else the address this server is bound to. Never
    the request's Host header, which any client can set (a join link to a host of their choosing)."""
    configured: str | None = request.app.state.public_url
    if configured:
        return configured
    host, port = request.scope.get("server") or ("127.0.0.1", 8787)
    host = f"[{host}]" if ":" in str(host) else host
    return f"http://{host}:{port}"


@get("/v1/annotators")
async def list_annotators(request: Request) -> list[schemas.AnnotatorStats]:
    service, who = researcher(request)
    if request.app.state.cluster is not None:  # the tallies are counted by every process: read them afresh
        rows = await service.store.aread("SELECT * FROM annotators")
        service.people.restore([], rows)
    return [service.audiences.stats(service.people.annotators[s.id]) for s in service.people.list_annotators(who)]


@get("/v1/annotators/report")
async def annotators_report(
    request: Request, audience: str | None = None, since: float | None = None, until: float | None = None
) -> list[schemas.AnnotatorReport]:
    """Each of your people's answers, agreement, time on task and active minutes, over answers given in
    [since, until), of one audience or all."""
    service, who = researcher(request)
    return await service.reports.report(_window(service, who, audience, since, until))


@post("/v1/annotators/pay", status_code=200)
async def annotators_pay(request: Request, data: schemas.PayRequest) -> list[schemas.Payment]:
    """What each of your people is owed under the rule in the body (see `schemas.PayRequest`)."""
    service, who = researcher(request)
    window = _window(service, who, data.audience_id, data.since, data.until)
    return await service.reports.pay(window, data)


def _window(
    service: FlowService, who: Principal, audience: str | None, since: float | None, until: float | None
) -> Window:
    if audience is not None:
        service.audiences.get(who, audience)  # 404 for an audience that is not theirs
    owner = None if who.role == "admin" else who.id
    return Window(owner=owner, audience_id=audience, since=since, until=until)


@delete("/v1/annotators/{annotator_id:str}", status_code=204)
async def revoke_annotator(request: Request, annotator_id: str) -> None:
    service, who = researcher(request)
    await service.revoke_annotator(who, annotator_id)


@post("/v1/annotators/{annotator_id:str}/suspend", status_code=200)
async def suspend_annotator(request: Request, annotator_id: str) -> schemas.AnnotatorStats:
    """No more tasks for them, their tasks in hand back to the pool; their answers are kept."""
    service, who = researcher(request)
    info = service.people.owned_annotator(who, annotator_id)
    await service.answers.set_standing(info, "suspended")
    return service.audiences.stats(info)


@post("/v1/annotators/{annotator_id:str}/reinstate", status_code=200)
async def reinstate_annotator(request: Request, annotator_id: str) -> schemas.AnnotatorStats:
    service, who = researcher(request)
    info = service.people.owned_annotator(who, annotator_id)
    if info.state == "screened_out":
        raise Conflict(f"Annotator {annotator_id!r} failed the qualification quiz; they were never admitted.")
    await service.answers.set_standing(info, "active")
    return service.audiences.stats(info)


@post("/v1/preheat", status_code=200)
async def preheat(request: Request) -> schemas.Preheated:
    service, _ = researcher(request)
    return await service.preheat()


@post("/v1/media", status_code=201, request_max_body_size=None)
async def upload_media(request: Request) -> schemas.MediaRef:
    service, _ = researcher(request)
    limit: int = request.app.state.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(_too_large(limit))
    chunks, size = [], 0
    async for chunk in request.stream():  # counted as it arrives: an oversized upload is never held whole
        size += len(chunk)
        if size > limit:
            raise TooLarge(_too_large(limit))
        chunks.append(chunk)
    data = b"".join(chunks)
    return await service.put_media(data, request.headers.get("content-type"), request.headers.get("x-filename"))


def _too_large(limit: int) -> str:
    return (
        f"The upload is larger than this server accepts ({limit / 2**20:.2g} MB; flowlab serve --max-upload-mb); "
        "send a smaller file."
    )


@get("/media/{sha256:str}")
async def get_media(request: Request, sha256: str) -> File:
    # No auth: the sha256 is the capability, so <img src> and <audio src> work in the annotator page.
    return await _media(request, sha256)


@head("/media/{sha256:str}")
async def head_media(request: Request, sha256: str) -> File:
    """The headers of GET /media/{sha256} (type, length), without the body: players and caches ask first."""
    return await _media(request, sha256)


async def _media(request: Request, sha256: str) -> File:
    path, media_type = await service_of(request).media_file(sha256)
    return File(
        path,
        media_type=media_type,
        content_disposition_type="inline",
        headers={
            "Cache-Control": "public, max-age=31536000, immutable",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox; default-src 'none'",
        },
    )


handlers = [
    health,
    me,
    annotator_me,
    create_key,
    list_keys,
    revoke_key,
    rotate_key,
    create_annotator,
    list_annotators,
    annotators_report,
    annotators_pay,
    revoke_annotator,
    suspend_annotator,
    reinstate_annotator,
    preheat,
    upload_media,
    head_media,
    get_media,
]
