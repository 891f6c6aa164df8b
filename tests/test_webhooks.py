"""Webhooks against a real server and a receiver in the test: Standard Webhooks signatures, retries with
backoff, the delivery log, events filtered by flow, deliveries that survive a restart, and the CLI."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from flowlab import Client, verify_webhook
from flowlab.crowd import SimulatedCrowd
from flowlab.signing import sign_webhook

from .conftest import ServerProcess, free_port, wait_for
from .test_annotators_and_cli import cli


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def event(self) -> dict:  # type: ignore[type-arg]
        return json.loads(self.body)


@dataclass
class Receiver:
    """An HTTP endpoint that records every delivery and answers with the status `answer` gives it."""

    port: int = field(default_factory=free_port)
    answer: Callable[[int], int] = lambda n: 200
    got: list[Received] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                n = len(receiver.got)
                receiver.got.append(Received({k.lower(): v for k, v in self.headers.items()}, body, time.time()))
                status = receiver.answer(n)
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"no" if status >= 300 else b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def wait_for(self, n: int, timeout: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.got) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.got) >= n, f"{len(self.got)} deliveries arrived, {n} expected"
        return self.got


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.start()
    yield r
    r.stop()


@pytest.fixture
def quick_retry_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server that retries a failed delivery after 0.2, 0.3 and 0.4 s."""
    server = ServerProcess(data_dir=tmp_path / "data", extra_args=["--webhook-retry", "0.2,0.3,0.4"])
    server.data_dir.mkdir()
    server.start()
    yield server
    server.stop()


def _deliveries(client: Client, hook_id: str, until: Callable[[list], bool], timeout: float = 20.0) -> list:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while True:
        log = client.webhooks.deliveries(hook_id)
        if until(log) or time.monotonic() > deadline:
            return log
        time.sleep(0.05)


def test_signature_checks_refuse_tampering_old_timestamps_and_other_secrets() -> None:
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"type":"item.completed"}'
    now = 1_700_000_000
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(now), "webhook-signature": ""}
    headers["webhook-signature"] = sign_webhook(secret, "msg_1", now, body)
    assert verify_webhook(secret, headers, body, now=now + 10)
    assert not verify_webhook(secret, headers, body + b" ", now=now), "a changed body must fail"
    assert not verify_webhook(secret, {**headers, "webhook-id": "msg_2"}, body, now=now), "the id is signed"
    assert not verify_webhook(secret, headers, body, now=now + 301), "older than the tolerance"
    other = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"
    assert not verify_webhook(other, headers, body, now=now)
    # Several signatures (as during a secret rotation): any one valid is enough.
    rotated = {
        **headers,
        "webhook-signature": f"{sign_webhook(other, 'msg_1', now, body)} {headers['webhook-signature']}",
    }
    assert verify_webhook(secret, rotated, body, now=now)
    assert not verify_webhook(secret, {"webhook-id": "msg_1"}, body), "missing headers"


def test_item_completed_is_signed_retried_and_logged(quick_retry_server: ServerProcess, receiver: Receiver) -> None:
    receiver.answer = lambda n: 503 if n < 2 else 204  # fails twice, then takes it
    with quick_retry_server.client() as client:
        hook = client.webhooks.add(receiver.url, events=["item.completed"], description="results")
        assert hook.secret.startswith("whsec_") and hook.events == ["item.completed"]
        assert [h.id for h in client.webhooks.list()] == [hook.id]
        assert not hasattr(client.webhooks.list()[0], "secret"), "the secret is shown once"
        flow = client.flow.create_ranking_flow(name="hooked", instruction="Which is better?")
        item = flow.create_new_flow_batch(datapoints=["a", "b", "c"], time_to_live=60)
        item.stop()
        got = receiver.wait_for(3)
        log = _deliveries(client, hook.id, lambda d: d and d[0].status == "delivered")
    ids = {g.headers["webhook-id"] for g in got}
    assert len(ids) == 1, "every retry of one delivery carries the same webhook-id"
    key = base64.b64decode(hook.secret.removeprefix("whsec_"))
    for g in got:
        assert verify_webhook(hook.secret, g.headers, g.body), g.headers
        assert g.headers["content-type"] == "application/json"
        # The scheme computed here from its definition, not with flowlab's own signing code.
        signed = f"{g.headers['webhook-id']}.{g.headers['webhook-timestamp']}.".encode() + g.body
        mac = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        assert g.headers["webhook-signature"] == f"v1,{mac}"
    event = got[-1].event
    assert event["type"] == "item.completed"
    assert event["data"]["item"]["id"] == item.id and event["data"]["flow_id"] == flow.id
    assert event["data"]["item"]["state"] in ("Stopped", "Completed")
    assert event["data"]["results"] == f"/v1/items/{item.id}/results"
    # Backoff: the waits between attempts follow the schedule (0.2 s, then 0.3 s), never shorter.
    gaps = [b.at - a.at for a, b in itertools.pairwise(got)]
    assert gaps[0] >= 0.19 and gaps[1] >= 0.29, gaps
    (d,) = log
    assert d.status == "delivered" and d.attempts == 3 and d.response_status == 204 and d.last_error is None
    assert d.msg_id in ids and d.payload["type"] == "item.completed"


def test_a_delivery_that_keeps_failing_is_marked_failed_with_the_reason(
    quick_retry_server: ServerProcess, receiver: Receiver
) -> None:
    receiver.answer = lambda n: 500
    with quick_retry_server.client() as client:
        hook = client.webhooks.add(receiver.url)
        sent = client.webhooks.test(hook.id)
        assert sent.status == "pending" and sent.event == "webhook.test"
        log = _deliveries(client, hook.id, lambda d: d and d[0].status != "pending")
    (d,) = log
    assert d.status == "failed" and d.attempts == 4, "the first attempt and the three retries"
    assert d.response_status == 500 and d.last_error.startswith("HTTP 500")
    assert len(receiver.got) == 4


def test_answers_are_pushed_for_the_chosen_flow_only(fresh_server: ServerProcess, receiver: Receiver) -> None:
    with fresh_server.client() as client:
        watched = client.flow.create_ranking_flow(name="watched", instruction="Which?", max_response_threshold=12)
        other = client.flow.create_ranking_flow(name="other", instruction="Which?", max_response_threshold=12)
        hook = client.webhooks.add(receiver.url, events=["answer.created", "item.completed"], flow_id=watched.id)
        items = [f.create_new_flow_batch(datapoints=["x", "y", "z"], time_to_live=60) for f in (watched, other)]
        with SimulatedCrowd(fresh_server.url, fresh_server.api_key, annotators=5, rate=3000, seed=4, name="hook"):
            for item in items:
                item.get_results(timeout=60)
        votes = items[0].get_votes()
        got = receiver.wait_for(len(votes) + 1)
        time.sleep(0.3)  # nothing more may come
    events = [g.event for g in receiver.got]
    answers = [e for e in events if e["type"] == "answer.created"]
    assert len(answers) == len(votes) == 12, "one event per counted answer, none for the other flow"
    assert {e["data"]["item_id"] for e in answers} == {items[0].id}
    assert {e["data"]["task_id"] for e in answers} == set(votes["task_id"])
    assert [e["type"] for e in events].count("item.completed") == 1
    assert all(verify_webhook(hook.secret, g.headers, g.body) for g in got)
    with fresh_server.client() as client:
        everything = client.webhooks.add(receiver.url)
        client.flow.get_flow_by_id(watched.id).delete()
        assert [h.id for h in client.webhooks.list()] == [everything.id], "a flow's own endpoints go with it"


def test_a_pending_delivery_survives_a_restart(tmp_path: Path) -> None:
    receiver = Receiver()  # not listening yet: every attempt fails to connect
    server = ServerProcess(data_dir=tmp_path / "data", extra_args=["--webhook-retry", ",".join(["0.3"] * 200)])
    server.data_dir.mkdir()
    server.start()
    try:
        with server.client() as client:
            hook = client.webhooks.add(receiver.url)
            sent = client.webhooks.test(hook.id)
            log = _deliveries(client, hook.id, lambda d: d[0].attempts >= 2)
            assert log[0].status == "pending" and "Connect" in (log[0].last_error or "")
        server.restart()
        receiver.start()
        got = receiver.wait_for(1)
        with server.client() as client:
            log = _deliveries(client, hook.id, lambda d: d[0].status == "delivered")
        assert got[0].headers["webhook-id"] == sent.msg_id
        assert verify_webhook(hook.secret, got[0].headers, got[0].body)
        assert log[0].status == "delivered" and log[0].attempts >= 3
    finally:
        receiver.stop()
        server.stop()


def test_bad_endpoints_are_refused_with_what_to_do(client: Client, flowlab_server: ServerProcess) -> None:
    for body, field_name in (
        ({"url": "ftp://example.org/hook"}, "url"),
        ({"url": "https://example.org/hook", "events": ["item.done"]}, "events"),
        ({"url": "https://example.org/hook", "events": []}, "events"),
    ):
        r = httpx.post(
            f"{flowlab_server.url}/v1/webhooks",
            json=body,
            headers={"Authorization": f"Bearer {flowlab_server.api_key}"},
        )
        assert r.status_code == 422, r.text
        assert r.json()["field"] == field_name and r.json()["detail"]
    r = httpx.post(
        f"{flowlab_server.url}/v1/webhooks",
        json={"url": "https://example.org/hook", "flow_id": "flow_not_mine"},
        headers={"Authorization": f"Bearer {flowlab_server.api_key}"},
    )
    assert r.status_code == 404 and "find_flows" in r.json()["detail"]
    r = httpx.get(
        f"{flowlab_server.url}/v1/webhooks/wh_nope/deliveries",
        headers={"Authorization": f"Bearer {flowlab_server.api_key}"},
    )
    assert r.status_code == 404 and "flowlab webhooks list" in r.json()["detail"]


def test_cli_adds_lists_tests_and_removes_webhooks(fresh_server: ServerProcess, receiver: Receiver) -> None:
    made = cli("webhooks", "add", receiver.url, "--event", "item.completed", server=fresh_server)
    assert made.returncode == 0, made.stderr
    secret = made.stdout.split()[-1]
    assert secret.startswith("whsec_")
    hook_id = made.stdout.split()[1].rstrip(":")
    listed = cli("webhooks", "list", server=fresh_server)
    assert hook_id in listed.stdout and receiver.url in listed.stdout
    assert cli("webhooks", "test", hook_id, server=fresh_server).returncode == 0
    (got,) = receiver.wait_for(1)
    assert got.event["type"] == "webhook.test" and verify_webhook(secret, got.headers, got.body)
    with fresh_server.client() as client:  # the receiver has it; the log says so once the server heard the 2xx
        logged = lambda: [d.status for d in client.webhooks.deliveries(hook_id)] == ["delivered"]  # noqa: E731
        wait_for(logged, 20.0, "the delivery logged")
    log = cli("webhooks", "list", "--deliveries", "3", server=fresh_server)
    assert "webhook.test" in log.stdout and "delivered" in log.stdout
    assert cli("webhooks", "remove", hook_id, server=fresh_server).returncode == 0
    assert hook_id not in cli("webhooks", "list", server=fresh_server).stdout
    gone = cli("webhooks", "remove", hook_id, server=fresh_server)
    assert gone.returncode == 1 and "flowlab webhooks list" in gone.stderr


def test_webhooks_on_postgresql_and_from_the_async_client(pg_dsn: str, tmp_path: Path, receiver: Receiver) -> None:
    import asyncio

    from flowlab import AsyncClient

    receiver.answer = lambda n: 500 if n == 0 else 200
    server = ServerProcess(data_dir=tmp_path, extra_args=["--db", pg_dsn, "--webhook-retry", "0.2"])
    server.start()
    try:

        async def run() -> tuple[str, str, list]:  # type: ignore[type-arg]
            async with AsyncClient(url=server.url, api_key=server.api_key) as client:
                hook = await client.webhooks.add(receiver.url, events=["item.completed"])
                flow = await client.flow.create_ranking_flow(name="pg hooks", instruction="Which?")
                item = await flow.create_new_flow_batch(datapoints=["a", "b"], time_to_live=60)
                await item.stop()
                await asyncio.to_thread(receiver.wait_for, 2)
                for _ in range(100):
                    log = await client.webhooks.deliveries(hook.id)
                    if log[0].status == "delivered":
                        break
                    await asyncio.sleep(0.05)
                await client.webhooks.remove(hook.id)
                assert await client.webhooks.list() == []
                return hook.secret, item.id, log

        secret, item_id, log = asyncio.run(run())
    finally:
        server.stop()
    assert [g.event["data"]["item"]["id"] for g in receiver.got] == [item_id, item_id]
    assert all(verify_webhook(secret, g.headers, g.body) for g in receiver.got)
    assert log[0].status == "delivered" and log[0].attempts == 2 and log[0].last_error is None
