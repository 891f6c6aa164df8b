"""The annotator page and its static files (plain HTML/JS/CSS, no build step)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import get
from litestar.response import File

from flowlab.server.errors import NotFound

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Datapoints are data, never code: scripts come only from this server, media from anywhere.
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src * data: blob:; media-src * data: blob:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
}


@get("/annotate", include_in_schema=False)
async def annotate_page() -> File:
    return _page()


def _page() -> File:
    return File(
        STATIC_DIR / "annotate.html",
        media_type="text/html; charset=utf-8",
        content_disposition_type="inline",
        headers=PAGE_HEADERS,
    )


@get("/join/{secret:str}", include_in_schema=False)
async def join_page(secret: str) -> File:
    """An enrollment link: the annotator page, which enrolls the person through the link before the first task
    (the secret and any platform parameters are read by the page, so an unknown link still gets a page saying so)."""
    return _page()


@get("/", include_in_schema=False)
async def index() -> dict[str, str]:
    return {"service": "flowlab", "api": "/schema/swagger", "annotate": "/annotate", "health": "/v1/health"}


STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
# The page's own files, fixed when the server starts: a request names one of them or gets 404, so no path
# (with `..`, a NUL byte or anything else) ever reaches the file system.
STATIC_FILES = {p.name: p for p in STATIC_DIR.iterdir() if p.suffix in STATIC_TYPES}


@get("/static/{name:str}", include_in_schema=False)
async def static_file(name: str) -> File:
    path = STATIC_FILES.get(name)
    if path is None:
        raise NotFound(f"No static file {name[:80]!r}; the annotator page is at /annotate.")
    return File(
        path,
        media_type=STATIC_TYPES[path.suffix],
        content_disposition_type="inline",
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )


handlers: list[Any] = [annotate_page, join_page, index, static_file]
