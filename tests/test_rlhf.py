"""RLHF flows (seed 001) end to end: a real server, the simulated crowd and only the SDK; the form's checks
and the kind's lifecycle in process, with a fake clock."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

import flowlab
from flowlab import FlowItemState, RlhfFlowItemResult, schemas
from flowlab.crowd import SimulatedCrowd
from flowlab.server.clock import FakeClock
from flowlab.server.errors import Invalid

from .conftest import ServerProcess
from .test_history import _service, _settle
from .test_lifecycle import RESEARCHER, annotator


def tasks(n: int, *, prefix: str = "t", three: bool = False) -> list[dict[str, Any]]:
    """Tasks whose response from `strong` is truly better than the one from `weak` (and `middling`)."""
    out = []
    for i in range(n):
        responses = [
            {
                "source_id": "strong",
                "content": f"A careful, correct answer to {i}.",
                "private_metadata": {"true_score": 1.5},
            },
            {"source_id": "weak", "content": f"dunno {i}", "private_metadata": {"true_score": -1.5}},
        ]
        if three:
            responses.append({"source_id": "middling", "content": f"Maybe {i}?", "private_metadata": {"true_score": 0}})
        out.append({"id": f"{prefix}{i}", "prompt": f"Question {i}: explain it.", "responses": responses})
    return out


def test_an_rlhf_flow_end_to_end(flowlab_server: ServerProcess) -> None:
    client = flowlab.Client(url=flowlab_server.url, api_key=flowlab_server.api_key)
    flow = client.flow.create_rlhf_flow(
        "rlhf e2e",
        "Which response is better?",
        dimensions=[
            "helpfulness",
            {"key": "safe", "type": "boolean", "label": "Safe to show"},
            {"key": "length", "type": "category", "options": ["too short", "right", "too long"]},
            {"key": "factuality", "min": 1, "max": 7, "allow_na": True},
        ],
        rewrite="optional",
        likert_scale=7,
        justification="required",
        max_response_threshold=4,
    )
    assert isinstance(flow, flowlab.RlhfFlow) and flow.config.kind == "rlhf" and flow.config.rlhf is not None
    assert [d.key for d in flow.config.rlhf.dimensions] == ["helpfulness", "safe", "length", "factuality"]
    assert flow.config.lease_seconds == 600, "annotating takes minutes"
    item = flow.create_new_flow_batch(tasks(6) + tasks(2, prefix="three-", three=True), time_to_live=60)
    assert isinstance(item, flowlab.RlhfFlowItem) and item.get_status() in ("Pending", "Running")
    partial_seen = []
    with SimulatedCrowd(flowlab_server.url, flowlab_server.api_key, annotators=8, rate=4000, accuracy=0.9, seed=21):
        deadline = time.monotonic() + 30
        while not item.get_progress().is_terminal and time.monotonic() < deadline:
            live = item.get_results(timeout=0, partial=True)
            partial_seen.append(live.total_responses)
            time.sleep(0.05)
        results = item.get_results(timeout=30)
    assert isinstance(results, RlhfFlowItemResult) and results.state == FlowItemState.COMPLETED
    assert results.total_responses == 32 == item.get_response_count()
    assert partial_seen == sorted(partial_seen), "live aggregation only grows"
    strong = next(m for m in results.models if m.source_id == "strong")
    weak = next(m for m in results.models if m.source_id == "weak")
    assert strong.tasks == weak.tasks == 8
    assert strong.selected_share is not None and strong.selected_share > 0.7, "the crowd prefers the better model"
    by_dim = {s.dimension: s for s in strong.ratings}
    assert set(by_dim) == {"helpfulness", "safe", "length", "factuality"}
    assert by_dim["helpfulness"].mean > next(s.mean for s in weak.ratings if s.dimension == "helpfulness")
    assert list(by_dim["length"].distribution) == ["too short", "right", "too long"]
    assert by_dim["length"].mean is None, "a category has a distribution, not a mean"
    assert list(by_dim["factuality"].distribution) == [str(v) for v in range(1, 8)]
    for t in results.tasks:
        assert t.annotations == 4 and len(t.justifications) == 4
        assert sum(r.selected for r in t.responses) == 4
        for r in t.responses:
            for s in r.ratings:
                assert sum(s.distribution.values()) + s.not_applicable == s.n + s.not_applicable == 4
                if s.n >= 2 and s.ci_low is not None:
                    assert s.ci_low <= s.mean <= s.ci_high
        if len(t.responses) == 2:
            assert sum(t.likert_distribution.values()) == 4 and t.likert_mean is not None
            assert t.likert_mean < 4, "oriented to the given order: strong (first) is better"
        else:
            assert t.likert_distribution == {} and t.likert_mean is None, "no strength with three responses"
    assert set(results.agreement) == {"helpfulness", "safe", "length", "factuality"}
    assert results.agreement["helpfulness"] is not None and results.agreement["helpfulness"] > 0.3
    frame = results.to_dataframe()
    assert set(frame["source_id"]) == {"strong", "weak", "middling"} and len(frame) == (6 * 2 + 2 * 3) * 4

    annotations = item.get_annotations()
    assert len(annotations) == 32 and len({(a.annotator_id, a.datapoint) for a in annotations}) == 32, (
        "nobody annotates a task twice"
    )
    records = item.to_rlhf_records()
    assert len(records) == 32
    rec = records[0]
    turn = rec["threads"][0]["turns"][-1]
    roles = [m["role"] for m in turn["messages"]]
    assert roles[0] == "user" and set(roles[1:]) == {"assistant"}
    assistant = turn["messages"][1]
    keys = [a["key"] for a in assistant["annotations"]]
    assert keys[:4] == ["helpfulness", "safe", "length", "factuality"]
    assert {a["key"] for a in turn["annotations"]} == {"selected_model_id", "likert_value", "justification"}
    assert rec["contributor"]["name"].startswith("sim-")
    rewritten = [
        m
        for r in records
        for m in r["threads"][0]["turns"][-1]["messages"]
        if any(a["key"] == "rewrite" for a in m["annotations"])
    ]
    assert rewritten, "some annotators rewrote the response they chose"

    datasets = pytest.importorskip("datasets")
    pairs = item.to_preference_pairs()
    assert len(pairs) == 6 * 4 + 2 * 4 * 2, "one row per rejected response"
    assert all(0.0 <= p["margin"] <= 1.0 for p in pairs)
    for rows in (pairs, item.to_sft_rows(), item.to_kto_rows()):
        assert rows and datasets.Dataset.from_list(rows).num_rows == len(rows)
    with pytest.raises(ValueError, match="only available for ranking"):
        item.get_win_loss_matrix()
    again = client.flow.get_flow_by_id(flow.id)
    assert isinstance(again, flowlab.RlhfFlow) and [i.id for i in again.get_flow_items()] == [item.id]
    flow.delete()


def test_the_async_twin_creates_and_reads_rlhf_items(flowlab_server: ServerProcess) -> None:
    async def scenario() -> None:
        async with flowlab.AsyncClient(url=flowlab_server.url, api_key=flowlab_server.api_key) as client:
            flow = await client.flow.create_rlhf_flow("async rlhf", "Better?", likert_scale=5, max_response_threshold=1)
            item = await flow.create_new_flow_batch(tasks(2), time_to_live=30)
            assert isinstance(item, flowlab.AsyncRlhfFlowItem)
            partial = await item.get_results(timeout=0, partial=True)
            assert partial.total_responses == 0 and [t.key for t in partial.tasks] == ["t0", "t1"]
            assert await item.get_annotations() == []
            await flow.delete()

    asyncio.run(scenario())


# ---------------------------------------------------------------- bad input


def post(client: flowlab.Client, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{client.url}{path}", json=body, headers={"Authorization": f"Bearer {client.api_key}"})


@pytest.mark.parametrize(
    ("rlhf", "field"),
    [
        ({"dimensions": []}, "rlhf.dimensions"),
        ({"dimensions": [{"key": "x", "type": "stars"}]}, "body"),  # not a type: refused while decoding
        ({"dimensions": [{"key": "x", "min": 1, "max": 1}]}, "rlhf.dimensions[0].max"),
        ({"dimensions": [{"key": "x", "anchors": ["a", "b", "c"]}]}, "rlhf.dimensions[0].anchors"),
        ({"dimensions": [{"key": "c", "type": "category", "options": ["only"]}]}, "rlhf.dimensions[0].options"),
        ({"dimensions": [{"key": "rewrite"}]}, "rlhf.dimensions[0].key"),
        ({"dimensions": [{"key": "a"}, {"key": "a"}]}, "rlhf.dimensions"),
        ({"likert_scale": 1}, "rlhf.likert_scale"),
        ({"rewrite": "sometimes"}, "body"),
    ],
)
def test_bad_rlhf_forms_are_refused_naming_the_field(client: flowlab.Client, rlhf: dict[str, Any], field: str) -> None:
    r = post(client, "/v1/flows", {"name": "bad", "instruction": "?", "kind": "rlhf", "rlhf": rlhf})
    assert r.status_code in (400, 422), r.text
    problem = r.json()
    assert field == "body" or problem["field"] == field, problem


def test_sdk_refuses_an_unknown_dimension_type(client: flowlab.Client) -> None:
    with pytest.raises(flowlab.ValidationError, match="stars"):
        client.flow.create_rlhf_flow("bad", "?", dimensions=[{"key": "x", "type": "stars"}])


@pytest.mark.parametrize(
    ("task", "field", "message"),
    [
        ({"prompt": "p", "responses": [{"source_id": "a", "content": "x"}]}, "datapoints[0].responses", "2 to 8"),
        (
            {"prompt": "p", "responses": [{"source_id": "a", "content": "x"}, {"source_id": "a", "content": "y"}]},
            "datapoints[0].responses",
            "share the source_id",
        ),
        (
            {"responses": [{"source_id": "a", "content": "x"}, {"source_id": "b", "content": "y"}]},
            "datapoints[0].prompt",
            "needs a prompt",
        ),
        (
            {
                "prompt": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
                "responses": [{"source_id": "a", "content": "x"}, {"source_id": "b", "content": "y"}],
            },
            "datapoints[0].prompt",
            "end with the user",
        ),
    ],
)
def test_bad_rlhf_tasks_are_refused_naming_the_field(
    client: flowlab.Client, task: dict[str, Any], field: str, message: str
) -> None:
    flow = client.flow.create_rlhf_flow("tasks", "?")
    with pytest.raises(flowlab.ValidationError, match=message) as err:
        flow.create_new_flow_batch([task])
    assert err.value.field == field
    flow.delete()


def test_rlhf_tasks_and_plain_datapoints_go_to_their_own_flows(client: flowlab.Client) -> None:
    rlhf = client.flow.create_rlhf_flow("mixed", "?")
    r = post(client, f"/v1/flows/{rlhf.id}/items", {"datapoints": [{"text": "plain"}]})
    assert r.status_code == 422 and r.json()["field"] == "datapoints[0].responses"
    ranking = client.flow.create_ranking_flow("ranking", "?")
    wire = {"prompt": "p", "responses": [{"source_id": "a", "text": "x"}, {"source_id": "b", "text": "y"}]}
    r = post(client, f"/v1/flows/{ranking.id}/items", {"datapoints": [wire, wire]})
    assert r.status_code == 422 and "create_rlhf_flow" in r.json()["detail"]
    rlhf.delete()
    ranking.delete()


# ---------------------------------------------------------------- the form's checks and the lifecycle, in process


async def rlhf_flow(service: Any, **spec: Any) -> schemas.Flow:
    return await service.flows.create(  # type: ignore[no-any-return]
        RESEARCHER,
        schemas.FlowCreate(
            name="r",
            instruction="Better?",
            kind="rlhf",
            rlhf=schemas.RlhfSpec(
                dimensions=[
                    schemas.Dimension("quality", min=1, max=5),
                    schemas.Dimension("note", type="text", required=False),
                    schemas.Dimension("relevant", type="boolean", allow_na=True),
                ],
                **spec,
            ),
            max_response_threshold=2,
            min_response_threshold=1,
            lease_seconds=60,
        ),
    )


def items_of(n: int) -> schemas.ItemCreate:
    return schemas.ItemCreate(
        datapoints=[
            schemas.DatapointIn(
                id=f"t{i}",
                prompt=f"q{i}",
                responses=[schemas.ResponseIn("A", text=f"first {i}"), schemas.ResponseIn("B", text=f"second {i}")],
            )
            for i in range(n)
        ],
        time_to_live=60,
    )


def good_answer(**changes: Any) -> schemas.Answer:
    body = schemas.RlhfAnswer(
        ratings=[{"quality": 4, "relevant": True}, {"quality": 2, "relevant": None, "note": "rambles"}],
        rewrites=["A better first answer.", None],
        selected=0,
        likert=2,
        justification="The first one answers the question directly.",
    )
    return schemas.Answer(choice="submit", rlhf=msgspec.structs.replace(body, **changes))


@pytest.mark.parametrize(
    ("changes", "spec", "field", "message"),
    [
        ({"ratings": [{"quality": 4, "relevant": True}]}, {}, "rlhf.ratings", "Rate each of the 2"),
        (
            {"ratings": [{"quality": 9, "relevant": True}, {"quality": 2, "relevant": True}]},
            {},
            "rlhf.ratings[0].quality",
            "from 1 to 5",
        ),
        (
            {"ratings": [{"quality": 4}, {"quality": 2, "relevant": True}]},
            {},
            "rlhf.ratings[0].relevant",
            "rate relevant",
        ),
        (
            {"ratings": [{"quality": None, "relevant": True}, {"quality": 2, "relevant": True}]},
            {},
            "rlhf.ratings[0].quality",
            "rate quality",
        ),
        (
            {"ratings": [{"quality": 4, "relevant": True, "x": 1}, {"quality": 2, "relevant": True}]},
            {},
            "rlhf.ratings[0]",
            "not dimensions",
        ),
        ({"selected": None}, {}, "rlhf.selected", "Choose the better"),
        ({"selected": 5}, {}, "rlhf.selected", "Choose the better"),
        ({"likert": None}, {}, "rlhf.likert", "how much better"),
        ({"likert": 7}, {}, "rlhf.likert", "leans toward the other"),
        ({"justification": "short"}, {}, "rlhf.justification", "at least 20 characters"),
        ({"rewrites": [None, None]}, {"rewrite": "required"}, "rlhf.rewrites[0]", "Rewrite the response you chose"),
        ({"rewrites": ["x" * 101, None]}, {"max_rewrite_chars": 100}, "rlhf.rewrites[0]", "at most 100"),
        ({}, {"rewrite": "off"}, "rlhf.rewrites", "no rewrites"),
        ({}, {"likert_scale": 0}, "rlhf.likert", "leave likert out"),
    ],
)
def test_annotations_are_checked_against_the_form(
    tmp_path: Path, changes: dict[str, Any], spec: dict[str, Any], field: str, message: str
) -> None:
    async def scenario() -> None:
        service, store = await _service(tmp_path, FakeClock())
        flow = await rlhf_flow(service, **spec)
        await service.create_item(RESEARCHER, flow.id, items_of(1))
        who = await annotator(service, "ann")
        task = service.answers.lease_next(who)
        assert task is not None and task.rlhf is not None
        with pytest.raises(Invalid, match=message) as err:
            await service.answers.answer(who, task.task_id, good_answer(**changes))
        assert err.value.field == field
        assert service.answers.leases.get(task.task_id) is not None, "the lease stays: fix it and submit again"
        await store.close()

    asyncio.run(scenario())


def test_rlhf_lifecycle_and_restart_with_a_fake_clock(tmp_path: Path) -> None:
    clock = FakeClock()
    made: dict[str, Any] = {}

    async def first() -> None:
        service, store = await _service(tmp_path, clock)
        flow = await rlhf_flow(service, rewrite="optional")
        status = await service.create_item(RESEARCHER, flow.id, items_of(2))
        made["item"] = status.id
        people = [await annotator(service, f"a{i}") for i in range(3)]
        made["people"] = [p.id for p in people]
        seen: dict[str, list[tuple[int, tuple[str, ...]]]] = {}
        for who in people[:2]:
            for _ in range(2):
                task = service.answers.lease_next(who)
                assert task is not None and task.kind == "rlhf" and task.rlhf is not None
                shown = tuple(r.text or "" for r in task.rlhf.responses)
                assert "source_id" not in msgspec.json.encode(task).decode(), "annotators never see the source"
                seen.setdefault(who.id, []).append((task.a.ref, shown))
                ack = await service.answers.answer(who, task.task_id, good_answer())
                assert ack.status == "accepted"
            assert service.answers.lease_next(who) is None, "each task once per annotator"
        assert all(sorted(ref for ref, _ in s) == [0, 1] for s in seen.values())
        item = service.items.live[status.id]
        assert item.state == "Completed" and item.response_count == 4, "2 annotations per task, the maximum"
        results = await service.items.results_of(RESEARCHER, status.id)
        assert isinstance(results, schemas.RlhfResults)
        made["results"] = results
        # The answer said "the first shown is better"; in the given order that is A or B by the shuffle.
        for t in results.tasks:
            assert {r.source_id: r.selected for r in t.responses} in (
                {"A": 2, "B": 0},
                {"A": 1, "B": 1},
                {"A": 0, "B": 2},
            )
            quality = {r.source_id: next(s for s in r.ratings if s.dimension == "quality") for r in t.responses}
            assert sum(q.mean * q.n for q in quality.values()) == 2 * (4 + 2)
            relevant = {r.source_id: next(s for s in r.ratings if s.dimension == "relevant") for r in t.responses}
            assert sum(q.not_applicable for q in relevant.values()) == 2, '"not applicable" is counted apart'
            assert all(len(r.rewrites) <= 2 for r in t.responses) and len(t.justifications) == 2
        await _settle(service)
        ended = await service.items.results_of(RESEARCHER, status.id)
        assert ended == results, "read back from the database as it was"
        await store.close()

    async def live_restart() -> None:
        service, store = await _service(tmp_path, clock)
        flow = next(iter(service.flows.flows.values()))
        status = await service.create_item(RESEARCHER, flow.id, items_of(1))
        who = service.people.annotators[made["people"][2]].principal
        task = service.answers.lease_next(who)
        assert task is not None
        await service.answers.answer(who, task.task_id, good_answer())
        made["live"] = status.id
        made["live_results"] = await service.items.results_of(RESEARCHER, status.id)
        await store.close()

    async def after() -> None:
        service, store = await _service(tmp_path, clock)
        item = service.items.live[made["live"]]
        assert item.response_count == 1 and len(item.tally.records) == 1, "annotations replayed at start-up"
        again = await service.items.results_of(RESEARCHER, made["live"])
        assert again.tasks == made["live_results"].tasks
        who = service.people.annotators[made["people"][2]].principal
        assert service.answers.lease_next(who) is None, "the annotator already did the only task"
        await store.close()

    asyncio.run(first())
    asyncio.run(live_restart())
    asyncio.run(after())


def task_of(client: flowlab.Client, token: str, item_id: str) -> schemas.Task:
    """The annotator's next task, which is of `item_id`: `client` is a researcher of the test's own, so items other
    tests left running on the shared server are never this annotator's."""
    r = httpx.post(f"{client.url}/v1/tasks/next", json={}, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    task = msgspec.json.decode(r.content, type=schemas.Task)
    assert task.item_id == item_id
    return task


def test_media_responses_are_uploaded_and_the_form_can_change_for_new_items(
    researcher: flowlab.Client, tmp_path: Path
) -> None:
    import struct
    import zlib

    client = researcher  # its annotator is handed this test's tasks only

    def png(rgb: tuple[int, int, int]) -> bytes:
        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        header = struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0)
        rows = (b"\x00" + bytes(rgb) * 4) * 4
        return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")

    red, blue = tmp_path / "red.png", tmp_path / "blue.png"
    red.write_bytes(png((255, 0, 0)))
    blue.write_bytes(png((0, 0, 255)))
    flow = client.flow.create_rlhf_flow("images", "Which image fits the caption?", likert_scale=0)
    item = flow.create_new_flow_batch(
        [
            {
                "id": "caption",
                "prompt": "Draw a red square.",
                "responses": [{"source_id": "m1", "content": str(red)}, {"source_id": "m2", "content": blue}],
            }
        ]
    )
    (task,) = item.get_datapoints()
    assert task.kind == "conversation" and [r.kind for r in task.responses or []] == ["image", "image"]
    assert all(r.media and r.url is None for r in task.responses or [])
    ann = client.annotators.create("image-viewer")
    shown = task_of(client, ann.token, item.id)
    assert shown.rlhf is not None and all(v.url and v.url.startswith("/media/") for v in shown.rlhf.responses)
    assert shown.rlhf.spec.likert_scale == 0 and shown.rlhf.prompt[0].content == "Draw a red square."
    # Only new items see a changed form.
    flow.update_config(rlhf={"dimensions": [{"key": "fits", "type": "boolean"}], "justification": "off"})
    later = flow.create_new_flow_batch(
        [{"prompt": "Again.", "responses": [{"source_id": "m1", "content": "x"}, {"source_id": "m2", "content": "y"}]}]
    )
    newer = task_of(client, ann.token, later.id)
    assert newer.rlhf is not None
    assert [d.key for d in newer.rlhf.spec.dimensions] == ["fits"] and newer.rlhf.spec.justification == "off"
    assert shown.rlhf.spec.dimensions[0].key == "instruction_following"
    flow.delete()


def test_rewrite_and_justification_edge_cases(tmp_path: Path, client: flowlab.Client) -> None:
    r = post(client, "/v1/flows", {"name": "rest", "instruction": "?", "kind": "rlhf"})
    assert r.status_code == 201 and r.json()["lease_seconds"] == 600, "the form takes minutes: a long lease"
    assert r.json()["rlhf"]["likert_scale"] == 7, "the whole form, defaults included"

    async def scenario() -> None:
        service, store = await _service(tmp_path, FakeClock())
        flow = await rlhf_flow(service, rewrite="required", justification_min_chars=0)
        await service.create_item(RESEARCHER, flow.id, items_of(1))
        who = await annotator(service, "ann")
        task = service.answers.lease_next(who)
        assert task is not None and task.rlhf is not None
        first = task.rlhf.responses[0].text
        with pytest.raises(Invalid, match="Rewrite the response you chose"):  # unchanged is no rewrite
            await service.answers.answer(who, task.task_id, good_answer(rewrites=[first, None]))
        with pytest.raises(Invalid, match="Say why"):  # required means at least something
            await service.answers.answer(who, task.task_id, good_answer(justification=" "))
        ack = await service.answers.answer(who, task.task_id, good_answer(justification="ok"))
        assert ack.status == "accepted"
        await store.close()

    asyncio.run(scenario())


def test_importing_flowlab_and_its_trl_bridge_imports_no_framework() -> None:
    import subprocess
    import sys

    code = (
        "import sys, flowlab, flowlab.integrations.trl; "
        "print(sorted({'torch', 'trl', 'transformers'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_rating_intervals_hold_with_a_handful_of_ratings() -> None:
    """Three 5s gave a t-interval of zero width at 5, whatever the truth; at three ratings per response the
    t-interval covered 76 %. The Dirichlet posterior interval keeps width and covers about 95 %."""
    import math

    import numpy as np
    from scipy.stats import norm

    from flowlab.server.kinds.rlhf import _mean_interval

    low, high = _mean_interval(np.array([[0, 0, 0, 0, 3]]), offset=1)
    assert 1.0 <= low[0] < 4.5 and high[0] == 5.0, "three 5s: the truth may well be below 5"
    rng = np.random.default_rng(3)
    points = np.arange(1, 6)
    hits = []
    for _ in range(600):
        centre = 3 + 2 * math.tanh(rng.normal(0, 1.5) / 2)
        edges = np.concatenate([[-np.inf], points[:-1] + 0.5, [np.inf]])
        p = np.diff(norm.cdf((edges - centre) / 0.55))  # the crowd's ratings at 90 % accuracy
        counts = rng.multinomial(3, p)
        lo, hi = _mean_interval(counts[None, :], offset=1)
        hits.append(lo[0] <= p @ points <= hi[0])
    assert 0.92 <= np.mean(hits) <= 0.98
