"""The dashboard's people panel: audiences and each person's answers, gold agreement, speed, standing and
left-right habit on the chosen item's pairs, with Suspend and Reinstate buttons, read through
`flowlab_widgets.people` like the notebook's PeopleMonitor."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import panel as pn

from flowlab import FlowlabError
from flowlab_widgets._common import esc
from flowlab_widgets.people import (
    PeopleSnapshot,
    Person,
    aread_people,
    audiences_html,
    button_label,
    habit_note,
    header_html,
    person_html,
    speed_note,
)

__all__ = ["PeoplePanel"]

_CSS = """
.flowlab-audiences { border-collapse: collapse; font-size: 13px; }
.flowlab-audiences th, .flowlab-audiences td { padding: 3px 8px; border-bottom: 1px solid #eee; text-align: left; }
"""


class PeoplePanel:
    """Audiences and a people table on the dashboard; one per browser session, refreshed by the dashboard.

    Rows are kept per annotator and updated in place (their HTML and their button's label), so a refresh sends
    small changes; the column's children change only when who is shown, or their order, changes.
    """

    def __init__(self, client: Any, *, max_people: int = 50) -> None:
        self.client = client  # the session's AsyncClient
        self.item_id: str | None = None  # the item whose pairs the left / right column is about
        self.max_people = max_people
        self.snapshot: PeopleSnapshot | None = None
        self.audiences = pn.pane.HTML("", sizing_mode="stretch_width", stylesheets=[_CSS])
        self.header = pn.pane.HTML(header_html(), margin=(0, 5), sizing_mode="stretch_width")
        self.table = pn.Column(sizing_mode="stretch_width")
        self.note = pn.pane.HTML("", sizing_mode="stretch_width")
        self.message = pn.pane.HTML("", sizing_mode="stretch_width")
        self.rows: dict[str, tuple[pn.pane.HTML, pn.widgets.Button, pn.Row]] = {}
        self._order: list[str] = []
        self.column = pn.Column(
            pn.pane.HTML("<b>Audiences</b>"),
            self.audiences,
            pn.pane.HTML("<b>People</b>"),
            self.header,
            self.table,
            self.note,
            self.message,
            css_classes=["flowlab-people"],
            sizing_mode="stretch_width",
        )

    async def refresh(self, annotators: Sequence[Any] | None = None, item_id: str | None = None) -> None:
        """Read the server (reusing `annotators` when the caller has just listed them) and show it, with each
        person's left-right habit on item `item_id`'s pairs (the dashboard's chosen item)."""
        self.item_id = item_id
        self.show(await aread_people(self.client, annotators=annotators, item_id=item_id))

    def show(self, snapshot: PeopleSnapshot) -> None:
        self.snapshot = snapshot
        self.audiences.object = audiences_html(snapshot.audiences)
        names = {a.id: a.name for a in snapshot.audiences}
        shown = snapshot.people[: self.max_people]
        for person in shown:
            cells, button, _row = self.rows.get(person.id) or self._new_row(person.id)
            html = person_html(person, names)
            if cells.object != html:
                cells.object = html
            button.label = button_label(person)
            button.disabled = person.action is None
            button.button_type = "warning" if person.action == "suspend" else "default"
        order = [p.id for p in shown]
        if order != self._order:
            self.table.objects = [self.rows[i][2] for i in order]
            for gone in set(self.rows) - set(order):
                del self.rows[gone]
            self._order = order
        more = len(snapshot.people) - len(shown)
        empty = "<i>Nobody yet: people appear once they enroll through a link.</i>" if not snapshot.people else ""
        extra = f"<small>+{more} more with fewer answers</small> " if more > 0 else ""
        self.note.object = empty + extra + speed_note(snapshot) + habit_note(snapshot, "choose an item above")

    def _new_row(self, annotator_id: str) -> tuple[pn.pane.HTML, pn.widgets.Button, pn.Row]:
        cells = pn.pane.HTML("", width=940, margin=(0, 5))
        button = pn.widgets.Button(label="Suspend", width=100, css_classes=["flowlab-standing"])

        async def clicked(_event: Any) -> None:
            await self.act(annotator_id)

        button.on_click(clicked)
        row = pn.Row(cells, button, css_classes=["flowlab-person-row"], sizing_mode="stretch_width")
        self.rows[annotator_id] = (cells, button, row)
        return self.rows[annotator_id]

    def person(self, annotator_id: str) -> Person | None:
        if self.snapshot is None:
            return None
        return next((p for p in self.snapshot.people if p.id == annotator_id), None)

    async def act(self, annotator_id: str) -> None:
        """Suspend or reinstate an annotator, whichever their row offers, then show the table again."""
        person = self.person(annotator_id)
        if person is None or person.action is None:
            return
        try:
            await getattr(self.client.annotators, person.action)(annotator_id)
        except FlowlabError as exc:
            self.message.object = f'<span style="color:#b91c1c">{esc(exc)}</span>'
            return
        done = "suspended" if person.action == "suspend" else "reinstated"
        self.message.object = f'<span style="color:#15803d">{esc(person.name)} {done}.</span>'
        await self.refresh(item_id=self.item_id)
