"""Which server a client talks to: the registry of running `flowlab serve` processes and the one rule that
Client, AsyncClient, the CLI and the dashboard follow, with real servers in a temporary FLOWLAB_HOME."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from flowlab import AsyncClient, Client, FlowlabError
from flowlab.client._servers import registry_dir, running_servers, which_server

from .conftest import free_port, wait_for


class Serve:
    """`flowlab serve` as a researcher starts it: no FLOWLAB_URL, no FLOWLAB_API_KEY (it makes its admin key)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Serve:
        env = {k: v for k, v in os.environ.items() if k not in ("FLOWLAB_URL", "FLOWLAB_API_KEY")}
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "serve.log", "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flowlab", "serve", "--port", str(self.port), "--data-dir", str(self.data_dir)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_for(lambda: self.listed() or self.proc is None or self.proc.poll() is not None, 30, "the serve to list")
        assert self.listed(), (self.data_dir / "serve.log").read_text()
        return self

    def listed(self) -> bool:
        return any(r.url == self.url for r in running_servers())

    @property
    def admin_key(self) -> str:
        return (self.data_dir / "admin_key").read_text().strip()

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        self.proc.wait(15)
        self.proc = None


@pytest.fixture
def serves(tmp_path: Path) -> Iterator[Callable[[str], Serve]]:
    started: list[Serve] = []

    def start(name: str) -> Serve:
        started.append(Serve(tmp_path / name).start())
        return started[-1]

    yield start
    for s in started:
        s.stop()


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The command line as a researcher types it: whatever FLOWLAB_URL / FLOWLAB_API_KEY the test gives."""
    base = {k: v for k, v in os.environ.items() if k not in ("FLOWLAB_URL", "FLOWLAB_API_KEY")}
    return subprocess.run(
        [sys.executable, "-m", "flowlab", *args], env={**base, **env}, capture_output=True, text=True, timeout=60
    )


def test_the_registry_lives_in_the_tests_own_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    home = Path(os.environ["FLOWLAB_HOME"])
    assert registry_dir() == home / "servers"
    assert Path(tmp_path_factory.getbasetemp()) in home.parents, "tests never touch the user's ~/.flowlab"


def test_the_newest_serve_is_used_and_the_first_is_found_again_when_it_stops(
    serves: Callable[[str], Serve], caplog: pytest.LogCaptureFixture
) -> None:
    a = serves("a")
    b = serves("b")
    listed = cli("servers")
    assert listed.returncode == 0, listed.stderr
    rows = [line for line in listed.stdout.splitlines() if "http://" in line and "talking" not in line]
    assert rows[0].split()[:2] == ["*", b.url], listed.stdout
    assert any(a.url in r for r in rows[1:]), listed.stdout
    # Both running, none named: the newest, and the line says so and names the other.
    made = cli("annotators", "create", "--name", "while-both")
    assert made.returncode == 0, made.stderr
    assert f"talking to {b.url} (the `flowlab serve` of {b.data_dir}" in made.stderr
    assert f"the newest of 2 running: also {a.url}" in made.stderr
    with caplog.at_level(logging.INFO, logger="flowlab"), Client() as client:
        assert client.url == b.url and client.server.source == "registry"
        assert [o.url for o in client.server.others] == [a.url]
        assert client.me().role == "admin", "with the admin key b generated in its data dir"
    assert any(r.levelno == logging.WARNING and a.url in r.getMessage() for r in caplog.records)

    b.stop()
    assert not b.listed(), "a serve that stops leaves the registry"
    made = cli("annotators", "create", "--name", "after-b")
    assert made.returncode == 0, made.stderr
    assert f"talking to {a.url} (the `flowlab serve` of {a.data_dir}" in made.stderr
    assert "newest of" not in made.stderr
    assert made.stdout.strip().splitlines()[-1].strip().startswith(f"{a.url}/annotate#token=")
    # A notebook's Client() finds the same server, so it sees what the command line made.
    with Client() as client:
        assert client.url == a.url and str(a.data_dir) in client.server.reason
        assert "after-b" in [x.name for x in client.annotators.list()]


def test_a_killed_serve_is_ignored_and_its_entry_removed(serves: Callable[[str], Serve]) -> None:
    a = serves("a")
    b = serves("b")
    entries = sorted(registry_dir().glob("*.json"))
    assert len(entries) == 2
    b.stop(kill=True)  # no clean-up of its own: the kernel drops its lock
    assert [r.url for r in running_servers()] == [a.url]
    assert len(list(registry_dir().glob("*.json"))) == 1, "the dead server's entry is removed"
    listed = cli("annotators", "list")
    assert listed.returncode == 0 and f"talking to {a.url}" in listed.stderr, listed.stderr
    a.stop(kill=True)
    assert running_servers() == []
    # With nothing running, the rule falls to the embedded server (said, not started, by `flowlab servers`).
    assert which_server().source == "embedded"
    listed = cli("servers")
    assert "no flowlab server is running here" in listed.stdout
    assert "the embedded local server" in listed.stdout and "no `flowlab serve` is running here" in listed.stdout


def test_a_url_or_flowlab_url_wins_over_the_registry_and_says_so(
    serves: Callable[[str], Serve], monkeypatch: pytest.MonkeyPatch
) -> None:
    a = serves("a")
    b = serves("b")
    env = {"FLOWLAB_API_KEY": a.admin_key}
    by_env = cli("annotators", "list", FLOWLAB_URL=a.url, **env)
    assert by_env.returncode == 0 and f"talking to {a.url} (FLOWLAB_URL)" in by_env.stderr, by_env.stderr
    by_flag = cli("annotators", "list", "--url", a.url, "--api-key", a.admin_key, FLOWLAB_URL=b.url)
    assert by_flag.returncode == 0 and f"talking to {a.url} (given as --url)" in by_flag.stderr, by_flag.stderr

    async def async_choice() -> tuple[str, str]:
        async with AsyncClient() as client:
            return client.url, (await client.me()).role

    assert asyncio.run(async_choice()) == (b.url, "admin"), "AsyncClient follows the same rule"
    monkeypatch.setenv("FLOWLAB_URL", a.url)
    with Client(api_key=a.admin_key) as client:
        assert client.url == a.url and client.server.reason == "FLOWLAB_URL"


def test_a_url_ending_in_v1_is_understood_and_a_non_url_refused(serves: Callable[[str], Serve]) -> None:
    a = serves("a")
    with Client(url=f"{a.url}/v1/", api_key=a.admin_key) as client:
        assert client.url == a.url and client.me().role == "admin"
    listed = cli("annotators", "list", "--url", f"{a.url}/v1", "--api-key", a.admin_key)
    assert listed.returncode == 0 and f"talking to {a.url} (given as --url)" in listed.stderr, listed.stderr
    by_env = cli("keys", "list", FLOWLAB_URL=f"{a.url}/v1", FLOWLAB_API_KEY=a.admin_key)
    assert by_env.returncode == 0, by_env.stderr
    with pytest.raises(FlowlabError, match=r"url= is '127.0.0.1:8787', which is not a server URL.*http://"):
        Client(url="127.0.0.1:8787")
    refused = cli("keys", "list", FLOWLAB_URL=f"127.0.0.1:{a.port}")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert f"FLOWLAB_URL is '127.0.0.1:{a.port}', which is not a server URL" in refused.stderr


def test_a_serve_that_cannot_take_its_port_says_so_and_lists_nothing(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = cli("serve", "--port", str(port), "--data-dir", str(tmp_path / "data"))
    assert r.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr and "another process already listens" in r.stderr
    assert "serving on" not in r.stdout and "Traceback" not in r.stderr
    assert running_servers() == [] and not (tmp_path / "data").exists(), "nothing made before the port is checked"


def test_the_dashboard_says_which_server_and_why(serves: Callable[[str], Serve], tmp_path: Path) -> None:
    pytest.importorskip("panel")
    a = serves("a")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowlab", "dashboard", "--port", str(port)],
        env={k: v for k, v in os.environ.items() if k not in ("FLOWLAB_URL", "FLOWLAB_API_KEY")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert f"flowlab dashboard: http://127.0.0.1:{port}/" in line, line
        assert f"talking to {a.url} (the `flowlab serve` of {a.data_dir}" in line

        def page_up() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(page_up, 60, "the dashboard page")
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
    from flowlab_widgets.dashboard import Dashboard

    async def board_note() -> str:
        with Client() as client:  # as `flowlab dashboard` does: the rule once, then the page says it
            board = Dashboard(client.url, client.api_key, why=client.server.describe())
        await board.client.aclose()
        return str(board.server_note.object)

    note = asyncio.run(board_note())
    assert a.url in note and "the `flowlab serve` of" in note
