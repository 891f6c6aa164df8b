"""Batch projects, seed 002's first pipeline: a team hands over a dataset of tasks, annotators label them with
no model online and no training loop waiting, and the labels come back as a deliverable.

A project belongs to one flow, which says what is asked (any kind) and how many answers a task needs. What
differs by kind is the kind's to say (`kinds/<kind>.py`): how many tasks an item of n datapoints holds
(`tasks_in`), the live window (`default_live_items`), and the table its answers are exported from
(`answers_table`, `votes`); nothing here names a kind.

Its tasks are uploaded into a queue in the database (`project_queue`, one row per item), then fed into the
flow as items a window at a time (`live_items`): memory holds a project's counters and its live items only,
so a project of a million tasks costs what its window costs. Its items have no deadline that matters (a year)
and run until answered; pausing stops new tasks being handed out (those already out
may still be answered); the project completes once its queue is empty and its last item has ended, in the
same transaction as its `project.completed` webhook. Counters move in the transaction that writes each
item's final record, so they survive a restart and count every item once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

import msgspec

from flowlab import schemas
from flowlab.server import lifecycle
from flowlab.server.auth import Principal
from flowlab.server.clock import Clock
from flowlab.server.errors import Conflict, Invalid, NotFound
from flowlab.server.flows import Flows
from flowlab.server.history import EndedRecord
from flowlab.server.items import ItemBody, Items
from flowlab.server.kinds import kind_of
from flowlab.server.model import FlowConfig, FlowRecord, ItemRecord, Signal
from flowlab.server.people import new_id
from flowlab.server.store import Op, Row, Store
from flowlab.server.webhooks import Webhooks

log = logging.getLogger("flowlab.projects")

PROJECT_TTL = 365 * 24 * 3600.0  # a project's items run until answered; a year stands for "no deadline"
MAX_ITEMS = 1_000_000  # item ids carry a 7-digit sequence number, so listing by id is dataset order
ADMIT_BATCH = 200
# The window refills once a twentieth of it has ended, so items are admitted in batches (one read and one
# commit for many), not one transaction per item that ends.
REFILL_SHARE = 0.05
RATE_WINDOW = 60.0  # seconds of running that the rate is measured over
EXPORT_PAGE = 200

_json = msgspec.json.Encoder()
_body = msgspec.json.Decoder(ItemBody)
_record = msgspec.json.Decoder(EndedRecord)


def tasks_in(cfg: FlowConfig, n_datapoints: int) -> int:
    """Tasks in one item of the flow's kind (a ranking item is one comparison task; most kinds have a task per
    datapoint)."""
    return kind_of(cfg.kind).tasks_in(n_datapoints)


def answers_needed(cfg: FlowConfig, n_datapoints: int) -> int:
    """Answers that complete one item, in the flow's unit: votes per item, or answers per datapoint."""
    return cfg.max_response_threshold * tasks_in(cfg, n_datapoints)


class Project:
    """A project's counters and live items; the rest is in its row and its queue."""

    def __init__(self, row: Row, flow: FlowRecord, queued: int, now: float) -> None:
        self.id: str = row["id"]
        self.owner: str = row["owner"]
        self.flow = flow
        self.name: str = row["name"]
        self.state: str = row["state"]
        self.live_items: int = int(row["live_items"])
        self.created_at: float = row["created_at"]
        self.started_at: float | None = row["started_at"]
        self.completed_at: float | None = row["completed_at"]
        self.active_seconds = float(row["active_seconds"])  # time spent running, up to `running_since`
        self.running_since: float | None = now if self.state == "running" else None
        self.next_seq = int(row["next_seq"])
        self.items_total = int(row["items_total"])
        self.tasks_total = int(row["tasks_total"])
        self.needed_total = int(row["needed_total"])
        self.items_done = int(row["items_done"])
        self.tasks_done = int(row["tasks_done"])
        self.needed_done = int(row["needed_done"])
        self.answers_done = int(row["answers_done"])
        self.queued = queued
        self.live: dict[str, ItemRecord] = {}  # admitted and not yet ended into the database
        self.samples: deque[tuple[float, int]] = deque()  # (time, answers done) while running, for the rate
        self.lock = asyncio.Lock()  # one upload or admission at a time
        self.changed = Signal()
        self.advancing = False

    def live_done(self) -> tuple[int, int]:
        """(answers counted toward completion, answers received) of the live items."""
        done = received = 0
        for item in self.live.values():
            need = answers_needed(item.config, len(item.datapoints))
            done += min(item.response_count, need)
            received += item.response_count
        return done, received

    def running_seconds(self, now: float) -> float:
        return self.active_seconds + (0.0 if self.running_since is None else now - self.running_since)


class Projects:
    """Every project of every key; `Items` tells it when a project's item ends."""

    def __init__(self, store: Store, clock: Clock, flows: Flows, items: Items, webhooks: Webhooks) -> None:
        self.store = store
        self.clock = clock
        self.flows = flows
        self.items = items
        self.webhooks = webhooks
        self.projects: dict[str, Project] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        items.projects = self

    # ------------------------------------------------------------ start-up

    def restore(self, flow_ids: set[str] | None = None) -> None:
        """Before the items are restored: the projects (of these flows, or of all), with how many items each
        still has queued."""
        queued = {
            r["project_id"]: int(r["n"])
            for r in self.store.read("SELECT project_id, count(*) AS n FROM project_queue GROUP BY project_id")
        }
        now = self.clock.now()
        for row in self.store.read("SELECT * FROM projects ORDER BY created_at"):
            flow = self.flows.flows.get(row["flow_id"])
            if flow is not None and (flow_ids is None or flow.id in flow_ids) and row["id"] not in self.projects:
                self.projects[row["id"]] = Project(row, flow, queued.get(row["id"], 0), now)

    def attach(self, project_id: str, item: ItemRecord) -> None:
        project = self.projects.get(project_id)
        if project is not None:
            item.project = project
            project.live[item.id] = item

    def tick(self) -> None:
        """From the lifecycle ticker: sample progress for the rates, and feed projects whose window has room
        (after a failed admission too: nothing waits for an item to end to try again)."""
        now = self.clock.now()
        for project in self.projects.values():
            if project.state != "running":
                continue
            self._sample(project, now)
            if _wants_refill(project) or (not project.queued and not project.live):
                self._advance_soon(project)

    # ------------------------------------------------------------ the researcher's calls

    def get(self, who: Principal, project_id: str) -> Project:
        project = self.projects.get(project_id)
        if project is None or project.owner != who.id:
            raise NotFound(f"No project {project_id!r} belongs to this API key; list them with client.projects.list().")
        return project

    def listing(self, who: Principal) -> list[schemas.ProjectStatus]:
        return [self.status(p) for p in self.projects.values() if p.owner == who.id]

    async def create(self, who: Principal, req: schemas.ProjectCreate) -> schemas.ProjectStatus:
        flow = self.flows.get(who, req.flow_id)
        live_items = req.live_items or kind_of(flow.config.kind).default_live_items
        now = self.clock.now()
        row: Row = {
            "id": new_id("proj"),
            "owner": who.id,
            "flow_id": flow.id,
            "name": req.name,
            "state": "open",
            "live_items": live_items,
            "created_at": now,
            "started_at": None,
            "completed_at": None,
            "active_seconds": 0.0,
            **dict.fromkeys(("next_seq", "items_total", "tasks_total", "needed_total"), 0),
            **dict.fromkeys(("items_done", "tasks_done", "needed_done", "answers_done"), 0),
        }
        await self.store.write(
            [
                (
                    "INSERT INTO projects (id, owner, flow_id, name, state, live_items, created_at) "
                    "VALUES (?,?,?,?,?,?,?)",
                    (row["id"], who.id, flow.id, req.name, "open", live_items, now),
                )
            ]
        )
        project = Project(row, flow, 0, now)
        self.projects[project.id] = project
        return self.status(project)

    async def add_tasks(self, who: Principal, project_id: str, req: schemas.ProjectTasks) -> schemas.ProjectStatus:
        """Queue items; every one is checked against the flow first, so a bad row fails its request whole."""
        project = self.get(who, project_id)
        self._require_open(project)
        cfg = project.flow.config
        bodies = [
            await self.items.prepare(project.flow, item, PROJECT_TTL, at=f"items[{i}].")
            for i, item in enumerate(req.items)
        ]
        async with project.lock:
            self._require_open(project)
            if project.items_total + len(bodies) > MAX_ITEMS:
                raise Invalid(f"A project holds at most {MAX_ITEMS:,} items; split the dataset.", field="items")
            seq = project.next_seq
            tasks = sum(tasks_in(cfg, len(b.datapoints)) for b in bodies)
            needed = sum(answers_needed(b.config, len(b.datapoints)) for b in bodies)
            ops: list[Op] = [
                ("INSERT INTO project_queue (project_id, seq, body) VALUES (?,?,?)", (project.id, seq + i, _text(b)))
                for i, b in enumerate(bodies)
            ]
            ops.append(
                (
                    "UPDATE projects SET next_seq=?, items_total=items_total+?, tasks_total=tasks_total+?, "
                    "needed_total=needed_total+? WHERE id=?",
                    (seq + len(bodies), len(bodies), tasks, needed, project.id),
                )
            )
            await self.store.write(ops)
            project.next_seq = seq + len(bodies)
            project.items_total += len(bodies)
            project.tasks_total += tasks
            project.needed_total += needed
            project.queued += len(bodies)
        project.flow.touch()
        return self.status(project)

    async def start(self, who: Principal, project_id: str) -> schemas.ProjectStatus:
        project = self.get(who, project_id)
        async with project.lock:
            if project.state != "open":
                return self.status(project)  # started already: starting again changes nothing
            if not project.items_total:
                raise Invalid(
                    f"Project {project.id!r} has no tasks yet; upload them (POST /v1/projects/{project.id}/tasks, "
                    "or client.projects.create(flow, data)) before starting it.",
                    field="tasks",
                )
            now = self.clock.now()
            await self.store.write(
                [("UPDATE projects SET state='running', started_at=? WHERE id=?", (now, project.id))]
            )
            project.state, project.started_at, project.running_since = "running", now, now
        self._changed(project)
        self._advance_soon(project)
        return self.status(project)

    async def pause(self, who: Principal, project_id: str) -> schemas.ProjectStatus:
        """No new tasks go out (tasks already out may still be answered); `resume` carries on."""
        project = self.get(who, project_id)
        if project.state == "open":
            raise Conflict(f"Project {project.id!r} has not started; there is nothing to pause.")
        if project.state != "running":
            return self.status(project)  # paused or completed already
        now = self.clock.now()
        active = project.running_seconds(now)
        await self.store.write(
            [
                (
                    "UPDATE projects SET state='paused', active_seconds=? WHERE id=? AND state='running'",
                    (active, project.id),
                )
            ]
        )
        if project.state == "running":
            project.state, project.active_seconds, project.running_since = "paused", active, None
            project.samples.clear()
        self._changed(project)
        return self.status(project)

    async def resume(self, who: Principal, project_id: str) -> schemas.ProjectStatus:
        project = self.get(who, project_id)
        if project.state == "open":
            raise Conflict(f"Project {project.id!r} has not started; start it instead.")
        if project.state != "paused":
            return self.status(project)
        await self.store.write([("UPDATE projects SET state='running' WHERE id=? AND state='paused'", (project.id,))])
        if project.state == "paused":
            project.state, project.running_since = "running", self.clock.now()
        self._changed(project)
        self.items.work.fire()  # idle annotators: there is work again
        self._advance_soon(project)
        return self.status(project)

    async def wait(self, who: Principal, project_id: str, timeout: float) -> schemas.ProjectStatus:
        """The status once the project has completed, or at `timeout`."""
        project = self.get(who, project_id)
        deadline = self.clock.now() + min(max(timeout, 0.0), 60.0)
        while project.state != "completed":
            left = deadline - self.clock.now()
            if left <= 0 or not await project.changed.wait(left):
                break
        return self.status(project)

    def status(self, project: Project) -> schemas.ProjectStatus:
        now = self.clock.now()
        live_done, live_received = project.live_done()
        done = project.needed_done + live_done
        rate = eta = None
        if project.state == "running":
            rate = self._rate(project, now, done)
            if rate:
                eta = max(project.needed_total - done, 0) / rate
        elif project.state == "completed":
            eta = 0.0
        return schemas.ProjectStatus(
            id=project.id,
            name=project.name,
            flow_id=project.flow.id,
            kind=project.flow.config.kind,  # type: ignore[arg-type]
            state=project.state,  # type: ignore[arg-type]
            tasks_total=project.tasks_total,
            tasks_done=project.tasks_done,
            items_total=project.items_total,
            items_done=project.items_done,
            items_live=len(project.live),
            items_queued=project.queued,
            live_items=project.live_items,
            answers_needed=project.needed_total,
            answers_done=done,
            answers_received=project.answers_done + live_received,
            rate=rate,
            eta_seconds=eta,
            created_at=project.created_at,
            started_at=project.started_at,
            completed_at=project.completed_at,
            server_time=now,
        )

    async def export(self, who: Principal, project_id: str, after: str, limit: int) -> schemas.ProjectExportPage:
        """A page of the project's ended items, in dataset order, each with what was asked, its results and
        its answers: what a deliverable is built from."""
        project = self.get(who, project_id)
        if not 1 <= limit <= 1000:
            raise Invalid("limit is from 1 to 1,000 items a page.", field="limit")
        rows = await self.store.aread(
            "SELECT id, body, final FROM items WHERE project_id = ? AND final IS NOT NULL AND id > ? "
            "ORDER BY id LIMIT ?",
            (project.id, after, limit + 1),
        )
        more = len(rows) > limit
        rows = rows[:limit]
        kind = kind_of(project.flow.config.kind)
        answers: dict[str, list[Row]] = {r["id"]: [] for r in rows}
        if rows:
            marks = ",".join("?" * len(rows))
            for a in await self.store.aread(
                f"SELECT * FROM {kind.answers_table} WHERE item_id IN ({marks}) ORDER BY seq", [r["id"] for r in rows]
            ):
                answers[a["item_id"]].append(a)
        out = []
        for r in rows:
            body, record = _body.decode(r["body"]), _record.decode(r["final"])
            detail = schemas.ItemDetail(
                status=record.status,
                datapoints=body.datapoints,
                context_assets=body.context_assets,
                private_metadata=body.private_metadata,
            )
            out.append(schemas.ProjectExportItem(detail, record.results, kind.votes(answers[r["id"]])))
        return schemas.ProjectExportPage(project=self.status(project), items=out, next=rows[-1]["id"] if more else None)

    async def delete(self, who: Principal, project_id: str) -> None:
        """Forget a project: its queue goes, its live items stop (they stay in the flow's history, as stopped
        items with their answers), and what it already delivered stays in the flow."""
        project = self.get(who, project_id)
        del self.projects[project.id]
        now, reason = self.clock.now(), "its batch project was deleted"
        stopping = [i for i in project.live.values() if not lifecycle.is_terminal(i.state)]
        await self.store.write(
            [
                ("DELETE FROM project_queue WHERE project_id=?", (project.id,)),
                ("DELETE FROM projects WHERE id=?", (project.id,)),
                *(
                    ("UPDATE items SET state='Stopped', ended_at=?, reason=? WHERE id=?", (now, reason, i.id))
                    for i in stopping
                ),
            ],
            retry=True,
        )
        for item in stopping:
            if not lifecycle.is_terminal(item.state):
                self.items.set_state(item, "Stopped", now, reason=reason)
        self._changed(project)

    def drop_flow(self, flow_id: str) -> list[Op]:
        """A deleted flow takes its projects and their queues with it."""
        gone = [p for p in self.projects.values() if p.flow.id == flow_id]
        for project in gone:
            del self.projects[project.id]
            project.changed.fire()
        return [
            ("DELETE FROM project_queue WHERE project_id IN (SELECT id FROM projects WHERE flow_id=?)", (flow_id,)),
            ("DELETE FROM projects WHERE flow_id=?", (flow_id,)),
        ]

    # ------------------------------------------------------------ items ending, the queue moving

    def final_ops(self, item: ItemRecord) -> list[Op]:
        """Committed with the item's final record: the project's counters take its share once (a replayed
        commit finds `final` written)."""
        project = item.project
        need = answers_needed(item.config, len(item.datapoints))
        return [
            (
                "UPDATE projects SET items_done=items_done+1, tasks_done=tasks_done+?, needed_done=needed_done+?, "
                "answers_done=answers_done+? WHERE id=? AND EXISTS (SELECT 1 FROM items WHERE id=? AND final IS NULL)",
                (tasks_in(item.config, len(item.datapoints)), need, item.response_count, project.id, item.id),
            )
        ]

    def ended(self, item: ItemRecord) -> None:
        """The item's final record is durable: count it, and feed the window."""
        project = item.project
        if project.live.pop(item.id, None) is None:
            return
        project.items_done += 1
        project.tasks_done += tasks_in(item.config, len(item.datapoints))
        project.needed_done += answers_needed(item.config, len(item.datapoints))
        project.answers_done += item.response_count
        if _wants_refill(project) or not project.live:
            self._advance_soon(project)

    def _advance_soon(self, project: Project) -> None:
        if project.advancing or project.id not in self.projects:
            return
        project.advancing = True
        task = asyncio.ensure_future(self._advance(project))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _advance(self, project: Project) -> None:
        try:
            await self._admit(project)
            await self._complete_if_done(project)
        except Exception as exc:  # the database is away: the ticker tries again
            log.warning("project %s could not move on: %s", project.id, exc)
        finally:
            project.advancing = False

    async def _admit(self, project: Project) -> None:
        """Move queued items into the flow while the window has room."""
        async with project.lock:
            while project.state == "running" and project.queued and len(project.live) < project.live_items:
                room = min(project.live_items - len(project.live), ADMIT_BATCH)
                rows = await self.store.aread(
                    "SELECT seq, body FROM project_queue WHERE project_id=? ORDER BY seq LIMIT ?", (project.id, room)
                )
                if not rows:
                    project.queued = 0
                    break
                flow, now = project.flow, self.clock.now()
                admitted, ops = [], []
                for row in rows:
                    body = _body.decode(row["body"])
                    item = self.items.make(_item_id(project, int(row["seq"])), flow, body, now)
                    item.project = project
                    admitted.append(item)
                    ops.append(self.items.insert_op(item, body))
                    ops.append(
                        ("DELETE FROM project_queue WHERE project_id=? AND seq=?", (project.id, int(row["seq"])))
                    )
                await self.store.write(ops)
                if self.flows.flows.get(flow.id) is not flow or project.id not in self.projects:
                    return  # deleted meanwhile: its rows went with it
                for item in admitted:
                    project.live[item.id] = item
                    self.items.add(item)
                project.queued -= len(rows)
        self._changed(project)

    async def _complete_if_done(self, project: Project) -> None:
        if project.state not in ("running", "paused") or project.queued or project.live:
            return
        now = self.clock.now()
        status = msgspec.structs.replace(
            self.status(project), state="completed", completed_at=now, rate=None, eta_seconds=0.0
        )
        pushed = self.webhooks.event_ops(
            "project.completed",
            project.owner,
            project.flow.id,
            {"project": status, "export": f"/v1/projects/{project.id}/export"},
        )
        active = project.running_seconds(now)
        await self.store.write(
            [
                *pushed,
                (
                    "UPDATE projects SET state='completed', completed_at=?, active_seconds=? WHERE id=?",
                    (now, active, project.id),
                ),
            ],
            retry=True,
        )
        if pushed:
            self.webhooks.wake()
        project.state, project.completed_at = "completed", now
        project.active_seconds, project.running_since = active, None
        self._changed(project)

    # ------------------------------------------------------------ helpers

    def _changed(self, project: Project) -> None:
        project.changed.fire()
        project.flow.touch()

    def _require_open(self, project: Project) -> None:
        if project.state != "open":
            raise Conflict(
                f"Project {project.id!r} has started, so its tasks are sealed; make another project for more."
            )

    def _sample(self, project: Project, now: float) -> None:
        if not project.samples or now - project.samples[-1][0] >= 1.0:
            project.samples.append((now, project.needed_done + project.live_done()[0]))
        while len(project.samples) > 2 and now - project.samples[1][0] >= RATE_WINDOW:
            project.samples.popleft()

    def _rate(self, project: Project, now: float, done: int) -> float | None:
        """Answers per second over the last minute of running; before a few seconds of samples, the average
        since the project started running."""
        if project.samples and now - project.samples[0][0] >= 2.0:
            t0, done0 = project.samples[0]
            return max(done - done0, 0) / (now - t0)
        seconds = project.running_seconds(now)
        return done / seconds if seconds > 0 and done else None


def _wants_refill(project: Project) -> bool:
    ended = project.live_items - len(project.live)
    return bool(project.queued) and ended >= max(1, round(project.live_items * REFILL_SHARE))


def _item_id(project: Project, seq: int) -> str:
    return f"item_{project.id.removeprefix('proj_')}_{seq:07d}"


def _text(body: ItemBody) -> str:
    return _json.encode(body).decode()
