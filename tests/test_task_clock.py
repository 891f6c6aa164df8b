"""A task's time starts when it is on screen: `POST /v1/tasks/{id}/shown` starts its lease's clock again, once;
a task held and never shown expires at its usual time. With a fake clock in process, and over HTTP against a
real server."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

import flowlab
from flowlab import schemas
from flowlab.server.clock import FakeClock
from flowlab.server.errors import Conflict, NotFound
from flowlab.server.service import FlowService

from .conftest import ServerProcess
from .test_lifecycle import RESEARCHER, annotator, make_item, run

# ---------------------------------------------------------------- in process, with a fake clock


def test_a_shown_task_gets_its_full_lease_and_a_held_one_expires_as_usual(tmp_path: Path) -> None:
    async def scenario(service: FlowService, clock: FakeClock) -> None:
        ann = await annotator(service)
        await make_item(service, n=6, max_votes=20, lease_seconds=10)
        start = clock.now()
        held, shown = service.answers.lease_next(ann), service.answers.lease_next(ann)
        assert held is not None and shown is not None
        assert held.lease_expires_at == shown.lease_expires_at == start + 10

        clock.advance(6)  # the person spends 6 s on another task
        reply = service.answers.shown(ann, shown.task_id)
        assert reply.shown_at == reply.server_time == start + 6
        assert reply.lease_expires_at == start + 16, "the full lease, from when it is on screen"
        assert service.leases.get(shown.task_id).shown_at == start + 6  # type: ignore[union-attr]
        assert service.tick() <= start + 10, "the held task still expires at its usual time"

        clock.advance(4.5)
        service.tick()
        assert service.leases.get(held.task_id) is None, "never shown: released at its usual expiry"
        with pytest.raises(Conflict) as err:
            await service.answers.answer(ann, held.task_id, schemas.Answer(choice="a"))
        assert err.value.code == "lease_expired"
        assert service.leases.get(shown.task_id) is not None, "past its first expiry, the shown task is still out"
        again = service.answers.shown(ann, shown.task_id)
        assert (again.lease_expires_at, again.shown_at) == (start + 16, start + 6), "shown twice: moved once"
        assert again.server_time == start + 10.5

        clock.advance(6)
        service.tick()  # the sweep finds the moved expiry (re-pushed on its heap) and releases it
        assert service.leases.get(shown.task_id) is None
        with pytest.raises(Conflict) as err:
            service.answers.shown(ann, shown.task_id)
        assert err.value.code == "lease_expired"

    run(scenario, tmp_path)


def test_a_shown_task_answered_after_its_first_expiry_counts(tmp_path: Path) -> None:
    async def scenario(service: FlowService, clock: FakeClock) -> None:
        ann = await annotator(service)
        item = await make_item(service, n=4, max_votes=20, lease_seconds=10)
        service.answers.lease_next(ann)  # on screen
        task = service.answers.lease_next(ann)  # held behind it
        assert task is not None
        clock.advance(8)
        service.answers.shown(ann, task.task_id)
        clock.advance(9)  # 17 s after it was leased, 9 s after it was shown
        service.tick()
        ack = await service.answers.answer(ann, task.task_id, schemas.Answer(choice="a"))
        assert ack.status == "accepted" and item.response_count == 1

    run(scenario, tmp_path)


def test_the_restarted_clock_never_passes_the_items_deadline(tmp_path: Path) -> None:
    async def scenario(service: FlowService, clock: FakeClock) -> None:
        ann = await annotator(service)
        item = await make_item(service, n=4, ttl=12, max_votes=20, lease_seconds=10)
        task = service.answers.lease_next(ann)
        assert task is not None
        clock.advance(5)
        reply = service.answers.shown(ann, task.task_id)
        assert reply.lease_expires_at == item.deadline, "bounded by the item's deadline"

    run(scenario, tmp_path)


def test_a_model_writing_when_the_task_is_shown_gives_the_full_lease_after_its_reply(tmp_path: Path) -> None:
    async def scenario(service: FlowService, clock: FakeClock) -> None:
        ann = await annotator(service)
        await make_item(service, n=4, max_votes=20, lease_seconds=10)
        task = service.answers.lease_next(ann)
        assert task is not None
        lease = service.leases.get(task.task_id)
        assert lease is not None
        start = clock.now()
        clock.advance(2)
        service.leases.pause(lease, clock.now())  # a reply is asked for (a chat page shows and asks at once)
        clock.advance(1)
        service.answers.shown(ann, task.task_id)
        clock.advance(4)
        service.leases.resume(lease, clock.now())  # the reply ends at start + 7
        assert lease.expires_at == start + 17, "the full lease once the clock runs again"

    run(scenario, tmp_path)


def test_shown_is_refused_like_an_answer(tmp_path: Path) -> None:
    async def scenario(service: FlowService, clock: FakeClock) -> None:
        ann, other = await annotator(service, "a1"), await annotator(service, "a2")
        item = await make_item(service, n=6, max_votes=20, lease_seconds=10)
        answered, skipped, open_ = (service.answers.lease_next(ann) for _ in range(3))
        assert answered is not None and skipped is not None and open_ is not None
        with pytest.raises(NotFound):
            service.answers.shown(other, open_.task_id)
        assert service.leases.get(open_.task_id).shown_at is None  # type: ignore[union-attr]
        with pytest.raises(NotFound):
            service.answers.shown(ann, "task_nobody_has")
        await service.answers.answer(ann, answered.task_id, schemas.Answer(choice="a"))
        await service.answers.answer(ann, skipped.task_id, schemas.Answer(choice="skip"))
        for task, code in [(answered, "answered"), (skipped, "skipped")]:
            with pytest.raises(Conflict) as err:
                service.answers.shown(ann, task.task_id)
            assert err.value.code == code
        await service.items.stop(RESEARCHER, item.id)
        with pytest.raises(Conflict) as err:
            service.answers.shown(ann, open_.task_id)
        assert err.value.code == "item_ended"

    run(scenario, tmp_path)


# ---------------------------------------------------------------- over HTTP, against a real server


def _at(server_time: float, timeout: float = 15.0) -> None:
    """Wait until the server's clock (this machine's) reads at least `server_time`."""
    deadline = time.monotonic() + timeout
    while time.time() < server_time:
        assert time.monotonic() < deadline, f"the clock never reached {server_time}"
        time.sleep(0.02)


def test_shown_over_http(fresh_server: ServerProcess) -> None:
    lease = 3.0
    with fresh_server.client() as client:
        _shown_over_http(fresh_server.url, client, lease)


def _shown_over_http(url: str, client: flowlab.Client, lease: float) -> None:
    flow = client.flow.create_ranking_flow(
        name="full time", instruction="Which?", max_response_threshold=50, lease_seconds=lease
    )
    item = flow.create_new_flow_batch(datapoints=[f"t{i}" for i in range(6)], time_to_live=120)
    ann, other = client.annotators.create("Shown Sam"), client.annotators.create("Other Olga")
    mine = {"Authorization": f"Bearer {ann.token}"}
    theirs = {"Authorization": f"Bearer {other.token}"}
    with httpx.Client(base_url=url, timeout=10) as http:

        def lease_one() -> dict[str, Any]:
            task: dict[str, Any] = http.post("/v1/tasks/next", json={}, headers=mine).raise_for_status().json()
            return task

        def shown(task_id: str, headers: dict[str, str] = mine) -> httpx.Response:
            return http.post(f"/v1/tasks/{task_id}/shown", headers=headers)

        held, later = lease_one(), lease_one()
        assert later["lease_expires_at"] - later["server_time"] == pytest.approx(lease)
        _at(later["server_time"] + 1.5)  # on screen 1.5 s after it was leased
        first = shown(later["task_id"])
        assert first.status_code == 200, first.text
        reply = schemas.Shown(**first.json())
        assert reply.shown_at == reply.server_time
        assert reply.lease_expires_at == pytest.approx(reply.shown_at + lease, abs=1e-6)
        assert reply.lease_expires_at > later["lease_expires_at"] + 1.4

        again = shown(later["task_id"]).json()
        assert (again["lease_expires_at"], again["shown_at"]) == (reply.lease_expires_at, reply.shown_at)
        assert shown(later["task_id"], theirs).status_code == 404, "another annotator's task"
        assert shown("task_0_nobody").status_code == 404

        # The held task was never shown: its lease ran out at its usual time. The shown one still runs.
        _at(held["lease_expires_at"] + 0.1)
        late = http.post(f"/v1/tasks/{held['task_id']}/answer", json={"choice": "a"}, headers=mine)
        assert late.status_code == 409 and late.json()["code"] == "lease_expired"
        refused = shown(held["task_id"])
        assert refused.status_code == 409 and refused.json()["code"] == "lease_expired"
        assert time.time() > later["lease_expires_at"], "past the shown task's first expiry"
        ok = http.post(f"/v1/tasks/{later['task_id']}/answer", json={"choice": "a"}, headers=mine)
        assert ok.status_code == 200 and ok.json()["status"] == "accepted"

        # An answer after the restarted expiry is refused as expired.
        third = lease_one()
        restarted = shown(third["task_id"]).json()["lease_expires_at"]
        _at(restarted + 0.1)
        expired = http.post(f"/v1/tasks/{third['task_id']}/answer", json={"choice": "a"}, headers=mine)
        assert expired.status_code == 409 and expired.json()["code"] == "lease_expired"
    assert item.get_response_count() == 1
