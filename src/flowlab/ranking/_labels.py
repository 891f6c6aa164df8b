"""Categorical labels from several annotators: majority and a reliability-weighted consensus."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ArrayLike = np.ndarray


@dataclass(frozen=True)
class LabelConsensus:
    """`posterior[i, c]`: the probability that datapoint i's true class is c; `accuracy[j]`: annotator j's
    estimated chance of answering correctly; `prior[c]`: the class shares assumed a priori."""

    posterior: np.ndarray
    accuracy: np.ndarray
    prior: np.ndarray
    iterations: int


def dawid_skene(
    datapoints: ArrayLike,
    annotators: ArrayLike,
    labels: ArrayLike,
    n_datapoints: int,
    n_classes: int,
    *,
    n_annotators: int | None = None,
    prior_accuracy: float = 0.7,
    prior_strength: float = 2.0,
    max_iter: int = 100,
    tol: float = 1e-6,
    accuracy: ArrayLike | None = None,
    gold_answered: ArrayLike | None = None,
    gold_correct: ArrayLike | None = None,
) -> LabelConsensus:
    """One-coin Dawid–Skene: every annotator answers correctly with their own probability, otherwise picks
    one of the other classes uniformly; EM estimates the true classes and the accuracies together.

    Parameters
    ----------
    datapoints, annotators, labels
        One entry per answer: which datapoint, by whom (0..n_annotators-1), which class (0..n_classes-1).
    n_datapoints, n_classes
        Sizes; datapoints without answers get the class prior as their posterior.
    prior_accuracy, prior_strength
        A Beta prior on each accuracy, worth `prior_strength` answers at `prior_accuracy`, so an annotator
        with a handful of answers is not judged perfect or useless from them. Accuracies are kept above
        chance (1/n_classes): an annotator is assumed to try, which also keeps EM from the mirror solution
        where everyone is "reliably wrong". Classes are taken as equally likely a priori.
    accuracy
        Known accuracies: skip the estimation and return the posterior they imply.
    gold_answered, gold_correct
        Per annotator, gold questions answered and answered right: they count in each accuracy's estimate
        beside the expected correctness of the ordinary answers, so an annotator who fails gold is trusted
        less even where the crowd agrees with them too rarely to tell.

    Returns
    -------
    LabelConsensus

    References
    ----------
    A. P. Dawid and A. M. Skene, "Maximum likelihood estimation of observer error-rates using the EM
    algorithm", Applied Statistics 28(1), 1979. The one-coin simplification follows e.g. Zhang et al.,
    "Spectral methods meet EM", NeurIPS 2014.
    """
    d = np.asarray(datapoints, dtype=np.int64)
    a = np.asarray(annotators, dtype=np.int64)
    y = np.asarray(labels, dtype=np.int64)
    if not (len(d) == len(a) == len(y)):
        raise ValueError("datapoints, annotators and labels need one entry per answer each")
    if n_classes < 2:
        raise ValueError("n_classes must be at least 2")
    if len(y) and (y.min() < 0 or y.max() >= n_classes or d.min() < 0 or d.max() >= n_datapoints):
        raise ValueError("a label or datapoint index is out of range")
    m = int(n_annotators if n_annotators is not None else (a.max() + 1 if len(a) else 0))
    k = n_classes
    floor = 1.0 / k + 1e-3
    acc = np.full(m, prior_accuracy) if accuracy is None else np.clip(np.asarray(accuracy, float), 1e-9, 1 - 1e-9)
    prior = np.full(k, 1.0 / k)
    answers = np.bincount(a, minlength=m).astype(float)
    g_n = np.zeros(m) if gold_answered is None else np.asarray(gold_answered, dtype=float)
    g_c = np.zeros(m) if gold_correct is None else np.asarray(gold_correct, dtype=float)
    if g_n.shape != (m,) or g_c.shape != (m,) or (g_c > g_n).any() or (g_c < 0).any():
        raise ValueError("gold_answered and gold_correct need one count per annotator, with correct <= answered")
    if accuracy is None and g_n.any():
        # Start from what gold says, so the first E-step already weighs annotators by it.
        acc = np.clip((g_c + prior_accuracy * prior_strength) / (g_n + prior_strength), floor, 1 - 1e-3)
    post = np.tile(prior, (n_datapoints, 1))
    it = 0
    for it in range(1, (1 if accuracy is not None else max_iter) + 1):  # noqa: B007 - the count is reported
        # E-step: every answer adds log(1 - p)/(k - 1) to each class and log p to the class it named.
        log_right = np.log(acc)[a]
        log_wrong = np.log((1.0 - acc) / (k - 1))[a]
        logp = np.tile(np.log(prior), (n_datapoints, 1))
        np.add.at(logp, d, log_wrong[:, None])
        np.add.at(logp, (d, y), log_right - log_wrong)
        logp -= logp.max(axis=1, keepdims=True)
        new = np.exp(logp)
        new /= new.sum(axis=1, keepdims=True)
        done = np.abs(new - post).max() < tol
        post = new
        if accuracy is not None or done:
            break
        # M-step: accuracies from the expected correctness of each answer.
        correct = np.bincount(a, weights=new[d, y], minlength=m)
        acc = np.clip(
            (correct + g_c + prior_accuracy * prior_strength) / (answers + g_n + prior_strength), floor, 1 - 1e-3
        )
    return LabelConsensus(posterior=post, accuracy=acc, prior=prior, iterations=it)
