"""Seeded simulations for tests and benchmarks: Bradley–Terry votes (with ties and spamming annotators), and a
policy run that games its proxy reward, with people's votes against its anchor."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import expit

__all__ = [
    "PolicyRun",
    "simulate_comparisons",
    "simulate_crowd_votes",
    "simulate_policy_run",
    "simulate_scores",
    "simulate_win_votes",
]


def _generator(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def simulate_scores(n_items: int, *, spread: float = 1.0, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """True logit scores ``θ ~ N(0, spread²)``, centred to mean zero."""
    theta = _generator(rng).normal(0.0, spread, n_items)
    return theta - theta.mean()


def _outcomes(
    scores: np.ndarray, a: np.ndarray, b: np.ndarray, tie_strength: float | None, gen: np.random.Generator
) -> np.ndarray:
    d = scores[a] - scores[b]
    if tie_strength is None:
        a_wins = gen.random(len(a)) < expit(d)
        return np.stack([np.where(a_wins, a, b), np.where(a_wins, b, a)], axis=1).astype(np.int64)
    # Davidson (1970): P(a) ∝ e^{d/2}, P(b) ∝ e^{−d/2}, P(tie) ∝ ν.
    ea, eb = np.exp(d / 2.0), np.exp(-d / 2.0)
    den = ea + eb + tie_strength
    u = gen.random(len(a)) * den
    a_wins = u < ea
    tie = (u >= ea) & (u < ea + tie_strength)
    winner = np.where(a_wins | tie, a, b)
    loser = np.where(a_wins | tie, b, a)
    return np.stack([winner, loser, tie.astype(np.int64)], axis=1).astype(np.int64)


def simulate_comparisons(
    scores: ArrayLike,
    n_comparisons: int,
    *,
    pairs: ArrayLike | None = None,
    tie_strength: float | None = None,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """Votes drawn from a Bradley–Terry (or Davidson) model.

    Parameters
    ----------
    scores : array_like, shape (n,)
        True logit scores.
    n_comparisons : int
        Votes to draw (ignored when ``pairs`` is given).
    pairs : array_like, shape (m, 2), optional
        The pairs to vote on; by default pairs are uniform over distinct datapoints.
    tie_strength : float, optional
        Davidson's ν; when given, the output has a third tie column.
    rng : numpy.random.Generator or int, optional
        Randomness.

    Returns
    -------
    ndarray of int64, shape (m, 2) or (m, 3)
        ``(winner, loser[, tie])`` rows.
    """
    theta = np.asarray(scores, dtype=float)
    gen = _generator(rng)
    n = len(theta)
    if pairs is None:
        if n < 2:
            raise ValueError("simulating votes needs at least 2 datapoints.")
        a = gen.integers(0, n, n_comparisons)
        b = (a + gen.integers(1, n, n_comparisons)) % n
    else:
        p = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        a, b = p[:, 0], p[:, 1]
    return _outcomes(theta, a, b, tie_strength, gen)


def simulate_crowd_votes(
    scores: ArrayLike,
    n_comparisons: int,
    *,
    n_annotators: int = 20,
    spammer_share: float = 0.2,
    rng: np.random.Generator | int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Votes from a crowd where a share of annotators click at random.

    Parameters
    ----------
    scores : array_like, shape (n,)
        True logit scores.
    n_comparisons : int
        Votes to draw, spread evenly at random over annotators.
    n_annotators : int
        Crowd size.
    spammer_share : float
        Share of annotators (rounded) who pick a side at random.
    rng : numpy.random.Generator or int, optional
        Randomness.

    Returns
    -------
    votes : ndarray of int64, shape (m, 3)
        ``(annotator, winner, loser)`` rows.
    is_spammer : ndarray of bool, shape (n_annotators,)
        Which annotators were spammers.
    """
    theta = np.asarray(scores, dtype=float)
    gen = _generator(rng)
    n = len(theta)
    is_spammer = np.zeros(n_annotators, dtype=bool)
    is_spammer[gen.permutation(n_annotators)[: round(spammer_share * n_annotators)]] = True
    annotator = gen.integers(0, n_annotators, n_comparisons)
    a = gen.integers(0, n, n_comparisons)
    b = (a + gen.integers(1, n, n_comparisons)) % n
    p_a = np.where(is_spammer[annotator], 0.5, expit(theta[a] - theta[b]))
    a_wins = gen.random(n_comparisons) < p_a
    winner = np.where(a_wins, a, b)
    loser = np.where(a_wins, b, a)
    return np.stack([annotator, winner, loser], axis=1).astype(np.int64), is_spammer


_PADDING = (
    "It is worth noting that",
    "in many cases",
    "as discussed above",
    "and furthermore",
    "to be thorough",
    "from a broader perspective",
    "in other words",
    "all things considered",
)


@dataclass(frozen=True, eq=False)
class PolicyRun:
    """A simulated training run seen at its checkpoints, for the reward-hacking sentinel.

    Attributes
    ----------
    steps : ndarray of int64, shape (c,)
        Checkpoint steps.
    prompts : list of str, length p
        The eval's held-out prompts.
    anchor : list of str, length p
        The frozen anchor's completion for each prompt.
    anchor_quality : ndarray, shape (p,)
        Their true quality (logits).
    completions : list of list of str, shape (c, p)
        The policy's completion for each prompt at each checkpoint.
    quality : ndarray, shape (c, p)
        Their true quality, what the crowd's oracle reads as ``true_score`` from private metadata.
    proxy : ndarray, shape (c, p)
        The proxy reward the trainer sees (its reward model's score).
    lengths : ndarray of int64, shape (c, p)
        Completion lengths in words.
    onset : int or None
        When hacking, the checkpoint index where true quality peaks; it falls at every checkpoint after.
    """

    steps: np.ndarray
    prompts: list[str]
    anchor: list[str]
    anchor_quality: np.ndarray
    completions: list[list[str]]
    quality: np.ndarray
    proxy: np.ndarray
    lengths: np.ndarray
    onset: int | None

    def metadata(self, checkpoint: int) -> list[dict[str, float]]:
        """Private metadata of one checkpoint's completions: ``{"true_score": …}`` for the crowd's oracle."""
        return [{"true_score": float(q)} for q in self.quality[checkpoint]]


def _completions(heads: list[str], lengths: np.ndarray, gen: np.random.Generator) -> list[str]:
    """Each head padded with stock phrases to its length in words (what a length-gaming policy writes)."""
    need = int(np.max(lengths))  # every phrase has at least two words, so the filler holds 2·need from any start
    filler = np.array(" ".join(_PADDING[i] for i in gen.integers(0, len(_PADDING), 2 * need)).split())
    starts = gen.integers(0, need + 1, len(heads))
    return [
        " ".join([head, *filler[start : start + max(int(n) - len(head.split()), 0)]]) + "."
        for head, n, start in zip(heads, lengths, starts, strict=True)
    ]


def simulate_policy_run(
    rng: np.random.Generator | int | None,
    checkpoints: int,
    *,
    hacking: bool,
    prompts: int = 32,
    onset: int | None = None,
    step_every: int = 100,
    gain: float = 0.15,
    drop: float = 0.2,
    length_growth: float = 0.25,
    length_weight: float = 2.0,
    noise: float = 0.5,
    proxy_noise: float = 0.3,
) -> PolicyRun:
    """A policy trained against a proxy reward that credits length, honest or gaming it.

    Skill rises by ``gain`` logits per checkpoint. Honest, the completions keep their length (±20 %), so
    the proxy and the true quality rise together; with ``gain=0`` both stay flat, up to noise. Hacking,
    skill peaks at checkpoint ``onset``; after it the policy pads its answers (lengths grow by a factor
    ``e^length_growth`` per checkpoint) and its true quality falls by ``drop`` logits per checkpoint, while
    the proxy reward, ``quality + length_weight · log(length / base length) + noise``, keeps climbing.

    A completion's true quality is its checkpoint's skill plus ``N(0, noise²)``; the anchor's are
    ``N(0, noise²)``, so the policy starts level with the anchor (a win rate near ½).

    Parameters
    ----------
    rng : numpy.random.Generator or int or None
        Randomness (a seed makes the run reproducible).
    checkpoints : int
        Checkpoints in the run.
    hacking : bool
        Whether the policy starts gaming the proxy at ``onset``.
    prompts : int
        Held-out prompts in the eval.
    onset : int, optional
        Checkpoint index where hacking starts (default: half-way).
    step_every : int
        Training steps between checkpoints.
    gain, drop : float
        Rise and (hacking) fall of true quality per checkpoint, logits.
    length_growth, length_weight : float
        Log-length growth per checkpoint while hacking; the proxy's credit per unit of log length.
    noise, proxy_noise : float
        Spread of a completion's true quality, and of the proxy's error, logits.

    Returns
    -------
    PolicyRun
    """
    if checkpoints < 1 or prompts < 1:
        raise ValueError(f"a run needs at least one checkpoint and one prompt; got {checkpoints} and {prompts}.")
    start = checkpoints // 2 if onset is None else onset
    if hacking and not 0 <= start < checkpoints:
        raise ValueError(f"onset must be a checkpoint index in [0, {checkpoints}); got {start}.")
    gen = _generator(rng)
    t = np.arange(checkpoints, dtype=float)
    after = np.maximum(t - start, 0.0) if hacking else np.zeros_like(t)
    skill = gain * np.minimum(t, start if hacking else t) - drop * after
    base_length = 60.0
    log_length = np.log(base_length) + length_growth * after[:, None] + gen.normal(0.0, 0.2, (checkpoints, prompts))
    lengths = np.maximum(np.round(np.exp(log_length)), 12).astype(np.int64)
    quality = skill[:, None] + gen.normal(0.0, noise, (checkpoints, prompts))
    proxy = (
        quality + length_weight * np.log(lengths / base_length) + gen.normal(0.0, proxy_noise, (checkpoints, prompts))
    )
    anchor_quality = gen.normal(0.0, noise, prompts)
    anchor_lengths = np.maximum(np.round(base_length * np.exp(gen.normal(0.0, 0.2, prompts))), 12).astype(np.int64)
    return PolicyRun(
        steps=(np.arange(1, checkpoints + 1) * step_every).astype(np.int64),
        prompts=[f"Question {j + 1}: explain the idea in a few sentences." for j in range(prompts)],
        anchor=_completions([f"Answer to question {j + 1} (the anchor):" for j in range(prompts)], anchor_lengths, gen),
        anchor_quality=anchor_quality,
        completions=[
            _completions([f"Answer to question {j + 1} (checkpoint {c + 1}):" for j in range(prompts)], lengths[c], gen)
            for c in range(checkpoints)
        ],
        quality=quality,
        proxy=proxy,
        lengths=lengths,
        onset=start if hacking else None,
    )


def simulate_win_votes(
    quality: ArrayLike,
    anchor_quality: ArrayLike,
    votes_per_prompt: int,
    *,
    rng: np.random.Generator | int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """People's votes at each checkpoint, policy against anchor, from the Bradley–Terry model.

    Each prompt's pair gets ``votes_per_prompt`` votes, each won by the policy with probability
    ``σ(quality − anchor_quality)``, so a checkpoint's wins are a sum of binomial draws.

    Parameters
    ----------
    quality : array_like, shape (c, p)
        True quality of the policy's completions, per checkpoint and prompt.
    anchor_quality : array_like, shape (p,)
        True quality of the anchor's completions.
    votes_per_prompt : int
        Votes each pair gets.
    rng : numpy.random.Generator or int, optional
        Randomness.

    Returns
    -------
    wins, votes : ndarray of int64, shape (c,)
        Votes won by the policy, and votes cast, per checkpoint.
    """
    q = np.atleast_2d(np.asarray(quality, dtype=float))
    a = np.asarray(anchor_quality, dtype=float)
    if q.shape[1] != len(a):
        raise ValueError(f"quality has {q.shape[1]} prompts per checkpoint but the anchor has {len(a)}.")
    if votes_per_prompt < 0:
        raise ValueError(f"votes_per_prompt must be 0 or more; got {votes_per_prompt}.")
    wins = _generator(rng).binomial(votes_per_prompt, expit(q - a[None, :])).sum(axis=1)
    return wins.astype(np.int64), np.full(len(q), votes_per_prompt * q.shape[1], dtype=np.int64)
