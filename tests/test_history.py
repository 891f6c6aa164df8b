"""Ended items leave memory and are read back from the database exactly as they were; start-up reads live
work only; a database from before this layout is upgraded in place."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import httpx
import msgspec
import numpy as np

from flowlab import FlowItemState, ranking, schemas
from flowlab.crowd import SimulatedCrowd
from flowlab.server.clock import FakeClock
from flowlab.server.errors import Conflict
from flowlab.server.media import MediaStore
from flowlab.server.service import FlowService
from flowlab.server.store import StoreUnavailable
from flowlab.server.store.sqlite import SQLiteStore

from .conftest import ADMIN_KEY, ServerProcess
from .test_lifecycle import RESEARCHER, annotator, make_item, vote

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


def _reads(url: str, item_id: str) -> dict[str, object]:
    def get(path: str) -> object:
        return httpx.get(f"{url}/v1/items/{item_id}{path}", headers=AUTH, timeout=10).raise_for_status().json()

    status = get("")
    assert isinstance(status, dict)
    status.pop("server_time")
    detail = get("/detail")
    assert isinstance(detail, dict)
    detail["status"].pop("server_time")
    return {
        "status": status,
        "results": get("/results"),
        "matrix": get("/matrix"),
        "votes": get("/votes"),
        "detail": detail,
    }


def test_an_ended_item_reads_back_the_same_from_the_database(fresh_server: ServerProcess) -> None:
    with fresh_server.client() as client:
        flow = client.flow.create_ranking_flow(name="h", instruction="Which?", max_response_threshold=24)
        item = flow.create_new_flow_batch(datapoints=["w", "x", "y", "z"], time_to_live=60)
        with SimulatedCrowd(fresh_server.url, fresh_server.api_key, annotators=4, rate=6000, seed=5):
            item.get_results(timeout=30)
        before = _reads(fresh_server.url, item.id)
        listed = [s.id for s in flow.get_flow_items()]
    health = httpx.get(f"{fresh_server.url}/v1/health").json()
    assert health["live_items"] == 1, "kept in memory for a while after it ended"
    fresh_server.restart()  # start-up loads live items only: from here on the item comes from the database
    assert httpx.get(f"{fresh_server.url}/v1/health").json()["live_items"] == 0
    after = _reads(fresh_server.url, item.id)
    assert after == before
    assert before["status"]["state"] == "Completed" and len(before["votes"]) == 24  # type: ignore[index]
    with fresh_server.client() as client:
        again = client.flow.get_flow_by_id(flow.id)
        assert [s.id for s in again.get_flow_items()] == listed
        assert again.config.item_count == 1
        ended = again.get_flow_item(item.id)
        assert ended.get_progress().state == FlowItemState.COMPLETED
        assert ended.get_results().to_dataframe().shape[0] == 4
        events = list(ended.watch())
    assert len(events) == 1 and events[0].full and events[0].response_count == 24
    assert events[0].counts == before["matrix"]["counts"]  # type: ignore[index]
    waited = httpx.get(f"{fresh_server.url}/v1/items/{item.id}/wait?since=0&timeout=20", headers=AUTH, timeout=5)
    assert waited.json()["state"] == "Completed", "a long poll on an ended item answers at once"


def test_ended_items_leave_memory_and_their_results_stay_right(tmp_path: Path) -> None:
    server = ServerProcess(data_dir=tmp_path, extra_args=["--retain-ended", "0"])
    server.start()
    try:
        with server.client() as client:
            flow = client.flow.create_ranking_flow(name="m", instruction="Which?", max_response_threshold=30)
            items = [
                flow.create_new_flow_batch(datapoints=[f"{k}{i}" for i in range(5)], time_to_live=60) for k in "abc"
            ]
            with SimulatedCrowd(server.url, server.api_key, annotators=6, rate=12000, seed=6):
                for item in items:
                    item.get_results(timeout=30)
            deadline = time.monotonic() + 10
            while httpx.get(f"{server.url}/v1/health").json()["live_items"] and time.monotonic() < deadline:
                time.sleep(0.05)
            assert httpx.get(f"{server.url}/v1/health").json()["live_items"] == 0, "ended items left memory"
            for item in items:
                votes = httpx.get(f"{server.url}/v1/items/{item.id}/votes", headers=AUTH).json()
                wins = np.zeros((5, 5))
                for v in votes:
                    wins[v["winner"], v["loser"]] += 1
                expected = ranking.fit_bradley_terry(wins, 5)
                results = httpx.get(f"{server.url}/v1/items/{item.id}/results", headers=AUTH).json()
                assert results["total_votes"] == len(votes) == 30 and not results["partial"]
                by_index = {d["index"]: d for d in results["datapoints"]}
                np.testing.assert_allclose([by_index[i]["score"] for i in range(5)], expected.scores, atol=1e-6)
                matrix = item.get_win_loss_matrix().to_numpy()
                np.testing.assert_array_equal(matrix, wins)
            statuses = flow.get_flow_items()
            assert [s.get_progress().state for s in statuses] == ["Completed"] * 3
            assert client.flow.get_flow_by_id(flow.id).config.item_count == 3
            flow.delete()
            assert httpx.get(f"{server.url}/v1/items/{items[0].id}", headers=AUTH).status_code == 404
    finally:
        server.stop()


# ---------------------------------------------------------------- in process, with a fake clock


async def _service(data_dir: Path, clock: FakeClock, **store_options: float) -> tuple[FlowService, SQLiteStore]:
    store = SQLiteStore(data_dir / "db.sqlite3", **store_options)
    service = FlowService(store, MediaStore(data_dir / "media"), clock, seed=1, retain_ended=0.0)
    service.bootstrap(data_dir, "fl_key_test")
    await store.start()
    service.resume()
    return service, store


async def _settle(service: FlowService) -> None:
    for _ in range(50):
        await asyncio.sleep(0.01)
        service.tick()


def test_start_up_reads_live_items_and_tallies_not_the_history(tmp_path: Path) -> None:
    clock = FakeClock()

    versions: list[int] = []

    async def first() -> tuple[str, str, str]:
        service, store = await _service(tmp_path, clock)
        ann = await annotator(service)
        ended = await make_item(service, max_votes=3)
        for _ in range(3):
            await vote(service, ann)
        live = await make_item(service, max_votes=10)
        await vote(service, ann)
        in_memory = live.flow.version
        await _settle(service)
        assert ended.id not in service.items.live and live.id in service.items.live
        assert live.flow.version == in_memory, "an item leaving memory leaves its flow's version as it was"
        versions.append(live.flow.version)
        await store.close()
        return ann.id, ended.id, live.id

    ann_id, ended_id, live_id = asyncio.run(first())
    snap = SQLiteStore(tmp_path / "db.sqlite3").load()
    assert [r["id"] for r in snap.items] == [live_id]
    assert {v["item_id"] for v in snap.votes} == {live_id}, "votes of ended items stay in the database"
    assert next(a for a in snap.annotators if a["id"] == ann_id)["votes"] == 4

    async def second() -> None:
        service, store = await _service(tmp_path, clock)
        assert set(service.items.live) == {live_id}
        assert service.people.annotator_stats(ann_id).votes == 4
        assert service.items.live[live_id].response_count == 1
        assert service.items.live[live_id].flow.version == versions[0], "flow versions survive a restart"
        results = await service.items.results_of(RESEARCHER, ended_id)
        assert results.total_votes == 3 and results.state == "Completed"
        await store.close()

    asyncio.run(second())


def test_a_failed_commit_counts_nothing_and_its_retry_counts_once(tmp_path: Path) -> None:
    clock = FakeClock()

    async def scenario() -> None:
        service, store = await _service(tmp_path, clock, busy_timeout=0.2)
        store.probe_every = 0.05
        ann = await annotator(service)
        item = await make_item(service, max_votes=5)
        task = service.answers.lease_next(ann)
        assert task is not None
        blocker = sqlite3.connect(tmp_path / "db.sqlite3", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            answer = schemas.Answer(choice="a")
            try:
                await service.answers.answer(ann, task.task_id, answer)
                raise AssertionError("the answer was acknowledged while the database could not be written")
            except StoreUnavailable:
                pass
            assert item.response_count == 0 and item.tally.wins.sum() == 0, "a failed commit counts nothing"
            assert service.health()["status"] == "degraded"
            try:
                await service.answers.answer(ann, task.task_id, answer)
                raise AssertionError("acknowledged while degraded")
            except StoreUnavailable:
                pass
        finally:
            blocker.rollback()
            blocker.close()
        for _ in range(100):
            if service.health()["status"] == "ok":
                break
            await asyncio.sleep(0.02)
        assert service.health()["status"] == "ok"
        ack = await service.answers.answer(ann, task.task_id, answer)
        assert ack.status == "accepted"
        again = await service.answers.answer(ann, task.task_id, answer)
        assert again.status == "duplicate"
        assert item.response_count == 1 and store.count_votes() == 1
        assert service.people.annotator_stats(ann.id).votes == 1
        await store.close()

    asyncio.run(scenario())


def test_a_lease_whose_answer_is_committing_neither_expires_nor_is_served_again(tmp_path: Path) -> None:
    clock = FakeClock()

    async def scenario() -> None:
        service, store = await _service(tmp_path, clock)
        ann, other = await annotator(service, "a"), await annotator(service, "b")
        item = await make_item(service, max_votes=1, lease_seconds=5)
        task = service.answers.lease_next(ann)
        assert task is not None
        real_commit = store._commit
        started = asyncio.Event()
        loop = asyncio.get_running_loop()

        def slow_commit(batches: list) -> None:  # type: ignore[type-arg]
            loop.call_soon_threadsafe(started.set)
            time.sleep(0.3)
            real_commit(batches)

        store._commit = slow_commit  # type: ignore[method-assign]
        answering = asyncio.ensure_future(service.answers.answer(ann, task.task_id, schemas.Answer(choice="b")))
        await started.wait()
        clock.advance(10)  # the lease's time runs out while its answer commits
        service.tick()
        assert service.answers.lease_next(other) is None, "the committing answer still holds the only slot"
        assert (await answering).status == "accepted"
        store._commit = real_commit  # type: ignore[method-assign]
        assert item.response_count == 1 and item.state == "Completed"
        try:
            await service.answers.answer(ann, task.task_id, schemas.Answer(choice="b"))
        except Conflict:
            raise AssertionError("a retry of a counted answer is a duplicate, not a conflict") from None
        await store.close()

    asyncio.run(scenario())


OLD_SCHEMA = """
CREATE TABLE keys (id TEXT PRIMARY KEY, name TEXT NOT NULL, key_hash TEXT NOT NULL UNIQUE,
    admin INTEGER NOT NULL, created_at REAL NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE annotators (id TEXT PRIMARY KEY, name TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL, created_at REAL NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE flows (id TEXT PRIMARY KEY, owner TEXT NOT NULL, config TEXT NOT NULL, created_at REAL NOT NULL,
    updated_at REAL NOT NULL);
CREATE TABLE items (id TEXT PRIMARY KEY, flow_id TEXT NOT NULL, body TEXT NOT NULL, created_at REAL NOT NULL,
    state TEXT NOT NULL, started_at REAL, ended_at REAL, reason TEXT);
CREATE TABLE votes (seq INTEGER PRIMARY KEY, task_id TEXT NOT NULL UNIQUE, item_id TEXT NOT NULL,
    annotator_id TEXT NOT NULL, winner INTEGER NOT NULL, loser INTEGER NOT NULL, tie INTEGER NOT NULL,
    created_at REAL NOT NULL);
CREATE TABLE gold_answers (task_id TEXT PRIMARY KEY, annotator_id TEXT NOT NULL, flow_id TEXT NOT NULL,
    correct INTEGER NOT NULL, created_at REAL NOT NULL);
CREATE TABLE media (sha256 TEXT PRIMARY KEY, media_type TEXT NOT NULL, kind TEXT NOT NULL, size INTEGER NOT NULL,
    created_at REAL NOT NULL);
"""


def test_a_database_from_before_is_upgraded_in_place(tmp_path: Path) -> None:
    """Made as the first release wrote it: ended items without a final record, tallies only in the votes."""
    clock = FakeClock()
    config = {"name": "old", "instruction": "Which?", "max_response_threshold": 3, "min_response_threshold": 3}
    body = {
        "config": config,
        "datapoints": [{"index": i, "key": k, "kind": "text", "text": k} for i, k in enumerate("pq")],
        "context": None,
        "context_assets": [],
        "private_metadata": None,
        "ttl": 60.0,
    }
    now = clock.now()
    with sqlite3.connect(tmp_path / "db.sqlite3") as db:
        db.executescript(OLD_SCHEMA)
        db.execute("INSERT INTO annotators VALUES ('ann_1', 'old', 'h', 'key_r', ?, 0)", (now,))
        db.execute(
            "INSERT INTO flows VALUES ('flow_1', 'key_r', ?, ?, ?)", (msgspec.json.encode(config).decode(), now, now)
        )
        db.execute(
            "INSERT INTO items VALUES ('item_1', 'flow_1', ?, ?, 'Completed', ?, ?, NULL)",
            (msgspec.json.encode(body).decode(), now - 100, now - 99, now - 90),
        )
        for i, (w, lo) in enumerate([(0, 1), (0, 1), (1, 0)]):
            db.execute(
                "INSERT INTO votes VALUES (NULL, ?, 'item_1', 'ann_1', ?, ?, 0, ?)", (f"task_{i}", w, lo, now - 95)
            )
        db.execute("INSERT INTO gold_answers VALUES ('task_g', 'ann_1', 'flow_1', 1, ?)", (now - 95,))

    async def scenario() -> None:
        service, store = await _service(tmp_path, clock)
        assert service.people.annotator_stats("ann_1").votes == 3
        assert service.people.annotator_stats("ann_1").gold_correct == 1
        await _settle(service)
        assert "item_1" not in service.items.live, "the old ended item was finalised and left memory"
        matrix = await service.items.matrix_of(RESEARCHER, "item_1")
        assert matrix.counts == [[0.0, 2.0], [1.0, 0.0]] and matrix.response_count == 3
        await store.close()

    asyncio.run(scenario())
    assert SQLiteStore(tmp_path / "db.sqlite3").load().items == []


def test_a_batch_waiting_on_the_database_cannot_let_an_answer_count_twice(tmp_path: Path) -> None:
    """A batch that must look a task up in the database does so before it checks any lease: a second copy
    of one of its answers, arriving meanwhile, finds the lease committing (or counted), never free."""
    clock = FakeClock()

    async def scenario() -> None:
        service, store = await _service(tmp_path, clock)
        ann = await annotator(service)
        item = await make_item(service, max_votes=10)
        task = service.answers.lease_next(ann)
        assert task is not None
        batch = asyncio.ensure_future(
            service.answers.answer_batch(
                ann,
                [
                    schemas.AnswerIn(task_id=task.task_id, choice="a"),
                    schemas.AnswerIn(task_id="task_from_long_ago", choice="a"),  # only the database can say
                ],
            )
        )
        await asyncio.sleep(0)
        single = await service.answers.answer(ann, task.task_id, schemas.Answer(choice="a"))
        acks = await batch
        assert sorted([single.status, acks[0].status]) == ["accepted", "duplicate"]
        assert acks[1].code == "unknown_task"
        assert item.response_count == 1 and item.tally.wins.sum() == 1
        assert store.count_votes() == 1
        assert store.read("SELECT votes FROM annotators WHERE id = ?", (ann.id,))[0]["votes"] == 1
        await store.close()

    asyncio.run(scenario())


def test_a_commit_whose_outcome_was_lost_counts_once_when_retried(tmp_path: Path) -> None:
    """The one injected fault: the transaction commits but its connection fails before the server hears
    so (a cut connection during COMMIT cannot be produced on demand). The retry lands once, tallies too."""
    clock = FakeClock()

    async def scenario() -> None:
        service, store = await _service(tmp_path, clock)
        store.probe_every = 0.02
        ann = await annotator(service)
        item = await make_item(service, max_votes=10)
        task = service.answers.lease_next(ann)
        assert task is not None
        real_commit = store._commit
        armed = [True]

        def commit_then_lose(batches: list) -> None:  # type: ignore[type-arg]
            real_commit(batches)
            if armed[0]:
                armed[0] = False
                raise sqlite3.OperationalError("disk I/O error (after COMMIT)")

        store._commit = commit_then_lose  # type: ignore[method-assign]
        try:
            await service.answers.answer(ann, task.task_id, schemas.Answer(choice="a"))
            raise AssertionError("acknowledged although the server never heard the commit succeed")
        except StoreUnavailable:
            pass
        assert item.response_count == 0, "not counted: the server cannot know it landed"
        for _ in range(100):
            if store.degraded is None:
                break
            await asyncio.sleep(0.02)
        ack = await service.answers.answer(ann, task.task_id, schemas.Answer(choice="a"))
        assert ack.status == "accepted" and item.response_count == 1
        assert store.count_votes() == 1
        assert store.read("SELECT votes FROM annotators WHERE id = ?", (ann.id,))[0]["votes"] == 1
        await store.close()

    asyncio.run(scenario())


def test_a_stream_far_behind_gets_a_snapshot_not_every_vote(tmp_path: Path) -> None:
    from flowlab.server import events

    clock = FakeClock()

    async def scenario() -> None:
        service, store = await _service(tmp_path, clock)
        flow = await service.flows.create(
            RESEARCHER, schemas.FlowCreate(name="f", instruction="?", max_response_threshold=100_000)
        )
        status = await service.create_item(
            RESEARCHER,
            flow.id,
            schemas.ItemCreate(datapoints=[schemas.DatapointIn(text=t) for t in "abcd"], time_to_live=600),
        )
        item = service.items.live[status.id]
        stream = events.item_stream(service, item, None)
        await anext(stream)  # the retry hint
        first = msgspec.json.decode((await anext(stream)).data, type=schemas.ItemEvent)
        assert first.full and first.delta == []
        for _ in range(3):  # a few votes: the next message carries just them
            item.tally.add(0, 1, False, "ann")
            item.response_count += 1
        item.touch()
        small = msgspec.json.decode((await anext(stream)).data, type=schemas.ItemEvent)
        assert not small.full and len(small.delta) == 3
        for _ in range(events.MAX_DELTA_ROWS + 1):  # a subscriber that stopped reading for a long time
            item.tally.add(2, 3, False, "ann")
            item.response_count += 1
        item.touch()
        big = msgspec.json.decode((await anext(stream)).data, type=schemas.ItemEvent)
        assert big.full and big.delta == [] and big.counts is not None and big.counts[2][3] == events.MAX_DELTA_ROWS + 1
        await stream.aclose()
        await store.close()

    asyncio.run(scenario())


def test_rotating_a_generated_admin_key_rewrites_its_file(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = SQLiteStore(tmp_path / "db.sqlite3")
        service = FlowService(store, MediaStore(tmp_path / "media"), FakeClock(), seed=1)
        generated = service.bootstrap(tmp_path, None)
        await store.start()
        assert generated and (tmp_path / "admin_key").read_text().strip() == generated
        admin = service.auth.identify(f"Bearer {generated}")
        made = await service.people.rotate_key(admin, admin.id)
        assert (tmp_path / "admin_key").read_text().strip() == made.key, "the file follows the rotation"
        assert (tmp_path / "admin_key").stat().st_mode & 0o777 == 0o600
        await store.close()

    asyncio.run(scenario())
