"""The `flowlab` command: serve | crowd | demo | dashboard | keys | annotators | webhooks | projects."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import re
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flowlab import schemas
from flowlab.client._embedded import flowlab_home
from flowlab.client._projects import progress_line, read_rows
from flowlab.client._servers import (
    Registration,
    Server,
    register,
    registry_dir,
    resolve_server,
    running_servers,
    which_server,
)


def _db_arg(db: str | None) -> Path | str | None:
    if db is None or db.startswith(("postgres://", "postgresql://")):
        return db
    return Path(db).expanduser()


def _serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from flowlab.server.app import create_app
    except ImportError as exc:
        print(f"flowlab serve needs the server extra: pip install 'flowlab[server]' ({exc})", file=sys.stderr)
        return 2
    data_dir = Path(args.data_dir).expanduser()
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    url = f"http://{shown}:{args.port}"
    refused = cannot_listen(args.host, args.port)
    if refused is not None:  # before the database is touched, and before anything says "serving"
        print(f"flowlab serve: {refused}", file=sys.stderr, flush=True)
        return 1
    app = create_app(
        data_dir,
        db=_db_arg(args.db),
        admin_key=os.environ.get("FLOWLAB_API_KEY"),
        public_url=args.public_url,
        max_upload_mb=args.max_upload_mb,
        retain_ended=args.retain_ended,
        advertise_url=args.advertise or url,
        **({} if args.webhook_retry is None else {"webhook_retry_seconds": args.webhook_retry}),
    )
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=args.access_log,
        timeout_graceful_shutdown=3,
    )
    if args.access_log:  # uvicorn logs requests at INFO: --access-log alone must be enough to see them
        logging.getLogger("uvicorn.access").setLevel(logging.INFO)
    listed: list[Registration] = []

    def listening() -> None:
        print(f"flowlab: serving on {url}  (API docs: /schema/swagger, annotators: /annotate)", flush=True)
        if args.unlisted:
            return
        embedded = data_dir.resolve().is_relative_to((flowlab_home() / "local").resolve())
        listed.append(register(url, data_dir, kind="embedded" if embedded else "serve"))
        if not embedded:
            print(
                "flowlab: client commands, Client() and the dashboard on this machine now use this server unless "
                "given a URL (--url, url=, FLOWLAB_URL); `flowlab servers` lists the running ones.",
                flush=True,
            )

    server = _listening_server(config, listening)
    try:
        server.run()
    except SystemExit:
        if server.started:
            raise
    finally:
        for registration in listed:
            registration.close()
    if not server.started:  # uvicorn logged why (a port taken between the check above and the bind)
        print(f"flowlab serve: could not start on {args.host}:{args.port}; the reason is above.", file=sys.stderr)
        return 1
    return 0


def _listening_server(config: Any, listening: Any) -> Any:
    """uvicorn's server, calling `listening()` once its socket is bound: only then is the server announced,
    so nothing says "serving" for a process that could not take its port."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                listening()

    return Server(config)


def cannot_listen(host: str, port: int) -> str | None:
    """Why this process cannot listen on host:port, in a sentence that says what to do; None if it can."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"cannot listen on {host}:{port}: {exc.strerror}; give --host an address of this machine."
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server's own socket will
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                return f"cannot listen on {host}:{port}: {exc.strerror}; {_bind_advice(exc.errno, port)}."
    return None


def _bind_advice(code: int | None, port: int) -> str:
    if code == errno.EADDRINUSE:
        holders = [r for r in running_servers() if urlsplit(r.url).port == port]
        held = f" ({holders[0].describe()})" if holders else ""
        return f"another process already listens on port {port}{held}: stop it, or give --port another number"
    if code == errno.EACCES:
        return "ports below 1024 need privileges: give --port 1024 or above"
    if code == errno.EADDRNOTAVAIL:
        return "that is not an address of this machine: give --host 127.0.0.1, or 0.0.0.0 for every address"
    return "give --host and --port an address this machine can listen on"


# ------------------------------------------------------------------ which server a client command talks to


def _target(args: argparse.Namespace) -> Server:
    """The server a client command talks to, by the one rule of `flowlab.client._servers`, said on stderr."""
    server = resolve_server(args.url, args.api_key, url_from="--url")
    print(f"flowlab: {server.describe()}", file=sys.stderr, flush=True)
    return server


def _client_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--url",
        default=None,
        help="server URL (default: $FLOWLAB_URL, else the newest `flowlab serve` running here, else the embedded "
        "one; `flowlab servers` lists them)",
    )
    p.add_argument(
        "--api-key",
        default=None,
        help="default: $FLOWLAB_API_KEY, else the admin key a `flowlab serve` running here saved in its data dir",
    )


def _client(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from flowlab import Client

    server = _target(args)
    return Client(url=server.url, api_key=server.api_key)


def _servers(args: argparse.Namespace) -> int:
    running = running_servers()
    chosen = which_server()
    if running:
        print(f"   {'url':28} {'pid':>7}  {'started':19}  {'kind':8} data")
    for r in running:
        mark = "*" if r.url == chosen.url and (chosen.source == "registry" or r.embedded) else " "
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.started_at))
        print(f" {mark} {r.url:28} {r.pid:>7}  {started:19}  {r.kind:8} {r.data_dir}")
    if not running:
        print(f"no flowlab server is running here (registry: {registry_dir()})")
    print(f"Client(), the dashboard and client commands without --url: {chosen.describe()}")
    return 0


def _keys_create(args: argparse.Namespace) -> int:
    with _client(args) as client:
        made = client.keys.create(args.name)
    print(f"API key for {made.name!r} (shown once; export it as FLOWLAB_API_KEY):\n  {made.key}")
    return 0


def _keys_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        keys = client.keys.list()
    print(f"{'id':<22} {'name':<20} {'role':<10} state")
    for k in keys:
        print(
            f"{k.id:<22} {k.name:<20} {'admin' if k.admin else 'researcher':<10} {'revoked' if k.revoked else 'active'}"
        )
    return 0


def _keys_revoke(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.keys.revoke(args.key_id)
    print(f"Revoked {args.key_id}: it no longer works; its flows stay.")
    return 0


def _keys_rotate(args: argparse.Namespace) -> int:
    with _client(args) as client:
        made = client.keys.rotate(args.key_id)
    print(f"New secret for {made.name!r} ({made.id}); the old one no longer works. Shown once:\n  {made.key}")
    return 0


def _annotators_create(args: argparse.Namespace) -> int:
    with _client(args) as client:
        made = client.annotators.create(args.name)
    print(f"Join link for {made.name!r} (open it in a browser; it carries the annotator's token):\n  {made.join_url}")
    return 0


def _annotators_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        rows = client.annotators.list()
    print(f"{'id':22} {'name':20} {'votes':>7} {'gold':>9} {'agreement':>9}")
    for a in rows:
        agree = "-" if a.gold_agreement is None else f"{a.gold_agreement:.0%}"
        print(
            f"{a.id:22} {a.name[:20]:20} {a.votes:7d} {a.gold_correct:4d}/{a.gold_answered:<4d} {agree:>9}"
            f"{'  (revoked)' if a.revoked else ''}"
        )
    return 0


def _crowd(args: argparse.Namespace) -> int:
    from flowlab.crowd import SimulatedCrowd

    server = _target(args)
    crowd = SimulatedCrowd(
        server.url,
        server.api_key,
        annotators=args.annotators,
        rate=args.rate,
        accuracy=args.accuracy,
        spammer_fraction=args.spammers,
        seed=args.seed,
        bulk=args.bulk,
    )
    print(
        f"flowlab crowd: {args.annotators} simulated annotators at up to {args.rate:g} votes/min on {crowd.url}"
        " (Ctrl-C to stop)",
        flush=True,
    )
    # SIGTERM (kill, a service manager) ends the crowd as Ctrl-C does, with its summary.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: crowd.interrupt())
    started, cpu = time.monotonic(), time.process_time()
    try:
        stats = crowd.run(args.duration if args.duration else 10**9)
    except KeyboardInterrupt:
        stats = crowd.stats
    print(crowd_summary(stats, args.rate, time.monotonic() - started, time.process_time() - cpu), flush=True)
    return 0


def crowd_summary(stats: Any, requested: float, seconds: float, cpu_seconds: float) -> str:
    """What the crowd did: votes, the rate it reached against the one asked and, below it, the likely reason;
    refusals and errors with their causes."""
    achieved = stats.votes / seconds * 60 if seconds > 0 else 0.0
    lines = [
        f"flowlab crowd: {stats.votes:,} votes in {seconds:.1f} s: {achieved:,.0f} votes/min ({achieved / 60:,.0f} "
        f"votes/s) of the {requested:,.0f} asked; {stats.rejected} refused, {stats.skipped} skipped, "
        f"{stats.errors} errors"
    ]
    if achieved < 0.9 * requested and seconds >= 5:
        busy = cpu_seconds / seconds
        if stats.idle_polls:
            why = f"the server had no work for it {stats.idle_polls:,} times (push more items, or raise thresholds)"
        elif busy > 0.8:
            why = f"this process was busy {busy:.0%} of the time (run several crowds, or use --bulk)"
        else:
            why = "the server answered slower than the crowd asked (it may be the bottleneck)"
        lines.append(f"  below the rate asked: {why}")
    for cause, n in sorted(stats.error_causes.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {n} × {cause}")
    return "\n".join(lines)


def _demo(args: argparse.Namespace) -> int:
    from flowlab.demo import run_demo

    server = _target(args)
    return run_demo(url=server.url, api_key=server.api_key, batches=args.batches, ttl=args.ttl, rate=args.rate)


def _dashboard(args: argparse.Namespace) -> int:
    try:
        from flowlab_widgets.dashboard import serve
    except ImportError as exc:
        print(f"flowlab dashboard needs the lab extra: pip install 'flowlab[server,lab]' ({exc})", file=sys.stderr)
        return 2
    server = _target(args)
    serve(server.url, server.api_key, args.port, show=args.show, address=args.address, why=server.describe())
    return 0


def _local(args: argparse.Namespace) -> int:
    from flowlab.client._embedded import local_server_info, stop_local_server

    if args.action == "stop":
        print("stopped the local server" if stop_local_server() else "no local server was running")
        return 0
    info = local_server_info()
    if info is None:
        print(f"no local server is running (FLOWLAB_HOME={flowlab_home()}); Client() starts one when needed")
        return 1
    print(f"local server at {info['url']} (pid {info['pid']}); data in {flowlab_home() / 'local' / 'data'}")
    return 0


def _seconds_list(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"seconds separated by commas, e.g. 5,300,1800; got {text!r}") from None
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError("waits cannot be negative")
    return values


def _webhooks_add(args: argparse.Namespace) -> int:
    with _client(args) as client:
        made = client.webhooks.add(
            args.endpoint,
            events=args.events or ["item.completed"],
            flow_id=args.flow_id,
            description=args.description,
        )
    scope = f"flow {made.flow_id}" if made.flow_id else "every flow of this key"
    print(
        f"Webhook {made.id}: {', '.join(made.events)} of {scope} to {made.url}\n"
        f"Signing secret (shown once; verify webhook-signature with it):\n  {made.secret}"
    )
    return 0


def _webhooks_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        hooks = client.webhooks.list()
        if args.deliveries:
            for h in hooks:
                print(f"{h.id}  {h.url}")
                for d in client.webhooks.deliveries(h.id, limit=args.deliveries):
                    last = d.last_error or (f"HTTP {d.response_status}" if d.response_status else "")
                    print(f"  {d.msg_id:24} {d.event:16} {d.status:9} attempts {d.attempts}  {last}")
            return 0
    print(f"{'id':22} {'events':30} {'flow':22} url")
    for h in hooks:
        print(f"{h.id:22} {','.join(h.events):30} {h.flow_id or '(all)':22} {h.url}")
    return 0


def _webhooks_remove(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.webhooks.remove(args.webhook_id)
    print(f"Removed {args.webhook_id}: nothing more is sent to it, and its delivery log is gone.")
    return 0


def _webhooks_test(args: argparse.Namespace) -> int:
    with _client(args) as client:
        sent = client.webhooks.test(args.webhook_id)
    print(f"Queued test delivery {sent.msg_id}; see it with `flowlab webhooks list --deliveries 5`.")
    return 0


def _projects_create(args: argparse.Namespace) -> int:
    if args.flow is None and args.instruction is None:
        raise SystemExit("flowlab projects create: give --flow FLOW_ID, or --instruction (and --kind) to make one")
    if args.flow is None and args.kind == "classify" and not args.categories:
        raise SystemExit("flowlab projects create: a classify project needs --categories, e.g. yes,no")
    read_rows(args.data)  # a missing or unreadable file is said before anything is made on the server
    name = args.name or Path(args.data).stem  # the flow and the project are named after the file
    with _client(args) as client:
        made = None
        if args.flow is not None:
            flow: object = args.flow
        elif args.kind == "classify":
            n = args.responses or 3
            flow = made = client.flow.create_classify_flow(name, args.instruction, args.categories.split(","), n, n)
        elif args.kind == "rlhf":
            flow = made = client.flow.create_rlhf_flow(
                name, args.instruction, max_response_threshold=args.responses or 3
            )
        elif args.kind == "write":  # one demonstration a prompt unless asked for more
            flow = made = client.flow.create_write_flow(
                name, args.instruction, max_response_threshold=args.responses or 1
            )
        elif args.kind == "listwise":  # a row is a set to rank, k at a time: rankings per set, as the SDK's default
            more = {} if args.responses is None else {"max_response_threshold": args.responses}
            flow = made = client.flow.create_listwise_flow(name, args.instruction, **more)
        else:
            flow = made = client.flow.create_ranking_flow(name, args.instruction, args.responses or 3)
        try:
            project = client.projects.create(
                flow, args.data, name=name, live_items=args.live_items, per_item=args.per_item, start=not args.paused
            )
        except Exception:
            if made is not None:  # the flow was made for this project only: leave nothing half made
                made.delete()
            raise
    print(f"Project {project.id} on flow {project.flow_id}: {progress_line(project.last_status)}")
    print(f"Follow it with `flowlab projects status {project.id} --watch`.")
    return 0


def _flows_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        flows = client.flow.find_flows(args.name, amount=args.amount)
    print(f"{'id':22} {'kind':9} {'items':>6}  name")
    for f in flows:
        print(f"{f.id:22} {f.config.kind:9} {f.config.item_count:>6}  {f.name}")
    return 0


def _projects_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        projects = client.projects.list()
    print(f"{'id':22} {'kind':9} {'state':10} {'tasks':>17}  name")
    for p in projects:
        s = p.last_status
        print(f"{s.id:22} {s.kind:9} {s.state:10} {s.tasks_done:>8,}/{s.tasks_total:<8,}  {s.name}")
    return 0


def _projects_status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        project = client.projects.get(args.project_id)
        while True:
            status = project.get_progress()
            print(progress_line(status), flush=True)
            if not args.watch or status.state == "completed":
                return 0
            time.sleep(args.every)


def _projects_action(args: argparse.Namespace) -> int:
    with _client(args) as client:
        project = client.projects.get(args.project_id)
        if args.action == "delete":
            project.delete()
            print(f"Deleted {project.id}: its queue is gone and its live items stopped.")
            return 0
        status = getattr(project, args.action)()
    print(progress_line(status))
    return 0


def _projects_deliver(args: argparse.Namespace) -> int:
    with _client(args) as client:
        paths = client.projects.get(args.project_id).save_deliverable(args.out, partial=args.partial)
    for name, path in paths.items():
        print(f"{name:18} {path}")
    return 0


def _events(text: str) -> list[str]:
    """`--events item.completed,answer.created`: the names Python's `events=` takes, comma-separated."""
    names = [e.strip() for e in text.split(",") if e.strip()]
    unknown = [e for e in names if e not in schemas.WEBHOOK_EVENTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"events are {', '.join(schemas.WEBHOOK_EVENTS)} (comma-separated); got {text!r}"
        )
    return names


class _Parser(argparse.ArgumentParser):
    """An argument parser whose subcommands remember themselves, so that an unknown option is reported with
    the usage of the subcommand it was given to, not the top-level one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.set_defaults(_parser=self)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="flowlab", description="Keep real humans in the RLHF loop.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    serve = sub.add_parser("serve", help="run the flow service")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every address)")
    serve.add_argument("--port", type=int, default=8787, help="port to listen on (default 8787)")
    serve.add_argument(
        "--data-dir",
        default=os.environ.get("FLOWLAB_DATA_DIR", "./flowlab-data"),
        help="where the database, media and generated admin key live",
    )
    serve.add_argument(
        "--db", default=None, help="SQLite file (default: <data-dir>/flowlab.sqlite3), or a postgresql:// URL"
    )
    serve.add_argument("--public-url", default=None, help="base URL for join links, if not the request's own")
    serve.add_argument(
        "--advertise",
        default=None,
        metavar="URL",
        help="on PostgreSQL, where the cluster's other processes reach this one (default http://HOST:PORT)",
    )
    serve.add_argument(
        "--max-upload-mb", type=float, default=64.0, help="largest media upload accepted, in MiB (default 64)"
    )
    serve.add_argument(
        "--retain-ended",
        type=float,
        default=30.0,
        help="seconds an ended item stays in memory before reads of it go to the database",
    )
    serve.add_argument(
        "--webhook-retry",
        type=_seconds_list,
        default=None,
        help="seconds to wait before each retry of a failed webhook delivery, comma-separated "
        "(default 5,300,1800,7200,18000,36000,36000)",
    )
    serve.add_argument(
        "--log-level",
        default="warning",
        choices=("critical", "error", "warning", "info", "debug", "trace"),
        help="the server's log level (default warning)",
    )
    serve.add_argument(
        "--access-log",
        action="store_true",
        help="log every request, whatever --log-level (tokens never appear in URLs)",
    )
    serve.add_argument(
        "--unlisted",
        action="store_true",
        help="do not list this server in FLOWLAB_HOME/servers, so client commands and Client() never pick it by "
        "themselves (a cluster's processes, behind their balancer)",
    )
    serve.set_defaults(func=_serve)

    servers = sub.add_parser(
        "servers", help="the flowlab servers running here, and which one Client() and client commands use"
    )
    servers.set_defaults(func=_servers)

    crowd = sub.add_parser("crowd", help="run a simulated crowd of annotators against a server")
    _client_args(crowd)
    crowd.add_argument("--annotators", type=int, default=20, help="simulated annotators (default 20)")
    crowd.add_argument("--rate", type=float, default=6000.0, help="votes per minute for the whole crowd")
    crowd.add_argument(
        "--accuracy", type=float, default=0.9, help="chance an honest annotator picks the better one (default 0.9)"
    )
    crowd.add_argument("--spammers", type=float, default=0.0, help="fraction of annotators answering at random")
    crowd.add_argument("--seed", type=int, default=0, help="random seed, for a crowd that answers the same again")
    crowd.add_argument("--bulk", action="store_true", help="use the bulk fetch/answer endpoints")
    crowd.add_argument("--duration", type=float, default=None, help="seconds to run (default: until Ctrl-C)")
    crowd.set_defaults(func=_crowd)

    demo = sub.add_parser("demo", help="server + simulated crowd + a flow with a few batches, live")
    _client_args(demo)
    demo.add_argument("--batches", type=int, default=3, help="batches of eight answers to rank (default 3)")
    demo.add_argument(
        "--ttl", type=float, default=20.0, help="seconds each batch stays open for the crowd (default 20)"
    )
    demo.add_argument(
        "--rate", type=float, default=6000.0, help="the simulated crowd's votes per minute (default 6000)"
    )
    demo.set_defaults(func=_demo)

    dash = sub.add_parser("dashboard", help="serve the Panel dashboard for a whole run")
    _client_args(dash)
    dash.add_argument("--port", type=int, default=5006, help="the dashboard's port (default 5006)")
    dash.add_argument("--address", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    dash.add_argument("--show", action="store_true", help="open a browser tab")
    dash.set_defaults(func=_dashboard)

    flows = sub.add_parser("flows", help="your flows").add_subparsers(dest="flows_command", required=True)
    fl = flows.add_parser("list", help="your flows, newest first, with their ids")
    _client_args(fl)
    fl.add_argument("--name", default="", help="only flows whose name contains this")
    fl.add_argument("--amount", type=int, default=20, help="how many (default 20)")
    fl.set_defaults(func=_flows_list)

    keys = sub.add_parser("keys", help="researcher API keys").add_subparsers(dest="keys_command", required=True)
    kc = keys.add_parser("create", help="make another researcher key (needs the admin key)")
    _client_args(kc)
    kc.add_argument("--name", required=True, help="whose key it is, as `flowlab keys list` shows it")
    kc.set_defaults(func=_keys_create)
    kl = keys.add_parser("list", help="list keys (the admin sees every key, a researcher their own)")
    _client_args(kl)
    kl.set_defaults(func=_keys_list)
    kr = keys.add_parser("revoke", help="stop a researcher's key working (needs the admin key)")
    _client_args(kr)
    kr.add_argument("key_id", help="the key's id, from `flowlab keys list`")
    kr.set_defaults(func=_keys_revoke)
    kt = keys.add_parser("rotate", help="give a key a new secret (the admin's, or your own); the old one stops")
    _client_args(kt)
    kt.add_argument("key_id", help="the key's id, from `flowlab keys list`")
    kt.set_defaults(func=_keys_rotate)

    local = sub.add_parser("local", help="the embedded local server that Client() starts: status | stop")
    local.add_argument("action", choices=["status", "stop"], help="say whether it runs, or stop it")
    local.set_defaults(func=_local)

    ann = sub.add_parser("annotators", help="annotator join links").add_subparsers(dest="ann_command", required=True)
    ac = ann.add_parser("create", help="make an annotator token and print its join link")
    _client_args(ac)
    ac.add_argument("--name", required=True, help="the annotator's name, as reports show it")
    ac.set_defaults(func=_annotators_create)
    al = ann.add_parser("list", help="annotators with their votes and gold agreement")
    _client_args(al)
    al.set_defaults(func=_annotators_list)
    _people_commands(sub, ann)
    _pay_commands(ann)

    hooks = sub.add_parser("webhooks", help="push events to a URL, signed (Standard Webhooks)")
    hs = hooks.add_subparsers(dest="webhooks_command", required=True)
    ha = hs.add_parser("add", help="add an endpoint; prints its signing secret once")
    _client_args(ha)
    ha.add_argument("endpoint", metavar="URL", help="where to POST the events")
    ha.add_argument(
        "--events",
        "--event",
        dest="events",
        action="extend",
        type=_events,
        metavar="EVENTS",
        help=f"events to send, comma-separated: {', '.join(schemas.WEBHOOK_EVENTS)} (default item.completed)",
    )
    ha.add_argument(
        "--flow-id", "--flow", dest="flow_id", default=None, help="only this flow's events (default: every flow)"
    )
    ha.add_argument("--description", default="", help="a note on what the endpoint is for")
    ha.set_defaults(func=_webhooks_add)
    hl = hs.add_parser("list", help="endpoints, or with --deliveries N each one's last N deliveries")
    _client_args(hl)
    hl.add_argument("--deliveries", type=int, default=0, metavar="N", help="show each endpoint's last N deliveries")
    hl.set_defaults(func=_webhooks_list)
    hr = hs.add_parser("remove", help="remove an endpoint and its delivery log")
    _client_args(hr)
    hr.add_argument("webhook_id", help="the endpoint's id, from `flowlab webhooks list`")
    hr.set_defaults(func=_webhooks_remove)
    ht = hs.add_parser("test", help="send a webhook.test event to an endpoint now")
    _client_args(ht)
    ht.add_argument("webhook_id", help="the endpoint's id, from `flowlab webhooks list`")
    ht.set_defaults(func=_webhooks_test)

    projects = sub.add_parser("projects", help="batch projects: a dataset labelled through a flow, then delivered")
    ps = projects.add_subparsers(dest="projects_command", required=True)
    pc = ps.add_parser("create", help="queue a dataset's rows as a project's tasks and start it")
    _client_args(pc)
    pc.add_argument("data", help="a .jsonl, .json, .csv or .tsv file of tasks")
    pc.add_argument(
        "--flow", default=None, help="the flow to label through, from `flowlab flows list` (else one is made)"
    )
    pc.add_argument("--instruction", default=None, help="make a flow with this question")
    pc.add_argument(
        "--kind",
        choices=("pairwise", "classify", "rlhf", "write", "listwise"),
        default="pairwise",
        help="of the flow made",
    )
    pc.add_argument("--categories", default=None, help="a classify flow's categories, comma-separated")
    pc.add_argument(
        "--responses",
        type=int,
        default=None,
        help="answers per task of the flow made (default 3; write 1; listwise 40 rankings a set)",
    )
    pc.add_argument("--name", default=None, help="of the project and the flow made (default: the file's name)")
    pc.add_argument("--live-items", type=int, default=None, help="items of the project live at once")
    pc.add_argument(
        "--per-item", type=int, default=None, help="classify / RLHF / chat / write rows grouped into one item"
    )
    pc.add_argument("--paused", action="store_true", help="queue the tasks but do not start")
    pc.set_defaults(func=_projects_create)
    pl = ps.add_parser("list", help="projects with their state and tasks done")
    _client_args(pl)
    pl.set_defaults(func=_projects_list)
    pst = ps.add_parser("status", help="progress: done / total, rate, ETA")
    _client_args(pst)
    pst.add_argument("project_id", help="the project's id, from `flowlab projects list`")
    pst.add_argument("--watch", action="store_true", help="print progress until the project completes")
    pst.add_argument("--every", type=float, default=2.0, help="seconds between lines with --watch")
    pst.set_defaults(func=_projects_status)
    for action, text in (
        ("start", "start a project made with --paused"),
        ("pause", "hand out no more of its tasks (those out may still be answered)"),
        ("resume", "carry on after a pause"),
        ("delete", "drop its queued tasks and stop its live items (they stay in the flow)"),
    ):
        pa = ps.add_parser(action, help=text)
        _client_args(pa)
        pa.add_argument("project_id", help="the project's id, from `flowlab projects list`")
        pa.set_defaults(func=_projects_action, action=action)
    pd = ps.add_parser("deliver", help="write the deliverable: every format of the kind as JSONL, and a manifest")
    _client_args(pd)
    pd.add_argument("project_id", help="the project's id, from `flowlab projects list`")
    pd.add_argument("--out", required=True, help="the folder to write to")
    pd.add_argument("--partial", action="store_true", help="before it completes: the tasks done so far")
    pd.set_defaults(func=_projects_deliver)
    return parser


# ------------------------------------------------------------------ errors, in the command line's words

# The server's and the SDK's hints name Python calls; on the command line, the command that does the same.
_COMMANDS = {
    ("projects", "list"): "`flowlab projects list`",
    ("projects", "create"): "`flowlab projects create FILE --flow FLOW_ID`",
    ("projects", "get"): "`flowlab projects status PROJECT_ID`",
    ("flow", "find_flows"): "`flowlab flows list`",
    ("keys", "list"): "`flowlab keys list`",
    ("keys", "create"): "`flowlab keys create --name NAME`",
    ("keys", "rotate"): "`flowlab keys rotate KEY_ID`",
    ("keys", "revoke"): "`flowlab keys revoke KEY_ID`",
    ("annotators", "create"): "`flowlab annotators create --name NAME`",
    ("annotators", "list"): "`flowlab annotators list`",
    ("webhooks", "list"): "`flowlab webhooks list`",
    ("webhooks", "add"): "`flowlab webhooks add URL`",
    ("webhooks", "deliveries"): "`flowlab webhooks list --deliveries N`",
}
_PYTHON_CALL = re.compile(r"`?client\.([a-z_]+)\.([a-z_]+)\([^)]*\)`?")


def cli_message(exc: Exception) -> str:
    """An SDK error as the command line says it: what the SDK found wrong locally (a file, an argument) with
    no HTTP status, which it never had; hints to Python calls given as the command that does the same."""
    from flowlab.client._errors import APIError

    local = isinstance(exc, APIError) and exc.body is None  # body: the server's answer, when there was one
    text = exc.detail if isinstance(exc, APIError) and local else str(exc)
    return _PYTHON_CALL.sub(lambda m: _COMMANDS.get((m[1], m[2]), m[0]), text)


# ------------------------------------------------------------------ real people: audiences, standing
# A block of its own (issue: real people at scale): `flowlab audiences ...`, `flowlab annotators suspend|reinstate`.


def _people_commands(sub: Any, ann: Any) -> None:
    for action, words in (
        ("suspend", "no more tasks for them; their answers are kept"),
        ("reinstate", "undo a suspension"),
    ):
        p = ann.add_parser(action, help=words)
        _client_args(p)
        p.add_argument("annotator_id", help="the annotator's id, from `flowlab annotators list`")
        p.set_defaults(func=_annotator_standing, action=action)
    aud = sub.add_parser("audiences", help="named groups of annotators and their enrollment links")
    acmds = aud.add_subparsers(dest="audiences_command", required=True)
    make = acmds.add_parser("create", help="make an audience")
    _client_args(make)
    make.add_argument("--name", required=True, help="the audience's name, shown to researchers")
    make.add_argument("--description", help="what the audience is for (researchers only)")
    make.add_argument("--suspend-below", type=float, help="suspend members whose gold agreement falls below this")
    make.add_argument("--min-gold", type=int, default=10, help="gold answers needed before suspension applies")
    make.set_defaults(func=_audiences_create)
    lst = acmds.add_parser("list", help="audiences with enrolled, admitted, screened-out and suspended counts")
    _client_args(lst)
    lst.set_defaults(func=_audiences_list)
    link = acmds.add_parser("link", help="make an enrollment link and print it")
    _client_args(link)
    link.add_argument("audience_id", help="the audience's id, from `flowlab audiences list`")
    link.add_argument("--platform", choices=["prolific", "url"], help="where people come from (default: a team link)")
    link.add_argument("--id-param", help='platform "url": the parameter naming the participant (e.g. workerId)')
    link.add_argument("--limit", type=int, help="how many people may enroll through it")
    link.add_argument("--expires-in", type=float, help="seconds")
    link.add_argument("--quota", type=int, help="answers per person")
    link.add_argument("--completion-code", help="the code people are shown (and sent back with) when done")
    link.add_argument("--screen-out-code", help="the code people who fail the quiz are given")
    link.set_defaults(func=_audiences_link)
    rm = acmds.add_parser("delete", help="delete an audience no flow names")
    _client_args(rm)
    rm.add_argument("audience_id", help="the audience's id, from `flowlab audiences list`")
    rm.set_defaults(func=_audiences_delete)


def _annotator_standing(args: argparse.Namespace) -> int:
    with _client(args) as client:
        made = getattr(client.annotators, args.action)(args.annotator_id)
    print(f"{made.id} ({made.name}) is now {made.state}.")
    return 0


def _audiences_create(args: argparse.Namespace) -> int:
    with _client(args) as client:
        a = client.audiences.create(
            args.name, args.description, suspend_below=args.suspend_below, min_gold=args.min_gold
        )
    print(a.id)
    return 0


def _audiences_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        rows = [a.last for a in client.audiences.list()]
    print(f"{'id':22} {'name':20} {'enrolled':>8} {'admitted':>8} {'screened':>8} {'suspended':>9} {'active':>6}")
    for a in rows:
        print(
            f"{a.id:22} {a.name[:20]:20} {a.enrolled:8d} {a.qualified:8d} {a.screened_out:8d} {a.suspended:9d} "
            f"{a.active_now:6d}"
        )
    return 0


def _audiences_link(args: argparse.Namespace) -> int:
    with _client(args) as client:
        url = client.audiences.get(args.audience_id).enrollment_link(
            limit=args.limit,
            expires_in=args.expires_in,
            platform=args.platform,
            completion_code=args.completion_code,
            screen_out_code=args.screen_out_code,
            quota=args.quota,
            id_param=args.id_param,
        )
    print(url)
    return 0


def _audiences_delete(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.audiences.delete(args.audience_id)
    return 0


# ------------------------------------------------------------------ time on task and pay
# A block of its own (issue: real people at scale, time on task and pay): `flowlab annotators report|pay`.


def _pay_commands(ann: Any) -> None:
    def window(p: argparse.ArgumentParser) -> None:
        _client_args(p)
        p.add_argument("--audience", help="only this audience's people (an id from `flowlab audiences list`)")
        p.add_argument("--since", help="only answers given at or after this time (ISO 8601, or epoch seconds)")
        p.add_argument("--until", help="only answers given before this time (ISO 8601, or epoch seconds)")

    rep = ann.add_parser("report", help="each person's answers, agreement, time on task and active minutes")
    window(rep)
    rep.add_argument("--csv", metavar="PATH", help="write the whole report as CSV here ('-': to standard output)")
    rep.set_defaults(func=_annotators_report)
    pay = ann.add_parser("pay", help="what each person is owed under a rule; --csv writes Prolific's bulk bonus file")
    window(pay)
    pay.add_argument("--per-answer", type=float, help="paid for each answer (gold and admitted quiz answers too)")
    pay.add_argument("--per-hour", type=float, help="paid for each active hour (time on task, tasks capped at 5 min)")
    pay.add_argument("--bonus", type=float, help="a bonus for gold agreement above --gold-above")
    pay.add_argument("--gold-above", type=float, default=0.8, help="the gold agreement the bonus needs (default 0.8)")
    pay.add_argument("--min-gold", type=int, default=1, help="gold answers the bonus needs (default 1)")
    pay.add_argument("--pay-suspended", action="store_true", help="also pay answers given after a suspension")
    pay.add_argument("--pay-screened-out", action="store_true", help="pay screened-out people's quiz answers")
    pay.add_argument("--csv", metavar="PATH", help="write `participant_id,amount` lines for Prolific's bulk bonus")
    pay.set_defaults(func=_annotators_pay)


def _when(text: str | None) -> float | str | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return text  # the SDK reads ISO 8601


def _annotators_report(args: argparse.Namespace) -> int:
    with _client(args) as client:
        frame = client.annotators.report(audience=args.audience, since=_when(args.since), until=_when(args.until))
    if args.csv:
        frame.to_csv(sys.stdout if args.csv == "-" else args.csv)
        return 0
    print(
        f"{'annotator':22} {'name':16} {'state':12} {'answers':>7} {'gold':>5} {'consens':>7} {'median s':>8} "
        f"{'active min':>10}"
    )
    for aid, r in frame.iterrows():
        gold = "" if pd_isna(r.gold_agreement) else f"{r.gold_agreement:.0%}"
        agree = "" if pd_isna(r.consensus_agreement) else f"{r.consensus_agreement:.0%}"
        median = "" if pd_isna(r.median_seconds) else f"{r.median_seconds:.1f}"
        print(
            f"{aid:22} {str(r['name'])[:16]:16} {r.state:12} {r.answers:7d} {gold:>5} {agree:>7} {median:>8} "
            f"{r.active_minutes:10.1f}"
        )
    return 0


def pd_isna(value: Any) -> bool:
    return value is None or value != value  # None, or NaN


def _annotators_pay(args: argparse.Namespace) -> int:
    bonus = None
    if args.bonus is not None:
        bonus = {"amount": args.bonus, "gold_above": args.gold_above, "min_gold": args.min_gold}
    with _client(args) as client:
        owed = client.annotators.pay(
            per_answer=args.per_answer,
            per_hour=args.per_hour,
            bonus=bonus,
            audience=args.audience,
            since=_when(args.since),
            until=_when(args.until),
            pay_suspended=args.pay_suspended,
            pay_screened_out=args.pay_screened_out,
            csv=args.csv,
        )
    print(f"{'annotator':22} {'participant':24} {'answers':>7} {'hours':>6} {'bonus':>6} {'amount':>8}")
    for aid, r in owed.iterrows():
        print(
            f"{aid:22} {str(r.participant or '-')[:24]:24} {r.paid_answers:7d} {r.active_hours:6.2f} {r.bonus:6.2f} "
            f"{r.amount:8.2f}"
        )
    unpaid = owed[owed["participant"].isna() & (owed["amount"] > 0)]
    print(f"total {owed['amount'].sum():.2f}", end="")
    if args.csv:
        lines = owed.to_prolific_csv().count("\n")
        print(f"; {args.csv} holds {lines} people (those with a participant id and something owed)", end="")
        if len(unpaid):
            print(f" ({len(unpaid)} without one are left out: pay them another way)", end="")
    print()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # argparse would report these with the top-level usage; the subcommand's is the useful one
        args._parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command == "serve":
        return int(args.func(args) or 0)
    from flowlab import FlowlabError

    try:
        return int(args.func(args) or 0)
    except FlowlabError as exc:
        print(f"{args._parser.prog}: {cli_message(exc)}", file=sys.stderr)
        return 1
