"""Who annotates: audiences with their counts, each person's answers, gold agreement, speed, standing and (on a
chosen item's pairs) left-right habit, and a PeopleMonitor widget that suspends and reinstates them. The dashboard's
people panel reads through the same code."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets

from flowlab import Client, FlowlabError
from flowlab_widgets._common import connection_of, esc, fmt_ago
from flowlab_widgets.live import LiveUpdates

__all__ = ["Habit", "PeopleMonitor", "PeopleSnapshot", "Person", "aread_people", "people_from", "read_people"]

# What the table shows of each person, in order: (heading, width in px).
COLUMNS: tuple[tuple[str, int], ...] = (
    ("annotator", 190),
    ("audience", 140),
    ("state", 100),
    ("answers", 70),
    ("gold agreement", 120),
    ("median s / task", 110),
    ("left / right", 110),
    ("last seen", 90),
)
HABIT_TITLE = (
    "Of each person's decisive votes on the chosen item's pairs, the share for the side shown first (left), with "
    "its 95 % interval; red when the interval leaves out a half (a position bias). Choose an item to see it."
)
STATE_COLORS = {"active": "#15803d", "qualifying": "#1f77b4", "suspended": "#b91c1c", "screened_out": "#666666"}


@dataclass(frozen=True)
class Habit:
    """A person's left-right habit on one item's pairs, as the server estimates it (GET /v1/items/{id}/annotators):
    the share of their decisive votes that went to the side shown first (left), with a 95 % Wilson interval."""

    left_share: float
    low: float
    high: float
    decisive: int
    position_bias: bool  # the interval leaves out a half


@dataclass(frozen=True)
class Person:
    """One annotator as the people table shows them."""

    id: str
    name: str
    state: str
    answers: int
    gold_agreement: float | None
    gold_answered: int
    median_seconds: float | None  # from the task on screen to the answer; None until a report says it
    last_seen: float | None
    audience_id: str | None = None
    participant: str | None = None
    habit: Habit | None = None  # on the chosen item's pairs; None without an item, or with no decisive vote there

    @property
    def action(self) -> str | None:
        """The standing change a researcher can make now: "suspend", "reinstate", or none (screened out)."""
        return {"active": "suspend", "qualifying": "suspend", "suspended": "reinstate"}.get(self.state)


@dataclass(frozen=True)
class PeopleSnapshot:
    """What one read of the server shows: the audiences and the people in them (all of the key's, or one
    audience's), with whether the per-annotator report supplied answers and speed."""

    audiences: list[Any]
    people: list[Person]
    from_report: bool
    item_id: str | None = None  # the item whose pairs the habits are from (None: no item chosen)


def _report_rows(frame: Any) -> dict[str, dict[str, Any]]:
    """`client.annotators.report()`'s DataFrame as {annotator id: row}, whether ids are a column or the index."""
    if frame is None or not hasattr(frame, "to_dict"):
        return {}
    if "annotator_id" in getattr(frame, "columns", ()):
        frame = frame.set_index("annotator_id")
    elif "id" in getattr(frame, "columns", ()):
        frame = frame.set_index("id")
    return {str(k): v for k, v in frame.to_dict(orient="index").items()}


def _number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def habits_from(frame: Any) -> dict[str, Habit]:
    """Left-right habits by annotator id from an item's annotators (`client.annotators.of_item()`); people with no
    decisive vote on its pairs (or an item of another kind) have none."""
    habits = {}
    for annotator_id, row in _report_rows(frame).items():
        share, low, high = (_number(row.get(k)) for k in ("first_share", "first_ci_low", "first_ci_high"))
        decisive = _number(row.get("decisive"))
        if share is None or low is None or high is None or not decisive:
            continue
        habits[annotator_id] = Habit(share, low, high, int(decisive), bool(row.get("position_bias")))
    return habits


def people_from(
    annotators: Sequence[Any], report: Any = None, *, audience_id: str | None = None, habits: Any = None
) -> list[Person]:
    """The people table's rows from `client.annotators.list()` and, where it exists, the per-annotator report
    (`client.annotators.report()`: answers, gold agreement, median seconds and state per annotator); busiest first.
    `habits`, an item's annotators (`client.annotators.of_item()`), adds each person's left-right habit there.

    Revoked annotators are left out; `audience_id` keeps one audience's members.
    """
    extra = _report_rows(report)
    habit_of = habits_from(habits)
    people = []
    for a in annotators:
        if a.revoked or (audience_id is not None and a.audience_id != audience_id):
            continue
        row = extra.get(a.id, {})
        answers = _number(row.get("answers"))
        gold = _number(row.get("gold_agreement"))
        people.append(
            Person(
                id=a.id,
                name=a.name,
                state=str(row.get("state") or a.state),
                answers=int(answers) if answers is not None else a.votes,
                gold_agreement=gold if "gold_agreement" in row else a.gold_agreement,
                gold_answered=a.gold_answered,
                median_seconds=_number(row.get("median_seconds")),
                last_seen=a.last_seen,
                audience_id=a.audience_id,
                participant=a.participant,
                habit=habit_of.get(a.id),
            )
        )
    people.sort(key=lambda p: (-p.answers, p.name, p.id))
    return people


def read_people(client: Any, audience_id: str | None = None, item_id: str | None = None) -> PeopleSnapshot:
    """Read the audiences, annotators and the per-annotator report (answers, gold agreement, speed, state) with a
    `Client`, and with `item_id` each person's left-right habit on that item's pairs; without the report (a key
    that may not read it), the table falls back on the annotator list."""
    audiences = [a.last for a in client.audiences.list()]
    annotators = client.annotators.list()
    try:
        report = client.annotators.report(audience=audience_id)
    except FlowlabError:
        report = None
    habits = None
    if item_id is not None:
        with contextlib.suppress(FlowlabError):  # an item gone or not the key's: no habits, the rest still shows
            habits = client.annotators.of_item(item_id)
    return _snapshot(audiences, annotators, report, audience_id, habits, item_id)


async def aread_people(
    client: Any,
    audience_id: str | None = None,
    *,
    annotators: Sequence[Any] | None = None,
    item_id: str | None = None,
) -> PeopleSnapshot:
    """`read_people` with an `AsyncClient`; `annotators` reuses a list the caller has just read."""
    audiences = [a.last for a in await client.audiences.list()]
    if annotators is None:
        annotators = await client.annotators.list()
    try:
        report = await client.annotators.report(audience=audience_id)
    except FlowlabError:
        report = None
    habits = None
    if item_id is not None:
        with contextlib.suppress(FlowlabError):
            habits = await client.annotators.of_item(item_id)
    return _snapshot(audiences, annotators, report, audience_id, habits, item_id)


def _snapshot(
    audiences: list[Any],
    annotators: Sequence[Any],
    report: Any,
    audience_id: str | None,
    habits: Any = None,
    item_id: str | None = None,
) -> PeopleSnapshot:
    if audience_id is not None:
        audiences = [a for a in audiences if a.id == audience_id]
    people = people_from(annotators, report, audience_id=audience_id, habits=habits)
    return PeopleSnapshot(audiences, people, from_report=report is not None, item_id=item_id)


# ---------------------------------------------------------------- HTML shared by the widget and the dashboard


def audiences_html(audiences: Sequence[Any]) -> str:
    """A table of audiences: enrolled, qualified (admitted), screened out, suspended, active now."""
    if not audiences:
        return "<i>No audiences yet: client.audiences.create(name) makes one; its links enroll people.</i>"
    head = "".join(
        f"<th>{h}</th>" for h in ("audience", "enrolled", "qualified", "screened out", "suspended", "active now")
    )
    rows = "".join(
        f'<tr class="flowlab-audience" data-audience="{esc(a.id)}"><td title="{esc(a.id)}">{esc(a.name)}</td>'
        f'<td class="flowlab-enrolled">{a.enrolled:,}</td><td>{a.qualified:,}</td><td>{a.screened_out:,}</td>'
        f"<td>{a.suspended:,}</td><td>{a.active_now:,}</td></tr>"
        for a in audiences
    )
    return f'<table class="flowlab-audiences flowlab-items"><tr>{head}</tr>{rows}</table>'


def _cell(text: str, width: int, title: str | None = None, cls: str = "") -> str:
    tip = f' title="{esc(title)}"' if title else ""
    return (
        f'<span class="{cls}"{tip} style="display:inline-block;width:{width}px;overflow:hidden;'
        f'text-overflow:ellipsis;white-space:nowrap;vertical-align:middle">{text}</span>'
    )


def header_html() -> str:
    titles = {"left / right": HABIT_TITLE}
    return (
        '<div style="font-size:13px">' + "".join(_cell(f"<b>{h}</b>", w, titles.get(h)) for h, w in COLUMNS) + "</div>"
    )


def habit_html(habit: Habit | None) -> tuple[str, str | None]:
    """A person's left-right habit cell (its text and its tooltip): the share of their decisive votes for the left
    side, with the interval; red with a warning sign when it is a position bias."""
    if habit is None:
        return "–", None
    text = f"{habit.left_share:.0%} left <small>{habit.low:.0%}–{habit.high:.0%}</small>"
    tip = (
        f"{habit.left_share:.0%} of {habit.decisive} decisive votes for the side shown first (left); "
        f"95 % interval {habit.low:.0%}–{habit.high:.0%}"
    )
    if habit.position_bias:
        side = "left" if habit.low > 0.5 else "right"
        return f'<b style="color:#b91c1c">⚠ {text}</b>', f"{tip}: a position bias to the {side}"
    return text, tip


def person_html(person: Person, audience_names: dict[str, str], now: float | None = None) -> str:
    """One person's cells, in `COLUMNS` order, fixed widths so rows line up under `header_html()`."""
    gold = (
        "–"
        if person.gold_agreement is None
        else f"{person.gold_agreement:.0%} <small>of {person.gold_answered}</small>"
    )
    speed = "–" if person.median_seconds is None else f"{person.median_seconds:.1f}"
    color = STATE_COLORS.get(person.state, "#555555")
    audience = audience_names.get(person.audience_id or "", person.audience_id or "–")
    values = (
        (esc(person.name), f"{person.id} {person.participant or ''}".strip(), "flowlab-person-name"),
        (esc(audience), person.audience_id, ""),
        (f'<b style="color:{color}">{esc(person.state)}</b>', None, "flowlab-person-state"),
        (f"{person.answers:,}", None, "flowlab-person-answers"),
        (gold, None, "flowlab-person-gold"),
        (speed, None, "flowlab-person-speed"),
        (*habit_html(person.habit), "flowlab-person-habit"),
        (esc(fmt_ago(person.last_seen, now)), None, ""),
    )
    cells = "".join(_cell(text, w, tip, cls) for (text, tip, cls), (_h, w) in zip(values, COLUMNS, strict=True))
    bias = "" if person.habit is None else f' data-position-bias="{str(person.habit.position_bias).lower()}"'
    return (
        f'<div class="flowlab-person" data-annotator="{esc(person.id)}" data-state="{esc(person.state)}"{bias} '
        f'style="font-size:13px">{cells}</div>'
    )


def button_label(person: Person) -> str:
    return "Reinstate" if person.action == "reinstate" else "Suspend"


def speed_note(snapshot: PeopleSnapshot) -> str:
    if snapshot.from_report:
        return ""
    return '<small style="color:#666">This key may not read the annotator report: no speed, answers partial.</small>'


def habit_note(snapshot: PeopleSnapshot, choose: str) -> str:
    """Whose pairs the left / right column is about, how many show a position bias, or how to choose an item."""
    if snapshot.item_id is None:
        return (
            f'<small style="color:#666">left / right: {esc(choose)} to see each person\'s habit on its pairs.</small>'
        )
    biased = sum(1 for p in snapshot.people if p.habit is not None and p.habit.position_bias)
    flagged = f", {biased} with a position bias" if biased else ""
    return f'<small class="flowlab-habit-note">left / right: on item {esc(snapshot.item_id)}\'s pairs{flagged}.</small>'


# ---------------------------------------------------------------- the notebook widget


class PeopleMonitor(widgets.VBox):
    """Audiences (enrolled, qualified, screened out, suspended, active now) and a table of their people: answers,
    gold agreement, median seconds per task, state, with a Suspend or Reinstate button per person that calls
    `client.annotators.suspend/reinstate` and refreshes.

    `audience` (an audience or its id) shows one audience and its members; none shows all of the key's people.
    `item` (an item or its id; `monitor.item_id` changes it) adds each person's left-right habit on its pairs: the
    share of their decisive votes for the side shown first, with its 95 % interval, red when it is a position bias.
    Live, it polls every `poll_interval` seconds (people's standing has no event stream); `live=False` leaves
    refreshing to `refresh()`. At most `max_people` rows, busiest first.
    """

    def __init__(
        self,
        client: Any,
        audience: Any = None,
        *,
        live: bool = True,
        poll_interval: float = 5.0,
        max_people: int = 50,
        item: Any = None,
    ) -> None:
        url, api_key = connection_of(client)
        self.item_id: str | None = None if item is None else getattr(item, "id", item)
        self._client = Client(url=url, api_key=api_key)  # its own pool: refreshes never share the user's
        self.audience_id: str | None = None if audience is None else getattr(audience, "id", audience)
        self.max_people = max_people
        self.snapshot: PeopleSnapshot | None = None
        self.rows: dict[str, tuple[widgets.HTML, widgets.Button]] = {}
        self.audiences = widgets.HTML()
        self.header = widgets.HTML(header_html())
        self.table = widgets.VBox()
        self.note = widgets.HTML()
        self.message = widgets.HTML()
        super().__init__(
            [
                widgets.HTML("<b>Audiences</b>"),
                self.audiences,
                widgets.HTML("<b>People</b>"),
                self.header,
                self.table,
                self.note,
                self.message,
            ],
            layout=widgets.Layout(border="1px solid #ddd", padding="8px"),
        )
        self.add_class("flowlab-people")
        self.live = LiveUpdates(self.fetch, self.apply, poll_interval=poll_interval)
        if live:
            self.live.start()
        else:
            self.refresh()

    def fetch(self) -> PeopleSnapshot:
        """Read the server (blocking; no widget is touched)."""
        return read_people(self._client, self.audience_id, self.item_id)

    def apply(self, snapshot: PeopleSnapshot) -> None:
        self.snapshot = snapshot
        self.audiences.value = audiences_html(snapshot.audiences)
        names = {a.id: a.name for a in snapshot.audiences}
        shown = snapshot.people[: self.max_people]
        for gone in set(self.rows) - {p.id for p in shown}:
            cells, button = self.rows.pop(gone)
            cells.close()
            button.close()
        children = []
        for person in shown:
            if person.id not in self.rows:
                button = widgets.Button(layout=widgets.Layout(width="100px"))
                button.on_click(lambda _b, who=person.id: self._act(who))
                self.rows[person.id] = (widgets.HTML(), button)
            cells, button = self.rows[person.id]
            cells.value = person_html(person, names)
            button.description = button_label(person)
            button.disabled = person.action is None
            button.button_style = "warning" if person.action == "suspend" else ""
            children.append(widgets.HBox([cells, button]))
        self.table.children = children
        more = len(snapshot.people) - len(shown)
        extra = f"<small>+{more} more with fewer answers</small> " if more > 0 else ""
        empty = "<i>Nobody yet: people appear once they enroll through a link.</i>" if not snapshot.people else ""
        self.note.value = (
            empty + extra + speed_note(snapshot) + habit_note(snapshot, "PeopleMonitor(client, item=item)")
        )

    def refresh(self) -> PeopleSnapshot:
        """Fetch and show now (blocking)."""
        snapshot = self.fetch()
        self.apply(snapshot)
        return snapshot

    def person(self, annotator_id: str) -> Person:
        """The row shown for an annotator."""
        assert self.snapshot is not None
        return next(p for p in self.snapshot.people if p.id == annotator_id)

    def button(self, annotator_id: str) -> widgets.Button:
        """The Suspend / Reinstate button of an annotator's row."""
        return self.rows[annotator_id][1]

    def _act(self, annotator_id: str) -> None:
        action = self.person(annotator_id).action
        if action is None:
            return
        try:
            getattr(self._client.annotators, action)(annotator_id)
        except FlowlabError as exc:
            self.message.value = f'<span style="color:#b91c1c">{esc(exc)}</span>'
            return
        self.message.value = f"<span>{esc(annotator_id)}: {action}{'ed' if action == 'suspend' else 'd'}.</span>"
        self.refresh()

    def stop(self) -> None:
        self.live.stop()

    def close(self) -> None:
        self.live.stop()
        self._client.close()
        super().close()
