"""Audiences and their enrollment links (researchers), enrolling through a link (anyone), and how work ends."""

from __future__ import annotations

from typing import Any

from litestar import Request, delete, get, post

from flowlab import schemas
from flowlab.server.errors import Conflict
from flowlab.server.routes import annotator, researcher, service_of
from flowlab.server.routes.admin import link_base


@post("/v1/audiences", status_code=201)
async def create_audience(request: Request, data: schemas.AudienceCreate) -> schemas.Audience:
    service, who = researcher(request)
    return await service.create_audience(who, data)


@get("/v1/audiences")
async def list_audiences(request: Request) -> list[schemas.Audience]:
    service, who = researcher(request)
    return service.audiences.listing(who)


@get("/v1/audiences/{audience_id:str}")
async def get_audience(request: Request, audience_id: str) -> schemas.Audience:
    service, who = researcher(request)
    return service.audiences.view(service.audiences.get(who, audience_id))


@delete("/v1/audiences/{audience_id:str}", status_code=204)
async def delete_audience(request: Request, audience_id: str) -> None:
    service, who = researcher(request)
    await service.delete_audience(who, audience_id)


@post("/v1/audiences/{audience_id:str}/links", status_code=201)
async def create_link(request: Request, audience_id: str, data: schemas.LinkCreate) -> schemas.EnrollmentLink:
    service, who = researcher(request)
    return await service.audiences.create_link(who, audience_id, data, link_base(request))


@get("/v1/audiences/{audience_id:str}/links")
async def list_links(request: Request, audience_id: str) -> list[schemas.EnrollmentLink]:
    service, who = researcher(request)
    return service.audiences.list_links(who, audience_id, link_base(request))


@delete("/v1/links/{link_id:str}", status_code=204)
async def revoke_link(request: Request, link_id: str) -> None:
    service, who = researcher(request)
    await service.audiences.revoke_link(who, link_id)


@get("/v1/enroll/{secret:str}")
async def link_info(request: Request, secret: str) -> schemas.LinkInfo:
    """What the page shows before enrolling: no key, the link's secret is the capability."""
    return service_of(request).audiences.link_info(secret)


@post("/v1/enroll/{secret:str}", status_code=200)
async def enroll(request: Request, secret: str, data: schemas.EnrollRequest) -> schemas.Enrolled:
    return await service_of(request).audiences.enroll(secret, data)


@post("/v1/annotator/finish", status_code=200)
async def finish(request: Request) -> schemas.Finish:
    """An enrolled person's page found no work for them: their completion code, if nothing is open to them now
    (their quota done, or no task of their audience left to give them)."""
    service, who = annotator(request)
    info = service.people.annotators[who.id]
    if info.state == "qualifying":
        raise Conflict("Your qualification questions come first: the page fetches them now.", code="work_left")
    done = service.audiences.finish(info)
    if done is not None:
        return done
    if service.answers.work_open_to(who):
        raise Conflict("There is more work for you: the page fetches it now.", code="work_left")
    return service.audiences.finish(info, "no_work")  # type: ignore[return-value]


@get("/v1/audiences/{audience_id:str}/quiz-pairs")
async def quiz_pairs(request: Request, audience_id: str) -> list[schemas.ValidationPair]:
    """The gold pairs of the audience's qualification quiz (for its researcher, and the simulated crowd's oracle)."""
    service, who = researcher(request)
    return service.qualifications.quiz_view(who, audience_id).pairs


@get("/v1/audiences/{audience_id:str}/quiz-labels")
async def quiz_labels(request: Request, audience_id: str) -> list[schemas.ValidationLabel]:
    service, who = researcher(request)
    return service.qualifications.quiz_view(who, audience_id).labels


handlers: list[Any] = [
    quiz_pairs,
    quiz_labels,
    create_audience,
    list_audiences,
    get_audience,
    delete_audience,
    create_link,
    list_links,
    revoke_link,
    link_info,
    enroll,
    finish,
]
