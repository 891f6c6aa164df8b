"""Qualification quizzes: an audience's gold questions (a validation set's pairs or labels) asked as ordinary tasks
of their kind, with the expected answer and the set's reason for it."""

from __future__ import annotations

import random
from dataclasses import dataclass

from flowlab import schemas
from flowlab.server.datapoints import gold_view
from flowlab.server.kinds.classify import CLASSIFY
from flowlab.server.kinds.pairwise import PAIRWISE

QUIZ_LEASE = 300.0  # seconds a quiz question is held: a person reads the instructions with the first one


@dataclass
class Quiz:
    """The questions of one validation set: gold pairs (asked as ranking tasks) or gold labels (classify tasks,
    whose categories are the truths the set names)."""

    pairs: list[schemas.ValidationPair]
    labels: list[schemas.ValidationLabel]

    def __len__(self) -> int:
        return len(self.pairs) or len(self.labels)

    @property
    def categories(self) -> list[schemas.Category]:
        values = dict.fromkeys(t for g in self.labels for t in g.truths)
        return [schemas.Category(label=v, value=v) for v in values]

    def draw(self, n: int, seed: str) -> list[int]:
        """The `n` questions one person is asked, in their order: the same for the same person every time."""
        order = list(range(len(self)))
        random.Random(seed).shuffle(order)
        return [order[i % len(order)] for i in range(n)]

    def task(self, q: int, task_id: str, audience_id: str, number: int, total: int, now: float) -> schemas.Task:
        """Question `q`, the `number`-th of `total`, as the page shows a task of its kind (`flow_id` names the
        audience, `item_id` says it is a quiz)."""
        head = f"Qualification question {number} of {total}: "
        common = {
            "task_id": task_id,
            "item_id": f"quiz_{audience_id}",
            "flow_id": audience_id,
            "context": None,
            "context_assets": [],
            "render_markdown": False,
            "lease_expires_at": now + QUIZ_LEASE,
            "lease_seconds": QUIZ_LEASE,
            "server_time": now,
        }
        if self.pairs:
            pair = self.pairs[q]
            return schemas.Task(
                instruction=head + "which of the two is better?",
                a=gold_view(pair.a, 0),
                b=gold_view(pair.b, 1),
                kind=PAIRWISE.name,
                allow_ties=pair.answer == "tie",
                **common,  # type: ignore[arg-type]
            )
        label = self.labels[q]
        return schemas.Task(
            instruction=head + "which category fits?",
            a=gold_view(label.datapoint, 0),
            b=None,
            kind=CLASSIFY.name,
            categories=self.categories,
            allow_ties=False,
            **common,  # type: ignore[arg-type]
        )

    def check(self, q: int, choice: str) -> bool | None:
        """Whether `choice` is right; None for a choice the question does not offer."""
        if self.pairs:
            return None if choice not in ("a", "b", "tie") else choice == self.pairs[q].answer
        if choice not in {c.value for c in self.categories}:
            return None
        return choice in self.labels[q].truths

    def feedback(self, q: int) -> str:
        """What was expected, and why (the set's explanation, where it has one)."""
        if self.pairs:
            pair = self.pairs[q]
            expected = {"a": "A", "b": "B", "tie": "a tie"}[pair.answer]
            why = pair.explanation
        else:
            expected = " or ".join(self.labels[q].truths)
            why = self.labels[q].explanation
        return f"The expected answer was {expected}" + (f", because {why}" if why else ".")
