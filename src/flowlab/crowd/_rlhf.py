"""How a simulated annotator fills in an RLHF task: ratings from each response's true score (a number, or a
dict per dimension, in its private metadata; else a stable score from its content) with the annotator's
noise, the better response and the strength of the preference from the difference, a deterministic rewrite,
and a short justification."""

from __future__ import annotations

import math
import random
from typing import Any

from flowlab import schemas
from flowlab.crowd._oracle import content_utility, prefer_probability

MAX_JUSTIFICATION = 10_000  # what the server takes
MAX_SCORE = 50.0  # true scores are clamped to this, so a wild value in metadata cannot break the arithmetic


def response_scores(
    response: schemas.Response | schemas.ResponseView, dims: list[schemas.Dimension]
) -> dict[str, float]:
    """The response's true score per dimension: `true_score` from its private metadata (one number for all
    dimensions, or a dict by dimension key), else a stable utility of its content."""
    content = response.text if response.text is not None else (response.url or "")
    base = content_utility(content)
    given = getattr(response, "private_metadata", None) or {}
    value = given.get("true_score")
    out = {}
    for dim in dims:
        v = value.get(dim.key, value.get("overall")) if isinstance(value, dict) else value
        try:
            score = float(v) if v is not None else base
        except (TypeError, ValueError, OverflowError):
            score = base
        out[dim.key] = min(MAX_SCORE, max(-MAX_SCORE, score)) if math.isfinite(score) else base
    return out


def overall(scores: dict[str, float]) -> float:
    return sum(scores.values()) / len(scores) if scores else 0.0


def annotate(
    view: schemas.RlhfTaskView, scores: list[dict[str, float]], accuracy: float, spammer: bool, rng: random.Random
) -> dict[str, Any]:
    """The `rlhf` body of an answer to a task whose shown responses have these true scores."""
    spec = view.spec
    k = len(view.responses)
    noise = 0.35 + 2.0 * (1.0 - accuracy)  # rating noise in scale points
    ratings = [
        {d.key: _rate(d, s.get(d.key, 0.0), noise, spammer, rng) for d in spec.dimensions if _asks(d)} for s in scores
    ]
    totals = [overall(s) for s in scores]
    if spammer or rng.random() > accuracy:
        selected = rng.randrange(k)
    elif k == 2:
        selected = 0 if rng.random() < prefer_probability(totals[0], totals[1]) else 1
    else:  # the best by a noisy reading of every response
        selected = max(range(k), key=lambda j: totals[j] + rng.gauss(0.0, 0.5))
    body: dict[str, Any] = {"ratings": ratings, "selected": selected}
    if spec.likert_scale and k == 2:
        body["likert"] = _likert(spec.likert_scale, selected, abs(totals[0] - totals[1]))
    if spec.rewrite == "required" or (spec.rewrite == "optional" and rng.random() < 0.3):
        text = view.responses[selected].text
        edited = rewrite(text, spec.max_rewrite_chars) if text is not None else None
        if edited is not None:
            body["rewrites"] = [edited if j == selected else None for j in range(k)]
    if spec.justification != "off":
        body["justification"] = _justify(spec, selected, k)
    return body


def _asks(d: schemas.Dimension) -> bool:
    return d.required or d.type != "text"


def _rate(d: schemas.Dimension, score: float, noise: float, spammer: bool, rng: random.Random) -> Any:
    if d.type == "scale":
        if spammer:
            return rng.randint(d.min, d.max)
        middle, half = (d.min + d.max) / 2, (d.max - d.min) / 2
        # A score of ±2 (logits) lands near the ends of the scale.
        point = middle + half * math.tanh(score / 2) + rng.gauss(0.0, noise)
        return int(min(d.max, max(d.min, round(point))))
    if d.type == "boolean":
        return rng.random() < 0.5 if spammer else rng.random() < 1 / (1 + math.exp(-2 * score))
    if d.type == "category":
        return d.options[rng.randrange(len(d.options))] if spammer else d.options[int(score > 0) % len(d.options)]
    return "Reads well enough." if score > 0 else "Could be clearer."


def _likert(scale: int, selected: int, gap: float) -> int:
    """A point on the scale on the side of the chosen response: stronger as the true scores differ more."""
    half = scale // 2
    strength = min(half, round(gap * half / 2))
    if scale % 2 == 0:
        strength = max(1, strength)
        first_side = half + 1 - strength  # 1 .. half
    else:
        first_side = (scale + 1) // 2 - strength  # 1 .. the middle ("about the same")
    return first_side if selected == 0 else scale + 1 - first_side


def rewrite(text: str, limit: int = 20_000) -> str | None:
    """A deterministic edit: tidy spacing, capitalise the first letter, end with a full stop, and add a
    closing sentence, so a rewrite always differs from the original; within `limit` characters (cut short if
    need be), or None when no edit of that length differs from the original."""
    tidy = " ".join(text.split())
    if tidy:
        tidy = tidy[0].upper() + tidy[1:]
        if tidy[-1] not in ".!?":
            tidy += "."
    edited = f"{tidy} I hope this helps."
    if len(edited) > limit:
        edited = edited[: max(0, limit - 1)].rstrip() + "…"
    return edited if edited != text and edited.strip() and len(edited) <= limit else None


def _justify(spec: schemas.RlhfSpec, selected: int, k: int) -> str:
    names = ", ".join((d.label or d.key).lower()[:60] for d in spec.dimensions[:2])
    why = f"Response {selected + 1} of {k} is better overall, judged on {names} and the rest of the form."
    return why.ljust(spec.justification_min_chars, ".")[:MAX_JUSTIFICATION]
