"""Item lifecycle and scheduling, driven through the service with a fake clock and a real SQLite file."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from flowlab import schemas
from flowlab.server.auth import Principal
from flowlab.server.clock import FakeClock
from flowlab.server.errors import Conflict, Invalid
from flowlab.server.media import MediaStore
from flowlab.server.service import FlowService
from flowlab.server.store.sqlite import SQLiteStore

RESEARCHER = Principal("key_r", "researcher", "admin")


def run(
    fn: Callable[[FlowService, FakeClock], Awaitable[Any]],
    data_dir: Path,
    clock: FakeClock | None = None,
) -> Any:
    """Run `fn` against a service on `data_dir`, as one server lifetime."""
    clock = clock or FakeClock()

    async def main() -> Any:
        store = SQLiteStore(data_dir / "db.sqlite3")
        service = FlowService(store, MediaStore(data_dir / "media"), clock, seed=1)
        service.bootstrap(data_dir, "fl_key_test")
        await store.start()
        try:
            return await fn(service, clock)
        finally:
            await store.close()

    return asyncio.run(main())


async def annotator(service: FlowService, name: str = "ann") -> Principal:
    made = await service.people.create_annotator(RESEARCHER, name, "http://x")
    return service.auth.identify(f"Bearer {made.token}")


async def make_item(
    service: FlowService,
    *,
    n: int = 4,
    ttl: float = 100.0,
    max_votes: int = 10,
    min_votes: int | None = None,
    **flow_options: Any,
) -> Any:
    # One annotator may give an item all its votes here (the lifecycle is under test, not who answers).
    flow_options.setdefault("max_votes_per_annotator", max_votes)
    flow = await service.flows.create(
        RESEARCHER,
        schemas.FlowCreate(
            name="f",
            instruction="Which is better?",
            max_response_threshold=max_votes,
            min_response_threshold=min_votes,
            **flow_options,
        ),
    )
    status = await service.create_item(
        RESEARCHER,
        flow.id,
        schemas.ItemCreate(datapoints=[schemas.DatapointIn(text=f"t{i}") for i in range(n)], time_to_live=ttl),
    )
    return service.items.live[status.id]


async def vote(service: FlowService, who: Principal, choice: str = "a") -> schemas.Ack:
    task = service.answers.lease_next(who)
    assert task is not None, "expected a task to be served"
    return await service.answers.answer(who, task.task_id, schemas.Answer(choice=choice))  # type: ignore[arg-type]


def test_item_runs_then_drains_then_completes_with_min_votes(tmp_path: Path) -> None:
    async def scenario(service: FlowService, clock: FakeClock) -> None:
        ann = await annotator(service)
        item = await make_item(service, ttl=100, max_votes=10, min_votes=2)
        assert item.state == "Pending"
        await vote(service, ann)
        assert item.state == "Running"
        await vote(service, ann)
        clock.advance(94.9)  # the drain window is min(5 s, 10 % of the TTL) = 5 s
        service.tick()
        assert item.state == "Running"
        task = service.answers.lease_next(ann)
        assert task is not None
        clock.advance(0.2)
        service.tick()
        assert item.state == "Stopping"
        assert service.answers.lease_next(ann) is None, "no new tasks in the drain window"
        # A lease handed out before the drain window may still be answered during it.
        ack = await service.answers.answer(ann, task.task_id, schemas.Answer(choice="b"))
        assert ack.status == "accepted"
        clock.advance(5.0)
        service.tick()
        assert item.state == "Completed"
        assert item.response_count == 3

    run(scenario, tmp_path)


def test_item_below_min_at_deadline_is_incomplete(tmp_path: Path) -> None:
    async def scenario(service: FlowService, clock: FakeClock) -> None:
        ann = await annotator(service)
        item = await make_item(service, ttl=10, max_votes=10, min_votes=3)
        await vote(service, ann)
        clock.advance(10.0)
        service.tick()
        assert item.state == "Incomplete"
        assert item.response_count == 1

    run(scenario, tmp_path)


def test_min_defaults_to_max(tmp_path: Path) -> None:
    async def scenario(service: FlowService, clock: FakeClock) -> None:
        ann = await annotator(service)
        item = await make_item(service, ttl=10, max_votes=3)
        assert item.config.min_response_threshold == 3
        await vote(service, ann)
        await vote(service, ann)
        clock.advance(10)
        service.tick()
        assert item.state == "Incomplete"

    run(scenario, tmp_path)


def test_reaching_max_completes_at_once_and_later_answers_get_409(tmp_path: Path) -> None:
    async def scenario(service: FlowService, clock: FakeClock) -> None:
        ann = await annotator(service)
        item = await make_item(service, max_votes=3)
        tasks = [service.answers.lease_next(ann) for _ in range(4)]
        assert tasks[3] is None, "leases count toward the maximum, so the item is never over-served"
        for t in tasks[:3]:
            assert t is not None
        for t in tasks[:3]:
            await service.answers.answer(ann, t.task_id, schemas.Answer(choice="a"))  # type: ignore[union-attr]
        assert item.state == "Completed"
        assert item.response_count == 3

    run(scenario, tmp_path)


def test_stop_refuses_outstanding_answers_with_409(tmp_path: Path) -> None:
    async def scenario(service: FlowService, clock: FakeClock) -> None:
        ann = await annotator(service)
        item = await make_item(service, max_votes=5)
        task = service.answers.lease_next(ann)
        assert task is not None
        await service.items.stop(RESEARCHER, item.id)
        assert item.state == "Stopped"
        with pytest.raises(Conflict) as err:
            await service.answers.answer(ann, task.task_id, schemas.Answer(choice="a"))
        assert err.value.code == "item_ended"
        assert item.response_count == 0

    run(scenario, tmp_path)


def test_expired_lease_is_served_again_and_late_answer_refused(tmp_path: Path) -> None:
    async def scenario(service: FlowService, clock: FakeClock) -> None:
        first, second = await annotator(service, "a1"), await annotator(service, "a2")
        item = await make_item(service, n=2, max_votes=1, lease_seconds=10)
        task = service.answers.lease_next(first)
        assert task is not None
        assert service.answers.lease_next(second) is None, "the only vote slot is leased"
        clock.advance(10.5)
        again = service.answers.lease_next(second)
        assert again is not None, "an expired lease frees its slot"
        assert {again.a.ref, again.b.ref} == {task.a.ref, task.b.ref}, "the same pair is served again"
        with pytest.raises(Conflict) as err:
            await service.answers.answer(first, task.task_id, schemas.Answer(choice="a"))
        assert err.value.code == "lease_expired"
        ack = await service.answers.answer(second, again.task_id, schemas.Answer(choice="a"))
        assert ack.status == "accepted" and item.response_count == 1

    run(scenario, tmp_path)


def test_second_answer_is_idempotent(tmp_path: Path) -> None:
    async def scenario(service: FlowService, clock: FakeClock) -> None:
        ann = await annotator(service)
        item = await make_item(service)
        task = service.answers.lease_next(ann)
        assert task is not None
        first = await service.answers.answer(ann, task.task_id, schemas.Answer(choice="a"))
        second = await service.answers.answer(ann, task.task_id, schemas.Answer(choice="b"))
        assert (first.status, second.status) == ("accepted", "duplicate")
        assert item.response_count == 1
        assert item.tally.wins.sum() == 1

    run(scenario, tmp_path)


def test_ties_only_where_allowed_and_count_half(tmp_path: Path) -> None:
    async def scenario(service: FlowService, clock: FakeClock) -> None:
        ann = await annotator(service)
        strict = await make_item(service)
        task = service.answers.lease_next(ann)
        assert task is not None and task.item_id == strict.id
        with pytest.raises(Invalid):
            await service.answers.answer(ann, task.task_id, schemas.Answer(choice="tie"))
        await service.items.stop(RESEARCHER, strict.id)
        loose = await make_item(service, allow_ties=True)
        await vote(service, ann, "tie")
        assert loose.tally.wins.sum() == 1.0
        assert sorted(loose.tally.wins[loose.tally.wins > 0].tolist()) == [0.5, 0.5]

    run(scenario, tmp_path)


def test_items_below_min_and_nearest_deadline_are_served_first(tmp_path: Path) -> None:
    async def scenario(service: FlowService, clock: FakeClock) -> None:
        ann = await annotator(service)
        late = await make_item(service, ttl=300, max_votes=10, min_votes=2)
        soon = await make_item(service, ttl=60, max_votes=10, min_votes=2)
        served = []
        for _ in range(4):
            task = service.answers.lease_next(ann)
            assert task is not None
            served.append(task.item_id)
            await service.answers.answer(ann, task.task_id, schemas.Answer(choice="a"))
        # The near-deadline item is filled to its minimum first, then the other one reaches its minimum
        # before the near one gets anything more.
        assert served == [soon.id, soon.id, late.id, late.id]

    run(scenario, tmp_path)


def test_uniform_pairs_cover_every_datapoint_before_repeating(tmp_path: Path) -> None:
    async def scenario(service: FlowService, clock: FakeClock) -> None:
        ann = await annotator(service)
        await make_item(service, n=9, max_votes=100)
        seen: set[int] = set()
        for _ in range(5):  # ceil(9 / 2) tasks show all nine
            task = service.answers.lease_next(ann)
            assert task is not None
            seen |= {task.a.ref, task.b.ref}
        assert seen == set(range(9))

    run(scenario, tmp_path)


def test_update_config_changes_only_new_items(tmp_path: Path) -> None:
    async def scenario(service: FlowService, clock: FakeClock) -> None:
        old = await make_item(service, max_votes=10)
        await service.flows.update(
            RESEARCHER,
            old.flow.id,
            schemas.FlowConfigUpdate(instruction="Which has fewer errors?", max_response_threshold=20),
        )
        new_status = await service.create_item(
            RESEARCHER,
            old.flow.id,
            schemas.ItemCreate(datapoints=[schemas.DatapointIn(text="x"), schemas.DatapointIn(text="y")]),
        )
        new = service.items.live[new_status.id]
        assert (old.config.instruction, old.config.max_response_threshold) == ("Which is better?", 10)
        assert (new.config.instruction, new.config.max_response_threshold) == ("Which has fewer errors?", 20)
        assert new.config.config_version == old.config.config_version + 1
        ann = await annotator(service)
        task = service.answers.lease_next(ann)
        assert task is not None and (task.item_id, task.instruction) == (old.id, "Which is better?")
        await service.items.stop(RESEARCHER, old.id)
        task = service.answers.lease_next(ann)
        assert task is not None and (task.item_id, task.instruction) == (new.id, "Which has fewer errors?")

    run(scenario, tmp_path)


def test_restart_keeps_votes_and_expires_items_whose_deadline_passed_while_down(tmp_path: Path) -> None:
    clock = FakeClock()

    async def first_life(service: FlowService, clock: FakeClock) -> tuple[str, str]:
        ann = await annotator(service)
        short = await make_item(service, ttl=30, max_votes=10, min_votes=2)
        await vote(service, ann)
        await vote(service, ann)
        long = await make_item(service, ttl=1000, max_votes=10, min_votes=5)
        return short.id, long.id

    short_id, long_id = run(first_life, tmp_path, clock)
    clock.advance(60)  # the server is down past the short item's deadline

    async def second_life(service: FlowService, clock: FakeClock) -> None:
        short, long = service.items.live[short_id], service.items.live[long_id]
        assert short.state == "Completed", "expired while down with enough votes"
        assert short.ended_at is not None and short.ended_at <= short.deadline + 1e-6
        assert short.response_count == 2 and short.tally.wins.sum() == 2
        assert long.state == "Pending" and long.id in service.items.active
        ann = await annotator(service, "again")
        await vote(service, ann)
        assert long.response_count == 1

    run(second_life, tmp_path, clock)


def test_a_repeated_answer_is_not_called_duplicate_before_the_first_is_durable(tmp_path: Path) -> None:
    async def scenario(service: FlowService, clock: FakeClock) -> None:
        ann = await annotator(service)
        await make_item(service)
        task = service.answers.lease_next(ann)
        assert task is not None
        store = service.store
        real_commit = store._commit
        committed: list[float] = []

        def slow_commit(batches: Any) -> None:
            import time

            time.sleep(0.2)
            real_commit(batches)
            committed.append(time.monotonic())

        store._commit = slow_commit
        first = asyncio.ensure_future(service.answers.answer(ann, task.task_id, schemas.Answer(choice="a")))
        await asyncio.sleep(0.01)  # the first answer is now waiting on its commit
        retry = await service.answers.answer(ann, task.task_id, schemas.Answer(choice="a"))
        import time

        assert retry.status == "duplicate"
        assert committed and committed[0] <= time.monotonic(), "duplicate only once the vote is durable"
        assert (await first).status == "accepted"
        assert store.count_votes() == 1

    run(scenario, tmp_path)


def test_a_skipped_pair_is_not_handed_straight_back(tmp_path: Path) -> None:
    async def scenario(service: FlowService, clock: FakeClock) -> None:
        ann = await annotator(service)
        await make_item(service, n=6, max_votes=50)
        task = service.answers.lease_next(ann)
        assert task is not None
        skipped = {task.a.ref, task.b.ref}
        await service.answers.answer(ann, task.task_id, schemas.Answer(choice="skip"))
        following = []
        for _ in range(3):
            t = service.answers.lease_next(ann)
            assert t is not None
            following.append({t.a.ref, t.b.ref})
        assert following[0] != skipped
        again = await service.answers.answer(ann, task.task_id, schemas.Answer(choice="skip"))
        assert again.status == "skipped", "a repeated skip is idempotent"

    run(scenario, tmp_path)


def test_a_flow_drain_window_never_swallows_a_short_item(tmp_path: Path) -> None:
    async def scenario(service: FlowService, clock: FakeClock) -> None:
        ann = await annotator(service)
        item = await make_item(service, ttl=5, drain_seconds=10)
        assert service.answers.lease_next(ann) is not None
        clock.advance(2.6)
        service.tick()
        assert item.state == "Stopping"

    run(scenario, tmp_path)


def test_datapoint_keys_never_collide(tmp_path: Path) -> None:
    async def scenario(service: FlowService, clock: FakeClock) -> None:
        flow = await service.flows.create(RESEARCHER, schemas.FlowCreate(name="k", instruction="?"))
        texts = [schemas.DatapointIn(text=t) for t in ("x", "x", "x#2")]
        keys = (await service.create_item(RESEARCHER, flow.id, schemas.ItemCreate(datapoints=texts))).keys
        assert len(set(keys)) == 3 and keys[0] == "x"
        mixed = [schemas.DatapointIn(text="foo"), schemas.DatapointIn(id="foo", text="bar")]
        keys = (await service.create_item(RESEARCHER, flow.id, schemas.ItemCreate(datapoints=mixed))).keys
        assert keys[1] == "foo" and keys[0] != "foo"

    run(scenario, tmp_path)
