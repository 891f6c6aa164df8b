"""The annotator protocol: lease the next task, answer it once; an answer counts only once it is durable."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from flowlab import schemas
from flowlab.server import lifecycle, scheduler
from flowlab.server.audiences import Audiences
from flowlab.server.auth import Principal
from flowlab.server.clock import Clock
from flowlab.server.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized
from flowlab.server.history import History
from flowlab.server.items import Items
from flowlab.server.kinds import Refusal
from flowlab.server.leases import LeaseBook
from flowlab.server.model import Lease, Signal
from flowlab.server.people import AnnotatorInfo, People, new_id
from flowlab.server.qualification import QUIZ_PREFIX, Qualifications
from flowlab.server.store import Op, Store
from flowlab.server.webhooks import Webhooks
from flowlab.server.worktime import time_on_task_ops

MAX_WAIT = 60.0
MAX_BATCH_TASKS = 1000
MAX_BATCH_ANSWERS = 10_000

REFUSALS = {
    "lease_expired": "Time ran out on this task before the answer arrived, so it went to someone else; this "
    "answer was not counted. Fetch the next task.",
    "item_ended": "This flow item has ended (expired, completed or stopped); the answer was not counted. Fetch "
    "the next task.",
    "skipped": "This task was skipped; fetch a new one.",
    "revoked": "This annotator token was revoked; its tasks went back to the queue.",
}
ANSWERED = "This task is answered already; fetch the next task."
UNKNOWN_TASK = (
    "No task {task_id!r} is out with you (tasks handed out before a server restart are forgotten); "
    "fetch one with POST /v1/tasks/next."
)


MAX_BATCH_CHARS = 4_000_000  # a batch of tasks stops growing past this much text: responses stay a few MB


def task_chars(task: schemas.Task) -> int:
    """About how much text a task carries, for bounding a batch (URLs and ids are small beside it)."""
    texts = [task.instruction, task.context, task.a.text, task.b.text if task.b else None]
    texts += [a.text for a in task.context_assets]
    if task.rlhf is not None:
        texts += [m.content for m in task.rlhf.prompt] + [r.text for r in task.rlhf.responses]
    return sum(len(t) for t in texts if t)


@dataclass
class _Pending:
    """The answers of one request that passed their checks, waiting for their common commit."""

    ops: list[Op] = field(default_factory=list)
    counted: list[tuple[Lease, Any]] = field(default_factory=list)  # a lease and its checked answer
    waits: list[asyncio.Future[None]] = field(default_factory=list)  # earlier commits a duplicate depends on
    pushed: bool = False  # webhook deliveries of these answers are in `ops`


class Answers:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        items: Items,
        leases: LeaseBook,
        people: People,
        history: History,
        rng: random.Random,
        work: Signal,
        webhooks: Webhooks,
        audiences: Audiences,
        qualifications: Qualifications,
    ) -> None:
        self.store = store
        self.audiences = audiences
        self.qualifications = qualifications
        self.clock = clock
        self.items = items
        self.leases = leases
        self.people = people
        self.history = history
        self.rng = rng
        self.work = work
        self.webhooks = webhooks
        self.task_prefix = "task"  # in a cluster, `task_<node>`: an answer finds its way back to the lease

    # ------------------------------------------------------------ leasing

    def lease_next(self, who: Principal) -> schemas.Task | None:
        """The annotator's next task, or None when nothing is open to them now. Raises Forbidden (with a code the
        page shows a screen for) when a person who enrolled through a link may have no more work."""
        now = self.clock.now()
        if self.leases.expire(now):
            self.work.fire()
        scope = self.people.scope(who)
        info = self.people.annotators.get(who.id)
        audience = None if info is None else info.audience_id
        if audience is not None:
            if info.state == "qualifying":  # type: ignore[union-attr]
                return self.qualifications.lease(info)  # type: ignore[arg-type]
            if not self._admit(info):  # type: ignore[arg-type]
                return None
        best = scheduler.choose_item(self.items.active.values(), now, scope, audience)
        if best is None:
            return None
        question, gold = best.kind.ask(best, self.rng, who.id, now)
        if question is None and gold is None:
            # The first choice has nothing for this annotator (they labelled all it still needs): the others.
            for other in scheduler.ranked_items(self.items.active.values(), now, scope, audience):
                if other is not best:
                    question, gold = other.kind.ask(other, self.rng, who.id, now)
                    if question is not None or gold is not None:
                        best = other
                        break
            else:
                return None
        self.people.seen(who.id, now)
        lease = Lease(
            new_id(self.task_prefix), best, question, who.id, min(now + best.config.lease_seconds, best.deadline), gold
        )
        lease.leased_at = now
        self.leases.add(lease)
        if best.state == "Pending":
            self.items.set_state(best, "Running", now)
        else:
            best.touch()
        return best.kind.task_view(lease, self.rng, now)

    def _check_standing(self, annotator_id: str) -> None:
        """Continuous gold: a member whose agreement fell below their audience's mark is suspended at once."""
        info = self.people.annotators.get(annotator_id)
        if info is None or info.state != "active" or info.audience_id is None:
            return
        a = self.audiences.audiences.get(info.audience_id)
        if a is None or a.suspend_below is None or info.gold_answered < a.min_gold:
            return
        if info.gold_correct / info.gold_answered < a.suspend_below:
            self.set_standing(info, "suspended", durable=False)

    def set_standing(self, info: AnnotatorInfo, state: str, *, durable: bool = True) -> asyncio.Future[None]:
        """Suspend a person (their leases go back to the pool, they get no more tasks) or reinstate them; the
        row follows (`retry`: it lands once the database is back).

        From the moment of a suspension every live item they answered counts its answers again without theirs
        (its count may fall, so it takes answers from others until it reaches its maximum), and an item that
        ends while they are suspended ends without them; their rows stay, marked `excluded`. Reinstating puts
        their answers back into the live items. Items that ended before keep their final results."""
        now = self.clock.now()
        info.state = state  # type: ignore[assignment]
        info.suspended_at = now if state == "suspended" else None
        if state == "suspended":
            for lease in self.leases.of_annotator(info.principal.id):
                if lease.committing is None:
                    self.leases.release(lease, "revoked", requeue=True)
        marks = self.items.restand(info.principal.id, self.people.suspended())
        self.work.fire()
        op = ("UPDATE annotators SET state=?, suspended_at=? WHERE id=?", (state, info.suspended_at, info.principal.id))
        return self.store.submit([op, *marks], retry=not durable)

    def work_open_to(self, who: Principal) -> bool:
        """Whether some live item is open to the annotator and can take another lease (a look, leasing nothing)."""
        info = self.people.annotators.get(who.id)
        audience = None if info is None else info.audience_id
        return (
            scheduler.choose_item(self.items.active.values(), self.clock.now(), self.people.scope(who), audience)
            is not None
        )

    def _admit(self, info: AnnotatorInfo) -> bool:
        """Whether an enrolled person may lease another task now: not while their quota's last tasks are in their
        hands. Raises Forbidden for one who gets no more work: suspended, screened out, or with their quota done."""
        if info.state == "suspended":
            raise Forbidden(
                "Your answers have been paused by the researcher: too many of the check questions disagreed with "
                "their known answers. You will not be given more tasks; contact the researcher if you think this is "
                "a mistake.",
                code="suspended",
            )
        if info.state == "screened_out":
            raise Forbidden(
                "Thank you for taking part: this study is looking for a different profile.", code="screened_out"
            )
        link = self.audiences.link_of(info)
        if link is not None and link.quota is not None:
            left = link.quota - info.votes
            if left <= 0:
                raise Forbidden("You have answered every task this study asks of you. Thank you!", code="finished")
            if left <= 8 and len(self.leases.of_annotator(info.principal.id)) >= left:
                return False
        return True

    async def wait_for_tasks(
        self,
        who: Principal,
        n: int,
        wait: float,
        gone: Callable[[], bool] = lambda: False,
        elsewhere: Callable[[int], Awaitable[list[schemas.Task]]] | None = None,
    ) -> list[schemas.Task]:
        """Lease up to `n` tasks, waiting up to `wait` seconds for the first. `gone` tells whether the asker
        hung up: a task leased to a closed connection would sit unanswered until its lease ran out. In a
        cluster, `elsewhere` leases from the other processes when this one has nothing for the annotator."""
        if not 1 <= n <= MAX_BATCH_TASKS:
            raise Invalid(f"n must be between 1 and {MAX_BATCH_TASKS} tasks per request.", field="n")
        deadline = time.monotonic() + max(0.0, min(wait, MAX_WAIT))
        while not gone():
            if who.revoked:
                raise Unauthorized("This annotator token was revoked while it waited for work.")
            tasks = self._lease_up_to(who, n)
            if not tasks and elsewhere is not None:
                tasks = await elsewhere(n)
            if tasks:
                return tasks
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            await self.work.wait(min(left, 1.0))
        return []

    def _lease_up_to(self, who: Principal, n: int) -> list[schemas.Task]:
        tasks: list[schemas.Task] = []
        size = 0
        while len(tasks) < n and size < MAX_BATCH_CHARS:
            task = self.lease_next(who)
            if task is None:
                break
            tasks.append(task)
            size += task_chars(task)
        return tasks

    # ------------------------------------------------------------ showing

    def shown(self, who: Principal, task_id: str) -> schemas.Shown:
        """The annotator's page put the task on screen: its lease's clock starts again, once (`LeaseBook.show`).
        Refused like an answer: 404 for a task not out with them, 409 for one that has ended."""
        now = self.clock.now()
        if task_id.startswith(QUIZ_PREFIX):
            return self.qualifications.shown(self.people.annotators[who.id], task_id)
        lease = self.leases.get(task_id)
        if lease is None or lease.annotator_id != who.id:
            prior = self.leases.outcome(task_id)
            if prior is None or prior[1] != who.id:
                raise NotFound(UNKNOWN_TASK.format(task_id=task_id))
            outcome = prior[0]
            if outcome in REFUSALS:
                raise Conflict(REFUSALS[outcome], code=outcome)
            raise Conflict(ANSWERED, code="answered")
        if lease.committing is None:  # else it is answered already, and its answer is being made durable
            ended = self._ended(lease, now)
            if ended is not None:
                raise Conflict(REFUSALS[ended], code=ended)
            self.leases.show(lease, now)
        return schemas.Shown(
            task_id=task_id, lease_expires_at=lease.expires_at, shown_at=lease.shown_at, server_time=now
        )

    # ------------------------------------------------------------ answering

    async def answer(self, who: Principal, task_id: str, req: schemas.Answer) -> schemas.Ack:
        if task_id.startswith(QUIZ_PREFIX):
            ack = await self.qualifications.answer(
                self.people.annotators[who.id], task_id, req.choice, req.hidden_seconds
            )
            if req.fetch_next:
                try:
                    ack.next = self.lease_next(who)
                except Forbidden:  # screened out by this answer: the next request says so
                    ack.next = None
            return ack
        durable = await self._durable_owners([task_id])
        # From here to the submit nothing awaits: a lease checked is a lease marked as committing, so no other
        # request, tick or item end can slip in between.
        pending = _Pending()
        ack = self._check(who, task_id, req, self.clock.now(), pending, durable)
        await self._commit(who, pending)
        if ack.status == "rejected" and ack.code in ("item_ended", "lease_expired", "skipped", "revoked"):
            raise Conflict(ack.detail or "", code=ack.code)
        if ack.status == "rejected":
            raise Invalid(ack.detail or "", field=ack.field or "choice", code=ack.code)
        if req.fetch_next and not who.revoked:
            try:
                ack.next = self.lease_next(who)
            except Forbidden:  # the answer counted; the next request says why no task follows
                ack.next = None
        return ack

    async def answer_batch(self, who: Principal, answers: list[schemas.AnswerIn]) -> list[schemas.Ack]:
        if len(answers) > MAX_BATCH_ANSWERS:
            raise Invalid(f"At most {MAX_BATCH_ANSWERS:,} answers per request.", field="answers")
        if any(a.task_id.startswith(QUIZ_PREFIX) for a in answers):  # quiz answers go one by one, then the rest
            info = self.people.annotators[who.id]
            quiz = {
                i: await self.qualifications.answer(info, a.task_id, a.choice, a.hidden_seconds)
                for i, a in enumerate(answers)
                if a.task_id.startswith(QUIZ_PREFIX)
            }
            rest = iter(await self.answer_batch(who, [a for a in answers if not a.task_id.startswith(QUIZ_PREFIX)]))
            return [quiz[i] if i in quiz else next(rest) for i in range(len(answers))]
        durable = await self._durable_owners([a.task_id for a in answers])
        # No await from the first check to the submit (see `answer`).
        now = self.clock.now()
        pending = _Pending()
        acks: list[schemas.Ack] = []
        first_of: dict[str, int] = {}
        for a in answers:
            if a.task_id in first_of:  # the same task twice in one request: one answer, reported twice
                acks.append(acks[first_of[a.task_id]])
                continue
            first_of[a.task_id] = len(acks)
            try:
                req = schemas.Answer(choice=a.choice, hidden_seconds=a.hidden_seconds)
                acks.append(self._check(who, a.task_id, req, now, pending, durable))
            except NotFound as exc:
                acks.append(schemas.Ack(task_id=a.task_id, status="rejected", code="unknown_task", detail=exc.detail))
        await self._commit(who, pending)
        return acks

    async def _durable_owners(self, task_ids: list[str]) -> dict[str, str]:
        """Who answered those of `task_ids` that are neither out nor remembered: only the database knows (a
        retry of an answer counted long ago, or before a restart). Read before any lease is checked."""
        unknown = [t for t in task_ids if self.leases.get(t) is None and self.leases.outcome(t) is None]
        return await self.history.accepted_by(unknown) if unknown else {}

    def _check(
        self, who: Principal, task_id: str, req: schemas.Answer, now: float, pending: _Pending, durable: dict[str, str]
    ) -> schemas.Ack:
        """Check one answer against its lease; one that can count adds its rows to `pending` and is counted
        by `_commit`, after they are durable."""
        lease = self.leases.get(task_id)
        if lease is None or lease.annotator_id != who.id:
            return self._repeat(who, task_id, req, durable)
        if lease.committing is not None:  # the same answer, sent again while its first copy commits
            pending.waits.append(lease.committing)
            return schemas.Ack(task_id=task_id, status="duplicate", detail="Already answered; counted once.")
        item = lease.item
        ended = self._ended(lease, now)
        if ended is not None:
            return _refused(task_id, ended)
        if req.choice == "skip":
            self.leases.release(lease, "skipped", requeue=True, defer=True)
            self.work.fire()
            return schemas.Ack(task_id=task_id, status="skipped")
        try:
            checked = item.kind.check(lease, req)
        except Refusal as r:
            return schemas.Ack(task_id=task_id, status="rejected", code=r.code, detail=r.detail, field=r.field)
        self.people.seen(who.id, now)
        pending.ops += item.kind.answer_ops(lease, checked, who.id, now)
        pending.ops += time_on_task_ops(lease, item.kind.answers_table, req.hidden_seconds, now)
        pending.counted.append((lease, checked))
        if lease.gold is None:
            pushed = self.webhooks.event_ops(
                "answer.created",
                item.flow.owner,
                item.flow.id,
                {
                    "flow_id": item.flow.id,
                    "item_id": item.id,
                    "task_id": task_id,
                    "annotator_id": who.id,
                    "answer": req,
                },
            )
            pending.ops += pushed
            pending.pushed |= bool(pushed)
        if lease.gold is not None and not checked:  # a gold question answered wrong: say why, if the set can
            return schemas.Ack(task_id=task_id, status="accepted", explanation=lease.gold.explanation)
        return schemas.Ack(task_id=task_id, status="accepted")

    def _ended(self, lease: Lease, now: float) -> str | None:
        """Why the lease can no longer be answered (its item ended, or its time ran out), releasing it; None
        while it runs."""
        if lease.gold is None and lifecycle.is_terminal(lease.item.state):
            self.leases.release(lease, "item_ended", requeue=False)
            return "item_ended"
        if now > lease.expires_at:
            self.leases.release(lease, "lease_expired", requeue=True)
            self.work.fire()
            return "lease_expired"
        return None

    def _repeat(self, who: Principal, task_id: str, req: schemas.Answer, durable: dict[str, str]) -> schemas.Ack:
        """An answer to a task that is not out with this annotator: a retry, a late answer, or a mistake."""
        prior = self.leases.outcome(task_id)
        if prior is None:
            if durable.get(task_id) == who.id:
                prior = ("accepted", who.id)
            else:
                raise NotFound(UNKNOWN_TASK.format(task_id=task_id))
        outcome, annotator_id = prior
        if annotator_id != who.id:
            raise NotFound(UNKNOWN_TASK.format(task_id=task_id))
        if outcome == "accepted":
            return schemas.Ack(task_id=task_id, status="duplicate", detail="Already answered; counted once.")
        if outcome == "skipped" and req.choice == "skip":
            return schemas.Ack(task_id=task_id, status="skipped")
        return _refused(task_id, outcome)

    async def _commit(self, who: Principal, pending: _Pending) -> None:
        """Make the accepted answers durable, then count them. If the commit fails nothing is counted, the
        leases stay (a retry in time counts once), and the request fails with 503."""
        if pending.counted:
            counted = pending.counted
            gold = [c for lease, c in counted if lease.gold is not None]
            votes = len(counted) - len(gold)
            tables: dict[str, list[str]] = {}
            for lease, _ in counted:
                if lease.gold is None:
                    tables.setdefault(lease.item.kind.answers_table, []).append(lease.task_id)
            golds = [(lease.task_id, c) for lease, c in counted if lease.gold is not None]
            # The tallies first: they subtract whatever of these answers is already stored.
            replayed = any(lease.maybe_landed for lease, _ in counted)
            ops = self.people.tally_ops(who.id, tables, golds, self.clock.now(), replayed=replayed) + pending.ops
            fut = self.store.submit(ops)  # raises StoreUnavailable (503) while the database is away
            for lease, _ in counted:
                lease.committing = fut

            def settle(done: asyncio.Future[None]) -> None:
                # In a callback rather than after the await: a caller that hangs up mid-commit must not leave
                # a durable answer uncounted.
                ok = not done.cancelled() and done.exception() is None
                if ok:
                    self.people.count(who.id, votes, len(gold), sum(gold))
                    if gold:
                        self._check_standing(who.id)
                    if pending.pushed:
                        self.webhooks.wake()
                for lease, checked in counted:
                    lease.committing = None
                    lease.maybe_landed |= not ok
                    if ok:
                        self._count(lease, checked)

            fut.add_done_callback(settle)
            await asyncio.shield(fut)
        for w in pending.waits:
            await asyncio.shield(w)

    def _count(self, lease: Lease, checked: Any) -> None:
        self.leases.close(lease, "accepted")
        item = lease.item
        item.kind.count(lease, checked)
        if lease.gold is not None:
            return
        info = self.people.annotators.get(lease.annotator_id)
        if info is not None and info.state == "suspended":
            # Answered before the suspension, durable after it: left out like the rest of their answers.
            self.store.submit(self.items.restand(lease.annotator_id, self.people.suspended()), retry=True)
        new = lifecycle.next_state(item, self.clock.now())
        if new is not None:
            self.items.set_state(item, new, self.clock.now())
        else:
            item.touch()


def _refused(task_id: str, code: str) -> schemas.Ack:
    return schemas.Ack(task_id=task_id, status="rejected", code=code, detail=REFUSALS[code])
