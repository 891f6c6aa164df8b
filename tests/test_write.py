"""Write flows end to end: people (the simulated crowd) write the response to each prompt; demonstrations come
back with author and time on task, as SFT rows and seed-001 records, after leaving memory and after a restart;
bad input is refused naming the limit; a review flow rates what was written."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import msgspec
import pytest

import flowlab
from flowlab import schemas
from flowlab.crowd import SimulatedCrowd

from .conftest import ServerProcess

IDEAL = {
    "capital": "The capital of France is Paris, on the Seine.",
    "haiku": "Old pond, a frog jumps in: the sound of water.",
    "sum": "Two plus two is four, because adding two twice gives four.",
}


def prompts() -> list[dict[str, Any]]:
    return [
        {"id": "capital", "prompt": "What is the capital of France?", "private_metadata": {"ideal": IDEAL["capital"]}},
        {
            "id": "haiku",
            "prompt": [
                {"role": "system", "content": "You are a poet."},
                {"role": "user", "content": "Write a haiku about a frog."},
            ],
            "guidance": "Three short lines.",
            "reference": "Basho's most famous haiku.",
            "private_metadata": {"ideal": IDEAL["haiku"]},
        },
        {"id": "sum", "prompt": "What is 2 + 2? Explain.", "private_metadata": {"ideal": IDEAL["sum"]}},
    ]


def next_task(url: str, token: str) -> schemas.Task:
    r = httpx.post(f"{url}/v1/tasks/next", json={}, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return msgspec.json.decode(r.content, type=schemas.Task)


def answer(url: str, token: str, task_id: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{url}/v1/tasks/{task_id}/answer", json=body, headers={"Authorization": f"Bearer {token}"})


def test_a_write_flow_end_to_end_reads_back_after_leaving_memory_and_a_restart(tmp_path: Any) -> None:
    server = ServerProcess(data_dir=tmp_path / "data", extra_args=["--retain-ended", "0"])
    server.data_dir.mkdir()
    server.start()
    try:
        client = server.client()
        flow = client.flow.create_write_flow(
            "demos", "Answer the prompt as a helpful assistant.", max_response_threshold=2
        )
        assert isinstance(flow, flowlab.WriteFlow) and flow.config.kind == "write"
        assert (
            flow.config.write is not None and flow.config.write.max_chars == 4000 and flow.config.lease_seconds == 900
        )
        item = flow.create_new_flow_batch(prompts(), time_to_live=60)
        assert isinstance(item, flowlab.WriteFlowItem)
        with SimulatedCrowd(server.url, server.api_key, annotators=4, rate=6000, accuracy=1.0, seed=5):
            results = item.get_results(timeout=30)
        assert results.state == "Completed" and results.total_responses == 6 == item.get_response_count()
        assert results.annotators >= 2
        for t in results.tasks:
            assert len(t.demonstrations) == 2 and len({d.annotator_id for d in t.demonstrations}) == 2
            for d in t.demonstrations:
                assert IDEAL[t.key] in d.text, "a good writer restates the ideal answer"
                assert d.chars == len(d.text) and d.seconds is not None and d.seconds >= 0
        demos = item.get_demonstrations()
        assert len(demos) == 6 and all(d.shown_at is not None for d in demos)

        rows = item.to_sft_rows()
        assert len(rows) == 6
        haiku = next(r for r in rows if r["key"] == "haiku")
        assert [m["role"] for m in haiku["messages"]] == ["system", "user", "assistant"]
        assert IDEAL["haiku"] in haiku["messages"][-1]["content"]
        from datasets import Dataset

        ds = Dataset.from_list(rows)
        assert ds.num_rows == 6 and ds[0]["messages"][-1]["role"] == "assistant"

        records = item.to_rlhf_records()
        assert len(records) == 6
        last = records[0]["threads"][0]["turns"][-1]["messages"]
        assert last[-1]["role"] == "assistant" and last[-1]["source_id"] == f"human:{records[0]['contributor']['id']}"
        assert last[-2]["role"] == "user"

        time.sleep(1.5)  # --retain-ended 0: the item has left memory; everything is read from the database
        again = item.get_results()
        assert msgspec.to_builtins(again) == msgspec.to_builtins(results)
        assert item.to_sft_rows() == rows
        server.restart()
        client = server.client()
        read_back = client.flow.get_flow_by_id(flow.id).get_flow_item(item.id)
        assert isinstance(read_back, flowlab.WriteFlowItem)
        assert msgspec.to_builtins(read_back.get_results()) == msgspec.to_builtins(results)
        assert len(read_back.get_demonstrations()) == 6
    finally:
        server.stop()


def test_a_live_write_item_counts_its_demonstrations_again_after_a_restart(fresh_server: ServerProcess) -> None:
    client = fresh_server.client()
    flow = client.flow.create_write_flow("live", "Answer.", max_response_threshold=2)
    item = flow.create_new_flow_batch(["Say hello."], time_to_live=600)
    ann = client.annotators.create("writer")
    task = next_task(fresh_server.url, ann.token)
    assert (
        answer(fresh_server.url, ann.token, task.task_id, {"choice": "submit", "write": {"text": "Hello!"}}).json()[
            "status"
        ]
        == "accepted"
    )
    fresh_server.restart()
    client = fresh_server.client()
    read_back = client.flow.get_flow_by_id(flow.id).get_flow_item(item.id)
    assert isinstance(read_back, flowlab.WriteFlowItem)
    live = read_back.get_results(partial=True)
    assert live.partial and live.total_responses == 1 and live.tasks[0].demonstrations[0].text == "Hello!"
    r = httpx.post(f"{fresh_server.url}/v1/tasks/next", json={}, headers={"Authorization": f"Bearer {ann.token}"})
    assert r.status_code == 204, "the writer already answered the only prompt"


def test_bad_input_is_refused_naming_the_limit_and_a_duplicate_counts_once(researcher: flowlab.Client) -> None:
    client = researcher
    with pytest.raises(flowlab.ValidationError) as exc:
        client.flow.create_write_flow("bad", "Answer.", min_chars=10, max_chars=5)
    assert exc.value.field == "write.min_chars"
    flow = client.flow.create_write_flow("limits", "Answer.", min_chars=5, max_chars=40, allow_paste=False)
    with pytest.raises(flowlab.ValidationError):
        flow.create_new_flow_batch([{"text": "not a prompt"}])
    item = flow.create_new_flow_batch(
        [{"id": "p", "prompt": "Describe the sea.", "guidance": "One sentence.", "reference": "It is blue."}]
    )
    ann = client.annotators.create("writer")
    task = next_task(client.url, ann.token)
    assert task.kind == "write" and task.item_id == item.id and task.write is not None
    view = task.write
    assert (view.min_chars, view.max_chars, view.allow_paste) == (5, 40, False)
    assert view.prompt[-1].content == "Describe the sea." and view.guidance == "One sentence."
    assert view.reference == "It is blue."
    url, token = client.url, ann.token

    def refused(body: dict[str, Any]) -> dict[str, Any]:
        r = answer(url, token, task.task_id, body)
        assert r.status_code == 422, r.text  # the lease stays, so the person can fix it
        return r.json()  # type: ignore[no-any-return]

    assert "empty" in refused({"choice": "submit", "write": {"text": "   "}})["detail"]
    short = refused({"choice": "submit", "write": {"text": "sea"}})
    assert "at least 5" in short["detail"] and "min_chars" in short["detail"] and short["field"] == "write.text"
    long = refused({"choice": "submit", "write": {"text": "wave " * 20}})
    assert "at most 40" in long["detail"] and "max_chars" in long["detail"]
    pasted = refused({"choice": "submit", "write": {"text": "The sea is wide.", "pasted_chars": 16}})
    assert "allow_paste" in pasted["detail"]
    refused({"choice": "submit"})
    good = {"choice": "submit", "write": {"text": "The sea is wide and grey."}}
    assert answer(url, token, task.task_id, good).json()["status"] == "accepted"
    assert answer(url, token, task.task_id, good).json()["status"] == "duplicate"
    assert item.get_response_count() == 1 and len(item.get_demonstrations()) == 1
    (demo,) = item.get_demonstrations()
    assert demo.text == "The sea is wide and grey." and demo.annotator_id == ann.id and demo.pasted_chars == 0


def test_a_review_flow_rates_the_demonstrations_and_the_best_per_prompt_comes_back(
    researcher: flowlab.Client,
) -> None:
    client = researcher
    review = client.flow.create_rlhf_flow(
        "review",
        "Which answer is better?",
        dimensions=["helpfulness"],
        likert_scale=0,
        justification="off",
        rewrite="off",
        max_response_threshold=3,
    )
    flow = client.flow.create_write_flow("to review", "Answer the prompt.", max_response_threshold=3)
    with pytest.raises(flowlab.ValidationError) as exc:
        flow.review_with(flow)
    assert exc.value.field == "write.review_flow_id" and "RLHF" in str(exc.value)
    flow.review_with(review, include_model_responses=True, time_to_live=60)
    assert flow.config.write is not None and flow.config.write.review_flow_id == review.id
    given = prompts()
    given[0]["responses"] = [{"source_id": "model-a", "content": "Lyon, probably."}]
    for p in given:  # some write well, some poorly: the review should find the good ones
        p["private_metadata"]["demo_quality"] = 0.5
    item = flow.create_new_flow_batch(given, time_to_live=60)
    with SimulatedCrowd(client.url, client.api_key, annotators=6, rate=6000, accuracy=1.0, seed=11):
        written = item.get_results(timeout=30)
        assert written.state == "Completed"
        best = item.best_demonstrations(timeout=60)
    assert written.review_item_id is not None
    reviewed = item.review_item()
    assert isinstance(reviewed, flowlab.RlhfFlowItem) and reviewed.flow_id == review.id
    detail = reviewed.get_datapoints()
    capital = next(d for d in detail if d.key == "capital")
    sources = [r.source_id for r in capital.responses or []]
    assert "model-a" in sources and sum(s.startswith("human:") for s in sources) == 3
    assert [b["key"] for b in best] == ["capital", "haiku", "sum"] and all(b["reviewed"] for b in best)
    by_key = {t.key: t for t in written.tasks}
    for b in best:
        written_here = {(d.text, d.annotator_id) for d in by_key[b["key"]].demonstrations}
        assert (b["text"], b["annotator_id"]) in written_here
        if any(IDEAL[b["key"]] in text for text, _ in written_here):
            assert IDEAL[b["key"]] in b["text"], "reviewers prefer the demonstration closest to the ideal"


def test_the_async_twin_writes_and_reads_demonstrations(researcher: flowlab.Client) -> None:
    async def run() -> None:
        async with flowlab.AsyncClient(url=researcher.url, api_key=researcher.api_key) as client:
            flow = await client.flow.create_write_flow("async", "Answer.", max_chars=200)
            assert isinstance(flow, flowlab.AsyncWriteFlow)
            item = await flow.create_new_flow_batch([{"id": "q", "prompt": "Name a colour."}], time_to_live=30)
            assert isinstance(item, flowlab.AsyncWriteFlowItem)
            ann = researcher.annotators.create("async writer")
            task = next_task(researcher.url, ann.token)
            ack = answer(researcher.url, ann.token, task.task_id, {"choice": "submit", "write": {"text": "Blue."}})
            assert ack.json()["status"] == "accepted"
            results = await item.get_results(timeout=30)
            assert results.tasks[0].demonstrations[0].text == "Blue."
            rows = await item.to_sft_rows()
            assert rows[0]["messages"] == [
                {"role": "user", "content": "Name a colour."},
                {"role": "assistant", "content": "Blue."},
            ]
            assert (await item.best_demonstrations())[0]["text"] == "Blue."

    asyncio.run(run())


def test_a_write_project_from_a_csv_and_from_the_cli_delivers_demonstrations_and_sft_rows(
    flowlab_server: ServerProcess, tmp_path: Any
) -> None:
    import csv
    import json

    from .test_annotators_and_cli import cli

    with flowlab_server.client() as admin:
        key = admin.keys.create("write projects").key
    client = flowlab.Client(url=flowlab_server.url, api_key=key)
    path = tmp_path / "prompts.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "prompt", "guidance", "reference", "ideal", "team"])
        for p in prompts():
            prompt = p["prompt"] if isinstance(p["prompt"], str) else json.dumps(p["prompt"])
            w.writerow([p["id"], prompt, p.get("guidance", ""), p.get("reference", ""), IDEAL[p["id"]], "emea"])
    flow = client.flow.create_write_flow("write batch", "Answer the prompt.", max_response_threshold=2)
    project = client.projects.create(flow, path, per_item=2)
    assert project.kind == "write" and project.get_progress().items_total == 2  # three rows, two to an item
    assert project.formats == ("demonstrations", "sft", "records", "answers")

    jsonl = tmp_path / "prompts.jsonl"
    jsonl.write_text("".join(json.dumps({**p, "ideal": IDEAL[p["id"]]}) + "\n" for p in prompts()))
    server = ServerProcess(data_dir=flowlab_server.data_dir, port=flowlab_server.port, api_key=key)
    made = cli("projects", "create", str(jsonl), "--instruction", "Answer it.", "--kind", "write", server=server)
    assert made.returncode == 0, made.stderr
    from_cli = client.projects.get(made.stdout.split()[1])
    assert from_cli.kind == "write" and from_cli.get_progress().tasks_total == 3

    with SimulatedCrowd(flowlab_server.url, key, annotators=4, rate=6000, bulk=True, accuracy=1.0, seed=3):
        assert project.wait(timeout=30).state == "completed"
        assert from_cli.wait(timeout=30).state == "completed"

    tables = project.deliverable()
    assert len(tables["demonstrations"]) == 6 == len(tables["sft"]) == len(tables["answers"]) == len(tables["records"])
    for row in tables["demonstrations"]:
        assert IDEAL[row["key"]] in row["demonstration"] and row["author"] and row["seconds"] is not None
    haiku = [r for r in tables["sft"] if r["key"] == "haiku"]
    assert len(haiku) == 2 and [m["role"] for m in haiku[0]["messages"]] == ["system", "user", "assistant"]
    assert tables["records"][0]["metadata"]["flow_id"] == flow.id
    cli_rows = from_cli.deliverable()
    assert len(cli_rows["sft"]) == 3, "the flow the CLI made asks one demonstration a prompt"
    assert {r["key"] for r in cli_rows["demonstrations"]} == set(IDEAL)

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "x", "text": "no prompt here"}) + "\n")
    with pytest.raises(flowlab.ValidationError, match=r"row 1 of bad\.jsonl: a write task has a prompt column"):
        client.projects.create(flow, bad)
    client.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_review_items_row_written_twice_by_a_replayed_commit_is_kept_once(
    backend: str, tmp_path: Any, request: pytest.FixtureRequest
) -> None:
    """The review item rides the write item's final record, a commit retried when its outcome is lost: if the
    first try landed, the replay finds the review item's row there and must not fail on it."""
    from types import SimpleNamespace

    from flowlab.server.items import Items
    from flowlab.server.store.sqlite import SQLiteStore

    if backend == "postgres":
        from flowlab.server.store.postgres import PostgresStore

        store: Any = PostgresStore(request.getfixturevalue("pg_dsn"))
    else:
        store = SQLiteStore(tmp_path / "flowlab.db")
    try:
        made = SimpleNamespace(id="item_review", flow=SimpleNamespace(id="flow_review"), created_at=1.0, project=None)
        made.state = "Running"
        first = Items.insert_op(Items.__new__(Items), made, {"try": 1}, replayable=True)  # type: ignore[arg-type]
        made.created_at = 2.0
        again = Items.insert_op(Items.__new__(Items), made, {"try": 2}, replayable=True)  # type: ignore[arg-type]
        store.write_now([first])
        store.write_now([again])
        rows = store.read("SELECT body, created_at FROM items WHERE id = ?", ("item_review",))
        assert [(r["body"], r["created_at"]) for r in rows] == [('{"try":1}', 1.0)], "the first row, once"
        plain = Items.insert_op(Items.__new__(Items), made, {"try": 3})  # type: ignore[arg-type]
        with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
            store.write_now([plain])  # a new item's insert still refuses a duplicate id
    finally:
        asyncio.run(store.close())
