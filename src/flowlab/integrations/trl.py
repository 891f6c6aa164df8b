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

With `judge=` (a reward model or LLM judge), every completion gets the judge's verdict and people see only the
pairs where the judge is least likely to agree with them, up to `budget` a step; each group's reward blends
the two (`flowlab.integrations.judge`, `flowlab.ranking.fit_judge_bradley_terry`), and `reward.calibration`
reports votes spent, agreement with its interval per tag, and how many rewards came from people.
"""

from __future__ import annotations

import json
import random
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flowlab.client import Flow, FlowItem

if TYPE_CHECKING:  # numpy and scipy load when a judge is first used, not on import
    from flowlab.integrations.judge import JudgeCalibration, JudgedGroup

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
    item: FlowItem | None  # None: a lone completion, with nothing to be compared with


@dataclass
class PendingRewards:
    """The items made for one batch of completions, to collect later (`HumanReward.collect`)."""

    prompts: list[Any]
    completions: list[Any]
    groups: list[_Group]
    submitted_at: float
    step: int | None
    columns: dict[str, Any] = field(default_factory=dict)  # what TRL passed besides prompts and completions
    judged: list[JudgedGroup] | None = None  # with a judge: each group as the judge saw it
    asked: list[_Asked] = field(default_factory=list)  # with a judge: the pairs people were asked about

    @property
    def items(self) -> list[FlowItem]:
        return [g.item for g in self.groups if g.item is not None] + [a.item for a in self.asked]


@dataclass
class _Asked:
    group: int
    pair: int
    audit: bool
    item: FlowItem


def call_fallback(fallback: RewardFunc, positions: list[int], n: int, pending: PendingRewards) -> list[float | None]:
    """The fallback reward function on the completions at `positions`, called as TRL calls reward functions:
    the same keyword arguments, every per-completion column cut to those positions."""
    columns = {
        k: [v[j] for j in positions] if isinstance(v, list | tuple) and len(v) == n else v
        for k, v in pending.columns.items()
    }
    columns.setdefault("completion_ids", None)
    return list(
        fallback(
            prompts=[pending.prompts[j] for j in positions],
            completions=[pending.completions[j] for j in positions],
            **columns,
        )
    )


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
    judge
        A reward model or LLM judge scoring completions, called as TRL calls reward functions
        (`f(prompts, completions, **columns) -> list[float]`). Every completion gets the judge's score;
        people are asked only about the pairs `route` picks, up to `budget` a step, each pair its own
        two-completion item with the flow's `max_response_threshold` votes; every group's reward is its
        scores under `flowlab.ranking.fit_judge_bradley_terry`, blending judge and people by the judge's
        calibrated reliability. See `flowlab.integrations.judge` and docs/training.md.
    route, budget, explore, seed
        With a judge: how pairs are picked ("uncertain" or "random"), how many a step (a count, or a share
        of the step's pairs in (0, 1); default a quarter), the share of the budget drawn at random for an
        unbiased agreement estimate, and the seed of those draws (`JudgeCalibration`).
    tag
        With a judge: the dataset column (TRL passes columns through) or metadata key naming each prompt's
        tag; the judge's agreement is calibrated and reported per tag.
    calibration
        A `JudgeCalibration` to continue (e.g. from an earlier run); by default a new one, at
        `reward.calibration`.
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
        judge: RewardFunc | None = None,
        route: str = "uncertain",
        budget: float = 0.25,
        explore: float = 0.1,
        seed: int | None = None,
        tag: str = "tag",
        calibration: JudgeCalibration | None = None,
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
        self.judge = judge
        self.tag = tag
        self.calibration: JudgeCalibration | None = None
        if judge is not None:
            if not callable(judge):
                raise ValueError("judge is a callable scoring completions: f(prompts, completions, **kw) -> scores.")
            if reference is not None or fallback is not None:
                raise ValueError(
                    "judge= gives every completion a reward already; leave out reference= and fallback= with it."
                )
            from flowlab.integrations.judge import JudgeCalibration

            self.calibration = calibration or JudgeCalibration(route=route, budget=budget, explore=explore, seed=seed)

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
        columns = {"completion_ids": completion_ids, "trainer_state": trainer_state, **kwargs}
        if log_metric is not None:
            columns["log_metric"] = log_metric
        pending = self.submit(prompts, completions, step=getattr(trainer_state, "global_step", None), columns=columns)
        return self.collect(pending, log_metric=log_metric)

    # ------------------------------------------------------------ submit now, collect later

    def submit(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        *,
        step: int | None = None,
        columns: dict[str, Any] | None = None,
    ) -> PendingRewards:
        """Create one item per prompt group (consecutive completions of the same prompt) and return at once.
        `columns` are TRL's other reward-function arguments, kept for the fallback. A lone completion (a group
        of one, e.g. split across processes) has nothing to be compared with: it is left to the fallback."""
        if len(prompts) != len(completions):
            raise ValueError(
                f"{len(prompts)} prompts for {len(completions)} completions; give one prompt per completion."
            )
        groups: list[_Group] = []
        start = 0
        judged = self.judge is not None
        for i in range(1, len(prompts) + 1):
            if i == len(prompts) or _key(prompts[i]) != _key(prompts[start]):
                positions = list(range(start, i))
                comparable = (len(positions) >= 2 or self.reference is not None) and not judged
                item = self._create(prompts, completions, positions, step, len(groups)) if comparable else None
                groups.append(_Group(prompts[start], positions, item))
                start = i
        pending = PendingRewards(list(prompts), list(completions), groups, time.monotonic(), step, dict(columns or {}))
        if judged:
            self._route(pending)
        return pending

    def _tag_of(self, pending: PendingRewards, position: int) -> str | None:
        column = pending.columns.get(self.tag)
        if isinstance(column, list | tuple) and len(column) == len(pending.completions):
            return None if column[position] is None else str(column[position])
        if self.metadata is not None:
            extra = self.metadata(pending.prompts[position], pending.completions[position]) or {}
            if extra.get(self.tag) is not None:
                return str(extra[self.tag])
        return None

    def _route(self, pending: PendingRewards) -> None:
        """Score every completion with the judge, pick the pairs people see and create their items."""
        assert self.judge is not None and self.calibration is not None
        n = len(pending.completions)
        scores = call_fallback(self.judge, list(range(n)), n, pending)
        if len(scores) != n:
            raise ValueError(f"the judge returned {len(scores)} scores for {n} completions; return one each.")
        values = [None if v is None else float(v) for v in scores]
        if any(v is None for v in values):
            raise ValueError("the judge returned None for a completion; give every completion a score.")
        by_group = [[values[j] for j in g.positions] for g in pending.groups]
        from flowlab.integrations.judge import JudgedGroup, score_scale

        scale = score_scale(by_group)
        pending.judged = [
            JudgedGroup.from_scores(s, scale, self._tag_of(pending, g.positions[0]))
            for g, s in zip(pending.groups, by_group, strict=True)
        ]
        plan = self.calibration.plan(pending.judged)

        def create(entry: tuple[int, int, bool]) -> FlowItem:
            g, k, _ = entry
            positions = pending.groups[g].positions
            pair = [positions[int(x)] for x in pending.judged[g].pairs[k, :2]]  # type: ignore[index]
            return self._create(pending.prompts, pending.completions, pair, pending.step, g)

        for (g, k, audit), item in zip(plan, _concurrently(create, plan), strict=True):
            pending.asked.append(_Asked(g, k, audit, item))

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

    def _centred(self, result: Any, counted: set[str]) -> dict[str, float | None]:
        """The group's rewards among the completions with enough votes (the reference, if any, aside)."""
        return _ranked(result, {k for k in counted if k != REFERENCE_KEY}, self.reward_options)

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
        items = pending.items
        statuses = self.flow.wait_items(items, timeout=max(0.0, left)) if items else []
        for item, status in zip(items, statuses, strict=True):
            if not status.is_terminal:
                item.stop()
        if pending.judged is not None:
            return self._blend(pending, log_metric)
        rewards: list[float | None] = [None] * len(pending.completions)
        votes = 0
        for group in pending.groups:
            if group.item is None:
                continue
            result = group.item.get_results(timeout=0, partial=True)
            votes += result.total_votes
            by_key = {d.key: d for d in result.details}
            counted = {d.key for d in result.details if d.votes >= self.min_votes}
            if self.reference is not None:
                ref = by_key.get(REFERENCE_KEY)
                if ref is None or not ref.votes:  # nothing to be relative to: the group is unvoted
                    continue
                values: dict[str, float | None] = {d.key: d.score - ref.score for d in result.details}
            else:
                values = self._centred(result, counted)
            for j in group.positions:
                if f"c{j}" in counted:
                    rewards[j] = values.get(f"c{j}")
        unvoted = [j for j, r in enumerate(rewards) if r is None]
        if unvoted and self.fallback is not None:
            for j, r in zip(unvoted, call_fallback(self.fallback, unvoted, len(rewards), pending), strict=True):
                rewards[j] = r
        waited = time.monotonic() - pending.submitted_at
        stats = {"votes": float(votes), "wait_seconds": waited, "unvoted_share": len(unvoted) / max(1, len(rewards))}
        self.history.append(stats)
        if log_metric is not None:
            for name, value in stats.items():
                log_metric(f"human/{name}", value)
        return rewards

    def _blend(self, pending: PendingRewards, log_metric: Callable[[str, float], None] | None) -> list[float | None]:
        """Rewards from the judge and the people's votes on the asked pairs, blended per group."""
        import numpy as np

        from flowlab import ranking

        assert pending.judged is not None and self.calibration is not None
        wins: dict[int, Any] = {}
        from_people: set[int] = set()
        votes = 0.0
        matrices = _concurrently(lambda a: a.item.get_win_loss_matrix(), pending.asked)
        for asked, matrix in zip(pending.asked, matrices, strict=True):
            group = pending.groups[asked.group]
            local = {f"c{j}": i for i, j in enumerate(group.positions)}
            counts = wins.setdefault(asked.group, np.zeros((len(group.positions),) * 2))
            for w in matrix.index:
                for loser in matrix.columns:
                    value = float(matrix.loc[w, loser])
                    if value and w in local and loser in local:
                        counts[local[w], local[loser]] += value
                        votes += value
                        from_people.update(group.positions[local[k]] for k in (w, loser))
        audits = {(a.group, a.pair) for a in pending.asked if a.audit}
        scores = self.calibration.rewards(pending.judged, wins, audits)
        rewards: list[float | None] = [None] * len(pending.completions)
        for group, theta in zip(pending.groups, scores, strict=True):
            values = ranking.rewards_from_scores(theta, **self.reward_options) if len(theta) else theta
            for j, v in zip(group.positions, values, strict=True):
                rewards[j] = float(v)
        row = self.calibration.end_step(
            pending.step,
            groups=len(pending.groups),
            to_people=len(pending.asked),
            votes=votes,
            from_people=len(from_people),
            total=len(rewards),
        )
        stats = {
            "votes": votes,
            "wait_seconds": time.monotonic() - pending.submitted_at,
            "unvoted_share": 0.0,
            "pairs_to_people": float(len(pending.asked)),
            "people_share": len(from_people) / max(1, len(rewards)),
            "judge_agreement": row["agreement"],
            "judge_agreement_low": row["agreement_low"],
            "judge_agreement_high": row["agreement_high"],
        }
        self.history.append(stats)
        if log_metric is not None:
            for name, value in stats.items():
                if value == value:  # NaN (no agreement measured yet) is left out of the logs
                    log_metric(f"human/{name}", value)
        return rewards


def _concurrently(call: Callable[[Any], Any], args: Sequence[Any], workers: int = 8) -> list[Any]:
    """`[call(a) for a in args]`, up to `workers` requests in flight (an item per asked pair adds up)."""
    if len(args) <= 1:
        return [call(a) for a in args]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(workers, len(args))) as pool:
        return list(pool.map(call, args))


def _ranked(result: Any, keys: set[str], options: dict[str, Any]) -> dict[str, float | None]:
    """Rewards for the completions in `keys` only, normalised among themselves."""
    import numpy as np

    from flowlab import ranking

    rows = [d for d in result.details if d.key in keys]
    if not rows:
        return {}
    values = ranking.rewards_from_scores(np.array([d.score for d in rows]), **options)
    return {d.key: float(v) for d, v in zip(rows, values, strict=True)}


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

    With `judge=` (a pairwise preference function, `f(prompts, firsts, seconds) -> list[P(first better)]`,
    one entry per pair), every pair gets the judge's verdict and people see only the pairs `route` picks,
    up to `budget` a step; a pair's rewards are `σ(θ_first − θ_second)` and its complement, from the judge
    and the pair's votes blended by the judge's calibrated reliability (`reward.calibration` reports it).
    `route`, `budget`, `explore`, `seed`, `tag` and `calibration` are as in `HumanReward`.
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
        judge: Callable[..., Sequence[float]] | None = None,
        route: str = "uncertain",
        budget: float = 0.25,
        explore: float = 0.1,
        tag: str = "tag",
        calibration: JudgeCalibration | None = None,
    ) -> None:
        if on_unjudged not in ("coin", "raise"):
            raise ValueError("on_unjudged is 'coin' or 'raise'.")
        if judge is not None and not callable(judge):
            raise ValueError("judge is a callable: f(prompts, firsts, seconds) -> one P(first better) per pair.")
        self.judge = judge
        self.tag = tag
        self.calibration: JudgeCalibration | None = None
        if judge is not None:
            from flowlab.integrations.judge import JudgeCalibration

            self.calibration = calibration or JudgeCalibration(route=route, budget=budget, explore=explore, seed=seed)
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
        if self.judge is not None:
            columns = {"completion_ids": completion_ids, "trainer_state": trainer_state, **kwargs}
            return self._judged(list(prompts), list(completions), step, started, columns, kwargs.get("log_metric"))
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
            columns = {"completion_ids": completion_ids, "trainer_state": trainer_state, **kwargs}
            pending = PendingRewards(list(prompts), list(completions), [], started, step, columns)
            for j, r in zip(idx, call_fallback(self.fallback, idx, n, pending), strict=True):
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

    def _judged(
        self,
        prompts: list[Any],
        completions: list[Any],
        step: int | None,
        started: float,
        columns: dict[str, Any],
        log_metric: Callable[[str, float], None] | None,
    ) -> list[float | None]:
        """The judge on every pair, people on the routed ones, the two blended."""
        import numpy as np
        from scipy.special import expit

        assert self.judge is not None and self.calibration is not None
        n = len(completions)
        half = n // 2
        preferences = list(self.judge(prompts[:half], completions[:half], completions[half:]))
        if len(preferences) != half:
            raise ValueError(f"the judge returned {len(preferences)} preferences for {half} pairs; return one each.")
        from flowlab.integrations.judge import JudgedGroup

        tags = columns.get(self.tag)
        judged = []
        for i, p in enumerate(preferences):
            tag = None
            if isinstance(tags, list | tuple) and len(tags) in (n, half) and tags[i] is not None:
                tag = str(tags[i])
            elif self._votes.metadata is not None:
                extra = self._votes.metadata(prompts[i], completions[i]) or {}
                tag = None if extra.get(self.tag) is None else str(extra[self.tag])
            judged.append(JudgedGroup.from_preference(float(p), tag))
        plan = self.calibration.plan(judged)
        made = _concurrently(lambda e: self._votes._create(prompts, completions, [e[0], e[0] + half], step, e[0]), plan)
        asked = [(g, audit, item) for (g, _, audit), item in zip(plan, made, strict=True)]
        items = [item for _, _, item in asked]
        statuses = self._votes.flow.wait_items(items, timeout=self._votes.wait) if items else []
        wins: dict[int, Any] = {}
        votes = 0.0
        voted = 0
        for (_, _, item), status in zip(asked, statuses, strict=True):
            if not status.is_terminal:
                item.stop()
        matrices = _concurrently(lambda a: a[2].get_win_loss_matrix(), asked)
        for (g, _, _item), matrix in zip(asked, matrices, strict=True):
            first, second = float(matrix.loc[f"c{g}", f"c{g + half}"]), float(matrix.loc[f"c{g + half}", f"c{g}"])
            wins[g] = np.array([[0.0, first], [second, 0.0]])
            votes += first + second
            voted += first + second > 0
        scores = self.calibration.rewards(judged, wins, {(g, 0) for g, audit, _ in asked if audit})
        rewards: list[float | None] = [None] * n
        for i, theta in enumerate(scores):
            share = float(expit(theta[0] - theta[1]))
            if share == 0.5:  # OnlineDPO would take the first; decide by a coin instead
                share = 0.5 + self._rng.choice((-1e-6, 1e-6))
            rewards[i], rewards[i + half] = share, 1.0 - share
        row = self.calibration.end_step(
            step, groups=half, to_people=len(asked), votes=votes, from_people=2 * voted, total=n
        )
        stats = {
            "pairs": float(half),
            "unjudged": 0.0,
            "wait_seconds": time.monotonic() - started,
            "votes": votes,
            "pairs_to_people": float(len(asked)),
            "people_share": voted / max(1, half),
            "judge_agreement": row["agreement"],
        }
        self.history.append(stats)
        if log_metric is not None:
            for name, value in stats.items():
                if value == value:
                    log_metric(f"human/{name}", value)
        return rewards


def human_pair_reward(flow: Flow, **options: Any) -> HumanPairReward:
    """An OnlineDPO reward function from people's votes on each pair; see `HumanPairReward`."""
    return HumanPairReward(flow, **options)


def __getattr__(name: str) -> Any:
    # The eval callback subclasses transformers' TrainerCallback: imported when asked for, so the reward
    # functions above stay usable where transformers is not installed.
    if name in ("HumanEvalCallback", "generate_completions"):
        from . import _eval_callback

        return getattr(_eval_callback, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
