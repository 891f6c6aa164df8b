"""Item lifecycle: pure functions of an item and the time, so every transition is testable with a fake clock."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowlab.schemas import TERMINAL_STATES

if TYPE_CHECKING:
    from flowlab.server.model import ItemRecord

DEFAULT_MAX_DRAIN = 5.0


def drain_seconds(item: ItemRecord) -> float:
    """The drain window before the deadline in which no new tasks go out."""
    if item.config.drain_seconds is not None:
        # Capped at half the TTL, so a flow's drain window never swallows a short item whole.
        return min(item.config.drain_seconds, 0.5 * item.ttl)
    # Short enough not to waste a fast crowd's time, long enough that the last leases can come back.
    return min(DEFAULT_MAX_DRAIN, 0.1 * item.ttl)


def stopping_at(item: ItemRecord) -> float:
    return item.deadline - drain_seconds(item)


def is_terminal(state: str) -> bool:
    return state in TERMINAL_STATES


def next_state(item: ItemRecord, now: float) -> str | None:
    """The state the item should be in at `now`, or None if it stays where it is."""
    if is_terminal(item.state):
        return None
    # What "enough" means is the task kind's: votes per item for pairs, answers per datapoint for labels.
    if item.kind.full(item):
        return "Completed"
    if now >= item.deadline:
        return "Completed" if item.kind.enough(item) else "Incomplete"
    if now >= stopping_at(item) and item.state in ("Pending", "Running"):
        return "Stopping"
    return None


def can_serve(item: ItemRecord, now: float) -> bool:
    """True when a new task may be leased from the item: it is live, not draining, below its maximum, and not
    in a paused batch project."""
    return (
        item.state in ("Pending", "Running")
        and now < stopping_at(item)
        and item.kind.room(item)
        and (item.project is None or item.project.state == "running")
    )


def next_wakeup(item: ItemRecord) -> float | None:
    """When the item next changes state on its own (leases aside)."""
    if is_terminal(item.state):
        return None
    if item.state in ("Pending", "Running"):
        return stopping_at(item)
    return item.deadline


def serve_priority(item: ItemRecord) -> tuple[int, float, int]:
    """Smaller is served first: items below their minimum, then the nearest deadline, then the largest gap."""
    gap = item.kind.shortfall(item)
    return (0 if gap > 0 else 1, item.deadline, -gap)
