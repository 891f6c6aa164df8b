"""Chat flows: annotators talk with models served from Python, branch the conversation, and annotate it.

Each test that leases tasks has a server of its own: on the shared one, another test's crowd could take them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import msgspec
import pytest

import flowlab
from flowlab import FlowItemState, schemas
from flowlab.crowd import ChatScript, SimulatedCrowd
from flowlab.settings import NoShuffleSetting

from .conftest import ServerProcess, free_port

OFF_TOPIC = {"key": "off_topic", "type": "boolean", "label": "Off-topic"}


class Annotator:
    """An annotator speaking the HTTP protocol the page speaks."""

    def __init__(self, client: flowlab.Client, name: str) -> None:
        made = client.annotators.create(name)
        self.http = httpx.Client(base_url=client.url, headers={"Authorization": f"Bearer {made.token}"}, timeout=30)

    def lease(self) -> schemas.Task:
        r = self.http.post("/v1/tasks/next", json={"wait": 5})
        assert r.status_code == 200, r.text
        return msgspec.json.decode(r.content, type=schemas.Task)

    def generate(self, task: schemas.Task, messages: list[dict[str, str]], model: int = 0) -> list[dict[str, Any]]:
        """Every event of the streamed reply, and when each arrived."""
        events = []
        with self.http.stream(
            "POST", f"/v1/tasks/{task.task_id}/generate", json={"messages": messages, "model": model}
        ) as r:
            if r.status_code != 200:
                r.read()
                return [{"type": "refused", "status": r.status_code, **r.json()}]
            for line in r.iter_lines():
                if line:
                    events.append({**msgspec.json.decode(line), "at": time.monotonic()})
        return events

    def models(self, task: schemas.Task) -> list[bool]:
        """Whether each of the task's models can answer now, by position, as the page asks."""
        r = self.http.get(f"/v1/tasks/{task.task_id}/models")
        assert r.status_code == 200, r.text
        return [m["online"] for m in sorted(r.json(), key=lambda m: m["model"])]

    def submit(self, task: schemas.Task, answer: dict[str, Any]) -> dict[str, Any]:
        """The ack, or the problem (422) of a refused annotation, which keeps the lease for a corrected one."""
        r = self.http.post(f"/v1/tasks/{task.task_id}/answer", json={"choice": "submit", "chat": answer})
        assert r.status_code in (200, 422), r.text
        return r.json()  # type: ignore[no-any-return]


def storefront_v1(messages: list[dict[str, str]]) -> Iterator[str]:
    """Drifts into maths whenever numbers come up; streams word by word."""
    last = messages[-1]["content"]
    reply = "The square root of 144 is 12." if any(c.isdigit() for c in last) else "Your order ships tomorrow."
    for word in reply.split(" "):
        yield word + " "


def storefront_v2(messages: list[dict[str, str]]) -> str:
    return "I can help with orders and returns only."


def wait_attached(flow: flowlab.ChatFlow, *names: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if all(m.attached for m in flow.get_models() if m.name in names):
            return
        time.sleep(0.02)
    raise AssertionError(f"models {names} never attached: {flow.get_models()}")


def test_a_chat_flow_with_two_served_models_branches_and_annotates(fresh_server: ServerProcess) -> None:
    client = flowlab.Client(url=fresh_server.url, api_key=fresh_server.api_key)
    flow = client.flow.create_chat_flow(
        "storefront",
        "Try to make the bot talk about anything but the shop.",
        models=["v1", "v2"],
        max_turns=3,
        dimensions=[OFF_TOPIC, "helpfulness"],
        likert_scale=5,
        justification="required",
    )
    assert isinstance(flow, flowlab.ChatFlow) and flow.config.kind == "chat" and flow.models == ["v1", "v2"]
    assert flow.config.lease_seconds == 900
    with pytest.raises(flowlab.ValidationError, match="say which one"):
        flow.serve_model(storefront_v2)
    seen: list[list[dict[str, str]]] = []

    def v1(messages: list[dict[str, str]]) -> Iterator[str]:
        seen.append(messages)
        yield from storefront_v1(messages)

    greeting = {"role": "assistant", "content": "Hello! How can I help with your order?"}
    item = flow.create_new_flow_batch(
        [
            {
                "id": "replay",
                "messages": [{"role": "system", "content": "You are a shop bot."}, greeting],
                "guidance": "Steer it to maths.",
            },
        ],
        time_to_live=60,
    )
    assert isinstance(item, flowlab.ChatFlowItem)
    with flow.serve_model(v1, model="v1", workers=2) as h1, flow.serve_model(storefront_v2, model="v2") as h2:
        wait_attached(flow, "v1", "v2")
        deadline = time.monotonic() + 10  # each worker's first long poll opens on its own thread
        while {m.name: m.workers for m in flow.get_models()} != {"v1": 2, "v2": 1} and time.monotonic() < deadline:
            time.sleep(0.02)
        assert {m.name: m.workers for m in flow.get_models()} == {"v1": 2, "v2": 1}
        ann = Annotator(client, "chatter")
        task = ann.lease()
        assert task.kind == "chat" and task.chat is not None
        assert task.chat.messages == [schemas.ChatMessage(**greeting)], "the system prompt is the model's alone"
        assert task.chat.guidance == "Steer it to maths." and task.chat.models == 2
        assert "v1" not in msgspec.json.encode(task).decode(), "the page never learns the models' names"
        first = [greeting, {"role": "user", "content": "What is 12 times 12?"}]
        # The page shows models in a shuffled order: find which position is v1.
        events = ann.generate(task, first, model=0)
        done = events[-1]
        assert done["type"] == "done", events
        v1_at = 0 if done["text"].startswith("The square") else 1
        if v1_at == 1:
            events = ann.generate(task, first, model=1)
            done = events[-1]
        chunks = [e["text"] for e in events if e["type"] == "chunk"]
        assert len(chunks) == 7 and "".join(chunks) == done["text"] == "The square root of 144 is 12. "
        assert seen[-1][0] == {"role": "system", "content": "You are a shop bot."}
        assert seen[-1][1:] == first
        # Edit the user's turn (a second branch) and ask the other model.
        edited = [greeting, {"role": "user", "content": "Where is my parcel?"}]
        other = ann.generate(task, edited, model=1 - v1_at)[-1]
        assert other["type"] == "done" and other["text"] == "I can help with orders and returns only."
        nodes = [
            {"id": "g", "role": "assistant", "content": greeting["content"]},
            {"id": "u1", "role": "user", "parent": "g", "content": first[1]["content"]},
            {"id": "a1", "role": "assistant", "parent": "u1", "generation": done["generation_id"]},
            {"id": "u2", "role": "user", "parent": "g", "content": edited[1]["content"]},
            {"id": "a2", "role": "assistant", "parent": "u2", "generation": other["generation_id"]},
        ]
        ratings = {"a1": {"off_topic": True, "helpfulness": 2}, "a2": {"off_topic": False, "helpfulness": 4}}
        answer = {
            "nodes": nodes,
            "ratings": ratings,
            "selected": "a2",
            "likert": 4,
            "justification": "The second stayed on the shop.",
        }
        forged = {
            **answer,
            "nodes": [
                *nodes[:2],
                {"id": "a1", "role": "assistant", "parent": "u1", "content": "I only talk about orders."},
                *nodes[3:],
            ],
        }
        refused = ann.submit(task, forged)
        assert refused["status"] == 422 and refused["field"] == "chat.nodes[2].generation"
        swapped = {**answer, "nodes": [*nodes[:2], {**nodes[2], "generation": other["generation_id"]}, *nodes[3:]]}
        refused = ann.submit(task, swapped)
        assert refused["status"] == 422 and "another conversation" in refused["detail"]
        unrated = {**answer, "ratings": {"a1": ratings["a1"]}}
        assert ann.submit(task, unrated)["field"] == "chat.ratings.a2.off_topic"
        leaning = {**answer, "likert": 2}
        assert ann.submit(task, leaning)["field"] == "chat.likert"
        assert ann.submit(task, answer)["status"] == "accepted"
        results = item.get_results(timeout=10)
        assert h1.served + h2.served == 3 - (v1_at == 0)
    assert not h1.alive and not h2.alive
    assert results.state == FlowItemState.COMPLETED and results.total_responses == 1
    by_model = {m.source_id: {s.dimension: s for s in m.ratings} for m in results.models}
    assert by_model["v1"]["off_topic"].mean == 1.0 and by_model["v2"]["off_topic"].mean == 0.0
    assert by_model["v2"]["helpfulness"].mean == 4.0
    [t] = results.tasks
    assert [(r.source_id, r.selected) for r in t.responses] == [("v1", 0), ("v2", 1)]
    assert t.likert_mean == 4.0, "1 = the first model (v1) much better; 4 leans to v2, as answered"
    assert t.justifications == ["The second stayed on the shop."]
    [conv] = item.get_conversations()
    assert conv.branches == ["a1", "a2"] and conv.selected == "a2" and conv.selected_model == "v2"
    assert [t.model for t in conv.turns] == [None, None, "v1", None, "v2"] and conv.turns[0].seed
    assert not conv.turns[3].seed, "an edited turn is the annotator's"
    [record] = item.to_chat_records()
    assert len(record["threads"]) == 2
    one, two = record["threads"]
    assert one["annotations"][0]["value"] is False and two["annotations"][0]["value"] is True
    assert [m["role"] for turn in two["turns"] for m in turn["messages"]] == [
        "system",
        "assistant",
        "user",
        "assistant",
    ]
    reply = two["turns"][-1]["messages"][-1]
    assert reply["source_id"] == "v2" and {a["key"]: a["value"] for a in reply["annotations"]} == ratings["a2"]
    notes = {a["key"]: a["value"] for a in record["annotations"]}
    assert notes["selected_model_id"] == "v2" and notes["likert_value"] == 4
    assert notes["selected_thread_id"] == two["id"] and record["metadata"]["guidance"] == "Steer it to maths."


def test_model_failures_reach_the_annotator_with_a_reason(fresh_server: ServerProcess) -> None:
    client = flowlab.Client(url=fresh_server.url, api_key=fresh_server.api_key)
    flow = client.flow.create_chat_flow(
        "failures", "Chat.", dimensions=[OFF_TOPIC], reply_timeout=1.0, max_reply_chars=50, lease_seconds=3
    )
    flow.create_new_flow_batch([{"id": "empty"}], time_to_live=60)
    ann = Annotator(client, "patient")
    task = ann.lease()
    assert task.chat is not None and task.chat.messages == []
    ask = [{"role": "user", "content": "hello"}]
    t0 = time.monotonic()
    [refused] = ann.generate(task, ask)
    assert refused["status"] == 503 and refused["code"] == "model_detached" and "offline" in refused["detail"]
    assert time.monotonic() - t0 < 2, "a detached model fails fast"

    behaviour: dict[str, Any] = {}

    def model(messages: list[dict[str, str]]) -> Any:
        return behaviour["reply"](messages)

    def slow(messages: list[dict[str, str]]) -> Iterator[str]:
        for _ in range(5):
            time.sleep(0.3)  # each chunk well within reply_timeout (a loaded machine delays them); 1.5 s in all
            yield "."

    def silent(messages: list[dict[str, str]]) -> str:
        time.sleep(1.5)
        return "too late"

    def broken(messages: list[dict[str, str]]) -> str:
        raise RuntimeError("CUDA out of memory")

    handle = flow.serve_model(model)
    wait_attached(flow, "model")
    behaviour["reply"] = broken
    error = ann.generate(task, ask)[-1]
    assert error["type"] == "error" and error["code"] == "model_error" and "CUDA out of memory" in error["detail"]
    assert error["retry"] is True
    behaviour["reply"] = lambda m: 42
    error = ann.generate(task, ask)[-1]
    assert error["code"] == "model_garbage" and "not text" in error["detail"]
    behaviour["reply"] = lambda m: "x" * 51
    error = ann.generate(task, ask)[-1]
    assert error["code"] == "model_garbage" and "50 characters" in error["detail"]
    behaviour["reply"] = silent
    error = ann.generate(task, ask)[-1]
    assert error["code"] == "model_timeout" and re.search(r"within 1(\.0)? s", error["detail"]), error
    time.sleep(1.0)  # the only worker is still writing the abandoned reply; a new one would wait for it
    # Waiting for the model does not use up the lease: 1.5 s of writing against a 3 s lease, twice over.
    behaviour["reply"] = slow
    before = task.lease_expires_at
    replies = [ann.generate(task, ask)[-1], ann.generate(task, ask)[-1]]
    assert all(r["type"] == "done" and r["text"] == "....." for r in replies), replies
    assert replies[-1]["lease_expires_at"] >= before + 2.5
    assert handle.failed == 3 and any("CUDA" in e for e in handle.errors)
    nodes = [
        {"id": "u", "role": "user", "content": "hello"},
        {"id": "a", "role": "assistant", "parent": "u", "generation": replies[0]["generation_id"]},
    ]
    ack = ann.submit(task, {"nodes": nodes, "ratings": {"a": {"off_topic": False}}})
    assert ack["status"] == "accepted", "the lease outlived its 3 s because the model's time was not counted"
    handle.stop()
    assert not [m for m in flow.get_models() if m.attached]
    flow.create_new_flow_batch([{"id": "again"}], time_to_live=60)
    task = ann.lease()
    t0 = time.monotonic()
    assert ann.generate(task, ask)[0]["code"] == "model_detached", "stopped is detached at once"
    assert time.monotonic() - t0 < 2


def test_chat_batches_are_checked(client: flowlab.Client) -> None:
    flow = client.flow.create_chat_flow("checks", "Chat.")
    with pytest.raises(flowlab.ValidationError, match="needs text"):
        flow.create_new_flow_batch([{"id": "x", "messages": [{"role": "user", "content": " "}]}])
    with pytest.raises(flowlab.ValidationError, match="id, messages and guidance"):
        flow.create_new_flow_batch([{"id": "x", "prompt": "hi"}])
    with pytest.raises(flowlab.ValidationError, match="unique"):
        client.flow.create_chat_flow("dup", "Chat.", models=["a", "a"])
    ranking = client.flow.create_ranking_flow("not chat", "Which?")
    r = httpx.post(
        f"{client.url}/v1/flows/{ranking.id}/items",
        json={"datapoints": [{"messages": []}, {"messages": []}]},
        headers={"Authorization": f"Bearer {client.api_key}"},
    )
    assert r.status_code == 422 and "create_chat_flow" in r.json()["detail"]
    r = httpx.get(
        f"{client.url}/v1/flows/{flow.id}/models/nope/next",
        params={"worker": "w", "wait": 0},
        headers={"Authorization": f"Bearer {client.api_key}"},
    )
    assert r.status_code == 404 and "no model 'nope'" in r.json()["detail"]


class OpenAIServer:
    """A small server speaking OpenAI's chat-completions protocol, streamed (server-sent events) or not, as
    vLLM, TGI, llama.cpp's server and Ollama do; it answers by rules, no weights. `fail` holds statuses to
    answer the next requests with; `word_delay` slows the stream; `kill()` drops it mid-reply (the listening
    socket and every open connection) and `revive()` brings it back on the same port."""

    def __init__(self, word_delay: float = 0.0) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail: list[int] = []
        self.word_delay = word_delay
        self.streaming = threading.Event()  # a streamed reply has begun
        self.open: set[Any] = set()  # the connections being answered
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                outer.open.add(self.connection)

            def finish(self) -> None:
                outer.open.discard(self.connection)
                with contextlib.suppress(OSError):
                    super().finish()

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
                last = body["messages"][-1]["content"]
                if outer.fail:
                    status = outer.fail.pop(0)
                    self._json(status, {"error": {"message": f"status {status} as asked"}})
                elif self.path != "/v1/chat/completions" or body["model"] == "missing":
                    self._json(404, {"error": {"message": f"model {body['model']!r} not found"}})
                elif "plain" in last:  # a server that ignores "stream"
                    self._json(200, {"choices": [{"message": {"role": "assistant", "content": "Plain answer."}}]})
                elif "garbage" in last:
                    self._events([{"choices": [{"delta": {"content": {"not": "text"}}}]}])
                else:
                    words = ["The ", "answer ", "is ", f"{body['model']}."]
                    self._events(
                        [{"choices": [{"delta": {"role": "assistant"}}]}]
                        + [{"choices": [{"delta": {"content": w}}]} for w in words]
                        + [{"choices": [{"delta": {}, "finish_reason": "stop"}]}]
                    )

            def _json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _events(self, events: list[dict[str, Any]]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                for e in events:
                    self.wfile.write(f"data: {json.dumps(e)}\n\n".encode())
                    self.wfile.flush()
                    outer.streaming.set()
                    if outer.word_delay:
                        time.sleep(outer.word_delay)
                self.wfile.write(b"data: [DONE]\n\n")

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a connection cut by kill()

        self._make = lambda port: Server(("127.0.0.1", port), Handler)
        self.server = self._make(0)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def kill(self) -> None:
        """Die as a crashed process would: nothing listens, and replies on their way stop mid-stream."""
        self.server.shutdown()
        self.server.server_close()
        for conn in list(self.open):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def revive(self) -> None:
        self.server = self._make(self.port)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_model_behind_an_openai_compatible_endpoint(fresh_server: ServerProcess) -> None:
    client = fresh_server.client()
    endpoint = OpenAIServer()
    dead = f"http://127.0.0.1:{free_port()}/v1"
    try:
        flow = client.flow.create_chat_flow(
            "endpoint",
            "Chat.",
            models=[
                {"name": "local", "url": endpoint.url, "model": "tiny-llama", "temperature": 0.2, "max_tokens": 64},
                {"name": "missing", "url": endpoint.url},
                {"name": "down", "url": dead},
            ],
            dimensions=[OFF_TOPIC],
        )
        with pytest.raises(flowlab.ValidationError, match="behind its endpoint"):
            flow.serve_model(storefront_v2, model="local")
        flow.create_new_flow_batch([{"id": "e"}], time_to_live=60)
        ann = Annotator(client, "endpoint-user")
        task = ann.lease()
        ask = [{"role": "user", "content": "hello"}]
        replies = [ann.generate(task, ask, model=p)[-1] for p in range(3)]
        done = [r for r in replies if r["type"] == "done"]
        assert [r["text"] for r in done] == ["The answer is tiny-llama."]
        codes = sorted(r.get("code") for r in replies if r["type"] == "error")
        assert codes == ["model_detached", "model_error"], replies
        missing = next(r for r in replies if r.get("code") == "model_error")
        assert "404" in missing["detail"] and "not found" in missing["detail"]
        call = next(r for r in endpoint.requests if r["model"] == "tiny-llama")
        assert call["stream"] is True and call["temperature"] == 0.2 and call["max_tokens"] == 64
        assert call["messages"] == ask and call["path"] == "/v1/chat/completions"
        local = next(p for p in range(3) if ann.generate(task, ask, model=p)[-1].get("type") == "done")
        plain = ann.generate(task, [{"role": "user", "content": "plain please"}], model=local)[-1]
        assert plain["type"] == "done" and plain["text"] == "Plain answer."
        junk = ann.generate(task, [{"role": "user", "content": "garbage please"}], model=local)[-1]
        assert junk["code"] == "model_garbage" and "not text" in junk["detail"]
        nodes = [
            {"id": "u", "role": "user", "content": "hello"},
            {"id": "a", "role": "assistant", "parent": "u", "generation": done[0]["generation_id"]},
        ]
        assert ann.submit(task, {"nodes": nodes, "ratings": {"a": {"off_topic": False}}})["status"] == "accepted"
        [conv] = client.flow.get_flow_by_id(flow.id).get_flow_items()[0].get_conversations()
        assert conv.turns[1].model == "local" and conv.turns[1].content == "The answer is tiny-llama."
    finally:
        endpoint.close()


def test_the_crowd_chats_edits_and_annotates(fresh_server: ServerProcess) -> None:
    client = flowlab.Client(url=fresh_server.url, api_key=fresh_server.api_key)
    flow = client.flow.create_chat_flow(
        "crowd chat",
        "Derail the bot.",
        models=["drifts", "fixed"],
        max_turns=2,
        dimensions=[OFF_TOPIC],
        likert_scale=5,
        justification="required",
        justification_min_chars=10,
        max_response_threshold=2,
    )

    def drifts(messages: list[dict[str, str]]) -> Iterator[str]:
        yield from storefront_v1(messages)

    script = ChatScript(
        turns=["Where is my order?", "Also, what is 12 squared?"],
        edits=["What is the square root of 144?"],
        judge=lambda reply, dims: {"off_topic": "square" in reply},
    )
    item = flow.create_new_flow_batch([{"id": f"c{i}"} for i in range(4)], time_to_live=60)
    with (
        flow.serve_model(drifts, model="drifts"),
        flow.serve_model(storefront_v2, model="fixed"),
        SimulatedCrowd(
            fresh_server.url, fresh_server.api_key, annotators=4, rate=6000, accuracy=1.0, seed=5, chat=script
        ) as crowd,
    ):
        results = item.get_results(timeout=30)
    assert results.state == FlowItemState.COMPLETED and results.total_responses == 8
    assert crowd.stats.replies == 8 * 4, "two branches of two turns a conversation"
    conversations = item.get_conversations()
    assert all(len(c.branches) == 2 for c in conversations)
    by_model = {m.source_id: {s.dimension: s for s in m.ratings}["off_topic"] for m in results.models}
    assert by_model["drifts"].n == by_model["fixed"].n == 16
    assert by_model["drifts"].mean > 0.5 and by_model["fixed"].mean == 0.0
    chosen = [c.selected_model for c in conversations]
    assert chosen.count("fixed") == 8, "the branch that stayed on topic is chosen"


def test_a_batch_project_of_chat_tasks_delivers_its_records(fresh_server: ServerProcess, tmp_path: Any) -> None:
    client = flowlab.Client(url=fresh_server.url, api_key=fresh_server.api_key)
    flow = client.flow.create_chat_flow("chat project", "Chat.", dimensions=[OFF_TOPIC], max_turns=1)
    rows = [
        {
            "id": f"r{i}",
            "messages": [{"role": "assistant", "content": "Welcome to the shop!"}],
            "guidance": "Ask.",
            "channel": "web",
        }
        for i in range(3)
    ]
    data = tmp_path / "chats.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    script = ChatScript(turns=["What is 2 plus 2?"], judge=lambda reply, dims: {"off_topic": "square" in reply})
    with (
        flow.serve_model(storefront_v1),
        SimulatedCrowd(fresh_server.url, fresh_server.api_key, annotators=2, seed=3, chat=script),
    ):
        project = client.projects.create(flow, data, name="chats")
        project.wait(timeout=30)
    out = project.deliverable()
    assert set(out) == {"results", "records", "conversations"}
    assert [r["task_id"] for r in out["results"]] == ["r0", "r1", "r2"]
    assert len(out["records"]) == 3 and all(len(r["threads"]) == 1 for r in out["records"])
    assert {c["task_key"] for c in out["conversations"]} == {"r0", "r1", "r2"}
    assert out["records"][0]["metadata"]["guidance"] == "Ask."
    assert project.to_dataset()["conversations"].num_rows == 3


def test_the_async_client_makes_and_serves_chat_flows(fresh_server: ServerProcess) -> None:
    async def main() -> str:
        async with flowlab.AsyncClient(url=fresh_server.url, api_key=fresh_server.api_key) as client:
            flow = await client.flow.create_chat_flow("async chat", "Chat.", dimensions=[OFF_TOPIC])
            assert isinstance(flow, flowlab.AsyncChatFlow)
            item = await flow.create_new_flow_batch([{"id": "a"}], time_to_live=60)
            assert isinstance(item, flowlab.AsyncChatFlowItem)
            again = await client.flow.get_flow_by_id(flow.id)
            assert isinstance(again, flowlab.AsyncChatFlow) and again.config.chat is not None
            return flow.id

    flow_id = asyncio.run(main())
    sync = flowlab.Client(url=fresh_server.url, api_key=fresh_server.api_key)
    flow = sync.flow.get_flow_by_id(flow_id)
    assert isinstance(flow, flowlab.ChatFlow)
    with flow.serve_model(storefront_v2):
        wait_attached(flow, "model")
        ann = Annotator(sync, "async-user")
        task = ann.lease()
        done = ann.generate(task, [{"role": "user", "content": "hi"}])[-1]
        nodes = [
            {"id": "u", "role": "user", "content": "hi"},
            {"id": "a", "role": "assistant", "parent": "u", "generation": done["generation_id"]},
        ]
        assert ann.submit(task, {"nodes": nodes, "ratings": {"a": {"off_topic": False}}})["status"] == "accepted"

    async def read() -> tuple[list[schemas.Conversation], list[dict[str, Any]]]:
        async with flowlab.AsyncClient(url=fresh_server.url, api_key=fresh_server.api_key) as client:
            [mine] = await (await client.flow.get_flow_by_id(flow_id)).get_flow_items()
            return await mine.get_conversations(), await mine.to_chat_records()

    conversations, records = asyncio.run(read())
    assert conversations[0].turns[1].content == "I can help with orders and returns only."
    assert records[0]["threads"][0]["turns"][0]["messages"][1]["source_id"] == "model"


def test_a_conversation_that_ends_with_a_user_turn_is_answered_first_by_the_crowd(
    fresh_server: ServerProcess,
) -> None:
    client = fresh_server.client()
    flow = client.flow.create_chat_flow(
        "the customer spoke last", "Help.", models=["a", "b"], max_turns=2, dimensions=[OFF_TOPIC], likert_scale=5
    )
    late = {"role": "user", "content": "My parcel is late. What is 12 times 12?"}
    item = flow.create_new_flow_batch([{"id": f"u{i}", "messages": [late]} for i in range(3)], time_to_live=60)
    script = ChatScript(turns=["Thanks."], edits=["Never mind."], judge=lambda reply, dims: {"off_topic": False})
    with (
        flow.serve_model(storefront_v1, model="a"),
        flow.serve_model(storefront_v2, model="b"),
        SimulatedCrowd(
            fresh_server.url, fresh_server.api_key, annotators=2, accuracy=1.0, seed=11, chat=script
        ) as crowd,
    ):
        results = item.get_results(timeout=20)
    assert results.state == FlowItemState.COMPLETED and results.total_responses == 3, crowd.stats
    assert crowd.stats.rejected == 0 and crowd.stats.skipped == 0, crowd.stats.error_causes
    for conv in item.get_conversations():
        seed, *rest = conv.turns
        assert seed.seed and seed.role == "user" and seed.content == late["content"]
        openers = [t for t in rest if t.parent == seed.id]
        assert [t.role for t in openers] == ["assistant", "assistant"], "each branch opens with a model's reply"
        assert {t.model for t in openers} == {"a", "b"} and all(t.ratings == {"off_topic": False} for t in openers)
        assert len(conv.branches) == 2 and all(t.role == "assistant" for t in conv.turns if t.id in conv.branches)


def test_a_malformed_endpoint_url_is_refused_when_the_flow_is_made(client: flowlab.Client) -> None:
    for url in ["http://127.0.0.1:8000/v1\n", "http://[::1/v1", "http://127.0.0.1:99999/v1", "http:///v1"]:
        with pytest.raises(flowlab.ValidationError) as refused:
            client.flow.create_chat_flow("bad url", "Chat.", models=["served", {"name": "remote", "url": url}])
        assert refused.value.field == "chat.models[1].url", url
        assert "OpenAI-compatible" in str(refused.value) and "Correct it" in str(refused.value), url
    ok = client.flow.create_chat_flow("good url", "Chat.", models=[{"name": "v6", "url": "http://[::1]:8000/v1"}])
    assert ok.config.chat is not None and ok.config.chat.models[0].url == "http://[::1]:8000/v1"


def test_a_stored_flow_with_a_malformed_url_fails_its_replies_at_once(fresh_server: ServerProcess) -> None:
    """A flow made before its url was checked (or by hand in the database) still gets a prompt answer."""
    client = fresh_server.client()
    endpoint = OpenAIServer()
    try:
        flow = client.flow.create_chat_flow(
            "stored", "Chat.", models=[{"name": "m", "url": endpoint.url}], reply_timeout=30
        )
        flow.create_new_flow_batch([{"id": "s"}], time_to_live=120)
    finally:
        endpoint.close()
    fresh_server.stop()
    db = sqlite3.connect(fresh_server.data_dir / "flowlab.sqlite3")
    with db:
        db.execute("UPDATE flows SET config = replace(config, ?, ?)", (endpoint.url, "http://[::1/v1"))
        db.execute("UPDATE items SET body = replace(body, ?, ?)", (endpoint.url, "http://[::1/v1"))  # its copy
    db.close()
    fresh_server.start()
    ann = Annotator(client, "prompt")
    task = ann.lease()
    t0 = time.monotonic()
    error = ann.generate(task, [{"role": "user", "content": "hello"}])[-1]
    assert error["type"] == "error" and error["code"] == "model_error", error
    assert "InvalidURL" in error["detail"] and error["retry"] is False
    assert time.monotonic() - t0 < 5, "said at once, not after the flow's 30 s reply_timeout"
    [status] = client.flow.get_flow_by_id(flow.id).get_models()
    assert status.endpoint and not status.attached and "InvalidURL" in (status.last_error or "")


def test_endpoint_models_say_when_they_last_answered_and_which_failures_are_worth_a_retry(
    fresh_server: ServerProcess,
) -> None:
    client = fresh_server.client()
    endpoint = OpenAIServer()
    dead = f"http://127.0.0.1:{free_port()}/v1"
    try:
        flow = client.flow.create_chat_flow(
            "endpoint status",
            "Chat.",
            models=[
                {"name": "local", "url": endpoint.url},
                {"name": "missing", "url": endpoint.url},
                {"name": "down", "url": dead},
            ],
            dimensions=[OFF_TOPIC],
            settings=[NoShuffleSetting()],  # positions 0, 1, 2 are the models in this order
        )
        flow.create_new_flow_batch([{"id": "e"}], time_to_live=60)
        before = {m.name: m for m in flow.get_models()}
        assert all(m.endpoint and not m.attached and m.workers == 0 and m.answered_at is None for m in before.values())
        ann = Annotator(client, "status-reader")
        task = ann.lease()
        assert ann.models(task) == [True, True, True], "an endpoint nobody called yet is taken to be there"
        ask = [{"role": "user", "content": "hello"}]
        t0 = time.time()
        assert ann.generate(task, ask, model=0)[-1]["type"] == "done"
        local = {m.name: m for m in flow.get_models()}["local"]
        assert local.attached and local.answered_at is not None and local.answered_at >= t0 - 1
        assert local.last_error is None

        def failure(status: int) -> dict[str, Any]:
            endpoint.fail = [status]
            error = ann.generate(task, ask, model=0)[-1]
            assert error["type"] == "error" and error["code"] == "model_error" and str(status) in error["detail"]
            return error

        assert failure(500)["retry"] is True
        local = {m.name: m for m in flow.get_models()}["local"]
        assert not local.attached and "500" in (local.last_error or "")
        assert failure(503)["retry"] is True
        assert failure(408)["retry"] is True and failure(429)["retry"] is True
        refused = failure(400)
        assert refused["retry"] is False and "Retrying will not help" in refused["detail"]
        assert failure(401)["retry"] is False
        assert ann.generate(task, ask, model=0)[-1]["type"] == "done"
        assert {m.name: m for m in flow.get_models()}["local"].attached, "answering again clears the failure"
        unknown = ann.generate(task, ask, model=1)[-1]
        assert unknown["code"] == "model_error" and "404" in unknown["detail"] and unknown["retry"] is False
        offline = ann.generate(task, ask, model=2)[-1]
        assert offline["code"] == "model_detached" and offline["retry"] is True
        assert ann.models(task) == [True, True, False]
        after = {m.name: m for m in flow.get_models()}
        assert not after["down"].attached and "cannot be reached" in (after["down"].last_error or "")
        assert not after["missing"].attached and "404" in (after["missing"].last_error or "")
    finally:
        endpoint.close()


MODEL_PROCESS = """
import sys, time
import flowlab

url, key, flow_id = sys.argv[1:4]
flow = flowlab.Client(url=url, api_key=key).flow.get_flow_by_id(flow_id)

def generate(messages):
    if "slowly" in messages[-1]["content"]:
        print("writing", flush=True)
        time.sleep(120)
    return "Back again."

with flow.serve_model(generate):
    print("serving", flush=True)
    time.sleep(600)
"""


class ModelProcess:
    """A model served from a process of its own, which the test can kill as a crash would."""

    def __init__(self, server: ServerProcess, flow_id: str) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", MODEL_PROCESS, server.url, server.api_key, flow_id],
            stdout=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def expect(self, line: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            with contextlib.suppress(queue.Empty):
                if self.lines.get(timeout=left) == line:
                    return
        raise AssertionError(f"the model process never said {line!r}")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def test_a_served_model_that_dies_mid_reply_is_reported_at_once_and_comes_back(fresh_server: ServerProcess) -> None:
    client = fresh_server.client()
    flow = client.flow.create_chat_flow("crash", "Chat.", dimensions=[OFF_TOPIC], reply_timeout=30)
    flow.create_new_flow_batch([{"id": "c"}], time_to_live=120)
    model = ModelProcess(fresh_server, flow.id)
    try:
        model.expect("serving")
        wait_attached(flow, "model")
        ann = Annotator(client, "witness")
        task = ann.lease()
        events: list[dict[str, Any]] = []
        asking = threading.Thread(
            target=lambda: events.extend(ann.generate(task, [{"role": "user", "content": "answer slowly"}]))
        )
        asking.start()
        model.expect("writing")
        [writing] = flow.get_models()
        assert writing.attached and writing.workers == 1, "a worker writing a reply is there"
        model.kill()
        killed = time.monotonic()
        asking.join(15)
        [error] = events
        assert error["code"] == "model_detached" and "while writing" in error["detail"], error
        assert error["at"] - killed < 6, "told within seconds, not after the flow's 30 s reply_timeout"
        [gone] = flow.get_models()
        assert not gone.attached and gone.workers == 0 and ann.models(task) == [False]
        [refused] = ann.generate(task, [{"role": "user", "content": "hello"}])
        assert refused["status"] == 503 and refused["code"] == "model_detached"
        model = ModelProcess(fresh_server, flow.id)
        model.expect("serving")
        wait_attached(flow, "model")
        assert ann.models(task) == [True]
        done = ann.generate(task, [{"role": "user", "content": "hello"}])[-1]
        assert done["type"] == "done" and done["text"] == "Back again."
        nodes = [
            {"id": "u", "role": "user", "content": "hello"},
            {"id": "a", "role": "assistant", "parent": "u", "generation": done["generation_id"]},
        ]
        assert ann.submit(task, {"nodes": nodes, "ratings": {"a": {"off_topic": False}}})["status"] == "accepted"
    finally:
        model.kill()


def test_an_endpoint_that_dies_mid_reply_and_comes_back_the_same_annotators_finish(
    fresh_server: ServerProcess,
) -> None:
    """The crowd hands back a task whose model failed for longer than its patience; once the endpoint is back,
    the same two people finish every conversation (each task needs both of them)."""
    client = fresh_server.client()
    endpoint = OpenAIServer(word_delay=0.05)
    try:
        flow = client.flow.create_chat_flow(
            "outage",
            "Chat.",
            models=[{"name": "local", "url": endpoint.url}],
            max_turns=2,
            dimensions=[OFF_TOPIC],
            justification="off",
            max_response_threshold=2,
            reply_timeout=5,
        )
        item = flow.create_new_flow_batch([{"id": "o1"}, {"id": "o2"}], time_to_live=60)
        script = ChatScript(turns=["hello", "and then?"], patience=0.5)
        with SimulatedCrowd(fresh_server.url, fresh_server.api_key, annotators=2, seed=7, chat=script) as crowd:
            assert endpoint.streaming.wait(10), "nobody asked the model for a reply"
            endpoint.kill()  # mid-reply: its stream stops, and nothing listens any more
            deadline = time.monotonic() + 10
            while crowd.stats.skipped < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert crowd.stats.skipped >= 1, "a task whose model failed is handed back"
            endpoint.revive()
            results = item.get_results(timeout=20, partial=True)
        assert results.state == FlowItemState.COMPLETED and results.total_responses == 4, crowd.stats
        assert crowd.stats.by_annotator == {"sim-000": 2, "sim-001": 2}
        conversations = item.get_conversations()
        assert len({c.annotator_id for c in conversations}) == 2
        assert all(t.content for c in conversations for t in c.turns), "no failed reply was stored"
    finally:
        endpoint.close()
