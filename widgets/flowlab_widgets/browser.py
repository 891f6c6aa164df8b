"""FlowBrowser: your recent flows (find_flows); open one in a FlowMonitor, or delete one."""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets

from flowlab import Client, FlowlabError
from flowlab_widgets._common import ensure_bokehjs, esc, fmt_ago
from flowlab_widgets.kinds import view_of

__all__ = ["FlowBrowser"]


class FlowBrowser(widgets.VBox):
    """Lists `client.flow.find_flows(amount)`, each with its kind and thresholds in the kind's words; *Open*
    shows the selected flow in a `FlowMonitor` below (with its kind's figures), *Delete* asks once more and
    then calls `flow.delete()`."""

    def __init__(
        self, client: Client | None = None, *, amount: int = 10, monitor_options: dict[str, Any] | None = None
    ) -> None:
        self.client = client if client is not None else Client()
        self.amount = amount
        self.monitor_options = dict(monitor_options or {})
        self.flows: list[Any] = []
        self.monitor: Any = None
        self._armed_delete: str | None = None
        self.flow_list = widgets.Select(options=[], rows=8, layout=widgets.Layout(width="640px"))
        self.flow_list.observe(lambda _c: self._disarm(), names="value")
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh")
        self.open_button = widgets.Button(description="Open", button_style="primary", icon="eye")
        self.delete_button = widgets.Button(description="Delete", button_style="danger", icon="trash")
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.open_button.on_click(lambda _b: self.open_flow())
        self.delete_button.on_click(lambda _b: self.delete())
        self.status = widgets.HTML()
        self.monitor_area = widgets.VBox()
        super().__init__(
            [
                widgets.HTML("<b>Recent flows</b>"),
                self.flow_list,
                widgets.HBox(
                    [self.refresh_button, self.open_button, self.delete_button, self.status],
                    layout=widgets.Layout(align_items="center"),
                ),
                self.monitor_area,
            ],
            layout=widgets.Layout(border="1px solid #ddd", padding="8px"),
        )
        self.add_class("flowlab-browser")
        # A monitor opened from the Open button is made by a widget callback, not a cell, so it cannot load
        # BokehJS into the page itself: load it now.
        ensure_bokehjs()
        self.refresh()

    @property
    def selected(self) -> Any:
        """The selected flow (a `Flow`), or None."""
        return next((f for f in self.flows if f.id == self.flow_list.value), None)

    def refresh(self) -> list[Any]:
        """Re-read the most recent flows, keeping the selection where it still exists."""
        try:
            self.flows = self.client.flow.find_flows(amount=self.amount)
        except FlowlabError as exc:
            self._say(str(exc), error=True)
            return self.flows
        keep = self.flow_list.value
        self.flow_list.options = [(self._label(f), f.id) for f in self.flows]
        ids = [f.id for f in self.flows]
        self.flow_list.value = keep if keep in ids else (ids[0] if ids else None)
        self._disarm()
        self._say(f"{len(self.flows)} flow(s)")
        return self.flows

    @staticmethod
    def _label(flow: Any) -> str:
        c = flow.config
        view = view_of(c)  # the kind words its thresholds: votes per item, answers per datapoint, ...
        return (
            f"{c.name} · {view.kind} · {c.id} · {c.item_count} item(s) · {view.thresholds(c)}"
            f" · created {fmt_ago(c.created_at)}"
        )

    def select(self, flow: Any) -> None:
        self.flow_list.value = getattr(flow, "id", flow)

    def open_flow(self, flow: Any = None) -> Any:
        """Show the selected (or given) flow in a FlowMonitor below the list; returns the monitor."""
        from flowlab_widgets.monitor import FlowMonitor

        if flow is not None:
            self.select(flow)
        chosen = self.selected
        if chosen is None:
            self._say("Select a flow first.", error=True)
            return None
        if self.monitor is not None:
            self.monitor.close()
        self.monitor = FlowMonitor(chosen, client=self.client, **self.monitor_options)
        self.monitor_area.children = [self.monitor]
        self._say(f"Opened {esc(chosen.name)}")
        return self.monitor

    def delete(self, flow: Any = None) -> bool:
        """First call arms the button for the selected flow; the second deletes it. Returns True once deleted."""
        if flow is not None:
            self.select(flow)
        chosen = self.selected
        if chosen is None:
            self._say("Select a flow first.", error=True)
            return False
        if self._armed_delete != chosen.id:
            self._armed_delete = chosen.id
            self.delete_button.description = "Confirm delete"
            self._say(f"Press <b>Confirm delete</b> to delete <b>{esc(chosen.name)}</b> with its items and votes.")
            return False
        try:
            chosen.delete()
        except FlowlabError as exc:
            self._say(str(exc), error=True)
            return False
        if self.monitor is not None and self.monitor.flow.id == chosen.id:
            self.monitor.close()
            self.monitor = None
            self.monitor_area.children = []
        self.refresh()
        self._say(f"Deleted {esc(chosen.name)}")
        return True

    def close(self) -> None:
        """Close the browser and the monitor it opened (whose live updates would otherwise keep running)."""
        if self.monitor is not None:
            self.monitor.close()
            self.monitor = None
        super().close()

    def _disarm(self) -> None:
        self._armed_delete = None
        self.delete_button.description = "Delete"

    def _say(self, text: str, *, error: bool = False) -> None:
        color = "#b91c1c" if error else "#555"
        body = esc(text) if error else text
        self.status.value = f'<span class="flowlab-browser-status" style="color:{color}">{body}</span>'
