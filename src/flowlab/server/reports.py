"""Each person's work and pay, computed in SQL over the answer tables: they hold after a restart, and on any process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flowlab import schemas
from flowlab.server.errors import Invalid
from flowlab.server.kinds import all_kinds
from flowlab.server.store import Row, Store
from flowlab.server.worktime import capped_sql, seconds_sql

# Where the quiz and gold answers are kept, beside the kinds' own tables: every answer a person gives is work.
EXTRA_TABLES = {"gold": "gold_answers", "quiz": "quiz_answers"}


def _rows_sql() -> str:
    """Every answer as one row: who, when shown and answered, its time on task, what it was, whether right."""
    parts = [
        f"SELECT t.annotator_id, t.created_at, t.shown_at, {seconds_sql('t')} AS secs, 'answer' AS source, "
        f"NULL AS correct FROM {table} t"
        for table in sorted({kind.answers_table for kind in all_kinds()})
    ]
    parts += [
        f"SELECT t.annotator_id, t.created_at, t.shown_at, {seconds_sql('t')} AS secs, '{source}' AS source, "
        f"t.correct FROM {table} t"
        for source, table in EXTRA_TABLES.items()
    ]
    return " UNION ALL ".join(parts)


@dataclass(frozen=True)
class Window:
    """Whose answers, and which: a researcher's people (an admin's: everyone's), of one audience or all,
    answered in [since, until)."""

    owner: str | None
    audience_id: str | None = None
    since: float | None = None
    until: float | None = None

    def __post_init__(self) -> None:
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise Invalid("until must be later than since.", field="until")

    def people(self) -> tuple[str, list[Any]]:
        """A condition on annotators `a`, and its parameters."""
        terms, params = ["1 = 1"], []
        if self.owner is not None:
            terms.append("a.owner = ?")
            params.append(self.owner)
        if self.audience_id is not None:
            terms.append("a.audience_id = ?")
            params.append(self.audience_id)
        return " AND ".join(terms), params

    def answers(self, alias: str) -> tuple[str, list[Any]]:
        """A condition on answer rows `alias`: answered within the window, by one of these people."""
        who, params = self.people()
        terms = [f"{alias}.annotator_id IN (SELECT a.id FROM annotators a WHERE {who})"]
        if self.since is not None:
            terms.append(f"{alias}.created_at >= ?")
            params.append(self.since)
        if self.until is not None:
            terms.append(f"{alias}.created_at < ?")
            params.append(self.until)
        return " AND ".join(terms), params


def _paid(pay_suspended: bool, pay_screened_out: bool) -> str:
    """A condition on answer rows `r` joined with their annotator `a`: the answers a pay rule pays for."""
    terms = ["1 = 1"]
    if not pay_suspended:  # answers that arrived after the suspension (tasks already in hand) are not paid
        terms.append("NOT (a.state = 'suspended' AND a.suspended_at IS NOT NULL AND r.created_at > a.suspended_at)")
    if not pay_screened_out:
        terms.append("NOT (a.state = 'screened_out' AND r.source = 'quiz')")
    return " AND ".join(terms)


class Reports:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def report(self, window: Window) -> list[schemas.AnnotatorReport]:
        people = await self._people(window)
        totals = await self._totals(window, "1 = 1")
        medians = await self._medians(window)
        consensus = await self._consensus(window)
        out = []
        for row in people:
            t = totals.get(row["id"])
            if t is None:
                continue  # nothing answered in the window
            compared, agreed = consensus.get(row["id"], (0, 0))
            out.append(
                schemas.AnnotatorReport(
                    annotator_id=row["id"],
                    name=row["name"],
                    state=row["state"],
                    audience_id=row["audience_id"],
                    participant=row["participant"],
                    answers=int(t["answers"]),
                    gold_answers=int(t["gold_answers"]),
                    quiz_answers=int(t["quiz_answers"]),
                    gold_agreement=_share(t["gold_correct"], t["gold_answers"]),
                    consensus_compared=compared,
                    consensus_agreement=_share(agreed, compared),
                    median_seconds=medians.get(row["id"]),
                    active_minutes=float(t["active_seconds"]) / 60,
                    first_seen=_float(t["first_seen"]),
                    last_seen=_float(t["last_seen"]),
                    suspended_at=row["suspended_at"],
                )
            )
        return out

    async def pay(self, window: Window, rule: schemas.PayRequest) -> list[schemas.Payment]:
        """What each person who answered in the window is owed under `rule` (see `schemas.PayRequest`)."""
        for name in ("per_answer", "per_hour"):
            if getattr(rule, name) < 0:
                raise Invalid(f"{name} must not be negative.", field=name)
        if rule.bonus is not None and rule.bonus.amount < 0:
            raise Invalid("bonus.amount must not be negative.", field="bonus.amount")
        people = await self._people(window)
        totals = await self._totals(window, _paid(rule.pay_suspended, rule.pay_screened_out))
        out = []
        for row in people:
            t = totals.get(row["id"])
            if t is None:
                continue
            paid = int(t["answers"]) + int(t["gold_answers"]) + int(t["quiz_answers"])
            hours = float(t["active_seconds"]) / 3600
            gold = _share(t["gold_correct"], t["gold_answers"])
            bonus = 0.0
            b = rule.bonus
            if b is not None and gold is not None and gold > b.gold_above and int(t["gold_answers"]) >= b.min_gold:
                bonus = b.amount
            answer_pay, hourly = rule.per_answer * paid, rule.per_hour * hours
            out.append(
                schemas.Payment(
                    annotator_id=row["id"],
                    name=row["name"],
                    state=row["state"],
                    audience_id=row["audience_id"],
                    participant=row["participant"],
                    paid_answers=paid,
                    active_hours=hours,
                    gold_agreement=gold,
                    answer_pay=answer_pay,
                    hourly_pay=hourly,
                    bonus=bonus,
                    amount=round(answer_pay + hourly + bonus + 1e-9, 2),
                )
            )
        return out

    async def _people(self, window: Window) -> list[Row]:
        who, params = window.people()
        return await self.store.aread(
            "SELECT a.id, a.name, a.state, a.audience_id, a.participant, a.suspended_at FROM annotators a "
            f"WHERE {who} ORDER BY a.created_at, a.id",
            params,
        )

    async def _totals(self, window: Window, paid: str) -> dict[str, Row]:
        mine, params = window.answers("r")
        rows = await self.store.aread(
            "SELECT r.annotator_id, "
            "sum(CASE WHEN r.source = 'answer' THEN 1 ELSE 0 END) AS answers, "
            "sum(CASE WHEN r.source = 'gold' THEN 1 ELSE 0 END) AS gold_answers, "
            "sum(CASE WHEN r.source = 'gold' THEN r.correct ELSE 0 END) AS gold_correct, "
            "sum(CASE WHEN r.source = 'quiz' THEN 1 ELSE 0 END) AS quiz_answers, "
            f"sum({capped_sql('r.secs')}) AS active_seconds, "
            "min(coalesce(r.shown_at, r.created_at)) AS first_seen, max(r.created_at) AS last_seen "
            f"FROM ({_rows_sql()}) r JOIN annotators a ON a.id = r.annotator_id "
            f"WHERE {mine} AND {paid} GROUP BY r.annotator_id",
            params,
        )
        return {r["annotator_id"]: r for r in rows}

    async def _medians(self, window: Window) -> dict[str, float]:
        """The median time on task per person, in SQL: the middle row (or the mean of the middle two) by rank."""
        mine, params = window.answers("r")
        rows = await self.store.aread(
            "SELECT annotator_id, avg(secs) AS median FROM ("
            "SELECT r.annotator_id, r.secs, "
            "row_number() OVER (PARTITION BY r.annotator_id ORDER BY r.secs) AS k, "
            "count(*) OVER (PARTITION BY r.annotator_id) AS n "
            f"FROM ({_rows_sql()}) r WHERE r.secs IS NOT NULL AND {mine}) ranked "
            "WHERE 2 * k IN (n, n + 1, n + 2) GROUP BY annotator_id",
            params,
        )
        return {r["annotator_id"]: float(r["median"]) for r in rows}

    async def _consensus(self, window: Window) -> dict[str, tuple[int, int]]:
        """(compared, agreed) per person, summed over the kinds that define agreement with the consensus."""
        out: dict[str, tuple[int, int]] = {}
        done: set[str] = set()
        for kind in all_kinds():
            if kind.answers_table in done:
                continue
            done.add(kind.answers_table)
            mine, params = window.answers("m")
            for who, compared, agreed in await kind.consensus(self.store, mine, params):
                c, a = out.get(who, (0, 0))
                out[who] = (c + compared, a + agreed)
        return out


def _share(num: Any, den: Any) -> float | None:
    return float(num) / float(den) if den else None


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
