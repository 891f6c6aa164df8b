"""Real people in the SDK: audiences, the enrollment links people join through, and their standing and pay.

Every call is one generator of requests (as in `_core`); the sync and async façades below only drive them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flowlab import schemas
from flowlab.client._core import Call, Op, decode


class EnrollmentURL(str):
    """An enrollment link's address (a `str`), with the link's record beside it (`.link`, `.id`)."""

    link: schemas.EnrollmentLink

    def __new__(cls, link: schemas.EnrollmentLink) -> EnrollmentURL:
        made = super().__new__(cls, link.url)
        made.link = link
        return made

    @property
    def id(self) -> str:
        return self.link.id


def audience_ids(audiences: Sequence[Any] | None) -> list[str] | None:
    """Audience ids from audiences, their views or ids: what a flow's `audiences=` sends."""
    if audiences is None:
        return None
    if isinstance(audiences, str) or hasattr(audiences, "id"):
        audiences = [audiences]
    return [a if isinstance(a, str) else a.id for a in audiences]


def audiences_option(audiences: Sequence[Any] | None) -> dict[str, Any]:
    """The `audiences` of a flow's create call, as its request carries them (nothing when not given)."""
    ids = audience_ids(audiences)
    return {} if ids is None else {"audiences": ids}


def _qualification(q: schemas.Qualification | Mapping[str, Any] | None) -> Any:
    if q is None or isinstance(q, schemas.Qualification):
        return q
    q = dict(q)
    if "validation_set" in q:  # a validation set (or its id) under the friendlier name
        vs = q.pop("validation_set")
        q["validation_set_id"] = vs if isinstance(vs, str) else vs.id
    return q


# ------------------------------------------------------------------ the requests


def create_audience(
    name: str,
    description: str | None,
    qualification: Any,
    suspend_below: float | None,
    min_gold: int,
) -> Op[schemas.Audience]:
    body: dict[str, Any] = {"name": name, "min_gold": min_gold}
    if description is not None:
        body["description"] = description
    if qualification is not None:
        body["qualification"] = _qualification(qualification)
    if suspend_below is not None:
        body["suspend_below"] = suspend_below
    resp = yield Call("POST", "/v1/audiences", json=body)
    return decode(resp.content, schemas.Audience)


def list_audiences() -> Op[list[schemas.Audience]]:
    resp = yield Call("GET", "/v1/audiences")
    return decode(resp.content, list[schemas.Audience])


def get_audience(audience_id: str) -> Op[schemas.Audience]:
    resp = yield Call("GET", f"/v1/audiences/{audience_id}")
    return decode(resp.content, schemas.Audience)


def delete_audience(audience_id: str) -> Op[None]:
    yield Call("DELETE", f"/v1/audiences/{audience_id}")


def create_link(audience_id: str, options: Mapping[str, Any]) -> Op[EnrollmentURL]:
    body = {k: v for k, v in options.items() if v is not None}
    resp = yield Call("POST", f"/v1/audiences/{audience_id}/links", json=body)
    return EnrollmentURL(decode(resp.content, schemas.EnrollmentLink))


def list_links(audience_id: str) -> Op[list[schemas.EnrollmentLink]]:
    resp = yield Call("GET", f"/v1/audiences/{audience_id}/links")
    return decode(resp.content, list[schemas.EnrollmentLink])


def revoke_link(link: Any) -> Op[None]:
    link_id = link if isinstance(link, str) and not isinstance(link, EnrollmentURL) else link.id
    yield Call("DELETE", f"/v1/links/{link_id}")


def link_options(
    limit: int | None,
    expires_in: float | None,
    platform: str | None,
    completion_code: str | None,
    screen_out_code: str | None,
    quota: int | None,
    id_param: str | None,
) -> dict[str, Any]:
    return {
        "limit": limit,
        "expires_in": expires_in,
        "platform": platform,
        "completion_code": completion_code,
        "screen_out_code": screen_out_code,
        "quota": quota,
        "id_param": id_param,
    }


# ------------------------------------------------------------------ the façades


class _AudienceBase:
    def __init__(self, transport: Any, view: schemas.Audience) -> None:
        self._transport = transport
        self.last = view

    @property
    def id(self) -> str:
        return self.last.id

    @property
    def name(self) -> str:
        return self.last.name

    def __repr__(self) -> str:
        a = self.last
        return f"<{type(self).__name__} {a.id} {a.name!r}: {a.enrolled} enrolled, {a.qualified} admitted>"


class Audience(_AudienceBase):
    """A named group of annotators; flows given it (`audiences=[audience]`) serve its members only."""

    def enrollment_link(
        self,
        limit: int | None = None,
        expires_in: float | None = None,
        platform: str | None = None,
        completion_code: str | None = None,
        screen_out_code: str | None = None,
        quota: int | None = None,
        *,
        id_param: str | None = None,
    ) -> EnrollmentURL:
        """A link (under /join/...) people enroll through themselves. `platform="prolific"` reads PROLIFIC_PID,
        STUDY_ID and SESSION_ID from the URL; `platform="url"` reads the participant id from `id_param` (MTurk's
        `workerId`, CloudResearch's `participantId`); none: a team invitation, where people type a name. At most
        `limit` people, for `expires_in` seconds; `quota` answers each, then `completion_code` (Prolific: and the
        redirect to the study's completion page); a person screened out gets `screen_out_code`."""
        options = link_options(limit, expires_in, platform, completion_code, screen_out_code, quota, id_param)
        return self._transport.run(create_link(self.id, options))

    def links(self) -> list[schemas.EnrollmentLink]:
        return self._transport.run(list_links(self.id))

    def revoke_link(self, link: Any) -> None:
        """Stop a link working (an EnrollmentURL, a link record or its id); those who enrolled stay."""
        self._transport.run(revoke_link(link))

    def refresh(self) -> schemas.Audience:
        """Its counts now: enrolled, admitted, screened out, suspended, active now."""
        self.last = self._transport.run(get_audience(self.id))
        return self.last

    def delete(self) -> None:
        self._transport.run(delete_audience(self.id))


class AsyncAudience(_AudienceBase):
    async def enrollment_link(
        self,
        limit: int | None = None,
        expires_in: float | None = None,
        platform: str | None = None,
        completion_code: str | None = None,
        screen_out_code: str | None = None,
        quota: int | None = None,
        *,
        id_param: str | None = None,
    ) -> EnrollmentURL:
        options = link_options(limit, expires_in, platform, completion_code, screen_out_code, quota, id_param)
        return await self._transport.run(create_link(self.id, options))

    async def links(self) -> list[schemas.EnrollmentLink]:
        return await self._transport.run(list_links(self.id))

    async def revoke_link(self, link: Any) -> None:
        await self._transport.run(revoke_link(link))

    async def refresh(self) -> schemas.Audience:
        self.last = await self._transport.run(get_audience(self.id))
        return self.last

    async def delete(self) -> None:
        await self._transport.run(delete_audience(self.id))


class AudiencesAPI:
    """`client.audiences`: named groups of annotators, enrolled through links."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport

    def create(
        self,
        name: str,
        description: str | None = None,
        qualification: schemas.Qualification | Mapping[str, Any] | None = None,
        *,
        suspend_below: float | None = None,
        min_gold: int = 10,
    ) -> Audience:
        """A new audience. `qualification` ({"validation_set_id", "questions", "pass_mark", "feedback"}) makes
        people pass a quiz of gold questions first; `suspend_below` suspends a member whose gold agreement falls
        below it once they have answered `min_gold` gold questions."""
        op = create_audience(name, description, qualification, suspend_below, min_gold)
        return Audience(self._transport, self._transport.run(op))

    def list(self) -> list[Audience]:
        return [Audience(self._transport, a) for a in self._transport.run(list_audiences())]

    def get(self, audience_id: str) -> Audience:
        return Audience(self._transport, self._transport.run(get_audience(audience_id)))

    def delete(self, audience_id: str) -> None:
        self._transport.run(delete_audience(audience_id))


class AsyncAudiencesAPI:
    def __init__(self, transport: Any) -> None:
        self._transport = transport

    async def create(
        self,
        name: str,
        description: str | None = None,
        qualification: schemas.Qualification | Mapping[str, Any] | None = None,
        *,
        suspend_below: float | None = None,
        min_gold: int = 10,
    ) -> AsyncAudience:
        op = create_audience(name, description, qualification, suspend_below, min_gold)
        return AsyncAudience(self._transport, await self._transport.run(op))

    async def list(self) -> list[AsyncAudience]:
        return [AsyncAudience(self._transport, a) for a in await self._transport.run(list_audiences())]

    async def get(self, audience_id: str) -> AsyncAudience:
        return AsyncAudience(self._transport, await self._transport.run(get_audience(audience_id)))

    async def delete(self, audience_id: str) -> None:
        await self._transport.run(delete_audience(audience_id))
