"""flowlab.ranking.dawid_skene against a slow, obviously-correct posterior and on simulated crowds."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from flowlab import ranking


def reference_posterior(answers: list[tuple[int, int, int]], n: int, k: int, acc: list[float]) -> np.ndarray:
    """Bayes' rule answer by answer, with equal class priors: P(answer | true c) is acc if it names c, else
    (1 - acc) / (k - 1)."""
    post = np.ones((n, k))
    for d, j, y in answers:
        for c in range(k):
            post[d, c] *= acc[j] if y == c else (1 - acc[j]) / (k - 1)
    return post / post.sum(axis=1, keepdims=True)


def test_the_posterior_for_known_accuracies_matches_bayes_rule() -> None:
    rng = np.random.default_rng(0)
    answers = [(int(rng.integers(6)), int(rng.integers(4)), int(rng.integers(3))) for _ in range(40)]
    acc = [0.9, 0.6, 0.5, 0.95]
    d, a, y = (np.array(col) for col in zip(*answers, strict=True))
    got = ranking.dawid_skene(d, a, y, 6, 3, n_annotators=4, accuracy=acc)
    np.testing.assert_allclose(got.posterior, reference_posterior(answers, 6, 3, acc), atol=1e-12)


def test_one_answer_per_datapoint_keeps_that_answer() -> None:
    labels = np.array([0, 1, 2, 1, 0])
    got = ranking.dawid_skene(np.arange(5), np.arange(5), labels, 5, 3)
    assert got.posterior.argmax(axis=1).tolist() == labels.tolist()
    assert (got.accuracy > 1 / 3).all(), "accuracies stay above chance"


def test_reliable_annotators_outweigh_spammers() -> None:
    rng = np.random.default_rng(4)
    n, k = 300, 3
    truth = rng.integers(k, size=n)
    accuracy = [0.9, 0.85, 0.8, 1 / 3, 1 / 3, 1 / 3]  # three careful annotators, three answering at random
    rows = []
    for d, j in itertools.product(range(n), range(len(accuracy))):
        right = rng.random() < accuracy[j]
        wrong = rng.choice([c for c in range(k) if c != truth[d]])
        rows.append((d, j, truth[d] if right else wrong))
    d, a, y = (np.array(col) for col in zip(*rows, strict=True))
    got = ranking.dawid_skene(d, a, y, n, k)
    est = got.accuracy
    assert est[:3].min() > est[3:].max() + 0.3, f"spammers are found: {np.round(est, 2)}"
    np.testing.assert_allclose(est, accuracy, atol=0.06)
    counts = np.zeros((n, k))
    np.add.at(counts, (d, y), 1)
    majority = (counts.argmax(axis=1) == truth).mean()
    weighted = (got.posterior.argmax(axis=1) == truth).mean()
    assert weighted > majority + 0.02, (weighted, majority)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (([0], [0], [3], 1, 3), "out of range"),
        (([0, 1], [0], [0], 2, 3), "one entry per answer"),
        (([0], [0], [0], 1, 1), "at least 2"),
    ],
)
def test_bad_input_is_explained(args: tuple, match: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match=match):
        ranking.dawid_skene(*args)


def test_gold_records_weigh_annotators_where_agreement_cannot() -> None:
    # Three annotators on 30 datapoints: two always agree with each other and are wrong (they label 1),
    # one always says 0. Agreement alone sides with the pair; a gold record that shows the pair failing
    # and the lone annotator passing turns the consensus round.
    n = 30
    d = np.repeat(np.arange(n), 3)
    a = np.tile([0, 1, 2], n)
    y = np.tile([1, 1, 0], n)
    plain = ranking.dawid_skene(d, a, y, n, 2)
    assert (plain.posterior.argmax(axis=1) == 1).all()
    gold = ranking.dawid_skene(d, a, y, n, 2, gold_answered=np.array([40, 40, 40]), gold_correct=np.array([4, 4, 40]))
    assert (gold.posterior.argmax(axis=1) == 0).all()
    assert gold.accuracy[2] > 0.9 > 0.6 > gold.accuracy[0]
    with pytest.raises(ValueError, match="one count per annotator"):
        ranking.dawid_skene(d, a, y, n, 2, gold_answered=np.array([1, 1]), gold_correct=np.array([0, 0]))
