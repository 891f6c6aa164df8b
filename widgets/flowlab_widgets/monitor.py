"""FlowMonitor: a flow's items, live counts, TTL countdowns, its kind's figures and an instruction editor."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import ipywidgets as widgets

from flowlab import AsyncClient, FlowlabError, NotFound
from flowlab_widgets._common import (
    badge,
    bokeh_widget,
    client_for,
    connection_of,
    esc,
    fmt_seconds,
    live_badge,
    state_name,
)
from flowlab_widgets.kinds import KindView, Reading, read_item, view_of
from flowlab_widgets.live import LiveUpdates, Mode

__all__ = ["FlowMonitor", "ItemRow", "MonitorSnapshot"]

_TAGS = re.compile(r"<[^>]+>")

_BAR_STYLE = {
    "Completed": "success",
    "Incomplete": "warning",
    "Failed": "danger",
    "Stopped": "",
    "Stopping": "warning",
    "Running": "info",
    "Pending": "",
}


@dataclass
class MonitorSnapshot:
    """What one refresh read from the server; `apply` turns it into widget and figure state."""

    flow: Any  # flowlab.schemas.Flow
    statuses: list[Any]  # FlowItemStatus, oldest first
    item_id: str | None
    reading: Reading | None = None  # what the flow's kind view read for the selected item
    version: int | None = None  # the selected item's version the reading belongs to
    clock_offset: float = 0.0  # server time minus local time, for countdowns
    deleted: bool = False
    errors: list[str] = field(default_factory=list)


# The item table's columns: header text, width, and the least a column shrinks to where the notebook is narrow
# (JupyterLab with its file browser open): rows and the header share them, so they line up at any width.
_COLUMNS = (
    ("item", "190px", "90px"),
    ("state", "95px", "95px"),
    ("progress", "160px", "60px"),
    ("responses · thresholds", "230px", "90px"),
    ("time left", "90px", "70px"),
    ("instruction snapshot", "160px", "0"),
)
_NOWRAP = "white-space:nowrap;overflow:hidden;text-overflow:ellipsis;display:block"
# Rows of controls wrap onto a second line rather than run past the right edge of a narrow notebook.
_WRAP = {"flex_flow": "row wrap", "max_width": "100%"}
FIGURE_MIN_PX = 320


def _column_layout(index: int) -> widgets.Layout:
    _, width, least = _COLUMNS[index]
    grow = 1 if index == len(_COLUMNS) - 1 else 0  # the instruction takes what is left
    # A cell cuts its text short rather than run on over the next cell.
    return widgets.Layout(width="auto", flex=f"{grow} 1 {width}", min_width=least, overflow="hidden")


def _cell(index: int, value: str = "") -> widgets.HTML:
    return widgets.HTML(value, layout=_column_layout(index))


def _strip(html: str) -> str:
    return _TAGS.sub("", html)


def item_table_header() -> widgets.HBox:
    """The column names above the item rows."""
    cells = [_cell(i, f'<b style="{_NOWRAP}">{name}</b>') for i, (name, *_) in enumerate(_COLUMNS)]
    header = widgets.HBox(cells, layout=widgets.Layout(align_items="center", border_bottom="1px solid #ddd"))
    header.add_class("flowlab-item-header")
    return header


class ItemRow(widgets.HBox):
    """One flow item: id, state, progress towards its max (min in the text, in the kind's unit), TTL left,
    instruction."""

    def __init__(self, item_id: str) -> None:
        self.item_id = item_id
        self.id_label = _cell(0, f'<code style="{_NOWRAP}">{esc(item_id)}</code>')
        self.state_html = _cell(1)
        self.progress = widgets.IntProgress(value=0, min=0, max=1, layout=_column_layout(2))
        self.counts = _cell(3)
        self.ttl = _cell(4)
        self.instruction = _cell(5)
        self.deadline = 0.0
        self.terminal = False
        super().__init__(
            [self.id_label, self.state_html, self.progress, self.counts, self.ttl, self.instruction],
            layout=widgets.Layout(align_items="center"),
        )
        self.add_class("flowlab-item-row")

    def close(self) -> None:
        for child in self.children:
            child.close()
        super().close()

    def show(
        self, status: Any, view: type[KindView] | KindView, *, current_instruction: str, clock_offset: float
    ) -> None:
        state = state_name(status.state)
        self.state_html.value = badge(state)
        progress = view.progress(status)  # counted over the whole item, whatever the kind's thresholds count
        self.progress.max = max(1, progress.max)
        self.progress.value = min(progress.done, self.progress.max)
        self.progress.bar_style = _BAR_STYLE.get(state, "")
        self.counts.value = f'<span style="{_NOWRAP}" title="{esc(_strip(progress.text))}">{progress.text}</span>'
        self.deadline = float(status.deadline)
        self.terminal = bool(status.is_terminal)
        self.tick(clock_offset)
        stale = status.instruction != current_instruction
        note = (
            f' <span style="color:#b45309">(config v{status.config_version}, older)</span>'
            if stale
            else f' <span style="color:#666">(config v{status.config_version})</span>'
        )
        self.instruction.value = (
            f'<span style="{_NOWRAP}" title="{esc(status.instruction)}">{esc(status.instruction)}{note}</span>'
        )

    def tick(self, clock_offset: float) -> bool:
        """Update the countdown; True when a live item has just run out of time (worth a refresh)."""
        if self.terminal:
            self.ttl.value = '<span style="color:#666">ended</span>'
            return False
        left = self.deadline - (time.time() + clock_offset)
        self.ttl.value = f'<span class="flowlab-ttl">{fmt_seconds(left)} left</span>'
        return left <= 0


class FlowMonitor(widgets.VBox):
    """Watch a flow live in a notebook.

    Shows the flow's items (state, progress towards min/max, a TTL countdown, the instruction snapshot each
    item carries), the selected item's response count, the figures of the flow's kind (`monitor.view`, from
    `flowlab_widgets.kinds.view_for`: a pairwise item's win-loss heatmap and Bradley–Terry ranking, a classify
    item's answers by category, an RLHF or chat item's ratings, choices and preference strength per model), and
    an instruction editor that calls `flow.update_config`.

    Updates arrive over the flow's SSE stream on the kernel's event loop, throttled to one refresh per
    `throttle` seconds; if the stream fails it polls every `poll_interval` seconds. Outside a running event
    loop it polls from a background thread. `live=False` leaves refreshing to `refresh()`.
    """

    def __init__(
        self,
        flow: Any,
        *,
        client: Any = None,
        item: Any = None,
        live: bool = True,
        throttle: float = 0.5,
        poll_interval: float = 1.0,
        max_items: int = 12,
    ) -> None:
        self.flow = flow
        self._url, self._api_key = connection_of(client if client is not None else flow)
        self._client = client_for(client if client is not None else flow)
        self.max_items = max_items
        self.selected_item_id: str | None = getattr(item, "id", item)
        self._follow_latest = self.selected_item_id is None
        self._shown: tuple[str, int] | None = None  # (item id, version) the figures show
        self._clock_offset = 0.0
        self.snapshot: MonitorSnapshot | None = None
        self.response_count = 0
        self.total_responses = 0
        self.item_rows: dict[str, ItemRow] = {}

        self.header = widgets.HTML()
        self.live_status = widgets.HTML()
        self.item_picker = widgets.Dropdown(
            description="Item",
            options=[],
            layout=widgets.Layout(width="460px", max_width="100%"),
            style={"description_width": "40px"},
        )
        self.item_picker.observe(self._on_pick, names="value")
        self.count_html = widgets.HTML()
        self.items_box = widgets.VBox()
        # The flow's kind decides the figures, what is read for an item and how thresholds are worded.
        # Figures fill the notebook's width, side by side down to FIGURE_MIN_PX each, then one under the other.
        self.view = view_of(flow)(width=880, height=380, sizing_mode="stretch_width")
        self.kind = self.view.kind
        self.caption = widgets.HTML(self.view.caption)
        self.figure_widgets = [bokeh_widget(figure) for figure in self.view.figures]
        for figure_widget in self.figure_widgets:
            figure_widget.layout = widgets.Layout(flex=f"1 1 {FIGURE_MIN_PX}px", min_width=f"{FIGURE_MIN_PX}px")
        self.notes = widgets.HTML()  # the view's text below its figures (e.g. the latest justifications)
        self.instruction_input = widgets.Textarea(
            value=flow.instruction,
            description="Instruction",
            layout=widgets.Layout(width="640px", max_width="100%", height="60px", flex="0 1 640px", min_width="0"),
        )
        self.update_button = widgets.Button(
            description="Update instruction",
            button_style="primary",
            icon="pencil",
            tooltip="flow.update_config(instruction=...)",
            layout=widgets.Layout(width="auto"),
        )
        self.update_button.on_click(lambda _b: self.update_instruction())
        self.message = widgets.HTML()
        self._saved_version: int | None = None  # the config version the message reports saving

        super().__init__(
            [
                widgets.HBox(
                    [self.header, self.live_status], layout=widgets.Layout(justify_content="space-between", **_WRAP)
                ),
                widgets.HBox([self.item_picker, self.count_html], layout=widgets.Layout(align_items="center", **_WRAP)),
                item_table_header(),
                self.items_box,
                self.caption,
                widgets.HBox(self.figure_widgets, layout=widgets.Layout(**_WRAP)),
                self.notes,
                widgets.HBox(
                    [self.instruction_input, self.update_button], layout=widgets.Layout(align_items="flex-end", **_WRAP)
                ),
                self.message,
            ],
            layout=widgets.Layout(border="1px solid #ddd", padding="8px", max_width="100%"),
        )
        self.add_class("flowlab-monitor")
        self._render_header(flow.config)
        self.live = LiveUpdates(
            self.fetch,
            self.apply,
            subscribe=self._flow_events,
            tick=self._tick,
            throttle=throttle,
            poll_interval=poll_interval,
        )
        self.live.on_mode_change(self._show_mode)
        self._show_mode("off")
        if live:
            self.live.start()
        else:
            self.refresh()

    # ------------------------------------------------------------ data

    def fetch(self) -> MonitorSnapshot:
        """Read the flow, its items and what the kind's view reads of the selected item. Blocking; no widget is
        touched."""
        try:
            fresh = self._client.flow.get_flow_by_id(self.flow.id)
        except NotFound:
            return MonitorSnapshot(flow=self.flow.config, statuses=[], item_id=None, deleted=True)
        sent = time.time()
        items = list(reversed(fresh.get_flow_items(amount=None)))  # oldest first: the newest is the last
        statuses = [it.last_status for it in items]
        offset = (statuses[-1].server_time - (sent + time.time()) / 2) if statuses else self._clock_offset
        item_id = self._choose_item(statuses)
        snap = MonitorSnapshot(flow=fresh.config, statuses=statuses, item_id=item_id, clock_offset=offset)
        if item_id is None:
            return snap
        item = next(it for it in items if it.id == item_id)
        version = item.last_status.version
        prev = self.snapshot
        if prev is not None and prev.item_id == item_id and prev.version == version and prev.version is not None:
            snap.reading, snap.version = prev.reading, version  # nothing new to read
            return snap
        snap.reading = read_item(self.view, item)
        snap.errors.extend(snap.reading.errors)  # e.g. a ranking not fitted yet: the counts still show
        snap.version = version
        return snap

    def _choose_item(self, statuses: list[Any]) -> str | None:
        if not statuses:
            return None
        ids = [s.id for s in statuses]
        if self._follow_latest or self.selected_item_id not in ids:
            return ids[-1]
        return self.selected_item_id

    def apply(self, snap: MonitorSnapshot) -> None:
        """Show a snapshot: update rows, counts and the figures' sources in place (nothing is rebuilt)."""
        if snap.deleted:
            self.message.value = '<span style="color:#b91c1c">This flow was deleted.</span>'
            self.live.stop()
            return
        self.snapshot = snap
        self._clock_offset = snap.clock_offset
        self._render_header(snap.flow)
        if self._saved_version is not None and snap.flow.config_version > self._saved_version:
            # Someone (another notebook, the dashboard, code below) changed the flow since this widget saved.
            self.message.value = (
                f'<span style="color:#555">The flow is now at config v{snap.flow.config_version}; it changed '
                f"after your save (v{self._saved_version}).</span>"
            )
            self._saved_version = None
        shown = snap.statuses[-self.max_items :][::-1]  # newest first
        rows = []
        for status in shown:
            row = self.item_rows.get(status.id)
            if row is None:
                row = self.item_rows[status.id] = ItemRow(status.id)
            row.show(status, self.view, current_instruction=snap.flow.instruction, clock_offset=snap.clock_offset)
            rows.append(row)
        if [r.item_id for r in self.items_box.children] != [r.item_id for r in rows]:
            self.items_box.children = rows
        # Rows that scrolled out of the list are closed, so a long run does not pile up widget models.
        for gone in set(self.item_rows) - {r.item_id for r in rows}:
            self.item_rows.pop(gone).close()
        self.total_responses = sum(int(s.response_count) for s in snap.statuses)
        # The picker offers the newest items and always the selected one, even once it is older than those.
        listed = shown + [s for s in snap.statuses if s.id == snap.item_id and s not in shown]
        unit = self.view.unit
        options = [(f"{s.id} · {state_name(s.state)} · {s.response_count} {unit}", s.id) for s in listed]
        self._set_picker(options, snap.item_id)
        selected = next((s for s in snap.statuses if s.id == snap.item_id), None)
        if selected is None:
            self.count_html.value = "<i>No items yet: push a batch with flow.create_new_flow_batch(...)</i>"
            return
        self.selected_item_id = selected.id
        self.response_count = int(selected.response_count)
        self.count_html.value = (
            f'<span style="font-size:140%"><b class="flowlab-count">{self.response_count}</b></span> '
            f"{esc(unit)} for this item {badge(state_name(selected.state))} · {self.total_responses} in the flow"
        )
        if snap.version is not None and (selected.id, snap.version) != self._shown:
            if snap.reading is not None:
                self.view.show(snap.reading)
                self.notes.value = self.view.notes
            self._shown = (selected.id, snap.version)
        if snap.errors:
            self.message.value = f'<span style="color:#b91c1c">{esc(snap.errors[-1])}</span>'

    def refresh(self) -> MonitorSnapshot:
        """Fetch and show now (blocking)."""
        snap = self.fetch()
        self.apply(snap)
        return snap

    def _set_picker(self, options: list[tuple[str, str]], value: str | None) -> None:
        self._updating_picker = True
        try:
            if list(self.item_picker.options) != options:
                self.item_picker.options = options
            if value is not None and self.item_picker.value != value:
                self.item_picker.value = value
        finally:
            self._updating_picker = False

    def _on_pick(self, change: dict[str, Any]) -> None:
        if getattr(self, "_updating_picker", False) or change["new"] is None:
            return
        self.select(change["new"])

    def select(self, item: Any) -> None:
        """Show `item` (a flow item or its id) in the counts and the figures."""
        item_id = getattr(item, "id", item)
        statuses = self.snapshot.statuses if self.snapshot else []
        self._follow_latest = bool(statuses) and statuses[-1].id == item_id
        self.selected_item_id = item_id
        if self.live.mode in ("sse", "polling"):
            self.live.poke()
        else:
            self.refresh()

    # ------------------------------------------------------------ live plumbing

    async def _flow_events(self) -> AsyncIterator[Any]:
        async with AsyncClient(url=self._url, api_key=self._api_key) as aclient:
            aflow = await aclient.flow.get_flow_by_id(self.flow.id)
            async for event in aflow.watch():
                yield event

    def _tick(self) -> bool:
        expired = False
        for row in self.items_box.children:
            expired = row.tick(self._clock_offset) or expired
        return expired

    def _show_mode(self, mode: Mode) -> None:
        self.live_status.value = live_badge(mode)

    async def wait_for(self, predicate: Callable[[FlowMonitor], bool], timeout: float = 30.0) -> bool:
        """Await until `predicate(monitor)` holds (the live refresher keeps running meanwhile)."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.1)
        return True

    async def wait_until_done(self, timeout: float = 60.0) -> bool:
        """Await until the selected item has ended and the monitor shows its final counts."""

        def done(m: FlowMonitor) -> bool:
            snap = m.snapshot
            st = next((s for s in snap.statuses if s.id == snap.item_id), None) if snap else None
            return st is not None and st.is_terminal and m._shown == (st.id, st.version)

        return await self.wait_for(done, timeout)

    # ------------------------------------------------------------ editing

    def update_instruction(self, instruction: str | None = None) -> Any:
        """Save the editor's text (or `instruction`) with `flow.update_config`; only new items pick it up."""
        text = (instruction if instruction is not None else self.instruction_input.value).strip()
        if not text:
            self.message.value = '<span style="color:#b91c1c">The instruction cannot be empty.</span>'
            return None
        try:
            self.flow.update_config(instruction=text)
        except FlowlabError as exc:
            self.message.value = f'<span style="color:#b91c1c">{esc(exc)}</span>'
            return None
        self.instruction_input.value = text
        config = self.flow.config
        self._saved_version = config.config_version
        existing = len(self.snapshot.statuses) if self.snapshot else config.item_count
        self.message.value = (
            f'<span class="flowlab-updated">Saved as config v{config.config_version}.</span> Items created from now '
            f"on show the new instruction; the {existing} existing item(s) keep the snapshot they were created "
            "with (see the instruction column)."
        )
        self._render_header(config)
        if self.live.mode in ("sse", "polling"):
            self.live.poke()
        else:
            self.refresh()
        return config

    def _render_header(self, config: Any) -> None:
        self.header.value = (
            f'<b style="font-size:120%">{esc(config.name)}</b> <code>{esc(config.id)}</code><br>'
            f'<span class="flowlab-summary" style="color:#555">{self.view.summary(config)}'
            f" · config v{config.config_version} · {config.item_count} item(s)</span>"
        )

    # ------------------------------------------------------------ the kind's figures, by their old names

    @property
    def heatmap(self) -> Any:
        """A pairwise flow's win-loss heatmap (`monitor.view.heatmap`)."""
        return self.view.heatmap  # type: ignore[attr-defined]

    @property
    def ranking(self) -> Any:
        """A pairwise flow's Bradley–Terry ranking chart (`monitor.view.ranking`)."""
        return self.view.ranking  # type: ignore[attr-defined]

    @property
    def distribution(self) -> Any:
        """A classify flow's answers by category (`monitor.view.distribution`)."""
        return self.view.distribution  # type: ignore[attr-defined]

    # ------------------------------------------------------------ lifetime

    def stop(self) -> None:
        """Stop live updates (the widget stays as it was)."""
        self.live.stop()

    def close(self) -> None:
        self.live.stop()
        self._client.close()
        for row in self.item_rows.values():
            row.close()
        for w in self.figure_widgets:
            w.close()
        self.item_rows.clear()
        super().close()
