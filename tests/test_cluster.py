"""Three `flowlab serve` processes on one PostgreSQL schema (docs/cluster.md): behind HAProxy, or with the
clients spread across them; one of them killed mid-load."""

from __future__ import annotations

import http.server
import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import httpx
import msgspec
import numpy as np
import pytest

import flowlab
from flowlab import FlowItemState, schemas
from flowlab.cli import cannot_listen
from flowlab.client._servers import running_servers
from flowlab.client._sse import SSEParser
from flowlab.crowd import SimulatedCrowd
from flowlab.devcluster import NodeFailed, _wait_up, haproxy_config

from ._load import AnswerLoad
from .conftest import ADMIN_KEY, PostgresDatabase, ServerProcess, free_port, wait_for
from .test_faults import assert_exact, counted, make_item
from .test_flows_api import scored

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


class Trio:
    """Three processes, started one after the other (the first makes the admin key), on one database."""

    def __init__(self, root: Path, dsn: str) -> None:
        self.nodes = []
        for i in range(3):
            (root / f"node{i}").mkdir()
            self.nodes.append(ServerProcess(data_dir=root / f"node{i}", extra_args=["--db", dsn]))
        self.lb: subprocess.Popen[bytes] | None = None
        self.lb_port = free_port()
        self.root = root

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def node_of(self, flow_id: str, db: PostgresDatabase) -> int:
        """Which of the three serves the flow."""
        (node,) = db.query("SELECT url FROM nodes WHERE id = (SELECT node FROM flows WHERE id = %s)", (flow_id,))[0]
        return self.urls.index(str(node))

    def load_balancer(self) -> str:
        if shutil.which("haproxy") is None:
            pytest.skip("haproxy is not installed (apt-get install haproxy)")
        config = self.root / "haproxy.cfg"
        config.write_text(haproxy_config(self.lb_port, [n.port for n in self.nodes]))
        self.lb = subprocess.Popen(["haproxy", "-f", str(config)], stderr=subprocess.PIPE)
        url = f"http://127.0.0.1:{self.lb_port}"
        wait_for(lambda: _up(url), 10, "haproxy")
        return url

    def stop(self) -> None:
        if self.lb is not None:
            self.lb.terminate()
            self.lb.wait(10)
        for node in self.nodes:
            node.stop()


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v1/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def trio(pg_db: PostgresDatabase, tmp_path: Path) -> Iterator[Trio]:
    three = Trio(tmp_path, pg_db.dsn)
    try:
        for node in three.nodes:
            node.start()
        wait_for(lambda: len(pg_db.query("SELECT id FROM nodes")) == 3, 10, "three nodes")
        time.sleep(0.6)  # a sweep: each has seen the others
        yield three
    finally:
        three.stop()


def _flow_on(url: str, name: str, max_votes: int) -> str:
    """A flow made through this process, which serves it."""
    body = {"name": name, "instruction": "Which?", "max_response_threshold": max_votes}
    return str(httpx.post(f"{url}/v1/flows", json=body, headers=AUTH).raise_for_status().json()["id"])


def test_seed_scenario_through_the_load_balancer(trio: Trio) -> None:
    url = trio.load_balancer()
    with flowlab.Client(url=url, api_key=ADMIN_KEY) as client:
        client.flow.preheat()
        flow = client.flow.create_ranking_flow(
            name="Image Quality Ranking",
            instruction="Which image looks better?",
            max_response_threshold=40,
            min_response_threshold=10,
        )
        with SimulatedCrowd(url, ADMIN_KEY, annotators=8, rate=3000, accuracy=1.0, seed=3):
            flow_item = flow.create_new_flow_batch(
                datapoints=scored(5, spread=3.0), context="generations from step 12k", time_to_live=300
            )
            assert flow_item.get_progress().state in (FlowItemState.PENDING, FlowItemState.RUNNING)
            results = flow_item.get_results(timeout=60)
        assert results.state == FlowItemState.COMPLETED
        assert flow_item.get_response_count() == results.total_votes == 40
        assert flow_item.get_win_loss_matrix().to_numpy().sum() == 40
        assert results.ranking[0] in ("dp4", "dp3")

        flow.update_config(instruction="Which image has higher visual quality?")
        # Every process answers alike, whichever the balancer picks: read each property a few times.
        for _ in range(6):
            assert client.flow.get_flow_by_id(flow.id).instruction == "Which image has higher visual quality?"
            assert flow_item.get_progress().instruction == "Which image looks better?"
        wait_for(lambda: client.flow.find_flows(amount=10)[0].id == flow.id, 5, "the listing on every process")
        assert [i.id for i in flow.get_flow_items()] == [flow_item.id]
        flow.delete()
        for _ in range(3):
            with pytest.raises(flowlab.NotFound):
                client.flow.get_flow_by_id(flow.id)


def test_many_annotators_on_all_processes_never_over_serve_nor_share_a_task(
    trio: Trio, pg_db: PostgresDatabase
) -> None:
    # A flow served by each process, its items made through another one; a crowd on each process.
    items = []
    for i, url in enumerate(trio.urls):
        flow = _flow_on(url, f"race{i}", 25)
        other = trio.urls[(i + 1) % 3]
        for k in range(2):
            body = {"datapoints": [{"text": f"{i}-{k}-{d}"} for d in range(6)], "time_to_live": 60}
            made = httpx.post(f"{other}/v1/flows/{flow}/items", json=body, headers=AUTH).raise_for_status()
            items.append(made.json()["id"])
        assert trio.node_of(flow, pg_db) == i
    crowds = [
        SimulatedCrowd(url, ADMIN_KEY, annotators=12, rate=20_000, seed=5 + i).start()
        for i, url in enumerate(trio.urls)
    ]
    try:
        statuses = httpx.post(
            f"{trio.urls[0]}/v1/items/wait", json={"item_ids": items, "timeout": 60}, headers=AUTH, timeout=70
        ).raise_for_status()
        assert [s["state"] for s in statuses.json()] == ["Completed"] * 6
        time.sleep(0.3)  # answers in flight land, and are refused
    finally:
        for crowd in crowds:
            crowd.stop()
    for i, item in enumerate(items):
        assert counted(trio.urls[i % 3], item) == 25
    assert sum(c.stats.votes for c in crowds) == 6 * 25
    votes = pg_db.query("SELECT task_id, annotator_id FROM votes")
    assert len(votes) == 6 * 25
    assert len({t for t, _ in votes}) == len(votes), "no task was answered twice"
    # Each process gave out its own tasks: their ids name it.
    assert len({str(t).split("_")[1] for t, _ in votes}) == 3


def test_sse_on_one_process_sees_votes_taken_by_another(trio: Trio) -> None:
    a, b, c = trio.urls
    flow = _flow_on(a, "watch", 30)
    item = (
        httpx.post(
            f"{a}/v1/flows/{flow}/items",
            json={"datapoints": [{"text": str(d)} for d in range(4)], "time_to_live": 60},
            headers=AUTH,
        )
        .raise_for_status()
        .json()["id"]
    )
    events: list[schemas.ItemEvent] = []
    with (
        SimulatedCrowd(c, ADMIN_KEY, annotators=6, rate=3000, seed=8),
        httpx.stream("GET", f"{b}/v1/items/{item}/events", headers=AUTH, timeout=30) as r,
    ):
        assert r.headers["content-type"].startswith("text/event-stream")
        parser = SSEParser()
        for line in r.iter_lines():
            message = parser.feed_line(line)
            if message is not None and message.event == "item":
                events.append(msgspec.json.decode(message.data, type=schemas.ItemEvent))
                if events[-1].state == "Completed":
                    break
    assert events[-1].response_count == 30
    rebuilt = np.array(events[0].counts)
    for event in events[1:]:
        for w, lo, tie in event.delta:
            rebuilt[w, lo] += 0.5 if tie else 1.0
            rebuilt[lo, w] += 0.5 if tie else 0.0
    matrix = httpx.get(f"{c}/v1/items/{item}/matrix", headers=AUTH).raise_for_status().json()
    assert np.array_equal(rebuilt, np.array(matrix["counts"]))
    # Resumable on yet another process: from a mid-stream id, exactly the votes after it.
    mid = events[len(events) // 2]
    with httpx.stream(
        "GET", f"{c}/v1/items/{item}/events", headers={**AUTH, "Last-Event-ID": str(mid.version)}, timeout=30
    ) as r:
        parser = SSEParser()
        resumed = [m for m in (parser.feed_line(line) for line in r.iter_lines()) if m and m.event == "item"]
    deltas = [msgspec.json.decode(m.data, type=schemas.ItemEvent) for m in resumed]
    assert sum(len(e.delta) for e in deltas) == 30 - mid.response_count


def test_a_task_is_shown_on_the_process_that_leased_it(trio: Trio) -> None:
    # The page says a task is on screen through whichever process it reaches: the request names the task, whose
    # id names its node, so it is forwarded there, like an answer.
    a, b, c = trio.urls
    body = {"name": "shown", "instruction": "Which?", "max_response_threshold": 10, "lease_seconds": 30}
    flow = httpx.post(f"{a}/v1/flows", json=body, headers=AUTH).raise_for_status().json()["id"]
    items = {"datapoints": [{"text": str(d)} for d in range(4)], "time_to_live": 60}
    httpx.post(f"{a}/v1/flows/{flow}/items", json=items, headers=AUTH).raise_for_status()
    tokens = [
        httpx.post(f"{a}/v1/annotators", json={"name": n}, headers=AUTH).raise_for_status().json()["token"]
        for n in ("Ada", "Bob")
    ]
    mine, theirs = ({"Authorization": f"Bearer {t}"} for t in tokens)
    wait_for(lambda: all(httpx.get(f"{u}/v1/me", headers=theirs).status_code == 200 for u in (b, c)), 10, "tokens")
    task = httpx.post(f"{b}/v1/tasks/next", json={"wait": 5}, headers=mine, timeout=10).raise_for_status().json()
    assert task["task_id"].startswith("task_") and task["flow_id"] == flow, "leased from the process serving it"
    wait_for(lambda: time.time() > task["server_time"] + 0.2, 5, "the clock to move on")  # so the lease moves
    shown = httpx.post(f"{c}/v1/tasks/{task['task_id']}/shown", headers=mine)
    assert shown.status_code == 200, shown.text
    reply = shown.json()
    assert reply["lease_expires_at"] == pytest.approx(reply["shown_at"] + 30, abs=1e-6)
    assert reply["lease_expires_at"] > task["lease_expires_at"]
    again = httpx.post(f"{b}/v1/tasks/{task['task_id']}/shown", headers=mine).json()
    assert (again["lease_expires_at"], again["shown_at"]) == (reply["lease_expires_at"], reply["shown_at"])
    assert httpx.post(f"{c}/v1/tasks/{task['task_id']}/shown", headers=theirs).status_code == 404
    answer = httpx.post(f"{c}/v1/tasks/{task['task_id']}/answer", json={"choice": "a"}, headers=mine)
    assert answer.status_code == 200 and answer.json()["status"] == "accepted"


class _Receiver(http.server.BaseHTTPRequestHandler):
    got: ClassVar[list[tuple[str, dict]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        type(self).got.append((self.headers["webhook-id"], body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_the_lifecycle_ends_each_item_once(trio: Trio, pg_db: PostgresDatabase) -> None:
    _Receiver.got = []
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        hook = {"url": f"http://127.0.0.1:{receiver.server_port}/hook", "events": ["item.completed"]}
        httpx.post(f"{trio.urls[2]}/v1/webhooks", json=hook, headers=AUTH).raise_for_status()
        items = []
        for i, url in enumerate(trio.urls):
            # Half end by their votes (4), half by their time to live (they would need 1,000), each on the
            # timers of the process that serves it.
            quick, long = _flow_on(url, f"votes{i}", 4), _flow_on(url, f"ttl{i}", 1000)
            for k in range(4):
                flow, ttl = (quick, 30) if k % 2 else (long, 1.5)
                body = {"datapoints": [{"text": f"{k}-{d}"} for d in range(4)], "time_to_live": ttl}
                items.append(httpx.post(f"{url}/v1/flows/{flow}/items", json=body, headers=AUTH).json()["id"])
        crowds = [
            SimulatedCrowd(url, ADMIN_KEY, annotators=4, rate=200, seed=i).start() for i, url in enumerate(trio.urls)
        ]
        try:
            final = httpx.post(
                f"{trio.urls[1]}/v1/items/wait", json={"item_ids": items, "timeout": 40}, headers=AUTH, timeout=50
            ).json()
        finally:
            for crowd in crowds:
                crowd.stop()
        assert all(s["state"] in ("Completed", "Incomplete") for s in final)
        assert {s["state"] for s in final} == {"Completed", "Incomplete"}
        wait_for(lambda: len(_Receiver.got) >= len(items), 15, "every item's webhook")
        time.sleep(1.0)  # a second delivery, were there one, would come now
        ended = [body["data"]["item"]["id"] for _, body in _Receiver.got]
        assert sorted(ended) == sorted(items), "each item ended once, and said so once"
        assert len({msg for msg, _ in _Receiver.got}) == len(items)
        rows = pg_db.query("SELECT count(*) FROM items WHERE final IS NOT NULL")
        assert rows[0][0] == len(items)
    finally:
        receiver.shutdown()


def test_kill_9_of_a_process_mid_load_keeps_every_acknowledged_vote(trio: Trio, pg_db: PostgresDatabase) -> None:
    victim = trio.nodes[1]
    item = make_item(victim.url)  # served by the process about to die
    survivors = [trio.urls[0], trio.urls[2]]
    seen: list[int] = []
    with AnswerLoad(trio.urls, ADMIN_KEY, annotators=9, seed=4) as load:
        for _ in range(4):
            time.sleep(0.25)
            seen.append(counted(survivors[0], item))
        victim.stop(kill=True)
        killed_at = time.monotonic()
        load.urls_alive(survivors)
        wait_for(lambda: any(t > killed_at for t in load.out.after.values()), 20, "votes after the kill")
        time.sleep(1.0)
    after = counted(survivors[1], item)
    assert after >= max(seen), "no count goes backwards across a kill"
    stored = [r[0] for r in pg_db.query("SELECT task_id FROM votes WHERE item_id = %s", (item,))]
    assert len(load.out.accepted) > 50
    # A survivor that forwarded an answer to the dying process cannot know whether it landed: it says 502 and
    # the load counts that answer as unknown, as it would a broken connection.
    assert_exact(load, stored, after, ambiguous_commits=True)
    assert len(pg_db.query("SELECT id FROM nodes")) == 2, "the dead process's row is gone"


def test_every_session_cut_at_once_is_no_death(trio: Trio, pg_db: PostgresDatabase) -> None:
    # As a database restart or failover would: every process loses every session, its lock included, at
    # the same moment. They reconnect and go on; none is taken for dead, none is fenced off.
    item = make_item(trio.urls[0])
    with AnswerLoad(trio.urls, ADMIN_KEY, annotators=6, seed=7) as load:
        for _ in range(3):
            time.sleep(0.8)
            assert pg_db.terminate_server_sessions() >= 9
        time.sleep(3.0)  # past the grace a death would need
        for url in trio.urls:
            wait_for(lambda url=url: _up(url), 10, "every process answering")
        cut_over = time.monotonic()
        wait_for(lambda: any(t > cut_over for t in load.out.after.values()), 10, "votes after the cuts")
    assert all(node.proc is not None and node.proc.poll() is None for node in trio.nodes), "no process exited"
    assert len(pg_db.query("SELECT id FROM nodes")) == 3
    stored = [r[0] for r in pg_db.query("SELECT task_id FROM votes WHERE item_id = %s", (item,))]
    assert_exact(load, stored, counted(trio.urls[1], item), ambiguous_commits=True)


def test_a_second_process_on_one_sqlite_database_is_refused(fresh_server: ServerProcess) -> None:
    second = ServerProcess(data_dir=fresh_server.data_dir)
    with pytest.raises(RuntimeError, match=r"already uses .*a SQLite database is served by one process"):
        second.start()


def _counted_or_moving(url: str, item: str) -> int:
    """The item's count; -1 while it moves between processes (a 503 that says: retry in a moment)."""
    try:
        return counted(url, item)
    except httpx.HTTPStatusError as exc:
        assert exc.response.status_code == 503 and exc.response.json()["code"] == "moved"
        return -1


def test_a_process_that_stops_hands_its_flows_to_the_others(trio: Trio, pg_db: PostgresDatabase) -> None:
    leaving = trio.nodes[0]
    item = make_item(leaving.url, max_votes=25)
    with SimulatedCrowd(trio.urls[1], ADMIN_KEY, annotators=3, rate=300, seed=2):
        wait_for(lambda: counted(trio.urls[2], item) >= 3, 20, "some votes")
        leaving.stop()  # a normal stop: its flows are handed over, not left to time out
        before = _counted_or_moving(trio.urls[1], item)
        wait_for(lambda: _counted_or_moving(trio.urls[1], item) >= 25, 30, "the item finished by the others")
    assert before < 25, "votes were counted after the hand-over"
    (flow_node,) = pg_db.query("SELECT node FROM flows")[0]
    assert flow_node in {r[0] for r in pg_db.query("SELECT id FROM nodes")}, "served by a live process"
    assert len(pg_db.query("SELECT id FROM nodes")) == 2
    status = httpx.get(f"{trio.urls[2]}/v1/items/{item}", headers=AUTH).json()
    assert status["state"] == "Completed" and status["response_count"] == 25


def test_the_sdk_sends_again_what_a_cluster_answers_moved(monkeypatch: pytest.MonkeyPatch) -> None:
    # The window in which a flow is between processes lasts under a second and cannot be hit on demand, so
    # the answers are played by a mock transport here; the 503s themselves are the server's (routing.MOVED).
    from flowlab.client import _core as core
    from flowlab.client._errors import Unavailable
    from flowlab.client._transport import SyncTransport
    from flowlab.server.routing import MOVED

    monkeypatch.setattr(core, "moved", lambda status, content, real=core.moved: real(status, content) and 0.01)
    moved = {"title": "Service Unavailable", "status": 503, "detail": MOVED, "code": "moved"}
    away = {**moved, "code": "store_unavailable"}
    answers = [httpx.Response(503, json=moved), httpx.Response(503, json=moved), httpx.Response(200, json={"ok": 1})]
    sent = []

    def play(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return answers.pop(0) if answers else httpx.Response(503, json=away)

    transport = SyncTransport("http://cluster", "key", 5.0, transport=httpx.MockTransport(play))
    assert transport.send(core.Call("GET", "/v1/flows/f")).json() == {"ok": 1}
    assert len(sent) == 3, "sent again until a process that serves it answered"
    with pytest.raises(Unavailable):  # a database outage is the caller's to retry, as before
        transport.send(core.Call("GET", "/v1/flows/f"))
    assert len(sent) == 4


# ------------------------------------------------------------------ `make cluster` (flowlab.devcluster)


def _free_run(n: int) -> int:
    """A port with the n - 1 ports after it free too: the balancer's, then its processes'."""
    for _ in range(50):
        base = free_port()
        if base + n < 65536 and all(cannot_listen("127.0.0.1", base + i) is None for i in range(n)):
            return base
    raise AssertionError("no run of free ports")


class DevCluster:
    """`python -m flowlab.devcluster` as `make cluster` runs it, with its console read as it is written."""

    def __init__(self, dsn: str, port: int, nodes: int = 2) -> None:
        self.args = ["--db", dsn, "--nodes", str(nodes), "--port", str(port)]
        self.url = f"http://127.0.0.1:{port}"
        self.lines: list[str] = []
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> DevCluster:
        self.lines = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flowlab.devcluster", *self.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        return self

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_line(self, text: str, timeout: float = 90) -> int:
        """The index of the first console line holding `text`."""
        found: list[int] = []

        def seen() -> bool:
            found[:] = [i for i, line in enumerate(self.lines) if text in line][:1]
            return bool(found) or (self.proc is not None and self.proc.poll() is not None and not found)

        wait_for(seen, timeout, text)
        assert found, "\n".join(self.lines)
        return found[0]

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(30)
        self.proc = None
        return code


def test_make_cluster_again_says_its_admin_key_and_its_links_name_the_balancer(pg_db: PostgresDatabase) -> None:
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed (apt-get install haproxy)")
    cluster = DevCluster(pg_db.dsn, _free_run(3)).start()
    try:
        at = cluster.wait_line("flowlab: admin key (saved in")
        key = cluster.lines[at + 1].strip()
        assert key.startswith("fl_key_")
        assert any(f"the cluster answers on {cluster.url}" in line for line in cluster.lines)
        # Listed as one server: a client with no URL finds the balancer and the key saved beside it.
        with flowlab.Client() as client:
            assert client.url == cluster.url and client.server.source == "registry"
            assert "`make cluster`" in client.server.reason
            link = client.annotators.create("through the balancer").join_url
        assert link.startswith(f"{cluster.url}/annotate#token="), link
        made = subprocess.run(
            [sys.executable, "-m", "flowlab", "annotators", "create", "--name", "from the cli"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert made.returncode == 0, made.stderr
        assert f"talking to {cluster.url}" in made.stderr
        assert made.stdout.strip().splitlines()[-1].strip().startswith(f"{cluster.url}/annotate#token=")
        assert cluster.stop() == 0
        assert running_servers() == [], "a stopped cluster leaves the registry"
        # The same database again: the key is the one made by the first run, and the console says it again.
        cluster.start()
        again = cluster.wait_line("flowlab: admin key (saved in")
        assert cluster.lines[again + 1].strip() == key
    finally:
        if cluster.proc is not None:
            cluster.stop()


def test_make_cluster_says_when_a_port_is_taken(pg_db: PostgresDatabase) -> None:
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed (apt-get install haproxy)")
    base = _free_run(3)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", base + 2))
        taken.listen()
        cluster = DevCluster(pg_db.dsn, base).start()
        assert cluster.proc is not None
        code = cluster.proc.wait(60)
        cluster.wait_line("the cluster needs ports")
    out = "\n".join(cluster.lines)
    assert code == 1 and f"cannot listen on 127.0.0.1:{base + 2}" in out, out
    assert "serving on" not in out and "node 0 on" not in out and "the cluster answers" not in out


def test_a_node_that_cannot_bind_says_why_on_the_console(tmp_path: Path) -> None:
    # The port taken after the cluster's own check: the node's reason comes from its log to the console.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        log = tmp_path / "node0.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "flowlab", "serve", "--port", str(port), "--data-dir", str(tmp_path)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        with pytest.raises(NodeFailed) as failed:
            _wait_up("node 0", f"http://127.0.0.1:{port}", proc, log, 0)
    assert "node 0 exited before it served" in str(failed.value)
    assert f"cannot listen on 127.0.0.1:{port}" in str(failed.value)
