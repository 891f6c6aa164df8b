"""How a simulated annotator writes a demonstration: of a quality (the prompt's `demo_quality` from private
metadata, else the person's accuracy), a good one restates the prompt's `ideal` answer (or its reference
material), a poor one is short and garbled; spammers always write poorly. Deterministic with the crowd's seed.
Reviewers judge written responses by how close they come to the `ideal` (`closeness`)."""

from __future__ import annotations

import math
import random
import re
from typing import Any

from flowlab import schemas

_WORD = re.compile(r"\w+")


def quality_of(metadata: dict[str, Any] | None, accuracy: float) -> float:
    value = (metadata or {}).get("demo_quality")
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return min(1.0, max(0.0, float(value)))
    return accuracy


def demonstrate(
    view: schemas.WriteTaskView, ideal: str | None, quality: float, spammer: bool, rng: random.Random
) -> dict[str, Any]:
    """The `write` body of an answer: the text, within the task's limits, and no pasted characters."""
    prompt = view.prompt[-1].content if view.prompt else ""
    source = ideal or view.reference or f"Here is a careful answer to: {prompt}"
    good = not spammer and rng.random() < quality
    if good:
        text = " ".join(source.split())
        if rng.random() < 0.5:
            text = f"{text} Let me know if anything is unclear."
    else:
        words = _WORD.findall(prompt or source) or ["hm"]
        rng.shuffle(words)
        text = " ".join(w.lower() for w in words[: max(1, len(words) // 3)])
    if len(text) < view.min_chars:
        text = (text + " ") * (view.min_chars // max(1, len(text) + 1) + 1)
    return {"text": text.strip()[: view.max_chars].rstrip() or "x" * view.min_chars, "pasted_chars": 0}


def closeness(text: str, ideal: str) -> float:
    """A written response's true score against the ideal one: word overlap (Jaccard) mapped to -2..2 logits."""
    a, b = set(_WORD.findall(text.lower())), set(_WORD.findall(ideal.lower()))
    if not a or not b:
        return -2.0
    return 4.0 * len(a & b) / len(a | b) - 2.0
