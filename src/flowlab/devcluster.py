"""A cluster on one machine, for trying it out and for its tests and benchmark: N `flowlab serve` processes
on one PostgreSQL database behind HAProxy (`make cluster`; docs/cluster.md).

    python -m flowlab.devcluster --db postgresql://127.0.0.1/flowlab --nodes 3 --port 8787

The balancer listens on --port and the processes on the ports after it. Ctrl-C stops them all.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


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


def _wait_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"flowlab: the process for {url} exited early (code {proc.returncode})")
        try:
            if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"flowlab: the process for {url} did not come up")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flowlab.devcluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True, help="postgresql://… (every process shares it)")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--port", type=int, default=8787, help="the balancer's port; the processes take the next ones")
    parser.add_argument("--data-dir", default=None, help="media and logs (default: a temporary directory)")
    args = parser.parse_args(argv)
    if not args.db.startswith(("postgres://", "postgresql://")):
        parser.error("a cluster shares a PostgreSQL database: give --db postgresql://…")
    if shutil.which("haproxy") is None:
        parser.error("HAProxy is not installed (apt-get install haproxy); or start `flowlab serve` N times yourself")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop the processes below, as Ctrl-C does
    data = Path(args.data_dir or tempfile.mkdtemp(prefix="flowlab-cluster-"))
    data.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ports = [args.port + 1 + i for i in range(args.nodes)]
        for i, port in enumerate(ports):
            log = open(data / f"node{i}.log", "ab")  # noqa: SIM115 - as long as the process lives
            cmd = [sys.executable, "-m", "flowlab", "serve", "--db", args.db, "--port", str(port)]
            # One media directory for all: an upload through one process is served by the others.
            procs.append(subprocess.Popen([*cmd, "--data-dir", str(data)], stdout=log, stderr=subprocess.STDOUT))
            _wait_up(f"http://127.0.0.1:{port}", procs[-1])  # one by one: the first makes the admin key
            print(f"flowlab: node {i} on http://127.0.0.1:{port} (log {data / f'node{i}.log'})", flush=True)
        config = data / "haproxy.cfg"
        config.write_text(haproxy_config(args.port, ports))
        procs.append(subprocess.Popen(["haproxy", "-f", str(config)]))
        print(f"flowlab: the cluster answers on http://127.0.0.1:{args.port}  (Ctrl-C stops it)", flush=True)
        key = data / "admin_key"
        if key.exists() and not os.environ.get("FLOWLAB_API_KEY"):
            print(f"flowlab: admin key in {key}", flush=True)
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(15)


if __name__ == "__main__":
    raise SystemExit(main())
