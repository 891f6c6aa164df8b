"""What a simulated annotator believes: a datapoint's true score, from its metadata or its content."""

from __future__ import annotations

import hashlib
import math
from statistics import NormalDist
from typing import Any

from flowlab import schemas

_STD_NORMAL = NormalDist()


def content_utility(content: str) -> float:
    """A stable standard-normal utility derived from the content, the same on every machine and run."""
    h = int.from_bytes(hashlib.sha256(content.encode()).digest()[:8], "big")
    u = (h + 0.5) / 2.0**64
    return _STD_NORMAL.inv_cdf(u)


def true_score(private_metadata: dict[str, Any] | None, content: str) -> float:
    """`true_score` from private metadata when it holds a number (or a string holding one), else content utility."""
    if private_metadata:
        value = private_metadata.get("true_score")
        if isinstance(value, bool):
            value = None
        if isinstance(value, int | float | str):
            try:
                score = float(value)
                if math.isfinite(score):
                    return score
            except ValueError:
                pass
    return content_utility(content)


DEFAULT_ACCEPTABLE_ABOVE = 0.0  # the median content utility: half of all datapoints are acceptable


def acceptable_above(private_metadata: dict[str, Any] | None) -> float:
    """The true score a datapoint must exceed to be acceptable: `acceptable_above` from its private metadata
    (a number, or a string holding one), else 0."""
    value = (private_metadata or {}).get("acceptable_above")
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        try:
            threshold = float(value)
            if math.isfinite(threshold):
                return threshold
        except ValueError:
            pass
    return DEFAULT_ACCEPTABLE_ABOVE


def true_category(private_metadata: dict[str, Any] | None, content: str, values: list[str]) -> str:
    """`true_category` from private metadata when it names one of `values`, else a stable pick by content."""
    if private_metadata:
        value = private_metadata.get("true_category")
        if isinstance(value, str | int) and str(value) in values:
            return str(value)
    h = int.from_bytes(hashlib.sha256(content.encode()).digest()[:8], "big")
    return values[h % len(values)]


def datapoint_content(d: schemas.Datapoint | schemas.DatapointView | schemas.DatapointIn) -> str:
    return getattr(d, "text", None) or getattr(d, "url", None) or getattr(d, "media", None) or ""


def prefer_probability(score_a: float, score_b: float) -> float:
    """Bradley–Terry: the chance an attentive annotator prefers a over b."""
    return 1.0 / (1.0 + math.exp(-(score_a - score_b)))
