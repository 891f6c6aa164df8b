"""A minimal keep-alive HTTP/1.1 connection for the crowd's hot path (fetch a task, answer it).

A simulated annotator makes one small JSON request at a time on a connection of its own; a general-purpose
client spends several times the server's own cost per request on pools, header objects and hooks, which is
what capped one crowd process below 1,000 votes/s. This speaks just enough HTTP/1.1 for flowlab's API:
`Content-Length` or chunked bodies, keep-alive, reconnect on a dropped connection, TLS for https URLs.
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlsplit

__all__ = ["KeepAliveHTTP", "WireError", "WireResponse"]


class WireError(Exception):
    """The request could not be completed (connection refused or dropped, a malformed answer)."""


class WireResponse:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[bytes, bytes], body: bytes) -> None:
        self.status = status
        self.headers = headers  # lower-cased names
        self.body = body

    def header(self, name: str, default: str | None = None) -> str | None:
        value = self.headers.get(name.lower().encode())
        return default if value is None else value.decode("latin-1")

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class KeepAliveHTTP:
    """One persistent connection to `base_url`, one request at a time (callers await each answer)."""

    def __init__(self, base_url: str, token: str, *, tls: ssl.SSLContext | None = None, timeout: float = 30.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http(s) URL like http://127.0.0.1:8787; got {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/")
        self.tls = (tls or ssl.create_default_context()) if parts.scheme == "https" else None
        self.timeout = timeout
        netloc = parts.netloc.rsplit("@", 1)[-1]
        self._head = f"Host: {netloc}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n".encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        """Open the connection now (the first request otherwise does)."""
        if self._writer is None:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, ssl=self.tls), self.timeout
            )

    async def post(self, path: str, body: bytes) -> WireResponse:
        """POST `body` (JSON) to `path`; a connection the server closed meanwhile is reopened once."""
        return await self._request(b"POST", path, body)

    async def get(self, path: str) -> WireResponse:
        return await self._request(b"GET", path, b"")

    async def _request(self, method: bytes, path: str, body: bytes) -> WireResponse:
        for attempt in (0, 1):
            fresh = self._writer is None
            try:
                await self.connect()
                return await asyncio.wait_for(self._exchange(method, path, body), self.timeout)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError) as exc:
                self.close()
                # A kept-alive connection may have been closed by the server between requests: retry once on a
                # new one. A failure on a fresh connection is the server's answer.
                if fresh or attempt == 1:
                    raise WireError(f"{method.decode()} {path}: {type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _exchange(self, method: bytes, path: str, body: bytes) -> WireResponse:
        assert self._reader is not None and self._writer is not None
        self._writer.write(
            b"%s %s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n%s"
            % (method, (self.prefix + path).encode(), self._head, len(body), body)
        )
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            payload = await self._read_chunked()
        else:
            length = int(headers.get(b"content-length", b"0"))
            payload = await self._reader.readexactly(length) if length else b""
        if headers.get(b"connection", b"").lower() == b"close":
            self.close()
        return WireResponse(status, headers, payload)

    async def _read_chunked(self) -> bytes:
        assert self._reader is not None
        parts = []
        while True:
            size = int((await self._reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            if size == 0:
                await self._reader.readuntil(b"\r\n")  # the empty trailer
                return b"".join(parts)
            parts.append(await self._reader.readexactly(size))
            await self._reader.readexactly(2)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
