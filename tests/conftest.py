"""Shared fixtures: a real `flowlab serve` process on a free port with a temporary data dir."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

import flowlab

ADMIN_KEY = "fl_key_test_admin_0123456789abcdef"
BASE_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def wait_for(check: Callable[[], object], timeout: float = 30.0, what: str = "the state the test needs") -> None:
    """Poll `check` until it is true; fail naming `what` once `timeout` seconds have passed. Tests wait for the
    state they need this way instead of reading it once right after an action or sleeping a fixed time."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    """A `flowlab serve` child process that tests can stop and start again on the same data dir."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    api_key: str = ADMIN_KEY
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, "FLOWLAB_API_KEY": self.api_key}
        env.pop("FLOWLAB_URL", None)
        log = open(self.data_dir / "server.log", "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flowlab",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data_dir),
                *self.extra_args,
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 90  # generous: a loaded machine imports the server slowly
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"flowlab serve exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"flowlab serve did not come up:\n{self.log()}")

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        self.proc.wait(timeout=15)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        path = self.data_dir / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def client(self) -> flowlab.Client:
        return flowlab.Client(url=self.url, api_key=self.api_key)


@pytest.fixture(scope="session", autouse=True)
def _isolated_session_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    # Session- and module-scoped servers start before any test's own FLOWLAB_HOME is set: without this they
    # would list themselves in the user's ~/.flowlab/servers, and the user's clients would pick them.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLOWLAB_HOME", str(tmp_path_factory.mktemp("flowlab-session-home")))
        yield


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # Never let a test touch the user's embedded server or data.
    monkeypatch.setenv("FLOWLAB_HOME", str(tmp_path_factory.mktemp("flowlab-home")))
    monkeypatch.delenv("FLOWLAB_URL", raising=False)
    monkeypatch.delenv("FLOWLAB_API_KEY", raising=False)


@pytest.fixture(scope="session")
def flowlab_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the whole session; tests that restart or kill a server make their own."""
    server = ServerProcess(data_dir=tmp_path_factory.mktemp("flowlab-data"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of the test's own, for restarts and lifecycle checks."""
    server = ServerProcess(data_dir=tmp_path / "data")
    server.data_dir.mkdir()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def client(flowlab_server: ServerProcess) -> Iterator[flowlab.Client]:
    with flowlab_server.client() as c:
        yield c


@pytest.fixture
def researcher(flowlab_server: ServerProcess) -> Iterator[flowlab.Client]:
    """A key of the test's own on the shared server. Annotators it creates are handed its flows' tasks and nobody
    else's, so an item another test left running (or waiting for other people) is never theirs to answer."""
    with flowlab_server.client() as admin:
        made = admin.keys.create("test researcher")
    with flowlab.Client(url=flowlab_server.url, api_key=made.key) as c:
        yield c


@dataclass
class PostgresDatabase:
    """A schema of its own in the machine's PostgreSQL; the server's sessions carry `application_name`."""

    dsn: str
    application_name: str

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        import psycopg

        with psycopg.connect(self.dsn.replace(self.application_name, "flowlab_test_reader"), autocommit=True) as conn:
            return list(conn.execute(sql, params).fetchall())

    def terminate_server_sessions(self) -> int:
        """pg_terminate_backend on every session of the server under test, as an operator or a failover would."""
        import psycopg

        with psycopg.connect(BASE_DSN, autocommit=True) as conn:  # a session of its own, not one it kills
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                (self.application_name,),
            ).fetchall()
        return len(rows)


@pytest.fixture
def pg_db() -> Iterator[PostgresDatabase]:
    psycopg = pytest.importorskip("psycopg", reason="pip install 'flowlab[postgres]'")
    token = secrets.token_hex(4)
    schema = f"flowlab_test_{token}"
    try:
        admin = psycopg.connect(BASE_DSN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL at {BASE_DSN} ({exc}); start one to run this test")
    with admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            yield PostgresDatabase(
                f"{BASE_DSN}?options=-csearch_path%3D{schema}&application_name=flowlab_{token}", f"flowlab_{token}"
            )
        finally:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                (f"flowlab_{token}",),
            )
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def pg_dsn(pg_db: PostgresDatabase) -> str:
    return pg_db.dsn
