"""What a simulated person does with a task of each kind: one strategy per kind, each making the whole answer
body the page would send (`{"choice": ...}`, or `{"choice": "submit", <kind>: annotation}`). The crowd's loop
(`_crowd.py`) knows no kind: it asks `strategy_for(task.kind)`.

A strategy reads the truth through the crowd's oracle lookups (the item's detail and private metadata, the
flow's gold), as the researcher's key may, and answers it with the person's accuracy."""

from __future__ import annotations

import asyncio
import math
import random
import time
from typing import TYPE_CHECKING, Any, Protocol

from flowlab import schemas
from flowlab.crowd._chat import converse, last_event
from flowlab.crowd._oracle import content_utility, datapoint_content, prefer_probability, true_category
from flowlab.crowd._rlhf import annotate, response_scores
from flowlab.crowd._wire import KeepAliveHTTP, WireError
from flowlab.crowd._write import closeness, demonstrate, quality_of

if TYPE_CHECKING:
    from flowlab.crowd._crowd import AnnotatorProfile, SimulatedCrowd

SKIP: dict[str, Any] = {"choice": "skip"}
CHAT_RETRY_SECONDS = 0.25  # between tries at a failed reply (for ChatScript.patience, then the task goes back)


class Strategy(Protocol):
    async def answer(
        self,
        crowd: SimulatedCrowd,
        own: KeepAliveHTTP,
        oracle: KeepAliveHTTP,
        p: AnnotatorProfile,
        task: schemas.Task,
        rng: random.Random,
    ) -> dict[str, Any]:
        """The answer body for `task` (SKIP hands it back); `own` is the person's connection, `oracle` the
        researcher's."""
        ...


def view_content(v: schemas.DatapointView) -> str:
    return v.text if v.text is not None else (v.url or "")


class Pairs:
    """The better of two by their true scores (the Bradley–Terry chance of preferring it), a gold pair's known
    answer; at random with probability 1 − accuracy, always for spammers; the left side without reading with
    probability `left_bias`. On an absolute flow's task: "both_good" / "both_bad" when both true scores are on
    the same side of their `acceptable_above` thresholds (private metadata), else the acceptable one."""

    async def answer(
        self,
        crowd: SimulatedCrowd,
        own: KeepAliveHTTP,
        oracle: KeepAliveHTTP,
        p: AnnotatorProfile,
        task: schemas.Task,
        rng: random.Random,
    ) -> dict[str, Any]:
        assert task.b is not None
        if p.left_bias and rng.random() < p.left_bias:
            return {"choice": "a"}
        if p.spammer or rng.random() > p.accuracy:
            choices = ("a", "b", "tie") if task.allow_ties else ("a", "b")
            return {"choice": rng.choice(choices + (("both_good", "both_bad") if task.absolute else ()))}
        gold = await crowd.gold_answer(oracle, task)
        if gold is not None:
            return {"choice": gold}
        scores = await crowd.item_scores(oracle, task.item_id)
        if scores is not None and 0 <= task.a.ref < len(scores) and 0 <= task.b.ref < len(scores):
            sa, sb = scores[task.a.ref], scores[task.b.ref]
        else:  # another researcher's item: this key cannot read its metadata, so judge by content
            sa, sb = content_utility(view_content(task.a)), content_utility(view_content(task.b))
        if task.absolute:
            levels = await crowd.item_thresholds(oracle, task.item_id)
            ta, tb = (levels[task.a.ref], levels[task.b.ref]) if scores is not None and levels else (0.0, 0.0)
            good_a, good_b = sa > ta, sb > tb
            if good_a == good_b:
                return {"choice": "both_good" if good_a else "both_bad"}
            return {"choice": "a" if good_a else "b"}
        return {"choice": "a" if rng.random() < prefer_probability(sa, sb) else "b"}


class Labels:
    """The true category with the person's accuracy, else one of the others at random (so a crowd at 80 %
    accuracy answers right 80 % of the time); spammers pick any category."""

    async def answer(
        self,
        crowd: SimulatedCrowd,
        own: KeepAliveHTTP,
        oracle: KeepAliveHTTP,
        p: AnnotatorProfile,
        task: schemas.Task,
        rng: random.Random,
    ) -> dict[str, Any]:
        values = [c.value for c in task.categories or []]
        if p.spammer:
            return {"choice": rng.choice(values)}
        gold = await crowd.gold_labels(oracle, task.flow_id)
        details = await crowd.item_detail(oracle, task.item_id)
        if view_content(task.a) in gold:  # a gold question: the set says what is right (by value or label)
            truths = gold[view_content(task.a)]
            truth = next(c.value for c in task.categories or [] if c.value in truths or c.label in truths)
        elif details is not None and 0 <= task.a.ref < len(details):
            d = details[task.a.ref]
            truth = true_category(d.private_metadata, datapoint_content(d), values)
        else:  # another researcher's item: judge by content
            truth = true_category(None, view_content(task.a), values)
        if rng.random() < p.accuracy:
            return {"choice": truth}
        return {"choice": rng.choice([v for v in values if v != truth] or values)}


class Annotations:
    """An RLHF form filled from the true scores of the responses shown (found by content in the item's detail;
    another researcher's item is judged by content alone)."""

    async def answer(
        self,
        crowd: SimulatedCrowd,
        own: KeepAliveHTTP,
        oracle: KeepAliveHTTP,
        p: AnnotatorProfile,
        task: schemas.Task,
        rng: random.Random,
    ) -> dict[str, Any]:
        assert task.rlhf is not None
        dims = task.rlhf.spec.dimensions
        details = await crowd.item_detail(oracle, task.item_id)
        given: list[schemas.Response] = []
        if details is not None and 0 <= task.a.ref < len(details):
            given = details[task.a.ref].responses or []
        by_content = {(r.text, r.url or (f"/media/{r.media}" if r.media else None)): r for r in given}
        shown = [by_content.get((v.text, v.url), v) for v in task.rlhf.responses]
        scores = [response_scores(r, dims) for r in shown]
        ideal = (details[task.a.ref].private_metadata or {}).get("ideal") if given and details else None
        if isinstance(ideal, str):  # written responses under review: as good as they come close to the ideal
            scores = [
                s
                if (getattr(r, "private_metadata", None) or {}).get("true_score") is not None or r.text is None
                else dict.fromkeys(s, closeness(r.text, ideal))
                for r, s in zip(shown, scores, strict=True)
            ]
        return {"choice": "submit", "rlhf": annotate(task.rlhf, scores, p.accuracy, p.spammer, rng)}


class Rankings:
    """An order of the k shown by a Plackett–Luce draw on their true scores (the Bradley–Terry chance for each
    pair, as `Pairs` answers), at random with probability 1 − accuracy and always for spammers; in best–worst
    mode, the first and last of that order."""

    async def answer(
        self,
        crowd: SimulatedCrowd,
        own: KeepAliveHTTP,
        oracle: KeepAliveHTTP,
        p: AnnotatorProfile,
        task: schemas.Task,
        rng: random.Random,
    ) -> dict[str, Any]:
        assert task.listwise is not None
        shown = task.listwise.datapoints
        positions = list(range(len(shown)))
        if p.spammer or rng.random() > p.accuracy:
            rng.shuffle(positions)
        else:
            scores = await crowd.item_scores(oracle, task.item_id)
            if scores is not None and all(0 <= v.ref < len(scores) for v in shown):
                truth = [scores[v.ref] for v in shown]
            else:  # another researcher's item: judge by content
                truth = [content_utility(view_content(v)) for v in shown]
            # Sorting utilities plus Gumbel noise is a Plackett–Luce draw (each stage a softmax of the scores).
            noisy = [t - math.log(-math.log(rng.random() or 1e-300)) for t in truth]
            positions.sort(key=lambda i: -noisy[i])
        if task.listwise.mode == "best_worst":
            return {"choice": "submit", "listwise": {"best": positions[0], "worst": positions[-1]}}
        return {"choice": "submit", "listwise": {"order": positions}}


class Conversations:
    """Talk with the task's models by the crowd's script, then annotate; hand the task back when a model fails
    for longer than the script's patience (or says retrying cannot help)."""

    async def answer(
        self,
        crowd: SimulatedCrowd,
        own: KeepAliveHTTP,
        oracle: KeepAliveHTTP,
        p: AnnotatorProfile,
        task: schemas.Task,
        rng: random.Random,
    ) -> dict[str, Any]:
        async def generate(messages: list[dict[str, str]], model: int) -> dict[str, Any] | None:
            # As a person would: an offline model or a failed reply is tried again, a moment apart, for a while;
            # a failure that says retrying will not help (or a refusal) hands the task back at once.
            body = crowd.encode({"messages": messages, "model": model})
            give_up = time.monotonic() + crowd.chat.patience
            while True:
                r = await own.post(f"/v1/tasks/{task.task_id}/generate", body)
                if r.status == 200:
                    crowd.stats.replies += 1
                    event = last_event(r.body)
                    if event is not None and event.get("type") == "done":
                        return event
                    if event is not None and event.get("retry") is False:
                        return None
                elif r.status != 503:
                    return None
                if time.monotonic() >= give_up:
                    return None
                await asyncio.sleep(CHAT_RETRY_SECONDS * rng.uniform(0.5, 1.5))

        try:
            body = await converse(task, crowd.chat, generate, p.accuracy, p.spammer, rng)
        except WireError:
            body = None
        return SKIP if body is None else {"choice": "submit", "chat": body}


class Demonstrations:
    """Write the response to the prompt, of a quality: the prompt's `demo_quality` (private metadata), else the
    person's accuracy; a good one restates the prompt's `ideal` answer (private metadata) or its reference."""

    async def answer(
        self,
        crowd: SimulatedCrowd,
        own: KeepAliveHTTP,
        oracle: KeepAliveHTTP,
        p: AnnotatorProfile,
        task: schemas.Task,
        rng: random.Random,
    ) -> dict[str, Any]:
        assert task.write is not None
        details = await crowd.item_detail(oracle, task.item_id)
        metadata = details[task.a.ref].private_metadata if details and 0 <= task.a.ref < len(details) else None
        ideal = (metadata or {}).get("ideal")
        quality = quality_of(metadata, p.accuracy)
        body = demonstrate(task.write, ideal if isinstance(ideal, str) else None, quality, p.spammer, rng)
        return {"choice": "submit", "write": body}


STRATEGIES: dict[str, Strategy] = {
    "pairwise": Pairs(),
    "classify": Labels(),
    "rlhf": Annotations(),
    "chat": Conversations(),
    "listwise": Rankings(),
    "write": Demonstrations(),
}


def strategy_for(kind: str) -> Strategy:
    try:
        return STRATEGIES[kind]
    except KeyError:
        raise ValueError(f"the simulated crowd has no strategy for tasks of kind {kind!r}") from None
