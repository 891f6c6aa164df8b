"""Every kind of task reads back the same wherever its item is: ended but still in memory, after it left memory,
and after a restart. Status, detail, results, answers, the win-loss matrix (or the same refusal), the kind's
records and a batch project's deliverable are compared field by field.

Each case is an item of one batch project, answered by the simulated crowd on a server of its own whose ended
items stay in memory for a few seconds (`--retain-ended`)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

import flowlab
from flowlab.crowd import ChatScript, SimulatedCrowd

from .conftest import ServerProcess, wait_for

pytestmark = pytest.mark.slow  # over half a minute each: `pytest -m 'not slow'` skips it

RETAIN = 5.0  # seconds an ended item stays in memory: long enough to read it there, short enough to wait out


@dataclass
class Case:
    kind: str
    answers: str  # /v1/items/{id}/<answers>
    make_flow: Callable[[flowlab.Client], Any]
    rows: list[dict[str, Any]]
    records: Callable[[Any], Any]  # the kind's own records of an item, through the SDK
    serve: Callable[[Any], contextlib.AbstractContextManager[Any]] = lambda flow: contextlib.nullcontext()
    chat: ChatScript | None = None
    matrix: bool = False  # its items have a win-loss matrix (else /matrix is the same 404 everywhere)


def _reply(messages: list[dict[str, str]]) -> str:
    return f"Reply to: {messages[-1]['content'][:40]}"


@contextlib.contextmanager
def _two_models(flow: Any) -> Iterator[None]:
    with flow.serve_model(_reply, model="m1"), flow.serve_model(lambda m: "A second opinion.", model="m2"):
        yield


RATING = {"key": "helpful", "type": "scale", "min": 1, "max": 5, "label": "Helpful"}
CASES = [
    Case(
        "pairwise",
        "votes",
        lambda c: c.flow.create_ranking_flow("rb pairs", "Which is better?", max_response_threshold=6),
        [{"id": "t1", "datapoints": [f"answer {i}" for i in range(4)]}],
        lambda item: (item.to_preference_pairs(), item.to_rlhf_task()),
        matrix=True,
    ),
    Case(
        "classify",
        "labels",
        lambda c: c.flow.create_classify_flow("rb labels", "Which animal?", ["cat", "dog"], 2, 2),
        [{"id": f"a{i}", "datapoint": f"animal {i}"} for i in range(4)],
        lambda item: item.get_labels().to_dict("records"),
    ),
    Case(
        "rlhf",
        "annotations",
        lambda c: c.flow.create_rlhf_flow("rb rlhf", "Rate.", dimensions=[RATING], max_response_threshold=2),
        [
            {
                "id": f"p{i}",
                "prompt": f"question {i}",
                "responses": [{"source_id": "x", "content": "yes"}, {"source_id": "y", "content": "no"}],
            }
            for i in range(3)
        ],
        lambda item: (item.to_rlhf_records(), item.to_preference_pairs(), item.to_sft_rows(), item.to_kto_rows()),
    ),
    Case(
        "chat",
        "conversations",
        lambda c: c.flow.create_chat_flow(
            "rb chat", "Chat.", models=["m1", "m2"], dimensions=[RATING], max_turns=1, max_response_threshold=2
        ),
        [{"id": f"c{i}", "messages": [{"role": "assistant", "content": "Hello!"}]} for i in range(3)],
        lambda item: item.to_chat_records(),
        serve=_two_models,
        chat=ChatScript(turns=["Where is my order?"], judge=lambda reply, dims: {"helpful": 4}),
    ),
    Case(
        "listwise",
        "rankings",
        lambda c: c.flow.create_listwise_flow("rb listwise", "Order them, best first.", k=3, max_response_threshold=6),
        [{"id": "l1", "prompt": "Which reply helps?", "datapoints": [f"reply {i}" for i in range(5)]}],
        lambda item: (item.get_win_loss_matrix().to_dict(), item.get_results().ranking),
        matrix=True,
    ),
    Case(
        "write",
        "demonstrations",
        lambda c: c.flow.create_write_flow("rb write", "Answer the question.", max_response_threshold=2),
        [{"id": f"w{i}", "prompt": f"question {i}", "guidance": "One sentence."} for i in range(3)],
        lambda item: (item.to_rows(), item.to_sft_rows(), item.to_rlhf_records()),
    ),
]


def _read(http: httpx.Client, item_id: str, answers: str) -> dict[str, Any]:
    """Everything the API says of an item, minus the clock reading every reply carries."""
    out: dict[str, Any] = {}
    for name in ("", "/detail", "/results", f"/{answers}", "/matrix"):
        r = http.get(f"/v1/items/{item_id}{name}")
        body = r.json()
        if isinstance(body, dict):
            body.pop("server_time", None)
            if isinstance(body.get("status"), dict):
                body["status"].pop("server_time", None)
        out[name or "/status"] = (r.status_code, body)
    return out


def _live_items(server: ServerProcess) -> int:
    return int(httpx.get(f"{server.url}/v1/health").json()["live_items"])


@pytest.mark.parametrize("case", CASES, ids=[c.kind for c in CASES])
def test_an_ended_item_reads_back_the_same_from_memory_from_the_database_and_after_a_restart(
    tmp_path: Any, case: Case
) -> None:
    server = ServerProcess(data_dir=tmp_path / "data", extra_args=["--retain-ended", str(RETAIN)])
    server.data_dir.mkdir()
    server.start()
    try:
        client = server.client()
        flow = case.make_flow(client)
        assert flow.config.kind == case.kind
        with (
            case.serve(flow),
            SimulatedCrowd(server.url, server.api_key, annotators=4, seed=11, chat=case.chat),
        ):
            project = client.projects.create(flow, case.rows, name=f"readback {case.kind}")
            project.wait(timeout=60)
        (item,) = flow.get_flow_items()
        http = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.api_key}"}, timeout=30)

        def everything() -> tuple[dict[str, Any], Any, Any]:
            return _read(http, item.id, case.answers), case.records(item), project.deliverable()

        in_memory = everything()
        # Still in memory after all the reads, so it was in memory during them (it leaves once, for good).
        assert _live_items(server) == 1, "the ended item left memory before it could be read there"
        wait_for(lambda: _live_items(server) == 0, RETAIN + 20, "the ended item to leave memory")
        from_database = everything()
        server.stop()
        server.start()
        assert _live_items(server) == 0
        after_restart = everything()

        reads = in_memory[0]
        assert reads["/status"][1]["state"] == "Completed"
        assert reads["/results"][0] == 200 and reads["/results"][1]["state"] == "Completed"
        assert reads[f"/{case.answers}"][0] == 200 and len(reads[f"/{case.answers}"][1]) > 0
        assert reads["/matrix"][0] == (200 if case.matrix else 404)
        for name, (code, body) in reads.items():
            assert from_database[0][name] == (code, body), f"{name} differs once the item left memory"
            assert after_restart[0][name] == (code, body), f"{name} differs after a restart"
        assert in_memory[1] == from_database[1] == after_restart[1], "the kind's records differ"
        assert in_memory[2] == from_database[2] == after_restart[2], "the deliverable differs"
        # Every format has rows, but KTO rows of a ranking flow come from "both good / both bad" answers, which only
        # an absolute flow takes: a plain flow's are empty by design.
        empty = {name for name, rows in in_memory[2].items() if not rows}
        assert empty <= ({"kto"} if not flow.config.absolute else set()), f"formats without rows: {empty}"
        log = server.log()
        assert "Traceback" not in log and " 500 " not in log, log[-3000:]
    finally:
        server.stop()
