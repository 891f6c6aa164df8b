"""Evals of a training run in the SDK: `client.evals.create(...)`, `ev.checkpoint(step, completions)` at every
checkpoint (it returns at once), `ev.history()` as a DataFrame and `ev.divergence()`, the sentinel's latest check.

The server holds the eval (`/v1/evals`), so a notebook, the trainer and the dashboard read the same history.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from flowlab import schemas
from flowlab.client._core import LONG_POLL_SECONDS, Call, Op, StreamPlan, decode
from flowlab.client._errors import ValidationError
from flowlab.client._flows import _Bound

if TYPE_CHECKING:
    import pandas as pd

    from flowlab.ranking import Divergence

HISTORY_COLUMNS = (
    "step",
    "tag",
    "win_rate",
    "win_low",
    "win_high",
    "votes",
    "wins",
    "score",
    "score_low",
    "score_high",
    "proxy_reward",
    "divergence",
)


# ------------------------------------------------------------------ requests


def create_eval(
    name: str,
    prompts: Sequence[str],
    *,
    tags: Sequence[str | Sequence[str] | None] | None,
    anchor: Sequence[str] | str,
    anchor_metadata: Sequence[Mapping[str, Any] | None] | None,
    kind: str,
    instruction: str | None,
    votes_per_pair: int,
    ttl: float,
    window: int,
    alpha: float,
    metadata: Mapping[str, Any] | None,
    compare_previous: bool = False,
) -> Op[schemas.Eval]:
    if isinstance(prompts, str):
        raise ValidationError(422, "prompts is a list of prompt texts, not one string.", field="prompts")
    if isinstance(anchor, str) and anchor != "previous":
        raise ValidationError(
            422,
            'anchor is a list of the reference model\'s completions (one per prompt) or "previous" (compare each '
            f"checkpoint with the one before); got {anchor!r}.",
            field="anchor",
        )
    payload: dict[str, Any] = {
        "name": name,
        "prompts": list(prompts),
        "anchor": anchor if isinstance(anchor, str) else list(anchor),
        "kind": kind,
        "votes_per_pair": votes_per_pair,
        "time_to_live": ttl,
        "window": window,
        "alpha": alpha,
    }
    if tags is not None:
        payload["tags"] = [_tags(t) for t in tags]
    if anchor_metadata is not None:
        payload["anchor_metadata"] = [None if m is None else dict(m) for m in anchor_metadata]
    if instruction is not None:
        payload["instruction"] = instruction
    if metadata is not None:
        payload["metadata"] = dict(metadata)
    if compare_previous:
        payload["compare_previous"] = True
    resp = yield Call("POST", "/v1/evals", json=payload)
    return decode(resp.content, schemas.Eval)


def _tags(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def get_eval(eval_id: str) -> Op[schemas.Eval]:
    resp = yield Call("GET", f"/v1/evals/{eval_id}")
    return decode(resp.content, schemas.Eval)


def list_evals() -> Op[list[schemas.Eval]]:
    resp = yield Call("GET", "/v1/evals")
    return decode(resp.content, list[schemas.Eval])


def add_checkpoint(
    eval_id: str,
    step: int,
    completions: Sequence[str],
    proxy_reward: float | Sequence[float] | None,
    metadata: Sequence[Mapping[str, Any] | None] | None,
) -> Op[schemas.EvalCheckpoint]:
    if isinstance(completions, str):
        raise ValidationError(422, "completions is a list, one completion per prompt.", field="completions")
    payload: dict[str, Any] = {"step": int(step), "completions": list(completions)}
    if proxy_reward is not None:
        rewards = [float(proxy_reward)] if isinstance(proxy_reward, int | float) else [float(p) for p in proxy_reward]
        if not all(math.isfinite(r) for r in rewards):
            raise ValidationError(
                422, "proxy_reward holds NaN or an infinity; report finite rewards (or none).", field="proxy_reward"
            )
        payload["proxy_reward"] = rewards[0] if isinstance(proxy_reward, int | float) else rewards
    if metadata is not None:
        payload["metadata"] = [None if m is None else dict(m) for m in metadata]
    resp = yield Call("POST", f"/v1/evals/{eval_id}/checkpoints", json=payload)
    return decode(resp.content, schemas.EvalCheckpoint)


def eval_history(eval_id: str) -> Op[schemas.EvalHistory]:
    resp = yield Call("GET", f"/v1/evals/{eval_id}/history")
    return decode(resp.content, schemas.EvalHistory)


def wait_eval(eval_id: str, timeout: float | None) -> Op[schemas.EvalHistory]:
    """Long-poll until every checkpoint so far has ended and its final counts are in the history, or `timeout`
    passes (None: no limit); the history then."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = LONG_POLL_SECONDS if deadline is None else max(0.0, min(LONG_POLL_SECONDS, deadline - time.monotonic()))
        resp = yield Call("GET", f"/v1/evals/{eval_id}/wait", params={"timeout": left}, timeout=left + 30.0)
        history = decode(resp.content, schemas.EvalHistory)
        if all(c.ended for c in history.checkpoints) or (deadline is not None and time.monotonic() >= deadline):
            return history


def history_frame(history: schemas.EvalHistory) -> pd.DataFrame:
    """One row per (step, tag), "all" first within a step, with the contract's columns."""
    import pandas as pd

    rows = [{c: getattr(r, c) for c in HISTORY_COLUMNS} for r in history.rows]
    frame = pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))
    for c in ("win_rate", "win_low", "win_high", "score", "score_low", "score_high", "proxy_reward"):
        frame[c] = frame[c].astype(float)
    return frame


def as_divergence(found: schemas.EvalDivergence | None) -> Divergence | None:
    """The wire's check as the sentinel's own `Divergence` (a statistic sent as null is NaN again)."""
    if found is None:
        return None
    from flowlab.ranking import Divergence  # numpy and scipy load only when a check is read

    nan = float("nan")
    return Divergence(
        fired=found.fired,
        step=found.step,
        window=found.window,
        proxy_slope=nan if found.proxy_slope is None else found.proxy_slope,
        proxy_p=nan if found.proxy_p is None else found.proxy_p,
        win_slope=nan if found.win_slope is None else found.win_slope,
        win_high=nan if found.win_high is None else found.win_high,
        reason=found.reason,
    )


def eval_stream(eval_id: str) -> StreamPlan:
    return StreamPlan(f"/v1/evals/{eval_id}/events", schemas.EvalEvent, schemas.EVAL_EVENTS)


# ------------------------------------------------------------------ objects


class _EvalBase(_Bound):
    def __init__(self, transport: Any, info: schemas.Eval) -> None:
        self._transport = transport
        self.info = info

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def flow_id(self) -> str:
        """The flow whose items carry the eval's comparisons."""
        return self.info.flow_id

    @property
    def prompts(self) -> list[str]:
        return self.info.prompts

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.name!r} {len(self.prompts)} prompts>"


class Eval(_EvalBase):
    """Held-out prompts and an anchor, compared by people at every checkpoint of a training run."""

    def checkpoint(
        self,
        step: int,
        completions: Sequence[str],
        *,
        proxy_reward: float | Sequence[float] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> schemas.EvalCheckpoint:
        """Submit the policy's completions of the prompts (in their order) at `step`; returns at once, while
        people compare them with the anchor's. `proxy_reward`: the trainer's reward (a mean, or one per
        completion); `metadata`: per completion, private metadata (a simulated crowd's oracle reads
        `true_score`)."""
        return self._transport.run(add_checkpoint(self.id, step, completions, proxy_reward, metadata))

    def history(self) -> pd.DataFrame:
        """One row per (step, tag), tag "all" for every prompt: win rate against the anchor with its 95 %
        interval, votes, wins, the Bradley–Terry score on the eval's one scale with its interval, the proxy
        reward, and whether the sentinel fired at that step."""
        return history_frame(self._transport.run(eval_history(self.id)))

    def divergence(self) -> Divergence | None:
        """The sentinel's latest check (`flowlab.ranking.Divergence`; None until a window of checkpoints has
        votes and a proxy reward)."""
        return as_divergence(self._transport.run(eval_history(self.id)).divergence)

    def wait(self, timeout: float | None = None) -> pd.DataFrame:
        """Block until every checkpoint so far has ended (all its votes in, or its time-to-live over), or
        `timeout` seconds pass; the history then."""
        return history_frame(self._transport.run(wait_eval(self.id, timeout)))

    def refresh(self) -> Eval:
        self.info = self._transport.run(get_eval(self.id))
        return self

    def watch(self) -> Iterator[schemas.EvalEvent]:
        """`eval.checkpoint` and `eval.divergence` events over SSE, resuming after a dropped connection."""
        return self._transport.stream(eval_stream(self.id))  # type: ignore[no-any-return]


class EvalsAPI:
    """`client.evals`: human evals at the checkpoints of a training run."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport

    def create(
        self,
        name: str,
        prompts: Sequence[str],
        *,
        anchor: Sequence[str] | str,
        tags: Sequence[str | Sequence[str] | None] | None = None,
        anchor_metadata: Sequence[Mapping[str, Any] | None] | None = None,
        kind: str = schemas.DEFAULT_KIND,
        instruction: str | None = None,
        votes_per_pair: int = 3,
        ttl: float = 3600.0,
        window: int = 4,
        alpha: float = 0.05,
        metadata: Mapping[str, Any] | None = None,
        compare_previous: bool = False,
    ) -> Eval:
        """An eval of held-out `prompts` (each with optional `tags`, a tag or a list) against `anchor`: a
        reference model's completions, one per prompt, or "previous" (each checkpoint against the one before).
        Each comparison gets `votes_per_pair` votes within `ttl` seconds; the sentinel looks back `window`
        checkpoints at level `alpha`. `compare_previous` (with a fixed anchor): also compare each checkpoint
        with the previous one, for direct checkpoint-to-checkpoint edges on the Bradley–Terry scale (twice the
        votes)."""
        info = self._transport.run(
            create_eval(
                name,
                prompts,
                tags=tags,
                anchor=anchor,
                anchor_metadata=anchor_metadata,
                kind=kind,
                instruction=instruction,
                votes_per_pair=votes_per_pair,
                ttl=ttl,
                window=window,
                alpha=alpha,
                metadata=metadata,
                compare_previous=compare_previous,
            )
        )
        return Eval(self._transport, info)

    def get(self, eval_id: str) -> Eval:
        return Eval(self._transport, self._transport.run(get_eval(eval_id)))

    def list(self) -> list[Eval]:
        return [Eval(self._transport, e) for e in self._transport.run(list_evals())]


class AsyncEval(_EvalBase):
    """An eval, for asyncio code: the same calls as `Eval`, awaited."""

    async def checkpoint(
        self,
        step: int,
        completions: Sequence[str],
        *,
        proxy_reward: float | Sequence[float] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> schemas.EvalCheckpoint:
        return await self._transport.run(add_checkpoint(self.id, step, completions, proxy_reward, metadata))  # type: ignore[no-any-return]

    async def history(self) -> pd.DataFrame:
        return history_frame(await self._transport.run(eval_history(self.id)))

    async def divergence(self) -> Divergence | None:
        return as_divergence((await self._transport.run(eval_history(self.id))).divergence)

    async def wait(self, timeout: float | None = None) -> pd.DataFrame:
        return history_frame(await self._transport.run(wait_eval(self.id, timeout)))

    async def refresh(self) -> AsyncEval:
        self.info = await self._transport.run(get_eval(self.id))
        return self

    def watch(self) -> AsyncIterator[schemas.EvalEvent]:
        return self._transport.stream(eval_stream(self.id))  # type: ignore[no-any-return]


class AsyncEvalsAPI:
    """`client.evals` of the async client."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport

    async def create(
        self,
        name: str,
        prompts: Sequence[str],
        *,
        anchor: Sequence[str] | str,
        tags: Sequence[str | Sequence[str] | None] | None = None,
        anchor_metadata: Sequence[Mapping[str, Any] | None] | None = None,
        kind: str = schemas.DEFAULT_KIND,
        instruction: str | None = None,
        votes_per_pair: int = 3,
        ttl: float = 3600.0,
        window: int = 4,
        alpha: float = 0.05,
        metadata: Mapping[str, Any] | None = None,
        compare_previous: bool = False,
    ) -> AsyncEval:
        info = await self._transport.run(
            create_eval(
                name,
                prompts,
                tags=tags,
                anchor=anchor,
                anchor_metadata=anchor_metadata,
                kind=kind,
                instruction=instruction,
                votes_per_pair=votes_per_pair,
                ttl=ttl,
                window=window,
                alpha=alpha,
                metadata=metadata,
                compare_previous=compare_previous,
            )
        )
        return AsyncEval(self._transport, info)

    async def get(self, eval_id: str) -> AsyncEval:
        return AsyncEval(self._transport, await self._transport.run(get_eval(eval_id)))

    async def list(self) -> list[AsyncEval]:
        return [AsyncEval(self._transport, e) for e in await self._transport.run(list_evals())]
