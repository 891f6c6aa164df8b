"""The workbench's figures and monitor keep readable however much there is to show and however narrow the
notebook: annotator activity with many annotators, a legend that shows its colours, the response curve from the
flow's first vote, and a monitor laid out to fit (JupyterLab itself: tests/browser/test_lab.py)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from flowlab_widgets import FlowMonitor
from flowlab_widgets.figures import AGREEMENT_BANDS, AnnotatorActivityChart, ThroughputChart, response_history

import flowlab
from flowlab.crowd import SimulatedCrowd
from tests.test_widgets import datapoints, in_fresh_thread

ServerProcess = Any  # tests/conftest.py's fixture type


def people(n: int) -> list[SimpleNamespace]:
    """`n` annotators with the crowd's names (six, repeated), fewer votes down the list, some with gold answered."""
    return [
        SimpleNamespace(
            id=f"ann_{i:012x}",
            name=f"sim-{i % 6:03d}",
            votes=1000 - i,
            gold_agreement=None if i % 4 == 0 else (i % 10) / 10,
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("n", [5, 36, 300])
def test_annotator_activity_stays_readable_with_many_annotators(n: int) -> None:
    chart = AnnotatorActivityChart(height=300)
    chart.update(people(n))
    shown = min(n, chart.max_annotators)
    factors = list(chart.figure.y_range.factors)
    assert len(factors) == shown == len(set(factors)), "one row per annotator shown, each named once"
    assert factors[-1].startswith("sim-000"), "the busiest on top"
    # Names the crowd shares are told apart by the end of the id, not the whole id.
    assert all(len(f) <= chart.MAX_NAME_CHARS + 9 for f in factors), factors
    assert chart.figure.height >= chart.CHROME_PX + chart.row_height * shown and chart.row_height >= 16
    if n > chart.max_annotators:
        assert chart.hidden == n - shown
        assert f"+{n - shown} more" in chart.note.text and f"of {n} annotators" in chart.note.text
    else:
        assert chart.hidden == 0 and chart.note.text == ""
        assert chart.figure.height == 300, "a few annotators keep the figure's own height"
    # Fewer annotators later: the figure shrinks back and the note goes.
    chart.update(people(3))
    assert chart.figure.height == 300 and chart.note.text == "" and len(chart.figure.y_range.factors) == 3


def test_annotator_legend_swatches_have_a_row_to_draw_and_stay_out_of_the_plot() -> None:
    chart = AnnotatorActivityChart()
    legend = next(m for m in chart.figure.right if m.__class__.__name__ == "Legend")
    for item, (label, color) in zip(legend.items, AGREEMENT_BANDS, strict=True):
        (renderer,) = item.renderers
        assert item.label["value"] == label and renderer.glyph.fill_color == color
        # BokehJS draws no legend glyph for a renderer with no rows (the swatches were blank); a hidden renderer
        # with a row is drawn in its colour, and never in the plot.
        assert len(renderer.data_source.data["right"]) == 1 and renderer.visible is False
    hover = next(t for t in chart.figure.tools if t.__class__.__name__ == "HoverTool")
    assert [r.glyph.__class__.__name__ for r in hover.renderers] == ["HBar"] and hover.renderers[0].visible


def status(started: float | None, ended: float | None, count: int, state: str) -> SimpleNamespace:
    return SimpleNamespace(
        started_at=started, ended_at=ended, response_count=count, is_terminal=ended is not None, state=state
    )


def test_response_history_starts_with_the_first_item_and_adds_each_ended_item_at_its_end() -> None:
    statuses = [
        status(1000.0, 1060.0, 40, "Completed"),
        status(1030.0, 1050.0, 10, "Stopped"),
        status(1070.0, None, 7, "Running"),
        status(None, None, 0, "Pending"),
    ]
    assert response_history(statuses) == [(1000.0, 0.0), (1050.0, 10.0), (1060.0, 50.0)]
    assert response_history([status(None, None, 0, "Pending")]) == []

    chart = ThroughputChart()
    chart.seed(response_history(statuses))
    data = chart.source.data
    assert data["t"] == [1_000_000.0, 1_050_000.0, 1_060_000.0] and data["count"] == [0.0, 10.0, 50.0]
    assert data["rate"] == pytest.approx([0.0, 12.0, 240.0])  # answers a minute between two points
    assert chart.figure.x_range.start <= 1_000_000.0 < chart.figure.x_range.end
    assert chart.last_count == 50.0
    chart.push(57, at=1080.0)  # the live part goes on from there
    assert chart.source.data["count"][-1] == 57.0 and chart.source.data["rate"][-1] == pytest.approx(21.0)


def test_dashboard_draws_an_ended_flow_from_its_first_vote_to_its_end(
    flowlab_server: ServerProcess, client: flowlab.Client
) -> None:
    pytest.importorskip("panel")
    from flowlab_widgets.dashboard import Dashboard

    flow = client.flow.create_ranking_flow(name="history", instruction="Which?", max_response_threshold=24)
    item = flow.create_new_flow_batch(datapoints=datapoints(4, "hist"), time_to_live=60)
    with SimulatedCrowd(flowlab_server.url, flowlab_server.api_key, annotators=4, rate=6000, seed=9):
        item.get_results(timeout=30)
    st = item.get_progress()

    async def main() -> Dashboard:
        board = Dashboard(flowlab_server.url, flowlab_server.api_key, flow_id=flow.id)
        await board.refresh()
        await board.refresh()  # a second refresh of an ended flow adds nothing
        await board.client.aclose()
        return board

    board = in_fresh_thread(lambda: asyncio.run(main()))
    data = board.throughput.source.data
    assert data["t"][0] == pytest.approx(st.started_at * 1000.0) and data["count"][0] == 0.0
    assert data["t"][-1] == pytest.approx(st.ended_at * 1000.0) and data["count"][-1] == 24.0
    assert len(data["t"]) == 2, "an ended flow's curve ends with it, not at every refresh"
    assert board.throughput.figure.x_range.start <= st.started_at * 1000.0


def test_monitor_lays_itself_out_to_fit_a_narrow_notebook(client: flowlab.Client) -> None:
    flow = client.flow.create_rlhf_flow("narrow monitor", "Which is better?", max_response_threshold=2)
    monitor = in_fresh_thread(lambda: FlowMonitor(flow, live=False))
    try:
        assert monitor.layout.max_width == "100%"
        rows = [c for c in monitor.children if c.__class__.__name__ == "HBox"]
        assert all(r.layout.flex_flow == "row wrap" for r in rows if r is not monitor.children[2]), (
            "rows of controls and figures wrap instead of running past the notebook's edge"
        )
        # Figures stretch to the width there is, side by side down to a least width each.
        assert all(f.sizing_mode == "stretch_width" for f in monitor.view.figures)
        for w in monitor.figure_widgets:
            assert w.layout.min_width and w.layout.flex.startswith("1 1 ")
        # The item table's header and rows share each column's flex, so they shrink alike and stay aligned.
        header = monitor.children[2]
        responses = [{"source_id": "a", "content": "yes"}, {"source_id": "b", "content": "no"}]
        flow.create_new_flow_batch([{"id": "q", "prompt": "?", "responses": responses}], time_to_live=30)
        monitor.refresh()
        (row,) = monitor.item_rows.values()
        assert [c.layout.flex for c in header.children] == [c.layout.flex for c in row.children]
        assert [c.layout.min_width for c in header.children] == [c.layout.min_width for c in row.children]
        assert all(c.layout.overflow == "hidden" for c in row.children), "a cell's text never runs over the next"
        assert monitor.instruction_input.layout.max_width == "100%"
    finally:
        monitor.close()
