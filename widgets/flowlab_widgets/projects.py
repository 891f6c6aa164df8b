"""ProjectMonitor: a batch project's progress in a notebook (done / total, rate, ETA), with pause and resume."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import ipywidgets as widgets

from flowlab import AsyncClient, FlowlabError
from flowlab.client._projects import progress_line
from flowlab_widgets._common import client_for, connection_of, esc, fmt_seconds, live_badge
from flowlab_widgets.live import LiveUpdates, Mode

__all__ = ["ProjectMonitor"]

_BAR_STYLE = {"running": "info", "paused": "warning", "completed": "success", "open": ""}


class ProjectMonitor(widgets.VBox):
    """Follow a batch project live: a bar of answers done towards the answers needed, tasks done of the total,
    the answer rate over the last minute and the time left at that rate, with Pause and Resume buttons.

    Updates follow the project's flow over SSE on the kernel's event loop (every vote and every change of the
    project is an event), throttled to one refresh per `throttle` seconds, falling back to polling; outside an
    event loop a background thread polls. `live=False` leaves refreshing to `refresh()`.
    """

    def __init__(self, project: Any, *, live: bool = True, throttle: float = 0.5, poll_interval: float = 1.0) -> None:
        self.project_id: str = project.id
        self.flow_id: str = project.flow_id
        self._url, self._api_key = connection_of(project)
        self._client = client_for(project)
        self.status: Any = None
        self.header = widgets.HTML()
        self.live_status = widgets.HTML()
        self.bar = widgets.IntProgress(value=0, min=0, max=1, layout=widgets.Layout(width="420px"))
        self.stats = widgets.HTML()
        self.pause_button = widgets.Button(description="Pause", icon="pause", tooltip="project.pause()")
        self.resume_button = widgets.Button(description="Resume", icon="play", tooltip="project.resume()")
        self.pause_button.on_click(lambda _b: self.pause())
        self.resume_button.on_click(lambda _b: self.resume())
        self.message = widgets.HTML()
        super().__init__(
            [
                widgets.HBox([self.header, self.live_status], layout=widgets.Layout(justify_content="space-between")),
                widgets.HBox([self.bar, self.pause_button, self.resume_button]),
                self.stats,
                self.message,
            ],
            layout=widgets.Layout(border="1px solid #ddd", padding="8px"),
        )
        self.add_class("flowlab-project")
        self.live = LiveUpdates(
            self.fetch, self.apply, subscribe=self._events, throttle=throttle, poll_interval=poll_interval
        )
        self.live.on_mode_change(self._show_mode)
        self._show_mode("off")
        if live:
            self.live.start()
        else:
            self.refresh()

    def fetch(self) -> Any:
        """The project's status (blocking; no widget is touched)."""
        return self._client.projects.get(self.project_id).last_status

    def apply(self, status: Any) -> None:
        self.status = status
        self.header.value = (
            f'<b style="font-size:120%">{esc(status.name)}</b> <code>{esc(status.id)}</code> '
            f'<span style="color:#555">{esc(status.kind)} · flow <code>{esc(status.flow_id)}</code></span>'
        )
        self.bar.max = max(status.answers_needed, 1)
        self.bar.value = min(status.answers_done, self.bar.max)
        self.bar.bar_style = _BAR_STYLE.get(status.state, "")
        rate = "–" if status.rate is None else f"{status.rate:,.1f} answers/s"
        eta = "–" if status.eta_seconds is None else fmt_seconds(status.eta_seconds)
        self.stats.value = (
            f'<span class="flowlab-project-state">{esc(status.state)}</span> · '
            f'<span class="flowlab-project-tasks">{status.tasks_done:,} / {status.tasks_total:,}</span> tasks · '
            f"{status.answers_done:,} / {status.answers_needed:,} answers · {rate} · ETA {eta} · "
            f"{status.items_live} item(s) live, {status.items_queued:,} queued"
        )
        self.pause_button.disabled = status.state != "running"
        self.resume_button.disabled = status.state != "paused"

    def refresh(self) -> Any:
        """Fetch and show now (blocking)."""
        status = self.fetch()
        self.apply(status)
        return status

    def pause(self) -> None:
        self._act("pause")

    def resume(self) -> None:
        self._act("resume")

    def _act(self, action: str) -> None:
        try:
            status = getattr(self._client.projects.get(self.project_id), action)()
        except FlowlabError as exc:
            self.message.value = f'<span style="color:#b91c1c">{esc(exc)}</span>'
            return
        self.message.value = f"<span>{esc(progress_line(status))}</span>"
        self.apply(status)

    async def _events(self) -> AsyncIterator[Any]:
        async with AsyncClient(url=self._url, api_key=self._api_key) as aclient:
            aflow = await aclient.flow.get_flow_by_id(self.flow_id)
            async for event in aflow.watch():
                yield event

    def _show_mode(self, mode: Mode) -> None:
        self.live_status.value = live_badge(mode)

    def stop(self) -> None:
        self.live.stop()

    def close(self) -> None:
        self.live.stop()
        self._client.close()
        super().close()
