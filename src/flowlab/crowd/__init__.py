"""The simulated annotator crowd: stands in for people in demos, tests and benchmarks."""

from flowlab.crowd._chat import ChatScript
from flowlab.crowd._crowd import AnnotatorProfile, CrowdStats, SimulatedCrowd
from flowlab.crowd._oracle import content_utility, true_score

__all__ = ["AnnotatorProfile", "ChatScript", "CrowdStats", "SimulatedCrowd", "content_utility", "true_score"]
