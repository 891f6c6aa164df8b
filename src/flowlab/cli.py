"""The `flowlab` command: serve | crowd | demo | dashboard | keys | annotators | webhooks | projects."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from flowlab import schemas
from flowlab.client._projects import progress_line


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
    print(f"flowlab: serving on {url}  (API docs: /schema/swagger, annotators: /annotate)", flush=True)
    announced = _announce(url, data_dir)
    if announced is not None:
        print(
            "flowlab: `flowlab annotators create`, `flowlab crowd` and the other client commands in this account "
            "now talk to this server (unless given --url or FLOWLAB_URL).",
            flush=True,
        )
    try:
        uvicorn.run(
            app,
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            access_log=args.access_log,
            timeout_graceful_shutdown=3,
        )
    finally:
        if announced is not None:
            with contextlib.suppress(OSError, ValueError):
                if json.loads(announced.read_text()).get("pid") == os.getpid():
                    announced.unlink()
    return 0


# ------------------------------------------------------------------ which server a client command talks to


def _serving_file() -> Path:
    from flowlab.client._embedded import flowlab_home

    return flowlab_home() / "serving.json"


def _announce(url: str, data_dir: Path) -> Path | None:
    """Say where this `flowlab serve` is, for the client commands that follow it (not for the embedded
    server that Client() starts, which keeps its own record)."""
    from flowlab.client._embedded import flowlab_home

    if data_dir.resolve().is_relative_to((flowlab_home() / "local").resolve()):
        return None
    path = _serving_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    record = {"url": url, "pid": os.getpid(), "data_dir": str(data_dir.resolve())}
    path.write_text(json.dumps(record))
    return path


def _served() -> dict[str, str] | None:
    """The `flowlab serve` of this account that is still running, if any."""
    try:
        record = json.loads(_serving_file().read_text())
        os.kill(int(record["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return {k: str(v) for k, v in record.items()}


def _target(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """(url, key) for a client command, and a line on stderr saying which server that is: --url or
    FLOWLAB_URL; else the running `flowlab serve` (with its generated admin key unless a key is given); else
    the embedded local server."""
    if args.url:
        print(f"flowlab: talking to {args.url} (--url or FLOWLAB_URL)", file=sys.stderr)
        return args.url, args.api_key
    served = _served()
    if served is not None:
        key = args.api_key
        key_file = Path(served["data_dir"]) / "admin_key"
        if key is None and key_file.is_file():
            key = key_file.read_text().strip()
        print(f"flowlab: talking to {served['url']}, the `flowlab serve` of {served['data_dir']}", file=sys.stderr)
        return served["url"], key
    print(
        "flowlab: talking to the embedded local server (no `flowlab serve` is running here and FLOWLAB_URL is not set)",
        file=sys.stderr,
    )
    return None, args.api_key


def _client_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--url",
        default=os.environ.get("FLOWLAB_URL"),
        help="server URL (default: $FLOWLAB_URL, else the `flowlab serve` running here, else the embedded one)",
    )
    p.add_argument("--api-key", default=os.environ.get("FLOWLAB_API_KEY"), help="default: $FLOWLAB_API_KEY")


def _client(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from flowlab import Client

    url, key = _target(args)
    return Client(url=url, api_key=key)


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

    url, key = _target(args)
    crowd = SimulatedCrowd(
        url,
        key,
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

    url, key = _target(args)
    return run_demo(url=url, api_key=key, batches=args.batches, ttl=args.ttl, rate=args.rate)


def _dashboard(args: argparse.Namespace) -> int:
    try:
        from flowlab_widgets.dashboard import serve
    except ImportError as exc:
        print(f"flowlab dashboard needs the lab extra: pip install 'flowlab[server,lab]' ({exc})", file=sys.stderr)
        return 2
    url, key = _target(args)
    serve(url, key, args.port, show=args.show, address=args.address)
    return 0


def _local(args: argparse.Namespace) -> int:
    from flowlab.client._embedded import flowlab_home, local_server_info, stop_local_server

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
        made = client.webhooks.add(args.endpoint, events=args.event or ["item.completed"], flow_id=args.flow)
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
    with _client(args) as client:
        if args.flow is not None:
            flow: object = args.flow
        elif args.instruction is None:
            raise SystemExit("flowlab projects create: give --flow FLOW_ID, or --instruction (and --kind) to make one")
        elif args.kind == "classify":
            if not args.categories:
                raise SystemExit("flowlab projects create: a classify project needs --categories, e.g. yes,no")
            n = args.responses or 3
            flow = client.flow.create_classify_flow(
                args.name or "batch", args.instruction, args.categories.split(","), n, n
            )
        elif args.kind == "rlhf":
            flow = client.flow.create_rlhf_flow(
                args.name or "batch", args.instruction, max_response_threshold=args.responses or 3
            )
        else:
            flow = client.flow.create_ranking_flow(args.name or "batch", args.instruction, args.responses or 3)
        project = client.projects.create(
            flow, args.data, name=args.name, live_items=args.live_items, per_item=args.per_item, start=not args.paused
        )
    print(f"Project {project.id} on flow {project.flow_id}: {progress_line(project.last_status)}")
    print(f"Follow it with `flowlab projects status {project.id} --watch`.")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowlab", description="Keep real humans in the RLHF loop.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the flow service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8787)
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
    serve.add_argument("--max-upload-mb", type=float, default=64.0)
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
    serve.add_argument("--log-level", default="warning")
    serve.add_argument("--access-log", action="store_true", help="log every request (tokens never appear in URLs)")
    serve.set_defaults(func=_serve)

    crowd = sub.add_parser("crowd", help="run a simulated crowd of annotators against a server")
    _client_args(crowd)
    crowd.add_argument("--annotators", type=int, default=20)
    crowd.add_argument("--rate", type=float, default=6000.0, help="votes per minute for the whole crowd")
    crowd.add_argument("--accuracy", type=float, default=0.9)
    crowd.add_argument("--spammers", type=float, default=0.0, help="fraction of annotators answering at random")
    crowd.add_argument("--seed", type=int, default=0)
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
    dash.add_argument("--port", type=int, default=5006)
    dash.add_argument("--address", default="127.0.0.1")
    dash.add_argument("--show", action="store_true", help="open a browser tab")
    dash.set_defaults(func=_dashboard)

    keys = sub.add_parser("keys", help="researcher API keys").add_subparsers(dest="keys_command", required=True)
    kc = keys.add_parser("create", help="make another researcher key (needs the admin key)")
    _client_args(kc)
    kc.add_argument("--name", required=True)
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
    local.add_argument("action", choices=["status", "stop"])
    local.set_defaults(func=_local)

    ann = sub.add_parser("annotators", help="annotator join links").add_subparsers(dest="ann_command", required=True)
    ac = ann.add_parser("create", help="make an annotator token and print its join link")
    _client_args(ac)
    ac.add_argument("--name", required=True)
    ac.set_defaults(func=_annotators_create)
    al = ann.add_parser("list", help="annotators with their votes and gold agreement")
    _client_args(al)
    al.set_defaults(func=_annotators_list)
    _people_commands(sub, ann)

    hooks = sub.add_parser("webhooks", help="push events to a URL, signed (Standard Webhooks)")
    hs = hooks.add_subparsers(dest="webhooks_command", required=True)
    ha = hs.add_parser("add", help="add an endpoint; prints its signing secret once")
    _client_args(ha)
    ha.add_argument("endpoint", metavar="URL", help="where to POST the events")
    ha.add_argument(
        "--event",
        action="append",
        choices=schemas.WEBHOOK_EVENTS,
        help="an event to send (repeatable; default item.completed)",
    )
    ha.add_argument("--flow", default=None, help="only this flow's events (default: every flow of the key)")
    ha.set_defaults(func=_webhooks_add)
    hl = hs.add_parser("list", help="endpoints, or with --deliveries N each one's last N deliveries")
    _client_args(hl)
    hl.add_argument("--deliveries", type=int, default=0, metavar="N")
    hl.set_defaults(func=_webhooks_list)
    hr = hs.add_parser("remove", help="remove an endpoint and its delivery log")
    _client_args(hr)
    hr.add_argument("webhook_id")
    hr.set_defaults(func=_webhooks_remove)
    ht = hs.add_parser("test", help="send a webhook.test event to an endpoint now")
    _client_args(ht)
    ht.add_argument("webhook_id")
    ht.set_defaults(func=_webhooks_test)

    projects = sub.add_parser("projects", help="batch projects: a dataset labelled through a flow, then delivered")
    ps = projects.add_subparsers(dest="projects_command", required=True)
    pc = ps.add_parser("create", help="queue a dataset's rows as a project's tasks and start it")
    _client_args(pc)
    pc.add_argument("data", help="a .jsonl, .json, .csv or .tsv file of tasks")
    pc.add_argument("--flow", default=None, help="the flow to label through (else one is made from --instruction)")
    pc.add_argument("--instruction", default=None, help="make a flow with this question")
    pc.add_argument("--kind", choices=("pairwise", "classify", "rlhf"), default="pairwise", help="of the flow made")
    pc.add_argument("--categories", default=None, help="a classify flow's categories, comma-separated")
    pc.add_argument("--responses", type=int, default=None, help="answers per task of the flow made (default 3)")
    pc.add_argument("--name", default=None)
    pc.add_argument("--live-items", type=int, default=None, help="items of the project live at once")
    pc.add_argument("--per-item", type=int, default=None, help="classify / RLHF rows grouped into one item")
    pc.add_argument("--paused", action="store_true", help="queue the tasks but do not start")
    pc.set_defaults(func=_projects_create)
    pl = ps.add_parser("list", help="projects with their state and tasks done")
    _client_args(pl)
    pl.set_defaults(func=_projects_list)
    pst = ps.add_parser("status", help="progress: done / total, rate, ETA")
    _client_args(pst)
    pst.add_argument("project_id")
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
        pa.add_argument("project_id")
        pa.set_defaults(func=_projects_action, action=action)
    pd = ps.add_parser("deliver", help="write the deliverable: every format of the kind as JSONL, and a manifest")
    _client_args(pd)
    pd.add_argument("project_id")
    pd.add_argument("--out", required=True, help="the folder to write to")
    pd.add_argument("--partial", action="store_true", help="before it completes: the tasks done so far")
    pd.set_defaults(func=_projects_deliver)
    return parser


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
    make.add_argument("--name", required=True)
    make.add_argument("--description")
    make.add_argument("--suspend-below", type=float, help="suspend members whose gold agreement falls below this")
    make.add_argument("--min-gold", type=int, default=10)
    make.set_defaults(func=_audiences_create)
    lst = acmds.add_parser("list", help="audiences with enrolled, admitted, screened-out and suspended counts")
    _client_args(lst)
    lst.set_defaults(func=_audiences_list)
    link = acmds.add_parser("link", help="make an enrollment link and print it")
    _client_args(link)
    link.add_argument("audience_id")
    link.add_argument("--platform", choices=["prolific", "url"])
    link.add_argument("--id-param", help='platform "url": the parameter naming the participant (e.g. workerId)')
    link.add_argument("--limit", type=int)
    link.add_argument("--expires-in", type=float, help="seconds")
    link.add_argument("--quota", type=int, help="answers per person")
    link.add_argument("--completion-code")
    link.add_argument("--screen-out-code")
    link.set_defaults(func=_audiences_link)
    rm = acmds.add_parser("delete", help="delete an audience no flow names")
    _client_args(rm)
    rm.add_argument("audience_id")
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return int(args.func(args) or 0)
    from flowlab import FlowlabError

    try:
        return int(args.func(args) or 0)
    except FlowlabError as exc:
        print(f"flowlab {args.command}: {exc}", file=sys.stderr)
        return 1
