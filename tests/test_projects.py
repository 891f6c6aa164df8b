"""Batch projects against a real server and crowd: a dataset (JSONL, CSV, a `datasets.Dataset`, dicts) queued,
fed into its flow a window at a time, paused and resumed, surviving a restart, completed once with a signed
`project.completed` webhook, and delivered in every format of its kind; bad rows refused with the row named."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest

from flowlab import Client, Conflict, NotFound, ValidationError, verify_webhook
from flowlab.crowd import SimulatedCrowd

from .conftest import ServerProcess
from .test_annotators_and_cli import cli
from .test_webhooks import Receiver


def crowd(client: Client, **options: object) -> SimulatedCrowd:
    settings = {"annotators": 6, "rate": 60_000, "bulk": True, "accuracy": 1.0, "seed": 7, **options}
    return SimulatedCrowd(client.url, client.api_key, **settings)  # type: ignore[arg-type]


def pair_rows(n: int) -> list[dict[str, object]]:
    """Pair tasks whose better reply is `b` (its true score is higher), with a column of the dataset's own."""
    return [
        {
            "id": f"t{i:03d}",
            "prompt": f"Where is order {i}?",
            "a": {"text": f"no idea {i}", "private_metadata": {"true_score": -6}},
            "b": {"text": f"it ships tomorrow {i}", "private_metadata": {"true_score": 6}},
            "source": "support-log",
        }
        for i in range(n)
    ]


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_jsonl_project_through_to_its_deliverable(researcher: Client, tmp_path: Path) -> None:
    receiver = Receiver()
    receiver.start()
    try:
        hook = researcher.webhooks.add(receiver.url, events=["project.completed"])
        flow = researcher.flow.create_ranking_flow("support replies", "Which reply helps?", max_response_threshold=2)
        data = write_jsonl(tmp_path / "pairs.jsonl", pair_rows(40))
        project = researcher.projects.create(flow, data, name="support batch", live_items=5)
        first = project.get_progress()
        assert (first.tasks_total, first.items_total, first.answers_needed) == (40, 40, 80)
        assert first.state == "running" and first.items_live + first.items_queued + first.items_done == 40
        live_seen = []
        with crowd(researcher):
            while project.get_status() != "completed":
                live_seen.append(project.last_status.items_live)
                time.sleep(0.02)
        done = project.wait(timeout=5)
        assert done.tasks_done == 40 and done.answers_done == done.answers_received == 80 and done.eta_seconds == 0
        assert max(live_seen) <= 5  # the window: never more of the project's items live than asked

        paths = project.save_deliverable(tmp_path / "out")
        assert set(paths) == {"tasks", "votes", "preference_pairs", "rlhf_tasks", "kto", "manifest"}
        tasks = [json.loads(line) for line in paths["tasks"].read_text().splitlines()]
        assert [t["task_id"] for t in tasks] == [f"t{i:03d}" for i in range(40)]  # dataset order
        assert all(t["winner"] == "b" and t["votes"] == 2 for t in tasks)  # an exact crowd prefers the better one
        assert tasks[0]["context"] == "Where is order 0?" and tasks[0]["metadata"] == {"source": "support-log"}
        pairs = [json.loads(line) for line in paths["preference_pairs"].read_text().splitlines()]
        assert len(pairs) == 80 and all(p["chosen"].startswith("it ships") for p in pairs)
        manifest = json.loads(paths["manifest"].read_text())
        assert manifest["formats"]["votes"]["rows"] == 80 and manifest["project"]["state"] == "completed"
        dataset = project.to_dataset()
        assert set(dataset) == {"tasks", "votes", "preference_pairs", "rlhf_tasks"} and len(dataset["votes"]) == 80

        got = receiver.wait_for(1)
        time.sleep(0.3)  # a second delivery of the one event would have arrived by now
        assert len(got) == 1 and verify_webhook(hook.secret, got[0].headers, got[0].body)
        event = got[0].event
        assert event["type"] == "project.completed"
        assert event["data"]["project"]["id"] == project.id and event["data"]["project"]["tasks_done"] == 40
    finally:
        receiver.stop()


def test_pause_holds_tasks_back_and_resume_finishes(researcher: Client) -> None:
    flow = researcher.flow.create_ranking_flow("paused", "Which?", max_response_threshold=1)
    project = researcher.projects.create(flow, pair_rows(12), start=False)
    assert project.get_status() == "open"
    with pytest.raises(Conflict, match="not started"):
        project.pause()
    project.start()
    assert project.pause().state == "paused"
    with crowd(researcher) as c:
        time.sleep(1.0)
        held = project.get_progress()
        assert held.answers_received == 0 and c.stats.votes == 0  # nothing handed out while paused
        assert held.rate is None and held.eta_seconds is None
        project.resume()
        done = project.wait(timeout=30)
    assert done.state == "completed" and done.answers_received == 12
    assert project.resume().state == "completed"  # resuming a finished project changes nothing


def test_progress_reports_a_rate_and_an_eta_while_running(researcher: Client) -> None:
    flow = researcher.flow.create_ranking_flow("rate", "Which?", max_response_threshold=2)
    project = researcher.projects.create(flow, pair_rows(60), live_items=10)
    seen = None
    with crowd(researcher, rate=1200, annotators=4):  # about 20 votes/s: 120 votes take some 6 s
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            s = project.get_progress()
            if s.state == "running" and s.answers_done >= 30 and s.rate:
                seen = s
                break
            time.sleep(0.2)
        assert seen is not None, "no rate was reported while the project ran"
        assert 2 <= seen.rate <= 200  # type: ignore[operator]
        assert seen.eta_seconds == pytest.approx((seen.answers_needed - seen.answers_done) / seen.rate)
        project.wait(timeout=60)


def test_a_project_survives_a_restart(fresh_server: ServerProcess) -> None:
    with fresh_server.client() as client:
        flow = client.flow.create_ranking_flow("restart", "Which?", max_response_threshold=1)
        project = client.projects.create(flow, pair_rows(30), live_items=4)
        with crowd(client, rate=600, annotators=2):  # a few tasks answered, most still queued
            deadline = time.monotonic() + 20
            while project.get_progress().tasks_done < 3 and time.monotonic() < deadline:
                time.sleep(0.1)
        project.pause()
        before = project.get_progress()
    assert 3 <= before.tasks_done < 30
    fresh_server.restart()
    with fresh_server.client() as client:
        again = client.projects.get(project.id)
        after = again.get_progress()
        assert after.state == "paused" and after.tasks_done >= before.tasks_done
        assert after.items_done + after.items_live + after.items_queued == 30
        again.resume()
        with crowd(client):
            done = again.wait(timeout=30)
        assert done.state == "completed" and done.tasks_done == 30
        tasks = again.deliverable()["tasks"]
        assert sorted(t["task_id"] for t in tasks) == [f"t{i:03d}" for i in range(30)]
        assert sum(t["votes"] for t in tasks) == done.answers_received == 30  # nothing counted twice


def test_csv_classify_and_dataset_rlhf_projects(researcher: Client, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    path = tmp_path / "tickets.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "text", "true_category", "team"])
        for i in range(25):
            w.writerow([f"ticket-{i}", f"ticket text {i}", "refund" if i % 2 else "shipping", "emea"])
    flow = researcher.flow.create_classify_flow("tickets", "What is it about?", ["refund", "shipping"], 2, 2)
    labels = researcher.projects.create(flow, path, per_item=10)
    assert labels.get_progress().items_total == 3  # 25 rows, 10 to an item
    rows = [
        {
            "id": f"q{i}",
            "prompt": f"question {i}",
            "responses": json.dumps(
                [{"source_id": "old", "content": f"meh {i}"}, {"source_id": "new", "content": f"a good answer {i}"}]
            ),
            "topic": "maths" if i % 3 else "orders",
        }
        for i in range(8)
    ]
    rflow = researcher.flow.create_rlhf_flow("rlhf batch", "Rate the replies", max_response_threshold=1)
    rlhf = researcher.projects.create(rflow, datasets.Dataset.from_list(rows), per_item=4)
    with crowd(researcher):
        assert labels.wait(timeout=30).state == "completed"
        assert rlhf.wait(timeout=30).state == "completed"

    table = labels.deliverable()
    assert set(table) == {"results", "labels"} and len(table["labels"]) == 50
    by_id = {r["task_id"]: r for r in table["results"]}
    assert by_id["ticket-3"]["majority"] == "refund" and by_id["ticket-4"]["majority"] == "shipping"
    assert by_id["ticket-3"]["metadata"] == {"true_category": "refund", "team": "emea"}

    made = rlhf.to_dataset()
    assert set(made) >= {"results", "records", "preference", "kto", "annotations"}
    assert len(made["results"]) == 8 and len(made["records"]) == 8
    record = rlhf.deliverable()["records"][0]
    assert record["threads"] and record["metadata"]["flow_id"] == rflow.id
    assert rlhf.to_dataset("preference").num_rows == len(rlhf.deliverable()["preference"])


def ranking_rows(n: int) -> list[dict[str, object]]:
    """Listwise tasks of four replies each, far apart in true score (so an exact crowd's orders agree), and a
    column of the dataset's own."""
    return [
        {
            "id": f"r{i:02d}",
            "prompt": f"Which reply to ticket {i} helps most?",
            "datapoints": [
                {"text": f"reply {q} to {i}", "private_metadata": {"true_score": 10 * q}} for q in (0, 3, 1, 2)
            ],
            "queue": "billing",
        }
        for i in range(n)
    ]


def test_listwise_project_from_jsonl_delivers_rankings_and_implied_pairs(
    researcher: Client, flowlab_server: ServerProcess, tmp_path: Path
) -> None:
    """A listwise row is one item (its datapoints shown k at a time), as the kind says; the deliverable is the
    kind's: a row per task, every ranking, and the preference pairs the rankings imply."""
    flow = researcher.flow.create_listwise_flow(
        "ticket replies", "Order the replies, best first.", k=3, max_response_threshold=6, min_response_threshold=6
    )
    data = write_jsonl(tmp_path / "rankings.jsonl", ranking_rows(8))
    project = researcher.projects.create(flow, data, name="listwise batch")
    first = project.get_progress()
    assert project.kind == "listwise" and project.formats == ("tasks", "rankings", "preference_pairs")
    assert (first.items_total, first.tasks_total, first.answers_needed) == (8, 8, 48)
    assert first.live_items == 100, "the kind's own live window"
    with crowd(researcher):
        done = project.wait(timeout=60)
    assert done.state == "completed" and done.answers_done == done.answers_received == 48

    paths = project.save_deliverable(tmp_path / "out")
    assert set(paths) == {"tasks", "rankings", "preference_pairs", "manifest"}
    tasks = [json.loads(line) for line in paths["tasks"].read_text().splitlines()]
    assert [t["task_id"] for t in tasks] == [f"r{i:02d}" for i in range(8)]  # dataset order
    assert all(t["votes"] == 6 and t["metadata"] == {"queue": "billing"} for t in tasks)
    assert all(t["ranking"][0] == t["datapoints"][1]["key"] for t in tasks), "the reply scored 30 ranks first"
    assert tasks[0]["context"] == "Which reply to ticket 0 helps most?"
    rankings = [json.loads(line) for line in paths["rankings"].read_text().splitlines()]
    assert len(rankings) == 48 and all(len(r["order"]) == 3 and r["mode"] == "order" for r in rankings)
    assert len({(r["task_id"], r["annotator_id"], tuple(sorted(r["order"]))) for r in rankings}) == 48
    pairs = [json.loads(line) for line in paths["preference_pairs"].read_text().splitlines()]
    assert len(pairs) == 48 * 3, "an order of three implies three pairs"
    manifest = json.loads(paths["manifest"].read_text())
    assert manifest["formats"]["rankings"]["rows"] == 48 and manifest["project"]["kind"] == "listwise"

    with pytest.raises(ValidationError, match=r"row 2 of data: datapoints is a list of three or more to rank"):
        researcher.projects.create(flow, [ranking_rows(1)[0], {"datapoints": ["x", "y"]}])
    with pytest.raises(ValidationError, match=r"row 1 of data: a listwise ranking task has a datapoints column"):
        researcher.projects.create(flow, [{"a": "x", "b": "y"}])
    assert [p.id for p in researcher.projects.list() if p.flow_id == flow.id] == [project.id]

    # The CLI makes a listwise flow for the file, each row a set to rank.
    server = ServerProcess(data_dir=flowlab_server.data_dir, port=flowlab_server.port, api_key=researcher.api_key)
    made = cli("projects", "create", str(data), "--instruction", "Best first.", "--kind", "listwise", server=server)
    assert made.returncode == 0, made.stderr
    from_cli = researcher.projects.get(made.stdout.split()[1])
    cli_flow = researcher.flow.get_flow_by_id(from_cli.flow_id)
    assert from_cli.kind == "listwise" and cli_flow.config.max_response_threshold == 40
    assert from_cli.get_progress().items_total == 8
    from_cli.delete()


def test_bad_datasets_are_refused_with_the_row_named(researcher: Client, tmp_path: Path) -> None:
    flow = researcher.flow.create_ranking_flow("bad rows", "Which?")
    rows = pair_rows(3)
    del rows[2]["b"]
    with pytest.raises(ValidationError, match=r"row 3 of bad\.jsonl: a pair task has columns a and b"):
        researcher.projects.create(flow, write_jsonl(tmp_path / "bad.jsonl", rows))
    (tmp_path / "broken.jsonl").write_text('{"a": "x", "b": "y"}\n{"a": \n')
    with pytest.raises(ValidationError, match=r"Line 2 of broken\.jsonl is not JSON"):
        researcher.projects.create(flow, tmp_path / "broken.jsonl")
    with pytest.raises(ValidationError, match="holds no rows"):
        researcher.projects.create(flow, [])
    with pytest.raises(ValidationError, match=r"\.jsonl, \.json, \.csv"):
        researcher.projects.create(flow, write_jsonl(tmp_path / "rows.txt", pair_rows(1)))
    with pytest.raises(ValidationError, match="datapoints"):  # the server checks each item against the flow
        researcher.projects.create(flow, [{"datapoints": ["only one"]}, {"a": "x", "b": "y"}])
    assert researcher.projects.list() == []  # a project whose rows were refused is not left behind

    project = researcher.projects.create(flow, pair_rows(2))
    with pytest.raises(Conflict, match="partial=True"):
        project.deliverable()
    assert project.deliverable(partial=True)["tasks"] == []
    with pytest.raises(Conflict, match="sealed"):
        researcher._transport.run(_more_tasks(project.id))
    other = researcher.flow.create_classify_flow("other", "?", ["x", "y"])
    with pytest.raises(ValidationError, match="text, url, path"):
        researcher.projects.create(other, [{"body": "no datapoint column"}])


def test_deleting_a_project_drops_its_queue_and_stops_its_live_items(researcher: Client) -> None:
    flow = researcher.flow.create_ranking_flow("deleted", "Which?", max_response_threshold=1)
    project = researcher.projects.create(flow, pair_rows(10), live_items=3)
    deadline = time.monotonic() + 10
    while project.get_progress().items_live < 3 and time.monotonic() < deadline:
        time.sleep(0.02)  # the window fills just after the start
    assert project.last_status.items_live == 3 and project.last_status.items_queued == 7
    project.delete()
    with pytest.raises(NotFound):
        project.get_progress()
    items = flow.get_flow_items(amount=None)
    assert len(items) == 3 and all(i.last_status.state.value == "Stopped" for i in items)
    assert "its batch project was deleted" in (items[0].last_status.reason or "")
    with crowd(researcher) as c:
        time.sleep(0.5)
    assert c.stats.votes == 0  # nothing of it is served any more


def _more_tasks(project_id: str):  # type: ignore[no-untyped-def]
    from flowlab.client._projects import _post_tasks

    return _post_tasks(project_id, [{"datapoints": [{"text": "a"}, {"text": "b"}]}])


def test_cli_runs_a_project_from_a_file(flowlab_server: ServerProcess, tmp_path: Path) -> None:
    with flowlab_server.client() as admin:
        key = admin.keys.create("cli projects").key
    server = ServerProcess(data_dir=flowlab_server.data_dir, port=flowlab_server.port, api_key=key)
    data = write_jsonl(tmp_path / "pairs.jsonl", pair_rows(10))
    made = cli("projects", "create", str(data), "--instruction", "Which reply?", "--responses", "1", server=server)
    assert made.returncode == 0, made.stderr
    project_id = made.stdout.split()[1]
    assert "0/10 tasks" in made.stdout
    with Client(url=server.url, api_key=key) as client, crowd(client):
        client.projects.get(project_id).wait(timeout=30)
    watched = cli("projects", "status", project_id, "--watch", server=server)
    assert watched.returncode == 0 and "[completed] 10/10 tasks, 100.0% of answers" in watched.stdout
    listed = cli("projects", "list", server=server)
    assert project_id in listed.stdout and "completed" in listed.stdout
    out = tmp_path / "deliverable"
    delivered = cli("projects", "deliver", project_id, "--out", str(out), server=server)
    assert delivered.returncode == 0, delivered.stderr
    assert len((out / "tasks.jsonl").read_text().splitlines()) == 10 and (out / "manifest.json").exists()
    missing = cli("projects", "pause", "proj_0000000000000000", server=server)
    assert missing.returncode == 1 and "No project" in missing.stderr


def test_projects_on_postgresql_from_the_async_client(pg_dsn: str, tmp_path: Path) -> None:
    import asyncio

    from flowlab import AsyncClient

    server = ServerProcess(data_dir=tmp_path, extra_args=["--db", pg_dsn])
    server.start()
    try:

        async def run() -> dict[str, list[dict[str, object]]]:
            async with AsyncClient(url=server.url, api_key=server.api_key) as client:
                flow = await client.flow.create_ranking_flow(name="pg project", instruction="Which?")
                await flow.update_config(max_response_threshold=1)
                flow = await client.flow.get_flow_by_id(flow.id)
                project = await client.projects.create(flow, pair_rows(15), live_items=3)
                with SimulatedCrowd(server.url, server.api_key, annotators=3, rate=60_000, bulk=True, accuracy=1.0):
                    status = await project.wait(timeout=30)
                assert status.state == "completed" and [p.id for p in await client.projects.list()] == [project.id]
                return await project.deliverable()

        tables = asyncio.run(run())
        server.restart()  # the project's rows read back from PostgreSQL
        with server.client() as client:
            assert client.projects.list()[0].get_progress().tasks_done == 15
    finally:
        server.stop()
    assert [t["winner"] for t in tables["tasks"]] == ["b"] * 15 and len(tables["votes"]) == 15


def test_project_monitor_widget_and_dashboard_follow_and_pause(researcher: Client) -> None:
    pytest.importorskip("ipywidgets", reason="the workbench needs the lab extra: pip install 'flowlab[lab]'")
    pytest.importorskip("panel")
    import asyncio

    from flowlab_widgets import ProjectMonitor
    from flowlab_widgets.dashboard import Dashboard

    from .test_widgets import in_fresh_thread, wait_until

    flow = researcher.flow.create_ranking_flow("widget project", "Which?", max_response_threshold=1)
    project = researcher.projects.create(flow, pair_rows(20), live_items=4)
    monitor = ProjectMonitor(project, live=False)
    try:
        assert monitor.bar.max == 20 and monitor.bar.value == 0
        assert "0 / 20</span> tasks" in monitor.stats.value and not monitor.pause_button.disabled
        monitor.pause_button.click()
        assert monitor.status.state == "paused" and monitor.resume_button.disabled is False
        assert project.get_status() == "paused"

        async def look() -> Dashboard:
            board = Dashboard(researcher.url, researcher.api_key, flow_id=flow.id)
            await board.refresh()
            board.project_select.value = project.id
            await board.refresh()
            assert not board.resume_button.disabled and board.pause_button.disabled
            await board._project_action("resume")
            await board.client.aclose()
            return board

        board = in_fresh_thread(lambda: asyncio.run(look()))
        assert f'data-project="{project.id}"' in board.projects_table.object
        assert project.get_status() == "running"  # the dashboard's Resume resumed it
    finally:
        monitor.close()
    live = in_fresh_thread(lambda: ProjectMonitor(project, poll_interval=0.1))  # no event loop: a polling thread
    try:
        with crowd(researcher):
            assert wait_until(lambda: live.status is not None and live.status.state == "completed", timeout=30)
        assert live.bar.value == live.bar.max == 20 and live.bar.bar_style == "success"
        assert "20 / 20</span> tasks" in live.stats.value and live.pause_button.disabled
    finally:
        live.close()
