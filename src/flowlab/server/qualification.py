"""Qualification: the quiz an audience puts to a new member before any work, passed (admitted) or failed
(screened out, with the link's screen-out code)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import msgspec

from flowlab import schemas
from flowlab.server.audiences import AudienceRecord, Audiences
from flowlab.server.auth import Principal
from flowlab.server.clock import Clock
from flowlab.server.errors import Conflict, Invalid, NotFound
from flowlab.server.kinds._quiz import QUIZ_LEASE, Quiz
from flowlab.server.people import AnnotatorInfo, new_id
from flowlab.server.store import Op, Store
from flowlab.server.worktime import hidden_within

QUIZ_PREFIX = "quiz_"
LoadSet = Callable[[Principal, str], Awaitable[tuple[list[schemas.ValidationPair], list[schemas.ValidationLabel]]]]


@dataclass
class Progress:
    """One person's way through the quiz: the questions drawn for them, the answers given, what is out."""

    order: list[int]  # question index for each position
    answered: dict[int, bool] = field(default_factory=dict)  # position -> right
    out: dict[str, tuple[int, float]] = field(default_factory=dict)  # task id -> (position, expires at)


class Qualifications:
    def __init__(self, store: Store, clock: Clock, audiences: Audiences) -> None:
        self.store = store
        self.clock = clock
        self.audiences = audiences
        self.quizzes: dict[str, Quiz] = {}  # audience id -> its quiz
        self.progress: dict[str, Progress] = {}  # annotator id -> their progress, while they are qualifying

    def restore(self) -> None:
        for a in self.audiences.audiences.values():
            if a.qualification is not None:
                rows = self.store.read(
                    "SELECT * FROM validation_sets WHERE id = ?", (a.qualification.validation_set_id,)
                )
                if rows:
                    self.quizzes[a.id] = _quiz(rows[0])
        for row in self.store.read("SELECT annotator_id, position, correct FROM quiz_answers"):
            info = self.audiences.people.annotators.get(row["annotator_id"])
            if info is not None and info.state == "qualifying":
                self._progress(info).answered[int(row["position"])] = bool(row["correct"])

    async def check(self, who: Principal, q: schemas.Qualification | None, load: LoadSet) -> Quiz | None:
        """The quiz of a new audience's qualification, from the key's validation set."""
        if q is None:
            return None
        pairs, labels = await load(who, q.validation_set_id)
        quiz = Quiz(pairs, labels)
        if not len(quiz):
            raise Invalid(
                f"Validation set {q.validation_set_id!r} holds no questions to quiz people with.",
                field="qualification.validation_set_id",
            )
        return quiz

    def _progress(self, info: AnnotatorInfo) -> Progress:
        p = self.progress.get(info.principal.id)
        if p is None:
            a = self.audiences.audiences[info.audience_id or ""]
            assert a.qualification is not None
            order = self.quizzes[a.id].draw(a.qualification.questions, info.principal.id)
            p = self.progress[info.principal.id] = Progress(order)
        return p

    def lease(self, info: AnnotatorInfo) -> schemas.Task | None:
        """The next quiz question for a qualifying person (each position once; one whose time ran out is asked
        again), or None while their last ones are out with them."""
        a = self.audiences.audiences.get(info.audience_id or "")
        if a is None or a.id not in self.quizzes:
            return None
        quiz = self.quizzes[a.id]
        p = self._progress(info)
        now = self.clock.now()
        for task_id, (_, expires) in list(p.out.items()):
            if expires < now:
                del p.out[task_id]
        held = {pos for pos, _ in p.out.values()}
        free = [i for i in range(len(p.order)) if i not in p.answered and i not in held]
        if not free:
            return None
        pos = free[0]
        task_id = new_id(QUIZ_PREFIX.rstrip("_"))
        p.out[task_id] = (pos, now + QUIZ_LEASE)
        return quiz.task(p.order[pos], task_id, a.id, pos + 1, len(p.order), now)

    def shown(self, info: AnnotatorInfo, task_id: str) -> schemas.Shown:
        p = self.progress.get(info.principal.id)
        now = self.clock.now()
        if p is None or task_id not in p.out:
            raise NotFound(f"No quiz question {task_id!r} is out with you; fetch one with POST /v1/tasks/next.")
        pos, _ = p.out[task_id]
        p.out[task_id] = (pos, now + QUIZ_LEASE)  # its time starts when it is on screen
        return schemas.Shown(task_id=task_id, lease_expires_at=now + QUIZ_LEASE, shown_at=now, server_time=now)

    async def answer(
        self, info: AnnotatorInfo, task_id: str, choice: str, hidden_seconds: float | None = None
    ) -> schemas.Ack:
        """Record a quiz answer, with when it was shown and the seconds its tab was hidden (time on task, as every
        answer has); once every question is answered the person is admitted or screened out."""
        p = self.progress.get(info.principal.id)
        if p is None or task_id not in p.out:
            if p is not None or info.state != "qualifying":
                return schemas.Ack(task_id=task_id, status="duplicate", detail="Already answered; counted once.")
            raise NotFound(f"No quiz question {task_id!r} is out with you; fetch one with POST /v1/tasks/next.")
        pos, expires = p.out[task_id]
        if choice == "skip":
            del p.out[task_id]  # asked again later
            return schemas.Ack(task_id=task_id, status="skipped")
        a = self.audiences.audiences[info.audience_id or ""]
        assert a.qualification is not None
        quiz = self.quizzes[a.id]
        right = quiz.check(p.order[pos], choice)
        if right is None:
            raise Invalid(f"{choice!r} is not one of this question's answers.", field="choice", code="bad_choice")
        if pos in p.answered:
            raise Conflict("This question was answered already.", code="answered")
        now = self.clock.now()
        shown_at = expires - QUIZ_LEASE  # its time starts when it is leased, and again when it is shown
        ops: list[Op] = [
            (
                "INSERT OR IGNORE INTO quiz_answers (task_id, annotator_id, audience_id, position, correct, "
                "created_at, shown_at, hidden_seconds) VALUES (?,?,?,?,?,?,?,?)",
                (
                    task_id,
                    info.principal.id,
                    a.id,
                    pos,
                    int(right),
                    now,
                    shown_at,
                    hidden_within(hidden_seconds, shown_at, now),
                ),
            )
        ]
        verdict = self._verdict(a, p, pos, right)
        if verdict is not None:
            ops.append(("UPDATE annotators SET state=? WHERE id=?", (verdict, info.principal.id)))
        await self.store.write(ops)
        p.answered[pos] = right
        p.out.pop(task_id, None)
        if verdict is not None:
            info.state = verdict  # type: ignore[assignment]
            del self.progress[info.principal.id]
        feedback = quiz.feedback(p.order[pos]) if a.qualification.feedback and not right else None
        return schemas.Ack(task_id=task_id, status="accepted", explanation=feedback)

    def _verdict(self, a: AudienceRecord, p: Progress, pos: int, right: bool) -> str | None:
        """Admitted ("active") or "screened_out" once the last question is answered; None before."""
        assert a.qualification is not None
        answers = {**p.answered, pos: right}
        if len(answers) < len(p.order):
            return None
        share = sum(answers.values()) / len(answers)
        return "active" if share >= a.qualification.pass_mark else "screened_out"

    def quiz_view(self, who: Principal, audience_id: str) -> Quiz:
        """The audience's quiz, for its researcher (the simulated crowd's oracle reads its answers); an audience
        that asks no qualification has a quiz of no questions."""
        a = self.audiences.get(who, audience_id)
        return self.quizzes.get(a.id) or Quiz([], [])


def _quiz(row: dict[str, object]) -> Quiz:
    pairs = msgspec.json.decode(str(row["pairs"]), type=list[schemas.ValidationPair])
    labels = msgspec.json.decode(str(row.get("labels") or "[]"), type=list[schemas.ValidationLabel])
    return Quiz(pairs, labels)
