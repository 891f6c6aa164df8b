"""Human votes as rewards inside TRL's trainers (`pip install 'flowlab[trl]'`).

`human_reward(flow)` is a reward function for `GRPOTrainer(reward_funcs=...)`: each call puts every prompt's
group of completions into one flow item, waits (at most `wait` seconds) while people compare them, and
returns each completion's reward from the group's Bradley–Terry fit. `human_pair_reward(flow)` does the same
for OnlineDPO's pairs. Neither imports torch or TRL: they are plain callables with TRL's reward-function
signature, `f(prompts, completions, completion_ids, **kwargs) -> list[float | None]`.

How the scale combines with GRPO's: by default a group's rewards are its centred Bradley–Terry scores divided
by `max(std, 0.5)` (`flowlab.ranking.rewards_from_scores`). GRPO's own `scale_rewards="group"` (its default)
subtracts the group mean and divides by the group's std again, so the two agree and the advantage is the
same; with `scale_rewards="none"` or `"batch"` the flowlab normalisation is what sets the size of a step.
With `reference=` every item also holds a fixed reference response and rewards are scores relative to it
(not centred), so a logged reward curve means the same at step 10 and step 1,000; GRPO's group centring still
removes the level from the advantage.
"""

from __future__ import annotations

import json
import random
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from flowlab.client import Flow, FlowItem

RewardFunc = Callable[..., Sequence[float | None]]
Metadata = Callable[[Any, Any], dict[str, Any] | None]
REFERENCE_KEY = "reference"
EMPTY = "(empty response)"


def as_text(message: Any) -> str:
    """A prompt or completion as annotators read it: plain text as is; a conversation as its messages' text
    (the roles shown for a multi-message prompt)."""
    if isinstance(message, str):
        return message
    if isinstance(message, dict):
        return str(message.get("content", ""))
    messages = list(message)
    if len(messages) == 1:
        return as_text(messages[0])
    return "\n\n".join(f"{m.get('role', 'user')}: {m.get('content', '')}" for m in messages)


def _key(prompt: Any) -> str:
    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True, default=str)


@dataclass
class _Group:
    prompt: Any
    positions: list[int]
    item: FlowItem


@dataclass
class PendingRewards:
    """The items made for one batch of completions, to collect later (`HumanReward.collect`)."""

    prompts: list[Any]
    completions: list[Any]
    groups: list[_Group]
    submitted_at: float
    step: int | None
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def items(self) -> list[FlowItem]:
        return [g.item for g in self.groups]


class HumanReward:
    """A GRPO reward function backed by a flowlab ranking flow. Call it as TRL does, or split the call into
    `submit` (at generation time) and `collect` (when the rewards are needed), e.g. for
    `steps_per_generation > 1` or an asynchronous trainer.

    Parameters
    ----------
    flow
        A ranking flow (`client.flow.create_ranking_flow(...)`); its thresholds say how many votes a group
        collects, and its instruction is what annotators read.
    wait
        Seconds to wait for votes; groups still open then are stopped and what they have counts.
    min_votes
        Votes a completion needs for its reward to count; fewer and it is unvoted.
    fallback
        A reward function (same signature, e.g. a reward model's) for unvoted completions; without one they
        get None, which GRPO leaves out of its group's baseline.
    metadata
        `f(prompt, completion) -> dict` giving each datapoint's private metadata (how demos and tests hand the
        simulated crowd a hidden `true_score`).
    reference
        A fixed response included in every group; rewards become scores relative to it.
    reward_options
        Passed to `FlowItemResult.rewards` (e.g. `method="win_rate"`, `normalise=False`).
    """

    def __init__(
        self,
        flow: Flow,
        *,
        wait: float = 60.0,
        min_votes: int = 1,
        fallback: RewardFunc | None = None,
        metadata: Metadata | None = None,
        reference: str | None = None,
        reward_options: dict[str, Any] | None = None,
        name: str = "human_reward",
    ) -> None:
        if flow.config.kind != "pairwise":
            raise ValueError(
                "human_reward needs a ranking flow (create_ranking_flow); this flow is " + flow.config.kind
            )
        if wait <= 0:
            raise ValueError("wait is the seconds to wait for votes; give a positive number.")
        self.flow = flow
        self.wait = float(wait)
        self.min_votes = int(min_votes)
        self.fallback = fallback
        self.metadata = metadata
        self.reference = reference
        self.reward_options = dict(reward_options or {})
        self.__name__ = name  # TRL names the logged reward after the function
        self.history: list[dict[str, float]] = []  # per call: votes, seconds waited, unvoted share

    # ------------------------------------------------------------ TRL's entry point

    def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        completion_ids: Sequence[Any] | None = None,
        *,
        trainer_state: Any = None,
        log_metric: Callable[[str, float], None] | None = None,
        **kwargs: Any,
    ) -> list[float | None]:
        step = getattr(trainer_state, "global_step", None)
        pending = self.submit(prompts, completions, step=step, **kwargs)
        return self.collect(pending, log_metric=log_metric)

    # ------------------------------------------------------------ submit now, collect later

    def submit(
        self, prompts: Sequence[Any], completions: Sequence[Any], *, step: int | None = None, **kwargs: Any
    ) -> PendingRewards:
        """Create one item per prompt group (consecutive completions of the same prompt) and return at once."""
        if len(prompts) != len(completions):
            raise ValueError(
                f"{len(prompts)} prompts for {len(completions)} completions; give one prompt per completion."
            )
        groups: list[_Group] = []
        start = 0
        for i in range(1, len(prompts) + 1):
            if i == len(prompts) or _key(prompts[i]) != _key(prompts[start]):
                positions = list(range(start, i))
                groups.append(
                    _Group(prompts[start], positions, self._create(prompts, completions, positions, step, len(groups)))
                )
                start = i
        return PendingRewards(list(prompts), list(completions), groups, time.monotonic(), step, kwargs)

    def _create(
        self, prompts: Sequence[Any], completions: Sequence[Any], positions: list[int], step: int | None, group: int
    ) -> FlowItem:
        datapoints = []
        for j in positions:
            text = as_text(completions[j]).strip() or EMPTY
            point: dict[str, Any] = {"id": f"c{j}", "text": text}
            extra = self.metadata(prompts[j], completions[j]) if self.metadata else None
            if extra:
                point["private_metadata"] = dict(extra)
            datapoints.append(point)
        if self.reference is not None:
            ref: dict[str, Any] = {"id": REFERENCE_KEY, "text": self.reference}
            extra = self.metadata(prompts[positions[0]], self.reference) if self.metadata else None
            if extra:
                ref["private_metadata"] = dict(extra)
            datapoints.append(ref)
        return self.flow.create_new_flow_batch(
            datapoints,
            context=as_text(prompts[positions[0]]),
            private_metadata={"step": step, "group": group, "source": "flowlab.integrations.trl"},
            time_to_live=self.wait + 30.0,  # the reward function stops it at `wait`; the TTL is a backstop
        )

    def collect(
        self,
        pending: PendingRewards,
        *,
        timeout: float | None = None,
        log_metric: Callable[[str, float], None] | None = None,
    ) -> list[float | None]:
        """Wait for the batch's groups (until `wait` after submitting, or `timeout` from now), stop those still
        open, and return one reward per completion: None (or the fallback's) where too few votes came."""
        left = self.wait - (time.monotonic() - pending.submitted_at) if timeout is None else timeout
        statuses = self.flow.wait_items(pending.items, timeout=max(0.0, left))
        for group, status in zip(pending.groups, statuses, strict=True):
            if not status.is_terminal:
                group.item.stop()
        rewards: list[float | None] = [None] * len(pending.completions)
        votes = 0
        for group in pending.groups:
            result = group.item.get_results(timeout=0, partial=True)
            votes += result.total_votes
            by_key = {d.key: d for d in result.details}
            if self.reference is not None and REFERENCE_KEY in by_key:
                base = by_key[REFERENCE_KEY].score
                values = {d.key: d.score - base if d.votes else None for d in result.details}
            else:
                values = result.rewards(unvoted_as_none=True, **self.reward_options)
            for j in group.positions:
                d = by_key.get(f"c{j}")
                if d is not None and d.votes >= self.min_votes:
                    rewards[j] = values.get(d.key)
        unvoted = [j for j, r in enumerate(rewards) if r is None]
        if unvoted and self.fallback is not None:
            backup = self.fallback(
                prompts=[pending.prompts[j] for j in unvoted],
                completions=[pending.completions[j] for j in unvoted],
                **{
                    k: [v[j] for j in unvoted] if isinstance(v, list) and len(v) == len(rewards) else v
                    for k, v in pending.kwargs.items()
                },
            )
            for j, r in zip(unvoted, backup, strict=True):
                rewards[j] = r
        waited = time.monotonic() - pending.submitted_at
        stats = {"votes": float(votes), "wait_seconds": waited, "unvoted_share": len(unvoted) / max(1, len(rewards))}
        self.history.append(stats)
        if log_metric is not None:
            for name, value in stats.items():
                log_metric(f"human/{name}", value)
        return rewards


def human_reward(flow: Flow, **options: Any) -> HumanReward:
    """A GRPO reward function from people's votes on `flow`; see `HumanReward` for the options."""
    return HumanReward(flow, **options)


class HumanPairReward:
    """A reward function for OnlineDPO (`trl.experimental.online_dpo`), which calls it with `2 × B` prompts:
    completions `i` and `i + B` answer the same prompt and form one pair. Each pair becomes its own two-datapoint
    item, so nothing is ever compared across prompts; the winner gets 1 and the loser 0 (a vote's share each,
    with several votes or ties).

    OnlineDPO counts a None reward as 0 and picks the first of a pair when the rewards are equal, so an
    unjudged pair would silently become "first wins". Here an unjudged pair gets the fallback's rewards when
    one is given; otherwise `on_unjudged` decides: "coin" (default) picks the winner at random, so unjudged
    pairs carry no systematic preference, and "raise" stops training with an error. Either way each call's
    count of unjudged pairs is in `history`, and a warning says when there were any.
    """

    def __init__(
        self,
        flow: Flow,
        *,
        wait: float = 60.0,
        fallback: RewardFunc | None = None,
        metadata: Metadata | None = None,
        on_unjudged: str = "coin",
        seed: int | None = None,
        name: str = "human_pair_reward",
    ) -> None:
        if on_unjudged not in ("coin", "raise"):
            raise ValueError("on_unjudged is 'coin' or 'raise'.")
        self._votes = HumanReward(flow, wait=wait, metadata=metadata)
        self.fallback = fallback
        self.on_unjudged = on_unjudged
        self._rng = random.Random(seed)
        self.__name__ = name
        self.history: list[dict[str, float]] = []

    def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        completion_ids: Sequence[Any] | None = None,
        *,
        trainer_state: Any = None,
        **kwargs: Any,
    ) -> list[float | None]:
        n = len(completions)
        if n % 2 or len(prompts) != n:
            raise ValueError("OnlineDPO passes 2 × B prompts and completions: i and i + B form a pair.")
        half = n // 2
        started = time.monotonic()
        step = getattr(trainer_state, "global_step", None)
        items = [self._votes._create(prompts, completions, [i, i + half], step, i) for i in range(half)]
        statuses = self._votes.flow.wait_items(items, timeout=self._votes.wait)
        rewards: list[float | None] = [None] * n
        unjudged = []
        for i, (item, status) in enumerate(zip(items, statuses, strict=True)):
            if not status.is_terminal:
                item.stop()
            matrix = item.get_win_loss_matrix()
            first, second = float(matrix.iloc[0, 1]), float(matrix.iloc[1, 0])
            if first + second == 0:
                unjudged.append(i)
                continue
            share = first / (first + second)
            if share == 0.5:  # an even split: OnlineDPO would take the first; decide by a coin instead
                share = 0.5 + self._rng.choice((-1e-6, 1e-6))
            rewards[i], rewards[i + half] = share, 1.0 - share
        if unjudged and self.fallback is not None:
            idx = [j for i in unjudged for j in (i, i + half)]
            backup = self.fallback(prompts=[prompts[j] for j in idx], completions=[completions[j] for j in idx])
            for j, r in zip(idx, backup, strict=True):
                rewards[j] = r
        elif unjudged:
            if self.on_unjudged == "raise":
                raise RuntimeError(f"{len(unjudged)} of {half} pairs got no vote within {self._votes.wait:.0f} s.")
            for i in unjudged:
                won = self._rng.random() < 0.5
                rewards[i], rewards[i + half] = (1.0, 0.0) if won else (0.0, 1.0)
            warnings.warn(
                f"{len(unjudged)} of {half} pairs got no vote within {self._votes.wait:.0f} s; their winners were "
                "drawn at random (give fallback= to use a reward model instead).",
                stacklevel=2,
            )
        self.history.append(
            {"pairs": float(half), "unjudged": float(len(unjudged)), "wait_seconds": time.monotonic() - started}
        )
        return rewards


def human_pair_reward(flow: Flow, **options: Any) -> HumanPairReward:
    """An OnlineDPO reward function from people's votes on each pair; see `HumanPairReward`."""
    return HumanPairReward(flow, **options)
