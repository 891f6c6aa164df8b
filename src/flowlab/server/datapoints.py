"""Datapoints as researchers send them, checked and keyed; and as annotators see them."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import msgspec

from flowlab import schemas
from flowlab.server.errors import Invalid

MAX_TEXT_CHARS = schemas.MAX_TEXT_CHARS
IMAGE_EXT = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".avif")
AUDIO_EXT = (".wav", ".mp3", ".ogg", ".oga", ".flac", ".m4a", ".aac")
VIDEO_EXT = (".mp4", ".webm", ".ogv", ".mov", ".m4v")
MediaIndex = dict[str, tuple[str, str, int]]  # sha256 -> (media type, kind, size)
Content = tuple[schemas.DatapointKind, str | None, str | None, str | None, str | None]


def scheme(url: str) -> str:
    try:
        return urlsplit(url).scheme
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        return ""


def kind_from_url(url: str) -> schemas.DatapointKind:
    try:
        path = urlsplit(url).path.lower()
    except ValueError:
        return "url"
    if path.endswith(IMAGE_EXT):
        return "image"
    if path.endswith(AUDIO_EXT):
        return "audio"
    if path.endswith(VIDEO_EXT):
        return "video"
    return "url"


def content(d: schemas.DatapointIn | schemas.ContextAsset, field: str, media_index: MediaIndex) -> Content:
    """(kind, text, url, media, media_type) of a datapoint, or Invalid naming the field that is wrong."""
    given = [x for x in (d.text, d.url, d.media) if x is not None]
    if len(given) != 1:
        raise Invalid(
            "Each datapoint needs exactly one of text, url or media (an uploaded file's sha256); "
            f"this one has {len(given)}.",
            field=field,
        )
    if d.text is not None:
        if len(d.text) > MAX_TEXT_CHARS:
            raise Invalid(f"Text datapoints hold at most {MAX_TEXT_CHARS} characters.", field=f"{field}.text")
        return "text", d.text, None, None, None
    if d.url is not None:
        if scheme(d.url) not in ("http", "https"):
            raise Invalid(
                f"URL datapoints must be http(s); got {d.url[:80]!r}. Pass local files as paths so "
                "the SDK uploads them.",
                field=f"{field}.url",
            )
        return d.kind or kind_from_url(d.url), None, d.url, None, d.media_type
    assert d.media is not None
    known = media_index.get(d.media)
    if known is None:
        raise Invalid(
            f"No uploaded file has sha256 {d.media!r}; upload it first (POST /v1/media; the SDK does "
            "this for local paths).",
            field=f"{field}.media",
        )
    media_type, kind, _ = known
    return kind, None, None, d.media, media_type  # type: ignore[return-value]


def build_datapoints(
    given: list[schemas.DatapointIn], media_index: MediaIndex, *, min_responses: int = 2
) -> list[schemas.Datapoint]:
    """Check every datapoint and give each a key: its id, else its content, made unique by a suffix. A prompt
    needs `min_responses` model responses (the flow's kind says how many)."""
    explicit: set[str] = set()
    for i, d in enumerate(given):
        if d.id is not None:
            if d.id in explicit:
                raise Invalid(
                    f"Two datapoints share the id {d.id!r}; ids must be unique within a batch.",
                    field=f"datapoints[{i}].id",
                )
            explicit.add(d.id)
    out: list[schemas.Datapoint] = []
    used: set[str] = set()
    for i, d in enumerate(given):
        if d.messages is not None:
            start = build_chat_start(d, i)
            start.key = _unique_key(d.name or f"chat {i}", used, explicit, given_id=d.id)
            used.add(start.key)
            out.append(start)
            continue
        if d.responses is not None or d.prompt is not None:
            conversation = build_conversation(d, i, media_index, min_responses=min_responses)
            conversation.key = _unique_key(d.name or f"task {i}", used, explicit, given_id=d.id)
            used.add(conversation.key)
            out.append(conversation)
            continue
        kind, text, url, media, media_type = content(d, f"datapoints[{i}]", media_index)
        key = _unique_key(d.name or text or url or media or str(i), used, explicit, given_id=d.id)
        used.add(key)
        out.append(
            schemas.Datapoint(
                index=i,
                key=key,
                kind=kind,
                text=text,
                url=url,
                media=media,
                media_type=media_type,
                name=d.name,
                private_metadata=d.private_metadata,
                source=d.source,
                context=d.context,
                context_assets=(
                    None
                    if d.context_assets is None
                    else [
                        build_asset(a, f"datapoints[{i}].context_assets[{j}]", media_index)
                        for j, a in enumerate(d.context_assets)
                    ]
                ),
            )
        )
    return out


MAX_RESPONSES = 8
MAX_TURNS = 100


def build_conversation(
    d: schemas.DatapointIn, i: int, media_index: MediaIndex, *, min_responses: int = 2
) -> schemas.Datapoint:
    """An RLHF task (or a write task's prompt): the prompt (a string, or the conversation so far ending with the
    user) and `min_responses` or more responses with distinct sources, each one text, URL or uploaded file;
    guidance and reference material where given."""
    field = f"datapoints[{i}]"
    if any(x is not None for x in (d.text, d.url, d.media)):
        raise Invalid("An RLHF task has a prompt and responses, not text, url or media of its own.", field=field)
    if d.prompt is None:
        raise Invalid(
            "An RLHF task needs a prompt: a string, or a list of {role, content} messages.", field=f"{field}.prompt"
        )
    turns = [schemas.ChatMessage("user", d.prompt)] if isinstance(d.prompt, str) else list(d.prompt)
    if not turns or len(turns) > MAX_TURNS:
        raise Invalid(f"The prompt holds 1 to {MAX_TURNS} messages.", field=f"{field}.prompt")
    if turns[-1].role != "user":
        raise Invalid(
            "The conversation must end with the user's message, which the responses answer.", field=f"{field}.prompt"
        )
    for j, m in enumerate(turns):
        if not m.content.strip() or len(m.content) > MAX_TEXT_CHARS:
            raise Invalid(
                f"Every message needs text, at most {MAX_TEXT_CHARS} characters.", field=f"{field}.prompt[{j}].content"
            )
    given = d.responses or []
    if not min_responses <= len(given) <= MAX_RESPONSES:
        raise Invalid(
            f"An RLHF task needs {min_responses} to {MAX_RESPONSES} responses to compare; got {len(given)}.",
            field=f"{field}.responses",
        )
    sources = [r.source_id for r in given]
    if any(not s.strip() for s in sources):
        raise Invalid("Every response needs a source_id naming the model that made it.", field=f"{field}.responses")
    if len(set(sources)) != len(sources):
        dup = next(s for s in sources if sources.count(s) > 1)
        raise Invalid(f"Two responses share the source_id {dup!r}; each must be unique.", field=f"{field}.responses")
    responses = []
    for j, r in enumerate(given):
        kind, text, url, media, media_type = content(r, f"{field}.responses[{j}]", media_index)  # type: ignore[arg-type]
        responses.append(
            schemas.Response(
                source_id=r.source_id,
                kind=kind,
                text=text,
                url=url,
                media=media,
                media_type=media_type,
                private_metadata=r.private_metadata,
            )
        )
    return schemas.Datapoint(
        index=i,
        key="",
        kind="conversation",
        name=d.name,
        private_metadata=d.private_metadata,
        prompt=turns,
        responses=responses or None,
        guidance=d.guidance,
        reference=d.reference,
    )


MAX_GUIDANCE_CHARS = 10_000


def build_chat_start(d: schemas.DatapointIn, i: int) -> schemas.Datapoint:
    """A chat task: the conversation to start from (possibly empty; system messages are the model's, never
    the annotator's to edit) and the guidance shown to the annotator."""
    field = f"datapoints[{i}]"
    turns = list(d.messages or ())
    if len(turns) > MAX_TURNS:
        raise Invalid(f"A starting conversation holds at most {MAX_TURNS} messages.", field=f"{field}.messages")
    for j, m in enumerate(turns):
        if not m.content.strip() or len(m.content) > MAX_TEXT_CHARS:
            raise Invalid(
                f"Every message needs text, at most {MAX_TEXT_CHARS} characters.",
                field=f"{field}.messages[{j}].content",
            )
        if m.role == "system" and any(t.role != "system" for t in turns[:j]):
            raise Invalid("System messages come first, before the conversation.", field=f"{field}.messages[{j}]")
    if d.guidance is not None and len(d.guidance) > MAX_GUIDANCE_CHARS:
        raise Invalid(f"guidance holds at most {MAX_GUIDANCE_CHARS:,} characters.", field=f"{field}.guidance")
    return schemas.Datapoint(
        index=i,
        key="",
        kind="conversation",
        name=d.name,
        private_metadata=d.private_metadata,
        prompt=turns,
        guidance=d.guidance,
    )


def _unique_key(base: str, used: set[str], explicit: set[str], *, given_id: str | None) -> str:
    """The datapoint's id; else `base`, made unique by a suffix (identical generations are common in RL)."""
    if given_id is not None:
        return given_id
    key, n = base, 1
    while key in used or key in explicit:
        n += 1
        key = f"{base}#{n}"
    return key


def response_view(r: schemas.Response) -> schemas.ResponseView:
    url = r.url if r.media is None else f"/media/{r.media}"
    return schemas.ResponseView(kind=r.kind, text=r.text, url=url, media_type=r.media_type)


def build_asset(a: schemas.ContextAsset, field: str, media_index: MediaIndex) -> schemas.ContextAsset:
    kind, text, url, media, media_type = content(a, field, media_index)
    if media is not None:
        url = f"/media/{media}"  # what a page needs to show it, as for datapoints
    return schemas.ContextAsset(kind=kind, text=text, url=url, media=media, media_type=media_type, name=a.name)


def datapoint_view(d: Any) -> schemas.DatapointView:
    """What an annotator is shown: content and a position, never the key or private metadata."""
    if isinstance(d, schemas.DatapointView):
        return d
    url = d.url if d.media is None else f"/media/{d.media}"
    return schemas.DatapointView(
        ref=d.index, kind=d.kind, text=d.text, url=url, media_type=d.media_type, context=getattr(d, "context", None)
    )


def asset_view(a: schemas.ContextAsset) -> schemas.ContextAsset:
    """A context asset as a page loads it: an uploaded file by its /media/ path."""
    if a.media is not None and a.url is None:
        return msgspec.structs.replace(a, url=f"/media/{a.media}")
    return a


def gold_view(d: schemas.DatapointIn, ref: int) -> schemas.DatapointView:
    if d.text is not None:
        return schemas.DatapointView(ref=ref, kind="text", text=d.text)
    if d.media is not None:
        return schemas.DatapointView(ref=ref, kind=d.kind or "image", url=f"/media/{d.media}", media_type=d.media_type)
    return schemas.DatapointView(ref=ref, kind=d.kind or kind_from_url(d.url or ""), url=d.url)
