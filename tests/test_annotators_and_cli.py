"""Annotator tokens, gold pairs, preheat, and the `flowlab` command line, against a real server."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from flowlab import Client, FlowItemState
from flowlab.cli import build_parser, cli_message, main
from flowlab.client._sse import SSEParser
from flowlab.crowd import SimulatedCrowd

from .conftest import ServerProcess


def cli(*args: str, server: ServerProcess, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLOWLAB_URL": server.url, "FLOWLAB_API_KEY": server.api_key}
    return subprocess.run(
        [sys.executable, "-m", "flowlab", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def test_cli_makes_keys_and_join_links(flowlab_server: ServerProcess) -> None:
    made = cli("keys", "create", "--name", "alice", server=flowlab_server)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1].strip()
    assert key.startswith("fl_key_")
    with Client(url=flowlab_server.url, api_key=key) as alice:
        assert alice.me().name == "alice" and alice.me().role == "researcher"
    joined = cli("annotators", "create", "--name", "bob", server=flowlab_server)
    assert joined.returncode == 0, joined.stderr
    link = joined.stdout.strip().splitlines()[-1].strip()
    assert link.startswith(f"{flowlab_server.url}/annotate#token=fl_ann_")
    token = link.split("#token=", 1)[1]
    me = httpx.get(f"{flowlab_server.url}/v1/me", headers={"Authorization": f"Bearer {token}"}).json()
    assert me == {"id": me["id"], "name": "bob", "role": "annotator"}
    listed = cli("annotators", "list", server=flowlab_server)
    assert "bob" in listed.stdout


def test_cli_reports_a_bad_key_clearly(flowlab_server: ServerProcess) -> None:
    env = {**os.environ, "FLOWLAB_URL": flowlab_server.url, "FLOWLAB_API_KEY": "fl_key_nope"}
    r = subprocess.run(
        [sys.executable, "-m", "flowlab", "annotators", "create", "--name", "x"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1 and "not valid" in r.stderr and "Traceback" not in r.stderr


def test_revoked_token_is_refused(client: Client, flowlab_server: ServerProcess) -> None:
    made = client.annotators.create("leaver")
    headers = {"Authorization": f"Bearer {made.token}"}
    assert httpx.get(f"{flowlab_server.url}/v1/me", headers=headers).status_code == 200
    client.annotators.revoke(made.id)
    r = httpx.post(f"{flowlab_server.url}/v1/tasks/next", json={}, headers=headers)
    assert r.status_code == 401 and "revoked" in r.json()["detail"]


def test_gold_pairs_are_mixed_in_and_agreement_recorded(client: Client, flowlab_server: ServerProcess) -> None:
    gold = [{"a": "clearly right", "b": "clearly wrong", "answer": "a"}, ("a worse answer", "a better answer", "b")]
    flow = client.flow.create_ranking_flow(
        name="gold", instruction="Which?", max_response_threshold=60, validation_pairs=gold, gold_rate=0.3
    )
    assert flow.config.validation_pair_count == 2
    item = flow.create_new_flow_batch(datapoints=[f"d{i}" for i in range(5)], time_to_live=60)
    with SimulatedCrowd(
        flowlab_server.url,
        flowlab_server.api_key,
        annotators=8,  # ten pairs each, never one twice: 80 votes' room for 60
        rate=6000,
        accuracy=1.0,
        spammer_fraction=0.5,
        seed=11,
        name="gold",
    ) as crowd:
        item.get_results(timeout=60)
    assert item.get_response_count() == 60, "gold answers are not votes"
    stats = {a.name: a for a in client.annotators.list() if a.name.startswith("gold-")}
    assert sum(a.gold_answered for a in stats.values()) > 5
    honest = [a for name, a in stats.items() if name in {p.name for p in crowd.profiles if not p.spammer}]
    spammers = [a for name, a in stats.items() if name in {p.name for p in crowd.profiles if p.spammer}]
    assert all(a.gold_agreement == 1.0 for a in honest if a.gold_answered)
    answered = sum(a.gold_answered for a in spammers)
    assert answered == 0 or sum(a.gold_correct for a in spammers) < answered


def test_preheat_wakes_idle_annotators_at_once(client: Client, flowlab_server: ServerProcess) -> None:
    token = client.annotators.create("idle").token
    got: list[tuple[str, float]] = []
    listening = threading.Event()

    def listen() -> None:
        parser = SSEParser()
        with httpx.stream(
            "GET", f"{flowlab_server.url}/v1/annotator/events", timeout=30, headers={"Authorization": f"Bearer {token}"}
        ) as r:
            for line in r.iter_lines():
                msg = parser.feed_line(line)
                if msg is not None and msg.event == "hello":
                    listening.set()
                if msg is not None and msg.event == "preheat":
                    got.append((msg.event, time.monotonic()))
                    return

    t = threading.Thread(target=listen)
    t.start()
    # The stream's hello says it listens; a preheat sent before that would never reach it.
    assert listening.wait(20), "the annotator's event stream opened"
    sent = time.monotonic()
    heated = client.flow.preheat()
    t.join(20)
    # Pushed, not found at a keep-alive (every 15 s): a few seconds of slack for a loaded machine.
    assert got and got[0][1] - sent < 5.0
    assert heated.annotators_notified >= 1
    # While hot, an idle annotator is told to poll at full cadence.
    r = httpx.post(f"{flowlab_server.url}/v1/tasks/next", json={}, headers={"Authorization": f"Bearer {token}"})
    if r.status_code == 204:
        assert float(r.headers["x-poll-interval"]) <= 0.1


def test_long_poll_returns_when_a_vote_lands(researcher: Client, flowlab_server: ServerProcess) -> None:
    # A researcher of its own: their annotator is handed this item's task, not one other tests left running.
    flow = researcher.flow.create_ranking_flow(name="poll", instruction="Which?", max_response_threshold=5)
    item = flow.create_new_flow_batch(datapoints=["a", "b"], time_to_live=60)
    token = researcher.annotators.create("voter").token
    ann = httpx.Client(base_url=flowlab_server.url, headers={"Authorization": f"Bearer {token}"})

    def vote_soon() -> None:
        time.sleep(0.4)
        task = ann.post("/v1/tasks/next", json={}).json()
        ann.post(f"/v1/tasks/{task['task_id']}/answer", json={"choice": "a"})

    threading.Thread(target=vote_soon).start()
    started = time.monotonic()
    status = httpx.get(
        f"{flowlab_server.url}/v1/items/{item.id}/wait",
        params={"since": item.last_status.version, "timeout": 20},
        headers={"Authorization": f"Bearer {researcher.api_key}"},
    ).json()
    waited = time.monotonic() - started
    assert status["response_count"] == 1 or status["leases_out"] == 1
    assert 0.2 < waited < 15, "it returned when the task went out, not at its 20 s timeout"
    item.stop()


@pytest.mark.timeout(120)
def test_demo_runs_end_to_end(flowlab_server: ServerProcess) -> None:
    r = cli("demo", "--batches", "1", "--ttl", "4", server=flowlab_server, timeout=90)
    assert r.returncode == 0, r.stderr
    assert "\x1b[" not in r.stdout, "no cursor codes when the output is not a terminal"
    assert "best: sample-" in r.stdout and "Completed" in r.stdout
    assert "win-loss matrix" in r.stdout
    # The winner's interval is on the Elo scale, like its score, and the demo says whether it is truly the best.
    best = re.search(r"Elo (\d+) \(95% interval (\d+)–(\d+)\)", r.stdout)
    assert best is not None, r.stdout
    assert int(best[2]) <= int(best[1]) <= int(best[3]) and int(best[2]) > 500
    assert "; right" in r.stdout or "truly best: sample-" in r.stdout
    # A batch stays open for the person the link is for, after the crowd's batches have ended.
    yours = re.search(r"Your turn: a batch \((item_\w+)\) waits", r.stdout)
    assert yours is not None and "/annotate#token=" in r.stdout
    flow_id = re.search(r"flow: +(flow_\w+)", r.stdout)
    assert flow_id is not None
    with Client(url=flowlab_server.url, api_key=flowlab_server.api_key) as client:
        item = client.flow.get_flow_by_id(flow_id[1]).get_flow_item(yours[1])
        status = item.get_progress()
        assert status.state == FlowItemState.PENDING and status.time_left > 500
        item.stop()
    demo = build_parser()._subparsers._group_actions[0].choices["demo"]  # type: ignore[union-attr]
    assert all(a.help for a in demo._actions), "every option of the demo says what it does"


def test_researchers_annotators_work_only_on_that_researchers_flows(
    client: Client, flowlab_server: ServerProcess
) -> None:
    alice_key = client.create_api_key("alice-scope").key
    with Client(url=flowlab_server.url, api_key=alice_key) as alice:
        theirs = alice.flow.create_ranking_flow(name="alice's", instruction="Which?", max_response_threshold=50)
        alice_item = theirs.create_new_flow_batch(datapoints=["a1", "a2"], time_to_live=60)
        admins = client.flow.create_ranking_flow(name="admin's", instruction="Which?", max_response_threshold=50)
        admin_item = admins.create_new_flow_batch(datapoints=["b1", "b2"], time_to_live=30)  # served first
        alice_ann = alice.annotators.create("alice's annotator").token
        admin_ann = client.annotators.create("pool annotator").token
        served: dict[str, set[str]] = {alice_ann: set(), admin_ann: set()}
        for token in served:
            http = httpx.Client(base_url=flowlab_server.url, headers={"Authorization": f"Bearer {token}"})
            # The pool is handed every researcher's work: items other tests left on this server may come first.
            for _ in range(500):
                r = http.post("/v1/tasks/next", json={})
                if r.status_code == 204:
                    break
                task = r.json()
                served[token].add(task["item_id"])
                http.post(f"/v1/tasks/{task['task_id']}/answer", json={"choice": "skip"})
                if admin_item.id in served[token]:
                    break
        assert served[alice_ann] == {alice_item.id}
        assert admin_item.id in served[admin_ann]
        assert [a.name for a in alice.annotators.list()] == ["alice's annotator"]
        alice_item.stop()
        admin_item.stop()


def test_revoking_ends_a_waiting_long_poll(client: Client, flowlab_server: ServerProcess) -> None:
    # The annotator of a researcher with no flows: other tests' items on this server cannot hand it a task.
    with Client(url=flowlab_server.url, api_key=client.create_api_key("nobody's flows").key) as researcher:
        made = researcher.annotators.create("waiting")
    result: dict[str, int] = {}

    def wait() -> None:
        r = httpx.post(
            f"{flowlab_server.url}/v1/tasks/next",
            json={"wait": 10},
            timeout=20,
            headers={"Authorization": f"Bearer {made.token}"},
        )
        result["status"] = r.status_code

    t = threading.Thread(target=wait)
    t.start()
    time.sleep(0.3)
    client.annotators.revoke(made.id)  # the admin may revoke any annotator
    client.flow.preheat()  # wakes every waiter, which then notices the revocation
    t.join(15)
    assert result["status"] == 401


def test_keys_are_listed_revoked_and_rotated(fresh_server: ServerProcess) -> None:
    admin = Client(url=fresh_server.url, api_key=fresh_server.api_key)
    alice = admin.keys.create("alice")
    with Client(url=fresh_server.url, api_key=alice.key) as as_alice:
        flow = as_alice.flow.create_ranking_flow("alice's", "?")
        assert [k.name for k in as_alice.keys.list()] == ["alice"], "a researcher sees their own key"
        with pytest.raises(Exception, match="Only the admin key can revoke"):
            as_alice.keys.revoke(alice.id)
        rotated = as_alice.keys.rotate(alice.id)  # a researcher may rotate their own
    assert rotated.id == alice.id and rotated.key != alice.key
    with Client(url=fresh_server.url, api_key=alice.key) as old, pytest.raises(Exception, match="not valid"):
        old.me()
    with Client(url=fresh_server.url, api_key=rotated.key) as new:
        assert new.flow.get_flow_by_id(flow.id).id == flow.id, "everything stays with the key"
    listed = cli("keys", "list", server=fresh_server)
    assert listed.returncode == 0 and "alice" in listed.stdout and "admin" in listed.stdout
    revoked = cli("keys", "revoke", alice.id, server=fresh_server)
    assert revoked.returncode == 0, revoked.stderr
    r = httpx.get(f"{fresh_server.url}/v1/me", headers={"Authorization": f"Bearer {rotated.key}"})
    assert r.status_code == 401
    assert next(k for k in admin.keys.list() if k.id == alice.id).revoked
    admin_id = next(k.id for k in admin.keys.list() if k.admin)
    with pytest.raises(Exception, match="cannot be revoked"):
        admin.keys.revoke(admin_id)
    new_admin = cli("keys", "rotate", admin_id, server=fresh_server)
    assert new_admin.returncode == 0, new_admin.stderr
    secret = new_admin.stdout.strip().splitlines()[-1].strip()
    old_admin = httpx.get(f"{fresh_server.url}/v1/me", headers={"Authorization": f"Bearer {fresh_server.api_key}"})
    assert old_admin.status_code == 401
    with Client(url=fresh_server.url, api_key=secret) as again:
        assert again.me().role == "admin"
    admin.close()


def test_a_mismatched_env_key_is_warned_about_at_start(fresh_server: ServerProcess) -> None:
    fresh_server.stop()
    fresh_server.api_key = "fl_key_not_this_databases"
    fresh_server.start()
    assert "FLOWLAB_API_KEY is not a key of this database" in fresh_server.log()


def test_client_commands_talk_to_the_running_serve_and_say_so(fresh_server: ServerProcess) -> None:
    """After `flowlab serve`, the next commands reach that server without FLOWLAB_URL, and every client
    command says on stderr which server it talks to."""
    env = {k: v for k, v in os.environ.items() if k != "FLOWLAB_URL"}
    env["FLOWLAB_API_KEY"] = fresh_server.api_key
    made = subprocess.run(
        [sys.executable, "-m", "flowlab", "annotators", "create", "--name", "after-serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    assert f"talking to {fresh_server.url} (the `flowlab serve` of {fresh_server.data_dir}" in made.stderr
    assert made.stdout.strip().splitlines()[-1].strip().startswith(f"{fresh_server.url}/annotate#token=")
    fresh_server.stop()
    from flowlab.client._servers import running_servers

    assert running_servers() == [], "a stopped serve is no longer listed"


def test_the_crowd_reports_its_rate_and_why_it_fell_short(fresh_server: ServerProcess) -> None:
    import signal

    # No work at all: the summary says the rate asked was not reached, and why.
    idle = cli("crowd", "--annotators", "3", "--rate", "600", "--duration", "6", server=fresh_server)
    assert idle.returncode == 0, idle.stderr
    assert "0 votes in" in idle.stdout and "the server had no work for it" in idle.stdout
    # Work, then SIGTERM: the crowd stops with its summary, as on Ctrl-C.
    client = fresh_server.client()
    flow = client.flow.create_ranking_flow("crowd", "Which?", max_response_threshold=100_000)
    item = flow.create_new_flow_batch([f"t{i}" for i in range(20)], data_type="text", time_to_live=300)
    env = {**os.environ, "FLOWLAB_URL": fresh_server.url, "FLOWLAB_API_KEY": fresh_server.api_key}
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowlab", "crowd", "--annotators", "8", "--rate", "6000"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while item.get_response_count() < 5 and time.monotonic() < deadline:  # it is voting
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    client.close()
    summary = re.search(
        r"flowlab crowd: ([\d,]+) votes in [\d.]+ s: ([\d,]+) votes/min \([\d,]+ votes/s\) of the 6,000 asked", out
    )
    assert summary and int(summary.group(1).replace(",", "")) > 0, out


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from _parsers(sub)


def test_every_option_of_every_command_says_what_it_does() -> None:
    bare = [
        f"{p.prog} {'/'.join(a.option_strings) or a.dest}"
        for p in _parsers(build_parser())
        for a in p._actions
        if not isinstance(a, argparse._HelpAction | argparse._SubParsersAction) and not a.help
    ]
    assert bare == []


def test_a_wrong_flag_shows_the_subcommands_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["webhooks", "add", "http://127.0.0.1:9/hook", "--evnts", "item.completed"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: flowlab webhooks add") and "--events EVENTS" in err
    assert "flowlab webhooks add: error: unrecognized arguments: --evnts" in err
    with pytest.raises(SystemExit):
        main(["keys", "create", "--name", "x", "--admin"])
    assert capsys.readouterr().err.startswith("usage: flowlab keys create")


def test_cli_errors_name_cli_commands_and_local_ones_no_http_status(
    flowlab_server: ServerProcess, tmp_path: Path
) -> None:
    missing = cli("projects", "create", str(tmp_path / "nope.jsonl"), "--instruction", "Which?", server=flowlab_server)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert "flowlab projects create: No dataset file at" in missing.stderr and "HTTP" not in missing.stderr
    with Client(url=flowlab_server.url, api_key=flowlab_server.api_key) as client:
        assert client.flow.find_flows("nope") == [], "nothing is made on the server for a file that is not there"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"datapoints": ["a", "b"]}\nnot json\n')
    broken = cli("projects", "create", str(bad), "--instruction", "Which?", server=flowlab_server)
    assert broken.returncode == 1 and "Line 2 of bad.jsonl is not JSON" in broken.stderr
    assert "HTTP" not in broken.stderr
    unknown = cli("projects", "status", "proj_nope", server=flowlab_server)
    assert unknown.returncode == 1 and "`flowlab projects list`" in unknown.stderr, unknown.stderr
    assert "client." not in unknown.stderr and "(HTTP 404)" in unknown.stderr, "the server's answers keep their status"
    no_flow = cli("webhooks", "add", "http://127.0.0.1:9/h", "--flow-id", "flow_nope", server=flowlab_server)
    assert no_flow.returncode == 1 and "client." not in no_flow.stderr, no_flow.stderr
    assert cli_message(Exception("list yours with client.flow.find_flows().")) == (
        "list yours with `flowlab flows list`."
    )


def test_projects_create_names_the_flow_and_project_after_the_file(
    flowlab_server: ServerProcess, tmp_path: Path
) -> None:
    data = tmp_path / "summaries-v2.jsonl"
    data.write_text("".join(f'{{"datapoints": ["a{i}", "b{i}"]}}\n' for i in range(3)))
    made = cli("projects", "create", str(data), "--instruction", "Which?", "--paused", server=flowlab_server)
    assert made.returncode == 0, made.stderr
    project_id = re.search(r"Project (proj_\w+) on flow (flow_\w+)", made.stdout)
    assert project_id is not None, made.stdout
    with Client(url=flowlab_server.url, api_key=flowlab_server.api_key) as client:
        project = client.projects.get(project_id[1])
        assert project.last_status.name == "summaries-v2"
        assert client.flow.get_flow_by_id(project_id[2]).name == "summaries-v2"
        project.delete()
    flows = cli("flows", "list", "--name", "summaries-v2", server=flowlab_server)
    assert flows.returncode == 0 and project_id[2] in flows.stdout


def test_webhooks_add_takes_the_option_names_of_python(flowlab_server: ServerProcess) -> None:
    with Client(url=flowlab_server.url, api_key=flowlab_server.api_key) as client:
        flow = client.flow.create_ranking_flow("hooked", "Which?")
        made = cli(
            "webhooks",
            "add",
            "http://127.0.0.1:9/hook",
            "--events",
            "item.completed,answer.created",
            "--flow-id",
            flow.id,
            server=flowlab_server,
        )
        assert made.returncode == 0, made.stderr
        assert f"item.completed, answer.created of flow {flow.id}" in made.stdout
        hook = next(h for h in client.webhooks.list() if h.flow_id == flow.id)
        assert sorted(hook.events) == ["answer.created", "item.completed"]
        client.webhooks.remove(hook.id)
        flow.delete()
    wrong = cli("webhooks", "add", "http://127.0.0.1:9/hook", "--events", "item.done", server=flowlab_server)
    assert wrong.returncode == 2 and "events are item.completed, answer.created" in wrong.stderr


def test_access_log_alone_logs_requests(tmp_path: Path) -> None:
    server = ServerProcess(data_dir=tmp_path, extra_args=["--access-log"])
    server.start()
    try:
        httpx.get(f"{server.url}/v1/health")
        deadline = time.monotonic() + 10
        while '"GET /v1/health HTTP/1.1" 200' not in server.log():
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.05)
    finally:
        server.stop()
