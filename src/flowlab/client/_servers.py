"""Which flowlab server a client talks to, and why: the one rule that Client, AsyncClient, the `flowlab`
command, the widgets and the dashboard follow, over a registry of the servers running under this account.

The rule, first match wins:

1. a URL given to the call (`Client(url=...)`, `flowlab ... --url`);
2. FLOWLAB_URL;
3. a `flowlab serve` running under this account (FLOWLAB_HOME/servers): the most recently started one when
   several run, and the choice names the others;
4. the embedded local server (FLOWLAB_HOME/local), started when first needed.

Every `flowlab serve` registers itself in FLOWLAB_HOME/servers/<pid>@<host>.json for as long as it runs, and
holds an exclusive `flock` on that file: the kernel drops the lock when the process ends however it ends
(kill -9 included), so an entry whose lock can be taken belongs to a dead process and is removed by whoever
reads the registry next. Nothing depends on process ids, which the system reuses.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from flowlab.client._embedded import ensure_local_server, flowlab_home, local_server_info
from flowlab.client._errors import FlowlabError

__all__ = [
    "Registered",
    "Registration",
    "Server",
    "normalize_url",
    "register",
    "resolve_server",
    "running_servers",
]

log = logging.getLogger("flowlab")

Source = Literal["argument", "environment", "registry", "embedded", "transport"]
ServerKind = Literal["serve", "embedded", "cluster"]


def registry_dir() -> Path:
    """Where running servers are listed: FLOWLAB_HOME/servers (tests point FLOWLAB_HOME at a temporary one)."""
    return flowlab_home() / "servers"


@dataclass(frozen=True)
class Registered:
    """A running server as its registry entry describes it."""

    url: str
    pid: int
    data_dir: str
    started_at: float
    kind: ServerKind = "serve"
    path: Path | None = field(default=None, compare=False)

    @property
    def embedded(self) -> bool:
        return self.kind == "embedded"

    def admin_key(self) -> str | None:
        """The admin key the server generated in its data dir, if it did and this account can read it."""
        with contextlib.suppress(OSError):
            return (Path(self.data_dir) / "admin_key").read_text().strip() or None
        return None

    def describe(self) -> str:
        what = {"serve": "the `flowlab serve`", "embedded": "the embedded server", "cluster": "the `make cluster`"}
        started = time.strftime("%H:%M:%S", time.localtime(self.started_at))
        return f"{what[self.kind]} of {self.data_dir} (pid {self.pid}, started {started})"


class Registration:
    """This process's entry in the registry, locked for as long as it is open; `close()` removes it."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def close(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == os.fstat(self._fd).st_ino:  # not a newer entry of a reused pid
                self.path.unlink()
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> Registration:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def register(url: str, data_dir: Path | str, *, kind: ServerKind = "serve", pid: int | None = None) -> Registration:
    """List a server that is now listening at `url` until the returned registration is closed (or the
    process ends). The entry is written and locked under a temporary name, then renamed into place, so a
    reader never sees it unlocked or half written."""
    root = registry_dir()
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    pid = os.getpid() if pid is None else pid
    record = {
        "url": url,
        "pid": pid,
        "host": socket.gethostname(),
        "data_dir": str(Path(data_dir).resolve()),
        "started_at": time.time(),
        "kind": kind,
    }
    path = root / f"{pid}@{socket.gethostname()}.json"
    staging = root / f".{path.name}.{os.getpid()}.tmp"
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, json.dumps(record).encode())
        os.replace(staging, path)
    except BaseException:
        os.close(fd)
        staging.unlink(missing_ok=True)
        raise
    return Registration(path, fd)


def _read_live(path: Path) -> Registered | None:
    """The entry at `path` if its server still holds the lock; a dead server's entry is removed."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # held: the server is alive
        else:
            with contextlib.suppress(OSError):
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    path.unlink()
            return None
        record = json.loads(os.read(fd, 1 << 16))
        if record.get("host", socket.gethostname()) != socket.gethostname():
            return None  # a FLOWLAB_HOME shared with another machine: its 127.0.0.1 is not ours
        return Registered(
            url=str(record["url"]),
            pid=int(record["pid"]),
            data_dir=str(record["data_dir"]),
            started_at=float(record["started_at"]),
            kind=record.get("kind", "serve"),
            path=path,
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    finally:
        os.close(fd)


def running_servers() -> list[Registered]:
    """Every server running under this account and FLOWLAB_HOME, newest first; dead ones' entries are removed."""
    root = registry_dir()
    if not root.is_dir():
        return []
    found = [r for p in root.glob("*.json") for r in [_read_live(p)] if r is not None]
    return sorted(found, key=lambda r: r.started_at, reverse=True)


def normalize_url(url: str, source: str = "url=") -> str:
    """`url` as the SDK uses it: no trailing slash and no trailing `/v1` (the SDK adds the version to every
    path itself, so `http://host:8787/v1` means `http://host:8787`). Anything that is not an http(s) URL is
    refused with a sentence naming where it came from."""
    text = url.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FlowlabError(
            f"{source} is {url!r}, which is not a server URL: give the address `flowlab serve` printed, "
            "like http://127.0.0.1:8787 (with http:// or https://)."
        )
    if parts.query or parts.fragment:
        raise FlowlabError(
            f"{source} is {url!r}: a server URL has no ?query or #fragment; give just the address, "
            "like http://127.0.0.1:8787."
        )
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[: -len("/v1")]
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


@dataclass(frozen=True)
class Server:
    """The server a client talks to, and why (`reason`); `others` are the servers running here that were
    not chosen. `url` is None only from `which_server()`, for an embedded server not started yet."""

    url: str | None
    api_key: str | None = field(repr=False)
    source: Source
    reason: str
    others: tuple[Registered, ...] = ()

    def describe(self) -> str:
        """One line: where, and why."""
        if self.url is None:
            why = self.reason.split(": ", 1)[-1]
            return f"talking to the embedded local server, started when first needed ({why})"
        return f"talking to {self.url} ({self.reason})"

    def __str__(self) -> str:
        return self.describe()


def _others_clause(others: tuple[Registered, ...]) -> str:
    if not others:
        return ""
    listed = ", ".join(f"{o.url} ({o.data_dir})" for o in others)
    return (
        f"; the newest of {len(others) + 1} running: also {listed}. Name one with --url, url= or FLOWLAB_URL "
        "(`flowlab servers` lists them)"
    )


_EMBEDDED = "the embedded local server: FLOWLAB_URL is not set and no `flowlab serve` is running here"


def which_server(url: str | None = None, api_key: str | None = None, *, url_from: str = "url=") -> Server:
    """The rule, without starting anything: `url` is None when it falls to an embedded server that is not
    running yet."""
    env_key = os.environ.get("FLOWLAB_API_KEY") or None
    if url:
        return Server(normalize_url(url, url_from), api_key or env_key, "argument", f"given as {url_from}")
    env_url = os.environ.get("FLOWLAB_URL")
    if env_url:
        return Server(normalize_url(env_url, "FLOWLAB_URL"), api_key or env_key, "environment", "FLOWLAB_URL")
    running = [r for r in running_servers() if not r.embedded]
    if running:
        chosen, others = running[0], tuple(running[1:])
        reason = f"{chosen.describe()}, found in {registry_dir()}{_others_clause(others)}"
        return Server(chosen.url, api_key or env_key or chosen.admin_key(), "registry", reason, others)
    local = local_server_info()
    # The embedded server has its own key; FLOWLAB_API_KEY belongs with FLOWLAB_URL.
    return Server(str(local["url"]) if local else None, api_key, "embedded", _EMBEDDED)


def resolve_server(
    url: str | None = None, api_key: str | None = None, *, url_from: str = "url=", test_transport: bool = False
) -> Server:
    """The server to talk to by the rule (module docstring), starting the embedded one if it comes to that.

    `url_from` names where `url` came from in messages (`--url` for the CLI). With `test_transport` (an
    httpx transport given to the client) and no URL, nothing is looked up.
    """
    if test_transport and not url:
        return Server("http://flowlab.invalid", api_key, "transport", "a test transport was given")
    server = which_server(url, api_key, url_from=url_from)
    if server.source != "embedded":
        return server
    local_url, local_key = ensure_local_server()
    return Server(local_url.rstrip("/"), api_key or local_key, "embedded", _EMBEDDED)


def log_choice(server: Server) -> None:
    """Say which server a client uses: INFO, or WARNING when several were running and one was picked."""
    log.log(logging.WARNING if server.others else logging.INFO, "flowlab: %s", server.describe())
