"""FlowCreator: a form that creates a ranking flow (name, instruction, thresholds, ties, pair selection)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from flowlab import Client, FlowlabError
from flowlab_widgets._common import esc

__all__ = ["FlowCreator"]


class FlowCreator(widgets.VBox):
    """Fill in the form and press *Create flow*; the new flow is `creator.flow` and goes to `on_created` callbacks.

    It calls `client.flow.create_ranking_flow(...)` on the client it holds (default: `Client()`, which finds
    the server by the one rule: FLOWLAB_URL, else the newest `flowlab serve` running here, else the embedded
    local server). The form says which server that is, and why.
    """

    def __init__(
        self,
        client: Client | None = None,
        *,
        name: str = "",
        instruction: str = "",
        max_response_threshold: int = 100,
        min_response_threshold: int | None = None,
    ) -> None:
        self.client = client if client is not None else Client()
        self.flow: Any = None
        self._callbacks: list[Callable[[Any], None]] = []
        wide = widgets.Layout(width="520px")
        style = {"description_width": "150px"}
        self.name_input = widgets.Text(
            value=name, description="Name", placeholder="Image quality ranking", layout=wide, style=style
        )
        self.instruction_input = widgets.Textarea(
            value=instruction,
            description="Instruction",
            placeholder="Which image looks better?",
            layout=widgets.Layout(width="520px", height="70px"),
            style=style,
        )
        self.max_input = widgets.BoundedIntText(
            value=max_response_threshold, min=1, max=1_000_000, description="Max votes / item", style=style
        )
        self.min_same = widgets.Checkbox(
            value=min_response_threshold is None,
            description="min = max",
            indent=False,
            layout=widgets.Layout(width="110px"),
        )
        self.min_input = widgets.BoundedIntText(
            value=min_response_threshold if min_response_threshold is not None else max_response_threshold,
            min=0,
            max=1_000_000,
            description="Min votes / item",
            style=style,
            disabled=min_response_threshold is None,
        )
        self.min_same.observe(self._sync_min, names="value")
        self.max_input.observe(self._sync_min, names="value")
        self.ties_input = widgets.Checkbox(value=False, description="Allow ties", style=style)
        self.pair_selection_input = widgets.ToggleButtons(
            options=[("uniform", "uniform"), ("active (most informative pairs)", "active")],
            value="uniform",
            description="Pair selection",
            style={**style, "button_width": "250px"},  # wide enough for "active (most informative pairs)"
        )
        self.lease_input = widgets.BoundedFloatText(
            value=60.0, min=1.0, max=3600.0, step=5.0, description="Lease (s)", style=style
        )
        self.create_button = widgets.Button(description="Create flow", button_style="primary", icon="plus")
        self.create_button.on_click(lambda _b: self.create())
        self.status = widgets.HTML()
        server = getattr(self.client, "server", None)  # which server, and why: a notebook may talk to several
        self.server_note = widgets.HTML(
            f'<span style="color:#666">{esc(server.describe() if server else self.client.url)}</span>'
        )
        super().__init__(
            [
                widgets.HTML("<b>New ranking flow</b>"),
                self.server_note,
                self.name_input,
                self.instruction_input,
                self.max_input,
                widgets.HBox([self.min_input, self.min_same]),
                self.ties_input,
                self.pair_selection_input,
                self.lease_input,
                widgets.HBox([self.create_button, self.status], layout=widgets.Layout(align_items="center")),
            ],
            layout=widgets.Layout(border="1px solid #ddd", padding="8px", width="fit-content"),
        )
        self.add_class("flowlab-creator")

    def _sync_min(self, _change: Any = None) -> None:
        self.min_input.disabled = self.min_same.value
        if self.min_same.value:
            self.min_input.value = self.max_input.value

    def on_created(self, callback: Callable[[Any], None]) -> None:
        """Call `callback(flow)` after each flow the form creates."""
        self._callbacks.append(callback)

    def options(self) -> dict[str, Any]:
        """The keyword arguments the form would pass to `create_ranking_flow`."""
        return {
            "name": self.name_input.value.strip(),
            "instruction": self.instruction_input.value.strip(),
            "max_response_threshold": int(self.max_input.value),
            "min_response_threshold": None if self.min_same.value else int(self.min_input.value),
            "allow_ties": bool(self.ties_input.value),
            "pair_selection": self.pair_selection_input.value,
            "lease_seconds": float(self.lease_input.value),
        }

    def create(self) -> Any:
        """Create the flow from the form; errors are shown in the form, not raised."""
        opts = self.options()
        missing = [label for label, key in (("a name", "name"), ("an instruction", "instruction")) if not opts[key]]
        if missing:
            self._say(f"Give the flow {' and '.join(missing)}.", error=True)
            return None
        low, high = opts["min_response_threshold"], opts["max_response_threshold"]
        if low is not None and low > high:
            self._say("Min votes cannot exceed max votes.", error=True)
            return None
        self.create_button.disabled = True
        try:
            flow = self.client.flow.create_ranking_flow(**opts)
        except FlowlabError as exc:
            self._say(str(exc), error=True)
            return None
        finally:
            self.create_button.disabled = False
        self.flow = flow
        self._say(f'Created <b>{esc(flow.name)}</b> <code class="flowlab-flow-id">{esc(flow.id)}</code>')
        for cb in self._callbacks:
            cb(flow)
        return flow

    def _say(self, text: str, *, error: bool = False) -> None:
        color = "#b91c1c" if error else "#15803d"
        self.status.value = f'<span style="color:{color}">{text if not error else esc(text)}</span>'
