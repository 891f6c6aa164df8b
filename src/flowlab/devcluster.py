"""A cluster on one machine, for trying it out and for its tests and benchmark: N `flowlab serve` processes
on one PostgreSQL database behind HAProxy (`make cluster`; docs/cluster.md).

    python -m flowlab.devcluster --db postgresql://127.0.0.1/flowlab --nodes 3 --port 8787

The balancer listens on --port and the processes on the ports after it; join links name the balancer. The
cluster is listed as one server (`flowlab servers`), so client commands and Client() find it. Its data dir
(media, logs, the admin key the first run generated) is kept per database between runs. Ctrl-C stops it all.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from flowlab.client._embedded import flowlab_home
from flowlab.client._servers import Registration, register


def haproxy_config(port: int, node_ports: list[int], *, host: str = "127.0.0.1") -> str:
    """Round robin over the processes, each health-checked on /v1/health; long polls and event streams are
    let run (the server sends keep-alives), and a request that finds a process gone is sent to another."""
    servers = "\n".join(f"    server node{i} {host}:{p} check" for i, p in enumerate(node_ports))
    return f"""global
    maxconn 4096

defaults
    mode http
    option http-server-close
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    timeout http-keep-alive 10s
    retries 2
    option redispatch

frontend flowlab
    bind {host}:{port}
    default_backend nodes

backend nodes
    balance roundrobin
    option httpchk GET /v1/health
    http-check expect status 200
    default-server inter 500ms fall 2 rise 1
{servers}
"""


class NodeFailed(Exception):
    """A process of the cluster could not start or stopped; the message says which and why."""


def _log_tail(log: Path, offset: int, lines: int = 12) -> str:
    """The end of what a process wrote to its log in this run, indented for the console."""
    try:
        with log.open("rb") as fh:
            fh.seek(offset)
            text = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(f"    {line}" for line in text.strip().splitlines()[-lines:])


def _wait_up(name: str, url: str, proc: subprocess.Popen[bytes], log: Path, offset: int, timeout: float = 60) -> None:
    """Wait for the process to say it is listening (in this run's part of its log: an old process on the port
    answering /v1/health is not this one) and to answer; raise `NodeFailed`, with its log's end, if it exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise NodeFailed(
                f"flowlab: {name} exited before it served {url} (code {proc.returncode}); the end of its log "
                f"({log}):\n{_log_tail(log, offset)}"
            )
        if "flowlab: serving on" in _log_tail(log, offset, lines=1000):
            try:
                if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
        time.sleep(0.1)
    raise NodeFailed(f"flowlab: {name} did not come up on {url} within {timeout:.0f} s; see its log {log}")


def default_data_dir(db: str) -> Path:
    """FLOWLAB_HOME/cluster/<database>: one directory per database, kept between runs, so that a rerun finds
    the admin key the first run generated and the media the database's datapoints point at."""
    parts = urlsplit(db)
    readable = re.sub(r"[^A-Za-z0-9]+", "-", f"{parts.hostname or 'local'}-{parts.port or 5432}{parts.path}")
    digest = hashlib.sha256(db.encode()).hexdigest()[:8]  # two DSNs with one readable name stay apart
    return flowlab_home() / "cluster" / f"{readable.strip('-')}-{digest}"


def _is_admin(url: str, key: str) -> bool:
    try:
        r = httpx.get(f"{url}/v1/me", headers={"Authorization": f"Bearer {key}"}, timeout=5)
    except httpx.HTTPError:
        return False
    return r.status_code == 200 and r.json().get("role") == "admin"


def admin_key_note(url: str, data: Path) -> str:
    """Where the cluster's admin key is, checked against the cluster: the FLOWLAB_API_KEY given, the one saved
    in this data dir, or one saved by a run on another data dir; else what to do."""
    given = os.environ.get("FLOWLAB_API_KEY")
    if given and _is_admin(url, given):
        return "flowlab: the admin key is the FLOWLAB_API_KEY you gave"
    own = data / "admin_key"
    saved = [own, *sorted(p for p in (flowlab_home() / "cluster").glob("*/admin_key") if p != own)]
    for path in saved:
        with contextlib.suppress(OSError):
            key = path.read_text().strip()
            if key and _is_admin(url, key):
                return f"flowlab: admin key (saved in {path}):\n  {key}"
    return (
        f"flowlab: this database's admin key was made before, and not in {own}: use the key printed then "
        "(run again with FLOWLAB_API_KEY=<it>, or with --data-dir the directory its admin_key file is in); "
        "an admin can give it a new secret with `flowlab keys rotate`"
    )


def _taken_ports(ports: list[int]) -> list[str]:
    from flowlab.cli import cannot_listen

    return [why for why in (cannot_listen("127.0.0.1", p) for p in ports) if why is not None]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flowlab.devcluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True, help="postgresql://… (every process shares it)")
    parser.add_argument("--nodes", type=int, default=3, help="how many `flowlab serve` processes (default 3)")
    parser.add_argument("--port", type=int, default=8787, help="the balancer's port; the processes take the next ones")
    parser.add_argument(
        "--data-dir",
        default=None,
        help="media, logs and the generated admin key (default: FLOWLAB_HOME/cluster/<database>, kept between runs)",
    )
    args = parser.parse_args(argv)
    if not args.db.startswith(("postgres://", "postgresql://")):
        parser.error("a cluster shares a PostgreSQL database: give --db postgresql://…")
    if shutil.which("haproxy") is None:
        parser.error("HAProxy is not installed (apt-get install haproxy); or start `flowlab serve` N times yourself")
    ports = [args.port + 1 + i for i in range(args.nodes)]
    taken = _taken_ports([args.port, *ports])
    if taken:
        for why in taken:
            print(f"flowlab: {why}", file=sys.stderr)
        print(
            f"flowlab: the cluster needs ports {args.port} (the balancer) to {ports[-1]}: give --port another "
            "base (python -m flowlab.devcluster --db … --port N), or stop what holds them (`flowlab servers` "
            "lists flowlab's own)",
            file=sys.stderr,
        )
        return 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop the processes below, as Ctrl-C does
    data = Path(args.data_dir).expanduser() if args.data_dir else default_data_dir(args.db)
    data.mkdir(parents=True, exist_ok=True)
    balancer = f"http://127.0.0.1:{args.port}"
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[tuple[str, Path, int]] = []
    listed: Registration | None = None
    try:
        for i, port in enumerate(ports):
            path = data / f"node{i}.log"
            offset = path.stat().st_size if path.exists() else 0
            log = open(path, "ab")  # noqa: SIM115 - as long as the process lives
            cmd = [sys.executable, "-m", "flowlab", "serve", "--db", args.db, "--port", str(port)]
            # One media directory for all: an upload through one process is served by the others. Join links
            # name the balancer, not the process that made them; the processes are listed as one server.
            cmd += ["--data-dir", str(data), "--public-url", balancer, "--unlisted"]
            procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))
            logs.append((f"node {i}", path, offset))
            url = f"http://127.0.0.1:{port}"
            _wait_up(f"node {i}", url, procs[-1], path, offset)  # one by one: the first makes the admin key
            print(f"flowlab: node {i} on {url} (log {path})", flush=True)
        config = data / "haproxy.cfg"
        config.write_text(haproxy_config(args.port, ports))
        procs.append(subprocess.Popen(["haproxy", "-f", str(config)]))
        logs.append(("haproxy", config, 0))
        _wait_balancer(balancer, procs[-1])
        listed = register(balancer, data, kind="cluster")
        print(f"flowlab: the cluster answers on {balancer}  (Ctrl-C stops it)", flush=True)
        print(admin_key_note(balancer, data), flush=True)
        while True:
            for proc, (name, path, offset) in zip(procs, logs, strict=True):
                if proc.poll() is not None:
                    tail = _log_tail(path, offset) if path.suffix == ".log" else ""
                    raise NodeFailed(
                        f"flowlab: {name} stopped (code {proc.returncode}), so the cluster stops"
                        + (f"; the end of its log ({path}):\n{tail}" if tail else "")
                    )
            time.sleep(0.5)
    except NodeFailed as exc:
        print(exc, file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        if listed is not None:
            listed.close()
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(15)


def _wait_balancer(url: str, proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise NodeFailed(f"flowlab: HAProxy exited (code {proc.returncode}); its reason is above")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise NodeFailed(f"flowlab: the balancer did not answer on {url} within {timeout:.0f} s")


if __name__ == "__main__":
    raise SystemExit(main())
