"""Audiences: named groups of annotators, the links people enroll through themselves, and how their work ends."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import msgspec

from flowlab import schemas
from flowlab.server.auth import TOKEN_PREFIX, Principal, digest
from flowlab.server.clock import Clock
from flowlab.server.errors import Conflict, Gone, Invalid, NotFound, TooMany
from flowlab.server.people import AnnotatorInfo, People, new_id, require_text
from flowlab.server.store import Op, Row, Store

# Prolific fills these in on a study URL; the first names the participant.
PROLIFIC_PARAMS = ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID")
PROLIFIC_COMPLETE = "https://app.prolific.com/submissions/complete?cc={code}"
ACTIVE_SECONDS = 300.0  # "active now": seen within this long
# Enrollment per link: a bucket of this many, refilled at this rate a second. A study's launch brings hundreds
# within a minute; a script hammering one link gets 429 with Retry-After.
ENROLL_BURST = 300.0
ENROLL_RATE = 50.0
MAX_PARTICIPANT_CHARS = 128

_json = msgspec.json.Encoder()


@dataclass(slots=True)
class AudienceRecord:
    id: str
    owner: str
    name: str
    description: str | None
    qualification: schemas.Qualification | None
    suspend_below: float | None
    min_gold: int
    secret: str  # derives the tokens of its platform participants (`participant_token`); never leaves the server
    created_at: float


@dataclass(slots=True)
class LinkRecord:
    id: str
    audience_id: str
    secret: str  # the unguessable part of its URL
    platform: schemas.Platform | None
    id_param: str | None
    limit: int | None
    expires_at: float | None
    completion_code: str | None
    screen_out_code: str | None
    quota: int | None
    enrolled: int
    revoked: bool
    created_at: float
    bucket: float = ENROLL_BURST
    refilled_at: float = 0.0


def participant_token(audience_secret: str, participant: str) -> str:
    """The annotator token of a platform participant: the same participant id gives the same token, so a reload,
    a second tab or a second link of the audience resumes as the same person, and no token is stored in clear."""
    mac = hmac.new(audience_secret.encode(), participant.encode(), hashlib.sha256).digest()
    return TOKEN_PREFIX + base64.urlsafe_b64encode(mac[:24]).decode()


class Audiences:
    """Audiences and their links, in memory (they are few); the enrolled people are annotators (`People`)."""

    def __init__(self, store: Store, clock: Clock, people: People) -> None:
        self.store = store
        self.clock = clock
        self.people = people
        self.audiences: dict[str, AudienceRecord] = {}
        self.links: dict[str, LinkRecord] = {}  # by id
        self.by_secret: dict[str, LinkRecord] = {}
        self.by_participant: dict[tuple[str, str], str] = {}  # (audience, participant id) -> annotator id
        self._enrolling: dict[tuple[str, str], asyncio.Future[None]] = {}  # a participant's enrollment in flight

    # ------------------------------------------------------------ start-up

    def restore(self) -> None:
        for row in self.store.read("SELECT * FROM audiences"):
            self.audiences[row["id"]] = _audience(row)
        for row in self.store.read("SELECT * FROM enrollment_links"):
            link = _link(row)
            self.links[link.id] = link
            self.by_secret[link.secret] = link
        for info in self.people.annotators.values():
            if info.audience_id is not None and info.participant is not None:
                self.by_participant[(info.audience_id, info.participant)] = info.principal.id

    # ------------------------------------------------------------ audiences

    async def create(self, who: Principal, req: schemas.AudienceCreate) -> schemas.Audience:
        name = require_text(req.name, "name")
        if req.qualification is not None and not req.qualification.validation_set_id.strip():
            raise Invalid("A qualification names the validation set its quiz is drawn from.", field="qualification")
        a = AudienceRecord(
            new_id("aud"),
            who.id,
            name,
            req.description,
            req.qualification,
            req.suspend_below,
            req.min_gold,
            secrets.token_hex(32),
            self.clock.now(),
        )
        qualification = None if a.qualification is None else _json.encode(a.qualification).decode()
        await self.store.write(
            [
                (
                    "INSERT INTO audiences (id, owner, name, description, qualification, suspend_below, min_gold, "
                    "secret, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
                    (
                        a.id,
                        a.owner,
                        a.name,
                        a.description,
                        qualification,
                        a.suspend_below,
                        a.min_gold,
                        a.secret,
                        a.created_at,
                    ),
                )
            ]
        )
        self.audiences[a.id] = a
        return self.view(a)

    def get(self, who: Principal, audience_id: str) -> AudienceRecord:
        a = self.audiences.get(audience_id)
        if a is None or a.owner != who.id:
            raise NotFound(
                f"No audience {audience_id!r} belongs to this API key; list yours with client.audiences.list() "
                "or `flowlab audiences list`.",
                field="audience",
            )
        return a

    def check(self, who: Principal, ids: list[str]) -> list[str]:
        """The audience ids a flow may name: the key's own, each once."""
        for i, audience_id in enumerate(ids):
            a = self.audiences.get(audience_id)
            if a is None or a.owner != who.id:
                raise Invalid(
                    f"No audience {audience_id!r} belongs to this API key; make one with "
                    "client.audiences.create(name) and give its id (or the audience itself).",
                    field=f"audiences[{i}]",
                )
        return list(dict.fromkeys(ids))

    def listing(self, who: Principal) -> list[schemas.Audience]:
        mine = sorted((a for a in self.audiences.values() if a.owner == who.id), key=lambda a: a.created_at)
        return [self.view(a) for a in mine]

    def members(self, audience_id: str) -> list[AnnotatorInfo]:
        return [i for i in self.people.annotators.values() if i.audience_id == audience_id]

    def view(self, a: AudienceRecord) -> schemas.Audience:
        members = self.members(a.id)
        now = self.clock.now()
        return schemas.Audience(
            id=a.id,
            name=a.name,
            description=a.description,
            qualification=a.qualification,
            suspend_below=a.suspend_below,
            min_gold=a.min_gold,
            created_at=a.created_at,
            enrolled=len(members),
            qualified=sum(m.state in ("active", "suspended") for m in members),
            screened_out=sum(m.state == "screened_out" for m in members),
            suspended=sum(m.state == "suspended" for m in members),
            active_now=sum(
                m.state == "active" and m.last_seen is not None and now - m.last_seen < ACTIVE_SECONDS for m in members
            ),
        )

    async def delete(self, who: Principal, audience_id: str, named_by: list[str]) -> None:
        """Delete an audience no flow names (`named_by`: the flows that do): its links stop working and its members'
        tokens are revoked, so nobody it admitted keeps a way in."""
        a = self.get(who, audience_id)
        if named_by:
            raise Conflict(
                f"Flows {', '.join(named_by[:5])} still serve audience {a.id!r}; take it out of their `audiences` "
                "(flow.update_config(audiences=[...])) or delete them first.",
                code="audience_in_use",
            )
        ops: list[Op] = [
            ("UPDATE annotators SET revoked=1 WHERE audience_id=?", (a.id,)),
            ("DELETE FROM enrollment_links WHERE audience_id=?", (a.id,)),
            ("DELETE FROM audiences WHERE id=?", (a.id,)),
        ]
        await self.store.write(ops)
        del self.audiences[a.id]
        for link in [k for k in self.links.values() if k.audience_id == a.id]:
            del self.links[link.id]
            self.by_secret.pop(link.secret, None)
        for info in self.members(a.id):
            info.principal.revoked = True

    # ------------------------------------------------------------ links

    async def create_link(
        self, who: Principal, audience_id: str, req: schemas.LinkCreate, base_url: str
    ) -> schemas.EnrollmentLink:
        a = self.get(who, audience_id)
        id_param = req.id_param
        if req.platform == "url":
            if not id_param or not id_param.strip():
                raise Invalid(
                    'A link with platform="url" names the query parameter that carries the participant id, e.g. '
                    'id_param="workerId" (MTurk) or "participantId" (CloudResearch).',
                    field="id_param",
                )
        elif req.platform == "prolific":
            id_param = PROLIFIC_PARAMS[0]
        elif id_param is not None:
            raise Invalid("id_param goes with platform='url'; a team invitation asks for a name.", field="id_param")
        now = self.clock.now()
        link = LinkRecord(
            new_id("link"),
            a.id,
            secrets.token_urlsafe(18),
            req.platform,
            id_param,
            req.limit,
            None if req.expires_in is None else now + req.expires_in,
            req.completion_code,
            req.screen_out_code,
            req.quota,
            0,
            False,
            now,
            refilled_at=now,
        )
        await self.store.write(
            [
                (
                    "INSERT INTO enrollment_links (id, audience_id, secret, platform, id_param, max_people, "
                    "expires_at, completion_code, screen_out_code, quota, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        link.id,
                        a.id,
                        link.secret,
                        link.platform,
                        link.id_param,
                        link.limit,
                        link.expires_at,
                        link.completion_code,
                        link.screen_out_code,
                        link.quota,
                        now,
                    ),
                )
            ]
        )
        self.links[link.id] = link
        self.by_secret[link.secret] = link
        return self.link_view(link, base_url)

    def link_view(self, link: LinkRecord, base_url: str) -> schemas.EnrollmentLink:
        return schemas.EnrollmentLink(
            id=link.id,
            audience_id=link.audience_id,
            url=f"{base_url.rstrip('/')}/join/{link.secret}",
            platform=link.platform,
            id_param=link.id_param,
            limit=link.limit,
            expires_at=link.expires_at,
            completion_code=link.completion_code,
            screen_out_code=link.screen_out_code,
            quota=link.quota,
            enrolled=link.enrolled,
            revoked=link.revoked,
            created_at=link.created_at,
        )

    def list_links(self, who: Principal, audience_id: str, base_url: str) -> list[schemas.EnrollmentLink]:
        a = self.get(who, audience_id)
        mine = sorted((k for k in self.links.values() if k.audience_id == a.id), key=lambda k: k.created_at)
        return [self.link_view(k, base_url) for k in mine]

    async def revoke_link(self, who: Principal, link_id: str) -> None:
        link = self.links.get(link_id)
        if link is None or self.audiences[link.audience_id].owner != who.id:
            raise NotFound(f"No enrollment link {link_id!r} belongs to this API key; list an audience's links.")
        await self.store.write([("UPDATE enrollment_links SET revoked=1 WHERE id=?", (link.id,))])
        link.revoked = True

    # ------------------------------------------------------------ enrolling

    def _usable(self, secret: str) -> LinkRecord:
        link = self.by_secret.get(secret)
        if link is None:
            raise NotFound(
                "This enrollment link is not known to this server: check that the whole address was copied, or ask "
                "the researcher who sent it for a new one.",
                code="unknown_link",
            )
        if link.revoked:
            raise Gone(
                "This enrollment link was withdrawn by the researcher, so nobody can join through it any more; ask "
                "them for a new one.",
                code="link_revoked",
            )
        if link.expires_at is not None and self.clock.now() > link.expires_at:
            raise Gone(
                "This enrollment link has expired; ask the researcher who sent it for a new one.", code="link_expired"
            )
        return link

    def link_info(self, secret: str) -> schemas.LinkInfo:
        link = self._usable(secret)
        a = self.audiences[link.audience_id]
        return schemas.LinkInfo(
            audience=a.name,
            description=a.description,
            platform=link.platform,
            id_param=link.id_param,
            needs_name=link.platform is None,
            qualification=a.qualification is not None,
        )

    async def enroll(self, secret: str, req: schemas.EnrollRequest) -> schemas.Enrolled:
        """Make (or find) the person's annotator. A platform participant is found again by their id; a team
        invitation makes a new annotator with the name typed."""
        link = self._usable(secret)
        self._take_slot(link)
        a = self.audiences[link.audience_id]
        if link.platform is None:
            name = (req.name or "").strip()
            if not name:
                raise Invalid("Type the name you want the researcher to see you by.", field="name")
            return await self._add(a, link, name[:80], None, {}, secrets.token_urlsafe(24))
        participant = (req.params.get(link.id_param or "") or "").strip()
        if not participant:
            raise Invalid(
                f"This link was opened without its {link.id_param} parameter, which names you on "
                f"{'Prolific' if link.platform == 'prolific' else 'your platform'}: open it again from the study "
                "page, which fills it in.",
                field=link.id_param,
                code="missing_participant",
            )
        if len(participant) > MAX_PARTICIPANT_CHARS:
            raise Invalid(f"{link.id_param} is longer than {MAX_PARTICIPANT_CHARS} characters.", field=link.id_param)
        key = (a.id, participant)
        while key in self._enrolling:  # a second tab opened at the same moment: it resumes the first's
            await asyncio.shield(self._enrolling[key])
        known = self.by_participant.get(key)
        if known is not None:
            info = self.people.annotators[known]
            if info.principal.revoked:
                raise Gone("Your access to this study was withdrawn by the researcher.", code="revoked")
            return schemas.Enrolled(
                annotator_id=known,
                name=info.principal.name,
                token=participant_token(a.secret, participant),
                audience_id=a.id,
                state=info.state,
                resumed=True,
            )
        extra = {k: req.params[k] for k in ("STUDY_ID", "SESSION_ID") if k in req.params}
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._enrolling[key] = done
        try:
            return await self._add(a, link, participant, participant, extra, participant_token(a.secret, participant))
        finally:
            del self._enrolling[key]
            done.set_result(None)

    def _take_slot(self, link: LinkRecord) -> None:
        now = self.clock.now()
        link.bucket = min(ENROLL_BURST, link.bucket + (now - link.refilled_at) * ENROLL_RATE)
        link.refilled_at = now
        if link.bucket < 1.0:
            raise TooMany(
                "Many people are joining through this link right now; wait a moment and open it again.",
                code="enroll_rate",
            )
        link.bucket -= 1.0

    async def _add(
        self,
        a: AudienceRecord,
        link: LinkRecord,
        name: str,
        participant: str | None,
        extra: dict[str, str],
        token: str,
    ) -> schemas.Enrolled:
        if link.limit is not None and link.enrolled >= link.limit:
            raise Gone(
                f"This enrollment link has reached its limit of {link.limit} people; ask the researcher who sent "
                "it for another.",
                code="link_exhausted",
            )
        link.enrolled += 1  # held before the write, so concurrent enrollments cannot pass the limit
        now = self.clock.now()
        state: schemas.AnnotatorState = "qualifying" if a.qualification is not None else "active"
        principal = Principal(new_id("ann"), name, "annotator", owner=a.owner)
        info = AnnotatorInfo(principal, now, audience_id=a.id, participant=participant, link_id=link.id, state=state)
        try:
            await self.store.write(
                [
                    (
                        "INSERT INTO annotators (id, name, token_hash, owner, created_at, audience_id, participant, "
                        "link_id, state, study_id, session_id) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                        (
                            principal.id,
                            name,
                            digest(token),
                            a.owner,
                            now,
                            a.id,
                            participant,
                            link.id,
                            state,
                            extra.get("STUDY_ID"),
                            extra.get("SESSION_ID"),
                        ),
                    ),
                    ("UPDATE enrollment_links SET enrolled = enrolled + 1 WHERE id=?", (link.id,)),
                ]
            )
        except BaseException:
            link.enrolled -= 1
            raise
        self.people.add_enrolled(info, digest(token))
        if participant is not None:
            self.by_participant[(a.id, participant)] = principal.id
        return schemas.Enrolled(
            annotator_id=principal.id, name=name, token=token, audience_id=a.id, state=state, resumed=False
        )

    # ------------------------------------------------------------ how work ends

    def link_of(self, info: AnnotatorInfo) -> LinkRecord | None:
        return None if info.link_id is None else self.links.get(info.link_id)

    def quota_done(self, info: AnnotatorInfo) -> bool:
        link = self.link_of(info)
        return link is not None and link.quota is not None and info.votes >= link.quota

    def finish(self, info: AnnotatorInfo, reason: str | None = None) -> schemas.Finish | None:
        """How the person's work ends, if it has: screened out, their quota done, or (`reason` "no_work") nothing
        left for them now."""
        link = self.link_of(info)
        if info.state == "screened_out":
            code = link.screen_out_code if link else None
            return schemas.Finish(reason="screened_out", code=code, redirect_url=_redirect(link, code))
        if self.quota_done(info):
            reason = "quota"
        if reason is None:
            return None
        code = link.completion_code if link else None
        return schemas.Finish(reason=reason, code=code, redirect_url=_redirect(link, code))  # type: ignore[arg-type]

    def stats(self, info: AnnotatorInfo) -> schemas.AnnotatorStats:
        s = info.stats()
        link = self.link_of(info)
        s.quota = link.quota if link else None
        s.finish = self.finish(info)
        return s


def _redirect(link: LinkRecord | None, code: str | None) -> str | None:
    if link is None or link.platform != "prolific" or not code:
        return None
    return PROLIFIC_COMPLETE.format(code=quote(code, safe=""))


def _audience(row: Row) -> AudienceRecord:
    q: Any = row.get("qualification")
    return AudienceRecord(
        row["id"],
        row["owner"],
        row["name"],
        row.get("description"),
        None if not q else msgspec.json.decode(q, type=schemas.Qualification),
        row.get("suspend_below"),
        int(row.get("min_gold") or 10),
        row["secret"],
        row["created_at"],
    )


def _link(row: Row) -> LinkRecord:
    return LinkRecord(
        row["id"],
        row["audience_id"],
        row["secret"],
        row.get("platform"),
        row.get("id_param"),
        row.get("max_people"),
        row.get("expires_at"),
        row.get("completion_code"),
        row.get("screen_out_code"),
        row.get("quota"),
        int(row.get("enrolled") or 0),
        bool(row.get("revoked")),
        row["created_at"],
        refilled_at=row["created_at"],
    )
