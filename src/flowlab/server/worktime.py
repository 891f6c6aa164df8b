"""Time on task: what every answer's row records of it (shown, answered, hidden), and how reports read it back."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flowlab.server.model import Lease
    from flowlab.server.store import Op

# A task's time counts towards active time up to this many seconds: a task left on screen over a break (or a
# tab left open overnight) is not paid as work. Five minutes is longer than any task the kinds ask takes.
ACTIVE_CAP = 300.0

# An answer row's time on task in SQL both databases read: answered - shown - hidden, never below zero; NULL
# where the row does not know when its task was shown (answers stored before that was recorded).
SECONDS = (
    "CASE WHEN {t}.shown_at IS NULL THEN NULL "
    "WHEN {t}.created_at - {t}.shown_at - coalesce({t}.hidden_seconds, 0) < 0 THEN 0 "
    "ELSE {t}.created_at - {t}.shown_at - coalesce({t}.hidden_seconds, 0) END"
)


def seconds_sql(table: str) -> str:
    return SECONDS.format(t=table)


def capped_sql(seconds: str) -> str:
    """`seconds` (an SQL expression) as active time: capped at `ACTIVE_CAP`, unknown as none."""
    return (
        f"CASE WHEN ({seconds}) IS NULL THEN 0 WHEN ({seconds}) > {ACTIVE_CAP} THEN {ACTIVE_CAP} ELSE ({seconds}) END"
    )


def hidden_within(hidden_seconds: float | None, shown_at: float | None, now: float) -> float | None:
    """The hidden seconds a page reported, within what is possible: none below zero, none beyond the time the
    task was on screen by the server's clock (the page's is not trusted past it)."""
    if hidden_seconds is None or shown_at is None or not hidden_seconds > 0:  # `not > 0` also refuses NaN
        return None
    return min(float(hidden_seconds), max(0.0, now - shown_at))


def time_on_task_ops(lease: Lease, answers_table: str, hidden_seconds: float | None, now: float) -> list[Op]:
    """What every kind's answer row gets beside the kind's own columns: a gold answer when its task was shown,
    any answer the seconds its page's tab was hidden. Written once here, after the kind's insert, in the same
    transaction, so no kind repeats it."""
    shown = lease.on_screen_since
    hidden = hidden_within(hidden_seconds, shown, now)
    if lease.gold is not None:
        return [
            ("UPDATE gold_answers SET shown_at=?, hidden_seconds=? WHERE task_id=?", (shown, hidden, lease.task_id))
        ]
    if hidden is None:
        return []
    return [(f"UPDATE {answers_table} SET hidden_seconds=? WHERE task_id=?", (hidden, lease.task_id))]
