"""Helpers the widgets share: which server a flow lives on, BokehJS in the notebook, and small formatters."""

from __future__ import annotations

import contextlib
import html
import time
from typing import Any

from jupyter_bokeh import BokehModel

from flowlab import Client

_bokehjs_loaded_in: tuple[int, int] | None = None  # (kernel shell id, execution count)


def connection_of(obj: Any) -> tuple[str, str | None]:
    """(url, api_key) of the server behind a `Client`, `Flow` or `FlowItem`.

    The widgets open their own clients on the same server, so their background refreshes never share a
    connection pool with the user's cells.
    """
    if hasattr(obj, "url") and hasattr(obj, "api_key"):
        return str(obj.url), obj.api_key
    raise TypeError(f"cannot tell which flowlab server {obj!r} lives on; pass client=Client(url=..., api_key=...)")


def client_for(obj: Any) -> Client:
    url, key = connection_of(obj)
    return Client(url=url, api_key=key)


def in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def ensure_bokehjs() -> None:
    """Load BokehJS into the notebook page, inline, so figures render with no CDN (offline, Binder).

    It is published once per cell execution that makes figures, not once per kernel: a page opened on an
    already running kernel (a reload, a second tab, "Run All" again) has no BokehJS until a cell loads it.
    Only BokehJS's core is sent (about 1.3 MB); the figures need no bokeh widgets, tables or WebGL.
    """
    global _bokehjs_loaded_in
    if not in_kernel():
        return
    from bokeh.io import output_notebook
    from bokeh.resources import Resources
    from IPython import get_ipython

    shell = get_ipython()
    mark = (id(shell), int(getattr(shell, "execution_count", 0) or 0))
    if _bokehjs_loaded_in == mark:
        return
    output_notebook(resources=Resources(mode="inline", components=["bokeh"]), hide_banner=True)
    _bokehjs_loaded_in = mark


class FigureWidget(BokehModel):  # type: ignore[misc]
    """A bokeh figure as an ipywidget: later changes to its sources reach the page as document patches.

    A view renders from `render_bundle`, the figure as it was when the widget was made, and only hears the
    patches sent after it started listening. Patches sent before that (a live widget's first refresh racing
    the page, a widget filled in before it is displayed, a page reloaded later) would be lost, leaving e.g. a
    heatmap with no factors. So the widget remembers whether it has sent patches since its bundle was built,
    and when a view reports `document_ready` while that is so, it rebuilds the bundle: that view (and any
    other) re-renders once from the figure's current state.
    """

    _stale = False

    def _document_patched(self, event: Any) -> None:
        super()._document_patched(event)
        if event.setter is not self:
            self._stale = True

    def _sync_model(self, model: Any, content: dict[str, Any], buffers: list[Any]) -> None:
        ready = (
            content.get("event") == "jsevent"
            and content.get("kind") == "MessageSent"
            and isinstance(content.get("msg_data"), dict)
            and content["msg_data"].get("name") == "document_ready"
        )
        super()._sync_model(model, content, buffers)
        if ready and self._stale:
            self._stale = False
            self.render_bundle = self._model_to_traits(self._model)

    def close(self) -> None:
        # BokehModel.close() raises when called twice (once by us, once by Widget.__del__): make it idempotent.
        with contextlib.suppress(KeyError, ValueError):
            super().close()


def bokeh_widget(figure: Any) -> FigureWidget:
    """Wrap a bokeh figure as a widget, loading BokehJS into the notebook first if needed."""
    ensure_bokehjs()
    return FigureWidget(figure)


def state_name(state: Any) -> str:
    return str(getattr(state, "value", state))


def fmt_seconds(seconds: float) -> str:
    whole = max(0, round(seconds))
    minutes, s = divmod(whole, 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}:{m:02d}:{s:02d}" if hours else f"{m}:{s:02d}"


def fmt_ago(t: float | None, now: float | None = None) -> str:
    if not t:
        return "never"
    delta = (time.time() if now is None else now) - t
    if delta < 60:
        return f"{int(max(delta, 0))} s ago"
    if delta < 3600:
        return f"{int(delta // 60)} min ago"
    if delta < 86400:
        return f"{int(delta // 3600)} h ago"
    return f"{int(delta // 86400)} d ago"


def esc(text: Any) -> str:
    return html.escape(str(text))


def badge(state: str) -> str:
    from flowlab_widgets.figures import STATE_COLORS

    color = STATE_COLORS.get(state, "#555555")
    return (
        f'<span class="flowlab-state" data-state="{esc(state)}" style="background:{color};color:white;'
        f'padding:1px 7px;border-radius:9px;font-size:90%">{esc(state)}</span>'
    )


def live_badge(mode: str) -> str:
    """How a live view is kept fresh, as a small coloured label."""
    text = {"sse": "live (SSE)", "polling": "live (polling)", "thread": "live (polling thread)", "off": "not live"}
    color = "#15803d" if mode != "off" else "#666"
    return f'<span class="flowlab-live" style="color:{color}">● {text[mode]}</span>'
