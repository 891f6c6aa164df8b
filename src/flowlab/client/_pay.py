"""People's work and pay in the SDK: the report of each person's answers and time on task, and what each is owed
under a rule, as DataFrames (imported when first asked for, so the client imports without pandas' cost).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from flowlab import schemas
from flowlab.client._core import Call, Op, decode

When = float | dt.datetime | str | None  # seconds since the epoch, a datetime (naive: UTC) or an ISO 8601 string

REPORT_COLUMNS = [f for f in schemas.AnnotatorReport.__struct_fields__]
PAY_COLUMNS = [f for f in schemas.Payment.__struct_fields__]


def _epoch(when: When, name: str) -> float | None:
    if when is None or isinstance(when, (int, float)):
        return when
    if isinstance(when, str):
        when = dt.datetime.fromisoformat(when)
    if isinstance(when, dt.datetime):
        return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()
    raise TypeError(f"{name} is a time: seconds since the epoch, a datetime or an ISO 8601 string.")


def _audience_id(audience: Any) -> str | None:
    return None if audience is None else audience if isinstance(audience, str) else audience.id


def annotators_report(audience: Any, since: When, until: When) -> Op[pd.DataFrame]:
    params = {"audience": _audience_id(audience), "since": _epoch(since, "since"), "until": _epoch(until, "until")}
    resp = yield Call("GET", "/v1/annotators/report", params={k: v for k, v in params.items() if v is not None})
    rows = decode(resp.content, list[schemas.AnnotatorReport])
    frame = pd.DataFrame([schemas_dict(r) for r in rows], columns=REPORT_COLUMNS)
    return frame.set_index("annotator_id")


def annotators_pay(
    per_answer: float | None,
    per_hour: float | None,
    bonus: schemas.Bonus | Mapping[str, Any] | None,
    audience: Any,
    since: When,
    until: When,
    pay_suspended: bool,
    pay_screened_out: bool,
) -> Op[PayFrame]:
    body: dict[str, Any] = {
        "per_answer": per_answer or 0.0,
        "per_hour": per_hour or 0.0,
        "pay_suspended": pay_suspended,
        "pay_screened_out": pay_screened_out,
        "audience_id": _audience_id(audience),
        "since": _epoch(since, "since"),
        "until": _epoch(until, "until"),
        "bonus": schemas_dict(bonus) if isinstance(bonus, schemas.Bonus) else bonus,
    }
    resp = yield Call("POST", "/v1/annotators/pay", json={k: v for k, v in body.items() if v is not None})
    rows = decode(resp.content, list[schemas.Payment])
    return PayFrame(pd.DataFrame([schemas_dict(r) for r in rows], columns=PAY_COLUMNS).set_index("annotator_id"))


def schemas_dict(row: Any) -> dict[str, Any]:
    return {f: getattr(row, f) for f in row.__struct_fields__}


class PayFrame(pd.DataFrame):
    """What each person is owed (a DataFrame indexed by annotator id; `amount` is the sum, in cents), and the file
    Prolific's bulk bonus takes."""

    @property
    def _constructor(self) -> type[PayFrame]:
        return PayFrame

    def to_prolific_csv(self, path: str | Path | None = None) -> str:
        """Prolific's bulk bonus format: `participant_id,amount` a line, no header, amounts with two decimals. Only
        people with a participant id (enrolled from a platform) and something owed are in it; pay people invited
        by team link some other way (`self[self.participant.isna()]` lists them). Written to `path` if given."""
        lines = [
            f"{p},{a:.2f}\n"
            for p, a in zip(self["participant"], self["amount"], strict=True)
            if isinstance(p, str) and p and a > 0
        ]
        text = "".join(lines)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text
