"""How a simulated annotator works a chat task: it says the script's user turns to the model (over the task's
generate route, as the page does), edits the first turn with each of the script's alternatives (a branch each,
going on with the same later turns), rates every reply with the script's judge (with the annotator's noise),
and chooses the better branch by the judge's score."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from flowlab import schemas

Ratings = dict[str, schemas.RatingValue]


def _neutral(reply: str, dims: Sequence[schemas.Dimension]) -> Ratings:
    """Ratings of a judge that knows nothing: the middle of every scale, "no" to every yes/no question."""
    out: Ratings = {}
    for d in dims:
        if d.type == "scale":
            out[d.key] = (d.min + d.max) // 2
        elif d.type == "boolean":
            out[d.key] = False
        elif d.type == "category":
            out[d.key] = d.options[0]
        elif d.required:
            out[d.key] = "fine"
    return out


def _score(ratings: Ratings, dims: Sequence[schemas.Dimension]) -> float:
    """A reply's worth by its ratings: scale points above the middle, minus one per "yes" (yes/no questions
    ask about faults: off-topic, unsafe)."""
    total = 0.0
    for d in dims:
        v = ratings.get(d.key)
        if d.type == "scale" and isinstance(v, int) and not isinstance(v, bool):
            total += (v - (d.min + d.max) / 2) / max(1, d.max - d.min)
        elif d.type == "boolean" and v is True:
            total -= 1.0
    return total


@dataclass
class ChatScript:
    """What the crowd says and how it judges in chat tasks.

    `turns`: the user turns of every conversation, in order (or a function of the branch so far and a random
    generator, returning the next turn or None to stop); `edits`: alternatives to the first turn, each a new
    branch that goes on with the later turns; `judge(reply, dimensions)`: the ratings a careful annotator gives
    a reply; `score(ratings, dimensions)`: a reply's worth, to choose the better branch (default: scale points
    above the middle, minus one per "yes" to a yes/no question); `patience`: seconds an annotator keeps asking
    again, a moment apart, for a reply that failed (an offline model, an error) before handing the task back.

    A starting conversation that ends with a user turn is answered first: each branch opens with a reply of
    its model to it, then goes on with the script's turns."""

    turns: Sequence[str] | Callable[[list[dict[str, str]], random.Random], str | None] = ("Hello!", "Can you help me?")
    edits: Sequence[str] = ()
    judge: Callable[[str, Sequence[schemas.Dimension]], Ratings] = _neutral
    score: Callable[[Ratings, Sequence[schemas.Dimension]], float] = _score
    justification: str = "The chosen branch's replies were the better ones on this flow's questions."
    patience: float = 5.0

    def next_turn(self, branch: list[dict[str, str]], said: int, rng: random.Random) -> str | None:
        if callable(self.turns):
            return self.turns(branch, rng)
        return self.turns[said] if said < len(self.turns) else None


Generate = Callable[[list[dict[str, str]], int], Any]  # (messages, model position) -> awaitable reply event


async def converse(
    task: schemas.Task,
    script: ChatScript,
    generate: Generate,
    accuracy: float,
    spammer: bool,
    rng: random.Random,
) -> dict[str, Any] | None:
    """The `chat` body of an answer, or None when the model failed (the task is then handed back)."""
    view = task.chat
    assert view is not None
    dims = view.dimensions
    nodes: list[dict[str, Any]] = []
    parent: str | None = None
    for m in view.messages:
        nodes.append(
            {"id": f"s{len(nodes)}", "role": m.role, "content": m.content, **({"parent": parent} if parent else {})}
        )
        parent = nodes[-1]["id"]
    seed_users = sum(m.role == "user" for m in view.messages)
    replies: dict[str, str] = {}
    leaves: list[str] = []
    starts = [None, *script.edits][: view.max_branches]
    for b, first in enumerate(starts):
        model = b % view.models
        at = parent
        branch = [{"role": m.role, "content": m.content} for m in view.messages]
        said = 0
        if branch and branch[-1]["role"] == "user":  # the starting conversation waits for the model's reply
            event = await generate(branch, model)
            if event is None or event.get("type") != "done":
                return None
            nodes.append({"id": f"b{b}a0", "role": "assistant", "parent": at, "generation": event["generation_id"]})
            replies[f"b{b}a0"] = event["text"]
            branch.append({"role": "assistant", "content": event["text"]})
            at = f"b{b}a0"
        while seed_users + said < view.max_turns:
            text = first if (said == 0 and first is not None) else script.next_turn(branch, said, rng)
            if text is None:
                break
            said += 1
            user = {"id": f"b{b}u{said}", "role": "user", "content": text, **({"parent": at} if at else {})}
            branch.append({"role": "user", "content": text})
            event = await generate(branch, model)
            if event is None or event.get("type") != "done":
                return None
            reply = {
                "id": f"b{b}a{said}",
                "role": "assistant",
                "parent": user["id"],
                "generation": event["generation_id"],
            }
            nodes += [user, reply]
            replies[reply["id"]] = event["text"]
            branch.append({"role": "assistant", "content": event["text"]})
            at = reply["id"]
        if at is not None and at != parent:
            leaves.append(at)
    if not replies:
        return None
    ratings = {k: _noisy(script.judge(text, dims), dims, accuracy, spammer, rng) for k, text in replies.items()}
    body: dict[str, Any] = {"nodes": nodes, "ratings": ratings}
    if len(leaves) >= 2:
        worth = []
        for leaf in leaves:
            b = leaf.split("a")[0]
            mine = [script.score(script.judge(t, dims), dims) for k, t in replies.items() if k.startswith(b + "a")]
            worth.append(sum(mine) / len(mine))
        best = max(range(len(leaves)), key=lambda j: worth[j])
        if spammer or rng.random() > accuracy:
            best = rng.randrange(len(leaves))
        body["selected"] = leaves[best]
        if len(leaves) == 2 and view.likert_scale > 0:
            n = view.likert_scale
            strong = abs(worth[0] - worth[1]) >= 0.5
            firm = strong or n <= 3
            body["likert"] = (1 if firm else 2) if best == 0 else (n if firm else n - 1)
    if view.justification != "off":
        why = script.justification
        body["justification"] = why + "." * max(0, view.justification_min_chars - len(why))
    return body


def _noisy(
    ratings: Ratings, dims: Sequence[schemas.Dimension], accuracy: float, spammer: bool, rng: random.Random
) -> Ratings:
    """The judge's ratings as this annotator gives them: a spammer's at random, an honest one's mostly right."""
    out: Ratings = {}
    for d in dims:
        v = ratings.get(d.key)
        wrong = spammer or rng.random() > accuracy
        if d.type == "boolean":
            v = rng.random() < 0.5 if spammer else (bool(v) != wrong)
        elif d.type == "scale" and wrong:
            v = rng.randint(d.min, d.max)
        elif d.type == "category" and wrong:
            v = rng.choice(d.options)
        if v is not None:
            out[d.key] = v
    return out


def last_event(body: bytes) -> dict[str, Any] | None:
    """The final event (done or error) of a streamed reply read whole."""
    lines = [line for line in body.split(b"\n") if line.strip()]
    return msgspec.json.decode(lines[-1]) if lines else None  # type: ignore[no-any-return]
