"""The annotator page and its static files (plain HTML/JS/CSS, no build step)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import get
from litestar.response import File
from litestar.static_files import create_static_files_router

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
    return File(
        STATIC_DIR / "annotate.html",
        media_type="text/html; charset=utf-8",
        content_disposition_type="inline",
        headers=PAGE_HEADERS,
    )


@get("/", include_in_schema=False)
async def index() -> dict[str, str]:
    return {"service": "flowlab", "api": "/schema/swagger", "annotate": "/annotate", "health": "/v1/health"}


static_router = create_static_files_router(path="/static", directories=[STATIC_DIR], include_in_schema=False)
handlers: list[Any] = [annotate_page, index, static_router]
