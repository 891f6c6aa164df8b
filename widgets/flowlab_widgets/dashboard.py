"""The flowlab dashboard: a Panel app served locally at / with the same bokeh figures as the notebook widgets."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from typing import Any

import panel as pn

from flowlab import AsyncClient, Client, FlowlabError, NotFound
from flowlab_widgets._common import badge, esc, fmt_ago, fmt_seconds, state_name
from flowlab_widgets.eval_panel import EvalPanel
from flowlab_widgets.figures import AnnotatorActivityChart, ItemProgressChart, ThroughputChart, response_history
from flowlab_widgets.kinds import KindView, aread_item, view_of
from flowlab_widgets.people_panel import PeoplePanel

__all__ = ["Dashboard", "serve"]

RECENT_ANNOTATOR_S = 3600.0
_WIDE: dict[str, Any] = {"sizing_mode": "stretch_width"}
# Set by the jupyter-server-proxy entry point: the dashboard then lives under Jupyter's URL, not at /.
PREFIX_ENV = "FLOWLAB_DASHBOARD_PREFIX"

_CSS = """
.flowlab-items { border-collapse: collapse; font-size: 13px; width: 100%; }
.flowlab-items th, .flowlab-items td { padding: 3px 8px; border-bottom: 1px solid #eee; text-align: left; }
.flowlab-bar { background: #eee; width: 120px; height: 10px; border-radius: 5px; position: relative; }
.flowlab-bar > div { height: 10px; border-radius: 5px; }
.flowlab-bar > span { position: absolute; top: -2px; width: 2px; height: 14px; background: #333; }
"""


class Dashboard:
    """One browser session of the dashboard: pick a flow, watch its items, counts, figures and annotators.

    Everything it shows comes from one `AsyncClient`; a periodic callback on the server's event loop refreshes
    it (about once a second), under the session's document lock, so figures update through their sources. The
    chosen flow's kind supplies the item figures (`flowlab_widgets.kinds.view_for`): the session builds every
    kind's view once, and only the current one is visible.
    """

    def __init__(
        self,
        url: str,
        api_key: str | None,
        *,
        flow_id: str | None = None,
        period_ms: int = 1000,
        why: str | None = None,
    ) -> None:
        self.client = AsyncClient(url=url, api_key=api_key)
        self.url = url
        self.why = why or self.client.server.describe()  # which server, and why that one
        self.period_ms = period_ms
        self.flow_id: str | None = flow_id
        self.item_id: str | None = None
        self.follow_latest = True
        self.ticks = 0
        self.refreshes = 0
        self._busy = False
        self._version: tuple[str, int] | None = None
        self._flow: Any = None
        self._statuses: list[Any] = []
        self._updating_options = False

        self.flow_select = pn.widgets.Select(
            label="Flows (newest first)", options={}, size=10, sizing_mode="stretch_width"
        )
        self.flow_select.param.watch(self._on_flow_selected, "value")
        self.item_select = pn.widgets.Select(label="Item", options={}, width=420)
        self.item_select.param.watch(self._on_item_selected, "value")
        self.header = pn.pane.HTML("", sizing_mode="stretch_width")
        self.counts = pn.pane.HTML("", sizing_mode="stretch_width")
        # Panel renders each pane in a shadow root of its own: the table's styles must be the pane's own.
        self.items_table = pn.pane.HTML("", sizing_mode="stretch_width", stylesheets=[_CSS])
        self.server_note = pn.pane.HTML(
            f'<span style="color:#666">server <code>{esc(url)}</code> — {esc(self.why)}</span>',
            sizing_mode="stretch_width",
        )
        self.instruction = pn.widgets.TextAreaInput(
            label="Instruction for new items", height=90, sizing_mode="stretch_width"
        )
        self.save_button = pn.widgets.Button(label="Update instruction", color="primary")
        self.save_button.on_click(self._on_save)
        self.message = pn.pane.HTML("", sizing_mode="stretch_width")
        # Batch projects: every project of the key, with progress; the chosen one can be paused and resumed.
        self.projects_table = pn.pane.HTML("", sizing_mode="stretch_width", stylesheets=[_CSS])
        self.project_select = pn.widgets.Select(label="Batch project", options={}, sizing_mode="stretch_width")
        self.pause_button = pn.widgets.Button(label="Pause", disabled=True)
        self.resume_button = pn.widgets.Button(label="Resume", disabled=True)
        self.pause_button.on_click(lambda _e: self._project_action("pause"))
        self.resume_button.on_click(lambda _e: self._project_action("resume"))
        self._projects: list[Any] = []

        self.progress = ItemProgressChart(sizing_mode="stretch_width", height=240)
        self.throughput = ThroughputChart(sizing_mode="stretch_width", height=240)
        self.annotators = AnnotatorActivityChart(sizing_mode="stretch_width", height=300)
        # The item figures: one panel per kind this session has shown, the current kind's visible.
        # The item figures: a panel per kind this session has shown, the chosen flow's kind visible.
        self.view: KindView | None = None
        self.views: dict[str, KindView] = {}
        self.kind_panels: dict[str, KindPanel] = {}
        self.kind_area = pn.Column(sizing_mode="stretch_width")
        # Audiences and their people, with Suspend / Reinstate per person.
        self.people = PeoplePanel(self.client)
        # Evals of a training run: win rate per tag against the step, the proxy reward, the sentinel.
        self.evals = EvalPanel(self.client)

        sidebar = pn.Column(
            pn.pane.HTML("<h2 style='margin:0'>flowlab</h2>"),
            self.server_note,
            self.flow_select,
            pn.pane.HTML("<b>Instruction editor</b>"),
            self.instruction,
            self.save_button,
            self.message,
            self.project_select,
            pn.Row(self.pause_button, self.resume_button),
            width=330,
        )
        main = pn.Column(
            self.header,
            self.projects_table,
            pn.Row(self.item_select, self.counts, sizing_mode="stretch_width"),
            self.items_table,
            pn.Row(
                pn.pane.Bokeh(self.progress.figure, sizing_mode="stretch_width"),
                pn.pane.Bokeh(self.throughput.figure, sizing_mode="stretch_width"),
                sizing_mode="stretch_width",
            ),
            self.kind_area,
            self.evals.column,
            pn.pane.Bokeh(self.annotators.figure, sizing_mode="stretch_width"),
            self.people.column,
            sizing_mode="stretch_width",
        )
        self.layout = pn.Row(sidebar, main, sizing_mode="stretch_width", stylesheets=[_CSS])

    # ------------------------------------------------------------ session wiring

    def start(self) -> None:
        """Begin the periodic refresh once this session's page has loaded (call while its document is current).

        Not before: Panel holds back changes made while the page's websocket is not open yet, and some never
        arrive (a layout's `visible`, so a flow's kind panel would stay hidden).
        """

        def begin() -> None:
            pn.state.add_periodic_callback(self.refresh, period=self.period_ms)  # type: ignore[arg-type]

        pn.state.onload(begin)
        with contextlib.suppress(Exception):
            pn.state.on_session_destroyed(lambda _ctx: pn.state.execute(self.client.aclose))

    async def refresh(self) -> None:
        """Read the flows, the chosen flow's items and what its kind's view reads of the chosen item; update in
        place."""
        if self._busy:
            return  # a slow server should not pile refreshes up
        self._busy = True
        try:
            await self._refresh()
            self.refreshes += 1
        except FlowlabError as exc:
            self.message.object = f'<span style="color:#b91c1c">{esc(exc)}</span>'
        finally:
            self._busy = False
            self.ticks += 1

    async def _refresh(self) -> None:
        await self._refresh_projects()
        await self.evals.refresh()
        everyone = None
        if self.ticks % 5 == 0:
            everyone = await self.client.annotators.list()
            await self.people.refresh(everyone, item_id=self.item_id)  # habits on the item chosen last
        if self.ticks % 5 == 0 or not self.flow_select.options:
            await self._refresh_flows()
        # With no flow to edit, the editor offers nothing to click.
        self.save_button.disabled = self.instruction.disabled = self.flow_id is None
        if self.flow_id is None:
            self.header.object = (
                '<h3 class="flowlab-header">No flows yet</h3><p>Create one with '
                "<code>client.flow.create_ranking_flow(...)"
                "</code> or the FlowCreator widget; it appears here.</p>"
            )
            return
        try:
            flow = await self.client.flow.get_flow_by_id(self.flow_id)
        except NotFound:
            self.flow_id = None
            return
        first_view = self._flow is None or self._flow.id != flow.id
        self._flow = flow
        items = list(reversed(await flow.get_flow_items(amount=None)))  # oldest first: the newest is the last
        self._statuses = [it.last_status for it in items]
        view, panel = self._show_kind(flow.config)
        self._show_flow(flow.config, first_view)
        self._show_items(self._statuses)
        item = self._pick_item(items)
        if item is not None and item.id != self.people.item_id:
            await self.people.refresh(everyone, item_id=item.id)  # another item chosen: its people's habits at once
        if item is not None:
            version = (item.id, item.last_status.version)
            if version != self._version:
                reading = await aread_item(view, item)
                view.show(reading)
                panel.notes.object = view.notes
                if reading.errors:  # e.g. a ranking not fitted yet: the rest still shows
                    self.message.object = f'<span style="color:#b91c1c">{esc(reading.errors[-1])}</span>'
                self._version = version
        if everyone is not None:
            # Crowds come and go; show who has been voting lately, busiest first (the chart draws the top 25 and
            # says how many more there are).
            recent = [a for a in everyone if a.last_seen and a.last_seen > time.time() - RECENT_ANNOTATOR_S]
            self.annotators.update(recent or everyone)

    async def _refresh_flows(self) -> None:
        flows = await self.client.flow.find_flows(amount=25)
        options = {f"{f.name} · {f.config.item_count} item(s) · {fmt_ago(f.config.created_at)}": f.id for f in flows}
        ids = list(options.values())
        if self.flow_id not in ids:
            self.flow_id = ids[0] if ids else None
        self._updating_options = True
        try:
            if self.flow_select.options != options:
                self.flow_select.options = options
            if self.flow_select.value != self.flow_id:
                self.flow_select.value = self.flow_id
        finally:
            self._updating_options = False

    async def _refresh_projects(self) -> None:
        self._projects = [p.last_status for p in await self.client.projects.list()]
        self._show_projects(self._projects)

    def _show_projects(self, projects: list[Any]) -> None:
        rows = []
        for p in sorted(projects, key=lambda p: -p.created_at)[:10]:
            frac = p.answers_done / p.answers_needed if p.answers_needed else 0.0
            color = {"completed": "#2ca02c", "paused": "#bcbd22"}.get(p.state, "#1f77b4")
            rate = "–" if p.rate is None else f"{p.rate:,.1f}/s"
            eta = "–" if p.eta_seconds is None else fmt_seconds(p.eta_seconds)
            rows.append(
                f'<tr data-project="{esc(p.id)}"><td>{esc(p.name)}</td><td>{esc(p.kind)}</td>'
                f'<td class="flowlab-project-state">{esc(p.state)}</td>'
                f"<td>{p.tasks_done:,} / {p.tasks_total:,}</td>"
                f'<td><div class="flowlab-bar"><div style="width:{frac * 100:.0f}%;background:{color}">'
                "</div></div></td>"
                f"<td>{rate}</td><td>{eta}</td></tr>"
            )
        self.projects_table.object = (
            '<b>Batch projects</b><table class="flowlab-items"><tr><th>project</th><th>kind</th><th>state</th>'
            "<th>tasks done</th><th>answers</th><th>rate</th><th>ETA</th></tr>" + "".join(rows) + "</table>"
            if rows
            else ""
        )
        options = {f"{p.name} · {p.state}": p.id for p in projects}
        if self.project_select.options != options:
            self.project_select.options = options
        chosen = next((p for p in projects if p.id == self.project_select.value), None)
        self.pause_button.disabled = chosen is None or chosen.state != "running"
        self.resume_button.disabled = chosen is None or chosen.state != "paused"

    async def _project_action(self, action: str) -> None:
        if self.project_select.value is None:
            return
        try:
            project = await self.client.projects.get(self.project_select.value)
            await getattr(project, action)()
        except FlowlabError as exc:
            self.message.object = f'<span style="color:#b91c1c">{esc(exc)}</span>'
            return
        await self._refresh_projects()

    def _pick_item(self, items: list[Any]) -> Any:
        if not items:
            self.item_id = None
            return None
        ids = [it.id for it in items]
        if self.follow_latest or self.item_id not in ids:
            # The newest item with votes: a batch just pushed would show an empty heatmap until its first vote.
            voted = [it.id for it in items if it.last_status.response_count > 0]
            self.item_id = voted[-1] if voted else ids[-1]
        options = {f"{it.id} · {state_name(it.last_status.state)}": it.id for it in reversed(items)}
        self._updating_options = True
        try:
            if self.item_select.options != options:
                self.item_select.options = options
            if self.item_select.value != self.item_id:
                self.item_select.value = self.item_id
        finally:
            self._updating_options = False
        item = items[ids.index(self.item_id)]
        st = item.last_status
        self.counts.object = (
            f'<div style="font-size:15px;padding-top:22px"><b class="flowlab-count" style="font-size:22px">'
            f"{st.response_count}</b> {esc(self.view.unit if self.view else 'responses')} for this item "
            f"{badge(state_name(st.state))} · "
            f'<span class="flowlab-total">{sum(s.response_count for s in self._statuses)}</span> in the flow</div>'
        )
        return item

    # ------------------------------------------------------------ rendering

    def _show_kind(self, config: Any) -> tuple[KindView, KindPanel]:
        """The view of the flow's kind and its panel, built the first time the session shows the kind; only it
        is visible."""
        view_class = view_of(config)
        if view_class.kind not in self.views:
            view = self.views[view_class.kind] = view_class(sizing_mode="stretch_width", height=400)
            self.kind_panels[view.kind] = KindPanel.of(view)
            self.kind_area.append(self.kind_panels[view.kind].column)
        view = self.view = self.views[view_class.kind]
        panel = self.kind_panels[view.kind]
        for other in self.kind_panels.values():
            other.column.visible = other is panel
        return view, panel

    def _show_flow(self, config: Any, first_view: bool) -> None:
        assert self.view is not None
        self.header.object = (
            f'<h2 class="flowlab-header" data-flow="{esc(config.id)}" data-kind="{esc(self.view.kind)}" '
            f'style="margin:4px 0">{esc(config.name)} <code style="font-size:60%">{esc(config.id)}</code></h2>'
            f'<div class="flowlab-summary" style="color:#555">{self.view.summary(config)} · '
            f"config v{config.config_version} · instruction: <i>{esc(config.instruction)}</i></div>"
        )
        total = sum(s.response_count for s in self._statuses)
        if first_view:
            self.instruction.value = config.instruction
            # From the flow's first item's start, not from when this page opened: what is known of the past.
            self.throughput.seed(response_history(self._statuses))
            self._version = None
        # Once every item has ended the curve ends with the last of them, instead of running on flat to now.
        if total != self.throughput.last_count or any(not s.is_terminal for s in self._statuses):
            self.throughput.push(total)

    def _show_items(self, statuses: list[Any]) -> None:
        assert self.view is not None
        self.progress.update(statuses[-15:], totals=self.view.totals)
        current = self._flow.instruction if self._flow is not None else ""
        rows = []
        for st in reversed(statuses[-15:]):
            state = state_name(st.state)
            left = "ended" if st.is_terminal else f'<span class="flowlab-ttl">{fmt_seconds(st.time_left)}</span>'
            progress = self.view.progress(st)  # counted over the whole item, whatever the kind's thresholds count
            frac = min(1.0, progress.done / max(1, progress.max))
            min_at = min(1.0, progress.min / max(1, progress.max))
            color = {"Completed": "#2ca02c", "Incomplete": "#bcbd22", "Failed": "#d62728"}.get(state, "#1f77b4")
            stale = st.instruction != current
            rows.append(
                f"<tr><td><code>{esc(st.id)}</code></td><td>{badge(state)}</td>"
                f"<td>{progress.text}</td>"
                f'<td><div class="flowlab-bar"><div style="width:{frac * 100:.0f}%;background:{color}"></div>'
                f'<span style="left:{min_at * 100:.0f}%"></span></div></td>'
                f"<td>{left}</td><td title='{esc(st.instruction)}'>{esc(_clip(st.instruction))}"
                f"{' <span style=color:#b45309>(older config)</span>' if stale else ''}</td></tr>"
            )
        self.items_table.object = (
            '<table class="flowlab-items"><tr><th>item</th><th>state</th><th>responses · thresholds</th>'
            "<th>progress</th><th>time left</th><th>instruction snapshot</th></tr>" + "".join(rows) + "</table>"
            if rows
            else "<i>No items yet: push a batch with flow.create_new_flow_batch(...).</i>"
        )

    # ------------------------------------------------------------ user actions

    def _on_flow_selected(self, event: Any) -> None:
        if self._updating_options or event.new is None:
            return
        self.flow_id = event.new
        self.follow_latest = True
        self._version = None

    def _on_item_selected(self, event: Any) -> None:
        if self._updating_options or event.new is None:
            return
        self.item_id = event.new
        ids = [s.id for s in self._statuses]
        self.follow_latest = bool(ids) and ids[-1] == event.new

    async def _on_save(self, _event: Any = None) -> None:
        text = (self.instruction.value or "").strip()
        if self.flow_id is None or not text:
            self.message.object = '<span style="color:#b91c1c">Pick a flow and write an instruction first.</span>'
            return
        try:
            flow = await self.client.flow.get_flow_by_id(self.flow_id)
            await flow.update_config(instruction=text)
        except FlowlabError as exc:
            self.message.object = f'<span style="color:#b91c1c">{esc(exc)}</span>'
            return
        self.message.object = (
            f'<span style="color:#15803d">Saved as config v{flow.config.config_version}.</span> New items use it; '
            "existing items keep their snapshot."
        )


@dataclass
class KindPanel:
    """A kind view's place on the page: its caption, its figures in a row, and its notes below them."""

    column: pn.Column
    caption: pn.pane.HTML
    notes: pn.pane.HTML  # escaped text, never markup

    @classmethod
    def of(cls, view: KindView) -> KindPanel:
        caption = pn.pane.HTML(view.caption, **_WIDE)
        notes = pn.pane.HTML(view.notes, **_WIDE)
        figures = pn.Row(*(pn.pane.Bokeh(f, **_WIDE) for f in view.figures), **_WIDE)
        column = pn.Column(caption, figures, notes, visible=False, css_classes=["flowlab-kind"], **_WIDE)
        return cls(column, caption, notes)


def _clip(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


# ---------------------------------------------------------------- serving


def create_app(url: str, api_key: str | None, *, period_ms: int = 1000, why: str | None = None) -> Any:
    """A Panel app factory: each browser session gets its own `Dashboard` (and `?flow=<id>` picks the flow);
    `why` says which server it shows and why (`Server.describe()`)."""

    def app() -> Any:
        flow_id = None
        with contextlib.suppress(Exception):
            args = pn.state.session_args.get("flow")
            flow_id = args[0].decode() if args else None
        board = Dashboard(url, api_key, flow_id=flow_id, period_ms=period_ms, why=why)
        # Every refresh comes from the periodic callback, which runs under the document lock (an onload
        # coroutine would not, and bokeh refuses model changes made outside it); onload only starts it.
        board.start()
        return board.layout

    return app


def _use_local_resources() -> None:
    """No CDN anywhere, so the dashboard works offline (and on Binder behind the proxy).

    Panel's "inline" mode only inlines JavaScript: its component stylesheets then point at cdn.holoviz.org.
    "server" mode is the one where BokehJS, Panel's bundles and every stylesheet come from this process, out
    of the installed packages, under the same prefix as the page.
    """
    from bokeh.settings import settings

    settings.resources = "server"


def serve(
    url: str | None = None,
    api_key: str | None = None,
    port: int = 5006,
    *,
    show: bool = False,
    address: str = "127.0.0.1",
    prefix: str | None = None,
    period_ms: int = 1000,
    why: str | None = None,
) -> None:
    """Serve the dashboard at http://address:port/ until interrupted.

    `url`/`api_key` are found by the rule every client follows (FLOWLAB_URL / FLOWLAB_API_KEY, else the
    newest `flowlab serve` running here, else the embedded local server, started if needed); the page says
    which server it shows and why (`why`, from a caller that resolved it already). `prefix` (or
    FLOWLAB_DASHBOARD_PREFIX) serves it under a path, as behind jupyter-server-proxy.
    """
    with Client(url=url, api_key=api_key) as client:  # resolves the server once, for every session
        url, api_key = client.url, client.api_key
        why = why or client.server.describe()
    prefix = prefix if prefix is not None else os.environ.get(PREFIX_ENV) or None
    _use_local_resources()
    # Behind a proxy the browser's Origin is Jupyter's host, not ours; directly, only local pages may connect.
    origins = (
        ["*"]
        if prefix or address in ("0.0.0.0", "::")
        else [f"localhost:{port}", f"127.0.0.1:{port}", f"{address}:{port}"]
    )
    print(f"flowlab dashboard: http://{address}:{port}{prefix or ''}/  ({why})", flush=True)
    kwargs: dict[str, Any] = {}
    if prefix:
        kwargs["prefix"] = prefix
        # Bokeh serves its favicon at /favicon.ico only, not under the prefix; point the page's ./favicon.ico at
        # Panel's copy with a relative redirect, which resolves under whatever prefix the browser sees.
        from tornado.web import RedirectHandler

        icon = {"url": "static/extensions/panel/images/favicon.ico"}
        kwargs["extra_patterns"] = [(r"/favicon.ico", RedirectHandler, icon)]  # bokeh adds the prefix
    pn.serve(
        create_app(url, api_key, period_ms=period_ms, why=why),
        port=port,
        address=address,
        show=show,
        title="flowlab dashboard",
        websocket_origin=origins,
        verbose=False,
        **kwargs,
    )
