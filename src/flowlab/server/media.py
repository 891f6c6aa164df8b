"""Uploaded media: recognised by its bytes, stored once under its sha256, served back by that hash."""

from __future__ import annotations

import hashlib
import mimetypes
import os
import tempfile
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from flowlab.server.errors import Unsupported

# Kinds flowlab can show an annotator. SVG is left out on purpose: it can carry script.
ALLOWED: dict[str, str] = {
    "image/png": "image",
    "image/jpeg": "image",
    "image/gif": "image",
    "image/webp": "image",
    "image/bmp": "image",
    "image/avif": "image",
    "audio/wav": "audio",
    "audio/mpeg": "audio",
    "audio/ogg": "audio",
    "audio/flac": "audio",
    "audio/webm": "audio",
    "audio/mp4": "audio",
    "audio/aac": "audio",
    "video/mp4": "video",
    "video/webm": "video",
    "video/ogg": "video",
    "video/quicktime": "video",
}
ALIASES = {
    "audio/x-wav": "audio/wav",
    "audio/wave": "audio/wav",
    "audio/x-flac": "audio/flac",
    "audio/mp3": "audio/mpeg",
    "image/jpg": "image/jpeg",
    "audio/x-m4a": "audio/mp4",
}


def sniff(data: bytes) -> str | None:
    """The media type the leading bytes prove, or None when they prove nothing we know."""
    head = data[:64]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head.startswith(b"BM") and len(data) > 26:
        return "image/bmp"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if head.startswith(b"fLaC"):
        return "audio/flac"
    if head.startswith(b"ID3") or head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "audio/mpeg"
    if head.startswith(b"OggS"):
        return "audio/ogg"  # refined by the declared type: Ogg holds audio or video
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm"  # refined by the declared type: WebM holds audio or video
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand == b"avif":
            return "image/avif"
        if brand in (b"M4A ", b"M4B "):
            return "audio/mp4"
        if brand == b"qt  ":
            return "video/quicktime"
        return "video/mp4"
    return None


def classify(data: bytes, declared: str | None, filename: str | None) -> tuple[str, str]:
    """Return (media_type, kind) for an upload, or raise Unsupported with what would be accepted."""
    claimed = (declared or "").split(";")[0].strip().lower()
    claimed = ALIASES.get(claimed, claimed)
    if claimed in ("", "application/octet-stream") and filename:
        guessed = mimetypes.guess_type(filename)[0] or ""
        claimed = ALIASES.get(guessed, guessed)
    found = sniff(data)
    if found is None:
        raise Unsupported(
            f"flowlab cannot recognise this file{f' ({filename})' if filename else ''} as an image, audio "
            f"or video it can show; upload one of: {', '.join(sorted(ALLOWED))}.",
            field="body",
            code="unknown_media_type",
        )
    # Containers that hold either audio or video take the kind the uploader declared.
    if found in ("audio/ogg", "video/webm") and claimed in ("video/ogg", "audio/webm", "audio/ogg", "video/webm"):
        found = claimed
    return found, ALLOWED[found]


class MediaStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            # A private temporary name per upload: two uploads of the same bytes may race here.
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        return digest


class MediaCatalog:
    """Which uploads the database knows, looked up on demand with a bounded cache: the catalogue grows
    with every upload of a long run, so it is never loaded whole."""

    def __init__(self, store: Any, *, cache_size: int = 4096) -> None:
        self.store = store
        self.cache_size = cache_size
        self._known: OrderedDict[str, tuple[str, str, int]] = OrderedDict()

    def add(self, sha256: str, media_type: str, kind: str, size: int) -> None:
        self._known[sha256] = (media_type, kind, size)
        self._known.move_to_end(sha256)
        while len(self._known) > self.cache_size:
            self._known.popitem(last=False)

    async def resolve(self, shas: Iterable[str]) -> dict[str, tuple[str, str, int]]:
        """sha256 -> (media type, kind, size) for each of `shas` the database knows."""
        wanted = set(shas)
        found = {s: self._known[s] for s in wanted if s in self._known}
        missing = sorted(wanted - found.keys())
        for i in range(0, len(missing), 500):
            chunk = missing[i : i + 500]
            rows = await self.store.aread(
                f"SELECT sha256, media_type, kind, size FROM media WHERE sha256 IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            for r in rows:
                self.add(r["sha256"], r["media_type"], r["kind"], r["size"])
                found[r["sha256"]] = (r["media_type"], r["kind"], r["size"])
        return found
