"""The embedded local server: `Client()` with no URL starts one (or reuses the one already running)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from flowlab.client._errors import ConnectError, FlowlabError


def flowlab_home() -> Path:
    return Path(os.environ.get("FLOWLAB_HOME") or "~/.flowlab").expanduser()


def _healthy(url: str, key: str) -> bool:
    try:
        r = httpx.get(f"{url}/v1/me", headers={"Authorization": f"Bearer {key}"}, timeout=2.0)
        return r.status_code == 200
    except httpx.HTTPError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, from the first byte (it holds an API key)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def ensure_local_server(timeout: float = 30.0) -> tuple[str, str]:
    """Return (url, api_key) of a running local server, starting one in the background if needed."""
    root = flowlab_home() / "local"
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    info_path = root / "server.json"
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two kernels starting at once share one server
        if info_path.exists():
            with contextlib.suppress(ValueError, KeyError, OSError):
                info = json.loads(info_path.read_text())
                if _healthy(info["url"], info["api_key"]):
                    return info["url"], info["api_key"]
        try:
            import flowlab.server  # noqa: F401
        except ImportError as exc:
            raise FlowlabError(
                "No FLOWLAB_URL is set, so flowlab tried to start a local server, but the server extra is not "
                "installed. Either `pip install 'flowlab[server]'`, or set FLOWLAB_URL and FLOWLAB_API_KEY to a "
                f"running server ({exc})."
            ) from exc
        key_path = root / "api_key"
        if not key_path.exists():
            _write_private(key_path, "fl_key_" + secrets.token_urlsafe(24))
        key = key_path.read_text().strip()
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        with open(root / "server.log", "ab") as log:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "flowlab",
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--data-dir",
                    str(root / "data"),
                ],
                env={**os.environ, "FLOWLAB_API_KEY": key},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _healthy(url, key):
                _write_private(info_path, json.dumps({"url": url, "api_key": key, "pid": proc.pid}))
                return url, key
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        proc.terminate()
        raise ConnectError(
            f"The local flowlab server did not come up within {timeout:.0f} s; see {root / 'server.log'}. If "
            f"{key_path} was deleted, the server's database no longer matches it: remove {root / 'data'} too."
        )


def local_server_info() -> dict[str, object] | None:
    """The running embedded server's url and pid, or None."""
    try:
        info = json.loads((flowlab_home() / "local" / "server.json").read_text())
    except (OSError, ValueError):
        return None
    return {"url": info["url"], "pid": info.get("pid")} if _healthy(info["url"], info["api_key"]) else None


def stop_local_server() -> bool:
    """Stop the embedded server this machine's FLOWLAB_HOME points at; True if one was running."""
    info_path = flowlab_home() / "local" / "server.json"
    try:
        info = json.loads(info_path.read_text())
    except (OSError, ValueError):
        return False
    info_path.unlink(missing_ok=True)
    try:
        os.kill(int(info["pid"]), signal.SIGTERM)
    except (KeyError, ProcessLookupError, ValueError):
        return False
    return True
