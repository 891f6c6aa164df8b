"""Workbench widget state against a real server: creator, monitor, instruction editor, browser, explorer, dashboard,
and every kind of flow shown by its kind's view."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import typing
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, TypeVar

import httpx
import numpy as np
import pandas as pd
import pytest

pytest.importorskip("ipywidgets", reason="the workbench needs the lab extra: pip install 'flowlab[lab]'")
pytest.importorskip("jupyter_bokeh", reason="the workbench needs the lab extra: pip install 'flowlab[lab]'")

from flowlab_widgets import FlowBrowser, FlowCreator, FlowMonitor, RankingExplorer
from flowlab_widgets.figures import AnnotatorActivityChart, RankingChart, ThroughputChart, WinLossHeatmap

import flowlab
from flowlab.crowd import SimulatedCrowd

ServerProcess = Any  # tests/conftest.py's fixture type
T = TypeVar("T")


def datapoints(n: int, prefix: str = "dp") -> list[dict[str, Any]]:
    return [
        {"id": f"{prefix}{i}", "text": f"answer {i} ({prefix})", "private_metadata": {"true_score": 0.6 * i}}
        for i in range(n)
    ]


def in_fresh_thread(fn: Callable[[], T]) -> T:
    """Run `fn` in a new thread, which has no event loop.

    The workbench picks its live mode from the calling thread (a running asyncio loop means a kernel), and
    a session-scoped Playwright sync API keeps a loop marked as running in the main thread once a browser test
    has used it; a fresh thread makes these tests independent of which tests ran before them.
    """
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # handed back to the test's thread below
            outcome["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(120)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@pytest.fixture
def crowd(flowlab_server: ServerProcess) -> Iterator[SimulatedCrowd]:
    # Twelve people: items of four datapoints have six pairs, and nobody is shown a pair of an item twice.
    with SimulatedCrowd(flowlab_server.url, flowlab_server.api_key, annotators=12, rate=2400, seed=7) as c:
        yield c


# ---------------------------------------------------------------- figures (no server)


def test_heatmap_round_trips_a_matrix_with_ties() -> None:
    keys = ["a", "b", "c"]
    matrix = pd.DataFrame([[0.0, 2.5, 1.0], [0.5, 0.0, 3.0], [0.0, 4.0, 0.0]], index=keys, columns=keys)
    heatmap = WinLossHeatmap()
    heatmap.update(matrix)
    assert list(heatmap.figure.x_range.factors) == keys
    assert list(heatmap.figure.y_range.factors) == ["c", "b", "a"]  # first row on top
    pd.testing.assert_frame_equal(heatmap.to_frame(), matrix.rename_axis(index="winner", columns="loser"))
    assert heatmap.total == 11.0
    assert heatmap.color_mapper.high == 4.0
    source = heatmap.source
    heatmap.update(matrix * 2)
    assert heatmap.source is source  # updated in place, never rebuilt


def test_ranking_chart_puts_the_best_on_top_and_fits_its_range() -> None:
    chart = RankingChart()
    chart.update(
        [{"key": "x", "score": -1.0, "low": -1.5, "high": -0.5}, {"key": "y", "score": 2.0, "low": 1.0, "high": 3.0}]
    )
    assert chart.keys_by_rank == ["y", "x"]
    assert list(chart.figure.y_range.factors) == ["x", "y"]  # bottom to top
    assert chart.figure.x_range.start < -1.5 and chart.figure.x_range.end > 3.0


def test_an_absolute_flows_ranking_shows_p_acceptable_beside_the_scores() -> None:
    from bokeh.embed import file_html
    from bokeh.resources import CDN
    from flowlab_widgets.kinds import Reading
    from flowlab_widgets.kinds.pairwise import PairwiseView

    from flowlab import FlowItemResult, schemas

    def result(absolute: bool) -> FlowItemResult:
        rows = [
            schemas.DatapointResult(
                key=k,
                index=i,
                score=s,
                elo=1200 + 174 * s,
                ci_low=s - 0.5,
                ci_high=s + 0.5,
                rank=i + 1,
                rank_low=1,
                rank_high=2,
                votes=10,
                wins=5.0,
                p_acceptable=p if absolute else None,
                p_acceptable_low=p - 0.2 if absolute else None,
                p_acceptable_high=p + 0.1 if absolute else None,
            )
            for i, (k, s, p) in enumerate([("good", 1.0, 0.8), ("bad", -1.0, 0.3)])
        ]
        return FlowItemResult.from_wire(schemas.ItemResults("i", "Completed", 10, False, rows, 1))

    view = PairwiseView()
    source = view.acceptability.source
    view.show(Reading(values={"result": result(absolute=True)}))
    assert view.figures == [view.heatmap.figure, view.ranking.figure], "a series on the ranking, not a new figure"
    assert source.data["key"] == ["good", "bad"] and source.data["p"] == [0.8, 0.3]
    assert source.data["low"] == pytest.approx([0.6, 0.1]) and source.data["high"] == pytest.approx([0.9, 0.4])
    assert view.acceptability.axis.visible and view.acceptability.half.visible
    assert view.ranking.figure.extra_x_ranges["p_acceptable"].end == 1
    assert "P(acceptable)" in view.sources and view.empty_panels() == ["win-loss matrix"]
    assert "P(acceptable)" in file_html(view.ranking.figure, CDN), "the figure serialises with its second series"
    assert "both good / both bad" in PairwiseView.settings(
        SimpleNamespace(pair_selection="active", allow_ties=True, absolute=True)
    )

    view.show(Reading(values={"result": result(absolute=False)}))  # a plain flow's item: the series hides
    assert view.acceptability.source is source and source.data["key"] == []
    assert not view.acceptability.axis.visible and "P(acceptable)" not in view.sources


def test_throughput_chart_streams_counts_and_rates() -> None:
    chart = ThroughputChart()
    for i in range(6):
        chart.push(30 * i, at=1000.0 + i)
    data = chart.source.data
    assert data["count"] == [0, 30, 60, 90, 120, 150]
    assert data["rate"][-1] == pytest.approx(1800.0)  # 30 votes a second
    assert chart.figure.extra_y_ranges["rate"].end >= 1800.0
    legends = [m for m in chart.figure.below if m.__class__.__name__ == "Legend"]
    assert legends and not [m for m in chart.figure.center if m.__class__.__name__ == "Legend"], (
        "the legend sits under the plot, not over the lines"
    )


def test_annotator_activity_says_what_its_colours_mean() -> None:
    chart = AnnotatorActivityChart()
    legend = next(m for m in chart.figure.right if m.__class__.__name__ == "Legend")
    labels = [item.label["value"] for item in legend.items]
    assert labels[0] == "no gold yet" and len(labels) == 5
    people = [
        type("A", (), {"id": str(i), "name": f"ann-{i}", "votes": 10 + i, "gold_agreement": g})
        for i, g in enumerate([None, 0.3, 0.6, 0.8, 0.95])
    ]
    chart.update(people)
    swatch = {item.label["value"]: item.renderers[0].glyph.fill_color for item in legend.items}
    # Each bar takes the colour its legend swatch has for that band.
    assert sorted(chart.source.data["color"]) == sorted(swatch.values())


def test_figure_widget_resends_its_state_to_a_view_that_missed_patches() -> None:
    from flowlab_widgets._common import bokeh_widget

    heatmap = WinLossHeatmap()
    widget = bokeh_widget(heatmap.figure)
    keys = ["a", "b"]
    heatmap.update(pd.DataFrame([[0.0, 3.0], [1.0, 0.0]], index=keys, columns=keys))  # sent as patches
    assert widget._stale
    assert "'a'" not in repr(widget.render_bundle["docs_json"])  # the bundle is from before the update
    # What BokehJS sends when a view has rendered (from the possibly stale bundle).
    ready = {
        "event": "jsevent",
        "kind": "MessageSent",
        "msg_type": "bokeh_event",
        "msg_data": {"type": "event", "name": "document_ready", "values": {"type": "map"}},
    }
    widget._sync_model(widget, ready, [])
    assert not widget._stale
    assert "'a'" in repr(widget.render_bundle["docs_json"])  # the rebuilt bundle carries the factors and data
    widget._sync_model(widget, dict(ready), [])  # nothing new since: no second re-render
    widget.close()
    widget.close()  # closing twice is harmless


# ---------------------------------------------------------------- FlowCreator


def test_flow_creator_creates_the_flow_the_form_describes(client: flowlab.Client) -> None:
    creator = FlowCreator(client)
    created: list[Any] = []
    creator.on_created(created.append)
    creator.name_input.value = "creator test"
    creator.instruction_input.value = "Which caption fits the image?"
    creator.max_input.value = 40
    creator.min_same.value = False
    creator.min_input.value = 12
    creator.ties_input.value = True
    creator.pair_selection_input.value = "active"
    creator.create_button.click()

    flow = creator.flow
    assert flow is not None and created == [flow]
    config = client.flow.get_flow_by_id(flow.id).config
    assert (config.name, config.instruction) == ("creator test", "Which caption fits the image?")
    assert (config.min_response_threshold, config.max_response_threshold) == (12, 40)
    assert config.allow_ties is True and config.pair_selection == "active"
    assert flow.id in creator.status.value
    assert creator.get_state()["children"]  # a real, serialisable widget


def test_flow_creator_reports_a_missing_instruction_without_calling_the_server(client: flowlab.Client) -> None:
    creator = FlowCreator(client, name="no instruction")
    before = len(client.flow.find_flows(amount=100))
    creator.create_button.click()
    assert creator.flow is None
    assert "instruction" in creator.status.value
    assert len(client.flow.find_flows(amount=100)) == before


def test_flow_creator_min_follows_max_until_unticked(client: flowlab.Client) -> None:
    creator = FlowCreator(client, max_response_threshold=50)
    assert creator.min_input.disabled and creator.options()["min_response_threshold"] is None
    creator.max_input.value = 80
    assert creator.min_input.value == 80


# ---------------------------------------------------------------- FlowMonitor


def test_monitor_counts_reach_the_server_count_while_a_crowd_votes(
    client: flowlab.Client, crowd: SimulatedCrowd
) -> None:
    flow = client.flow.create_ranking_flow(
        name="monitor count", instruction="Which is better?", max_response_threshold=60, min_response_threshold=10
    )
    monitor = in_fresh_thread(lambda: FlowMonitor(flow, poll_interval=0.1))  # no event loop: a polling thread
    try:
        assert monitor.live.mode == "thread"
        item = flow.create_new_flow_batch(datapoints=datapoints(5), time_to_live=30)
        seen: set[int] = set()

        def caught_up() -> bool:
            seen.add(monitor.response_count)
            return item.get_progress().is_terminal and monitor.response_count == item.get_response_count()

        assert wait_until(caught_up, timeout=30), (monitor.response_count, item.get_progress())
        assert monitor.response_count == 60
        assert len(seen) >= 3, f"the count should climb while votes arrive, saw {sorted(seen)}"
        row = monitor.item_rows[item.id]
        assert row.progress.value == 60 and row.progress.max == 60
        assert "Completed" in row.state_html.value
        assert 'class="flowlab-count">60<' in monitor.count_html.value

        # The heatmap shows exactly the server's matrix, and the ranking the server's order.
        assert wait_until(lambda: monitor.heatmap.total == 60)
        pd.testing.assert_frame_equal(monitor.heatmap.to_frame(), item.get_win_loss_matrix())
        assert monitor.ranking.keys_by_rank == item.get_results().ranking
    finally:
        monitor.close()


# ---------------------------------------------------------------- every kind: the kind views behind all three


XSS_WHY = '<img src=x onerror="window.pwned=1"> is worse'


def rlhf_tasks(n: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"task {i}",
            "prompt": f"Question {i}?",
            "responses": [
                {"source_id": "strong", "content": f"A careful answer to {i}.", "private_metadata": {"true_score": 2}},
                {"source_id": "weak", "content": f"no idea {i}", "private_metadata": {"true_score": -2}},
            ],
        }
        for i in range(n)
    ]


@dataclass
class KindCase:
    """A flow of one kind whose items cannot fill while the test watches them (its maximum is above what the
    crowd can give), so an item is live until the test stops it."""

    create: Callable[[flowlab.Client], Any]
    batch: list[Any]
    per: str  # how the header words the thresholds
    max_total: int  # the item's maximum, counted over the whole item
    crowd: Callable[[ExitStack, ServerProcess, Any], None]
    matches_server: Callable[[Any, Any], None]  # (the view, the ended item): what is shown is what the server has
    view: str  # the kind's figure factory: the view class `view_for(kind)` names
    figures: tuple[str, ...]  # the titles of the figures its view draws, in order
    panels: tuple[str, ...]  # what its view reports empty or not (its figures' sources, a table's rows)


def _plain_crowd(stack: ExitStack, server: ServerProcess, flow: Any) -> None:
    stack.enter_context(SimulatedCrowd(server.url, server.api_key, annotators=6, rate=2400, seed=7))


def _chat_crowd(stack: ExitStack, server: ServerProcess, flow: Any) -> None:
    from flowlab.crowd import ChatScript

    # An edit of the first turn makes a second branch, so every conversation has a choice and a Likert point.
    script = ChatScript(turns=["Hello?"], edits=["Hi?"], judge=lambda reply, dims: {"helpfulness": len(reply) % 5 + 1})
    stack.enter_context(flow.serve_model(lambda m: "Short.", model="v1"))
    stack.enter_context(flow.serve_model(lambda m: "A longer reply.", model="v2"))
    stack.enter_context(SimulatedCrowd(server.url, server.api_key, annotators=3, seed=2, chat=script))


def _pairwise_matches(view: Any, item: Any) -> None:
    pd.testing.assert_frame_equal(view.heatmap.to_frame(), item.get_win_loss_matrix())
    assert view.ranking.keys_by_rank == item.get_results().ranking


def _classify_matches(view: Any, item: Any) -> None:
    shown = view.distribution.to_frame()
    for key, r in item.get_results().datapoints.items():
        assert {v: int(shown.loc[key].get(v, 0)) if key in shown.index else 0 for v in r.distribution} == r.distribution


def _per_model_matches(view: Any, item: Any) -> None:
    results = item.get_results()
    shown = view.rlhf.share_source.data
    assert dict(zip(shown["model"], shown["chosen"], strict=True)) == {m.source_id: m.selected for m in results.models}
    assert sum(view.rlhf.likert_source.data["count"]) == sum(sum(t.likert_distribution.values()) for t in results.tasks)


def _write_matches(view: Any, item: Any) -> None:
    results = item.get_results()
    shown = view.charts.count_source.data
    assert dict(zip(shown["prompt"], shown["count"], strict=True)) == {
        t.key: len(t.demonstrations) for t in results.tasks
    }
    assert [(r["prompt"], r["author"], r["chars"]) for r in view.rows] == [
        (t.key, d.annotator_id, d.chars) for t in results.tasks for d in t.demonstrations
    ]
    assert f"of {len(results.tasks)} prompts done" in view.notes and "★" not in view.notes, "no review, no best"


KIND_CASES: dict[str, KindCase] = {
    "pairwise": KindCase(
        create=lambda c: c.flow.create_ranking_flow(
            name="kinds: pairwise", instruction="?", max_response_threshold=9000
        ),
        batch=datapoints(4, "kp"),
        per="item",
        max_total=9000,
        crowd=_plain_crowd,
        matches_server=_pairwise_matches,
        view="PairwiseView",
        figures=("Win-loss matrix (row beat column)", "Ranking (Bradley–Terry, 95 % interval)"),
        panels=("win-loss matrix", "ranking"),
    ),
    "classify": KindCase(
        create=lambda c: c.flow.create_classify_flow(
            name="kinds: classify",
            instruction="Which animal?",
            categories=["cat", "dog", "bird"],
            max_responses_per_datapoint=20,  # six annotators, each answering a datapoint once: never full
            min_responses_per_datapoint=1,
        ),
        batch=[f"animal {i}" for i in range(4)],
        per="datapoint",
        max_total=4 * 20,
        crowd=_plain_crowd,
        matches_server=_classify_matches,
        view="ClassifyView",
        figures=("Answers per datapoint, by category",),
        panels=("answers by category",),
    ),
    "rlhf": KindCase(
        create=lambda c: c.flow.create_rlhf_flow("kinds: rlhf", "Which answer is better?", max_response_threshold=20),
        batch=rlhf_tasks(3),
        per="task",
        max_total=3 * 20,
        crowd=_plain_crowd,
        matches_server=_per_model_matches,
        view="RlhfView",
        figures=("Ratings per model (95 % CI)", "Chosen as the better response", "Preference strength (Likert)"),
        panels=("ratings", "chosen", "preference strength"),
    ),
    "chat": KindCase(
        create=lambda c: c.flow.create_chat_flow(
            "kinds: chat",
            "Chat.",
            models=["v1", "v2"],
            max_turns=1,
            dimensions=["helpfulness"],
            likert_scale=5,
            max_response_threshold=20,
        ),
        batch=[{"id": f"c{i}"} for i in range(3)],
        per="task",
        max_total=3 * 20,
        crowd=_chat_crowd,
        matches_server=_per_model_matches,
        view="ChatView",
        figures=("Ratings per model (95 % CI)", "Chosen as the better response", "Preference strength (Likert)"),
        panels=("ratings", "chosen", "preference strength"),
    ),
    "write": KindCase(
        create=lambda c: c.flow.create_write_flow("kinds: write", "Answer the prompt.", max_response_threshold=20),
        batch=[{"id": f"w{i}", "prompt": f"Say something about {i}.", "guidance": "One sentence."} for i in range(3)],
        per="prompt",
        max_total=3 * 20,
        crowd=_plain_crowd,
        matches_server=_write_matches,
        view="WriteView",
        figures=("Demonstrations per prompt", "Length and time on task"),
        panels=("demonstrations per prompt", "length and time on task", "demonstrations table"),
    ),
    "listwise": KindCase(
        create=lambda c: c.flow.create_listwise_flow(
            "kinds: listwise", "Order them, best first.", k=3, max_response_threshold=9000
        ),
        batch=datapoints(6, "kl"),  # twenty 3-sets: six annotators run out of unseen sets long before 9000
        per="item",
        max_total=9000,
        crowd=_plain_crowd,
        matches_server=_pairwise_matches,
        view="ListwiseView",
        figures=("Pairs the rankings imply (row above column)", "Ranking (Plackett–Luce, 95 % interval)"),
        panels=("win-loss matrix", "ranking"),
    ),
}


@pytest.fixture(scope="module")
def forgetful_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server that lets an item leave memory as soon as its final record is written, so reads of an ended
    item come from the database; every request is logged, so a 500 shows in the log."""
    from tests.conftest import ServerProcess

    server = ServerProcess(
        data_dir=tmp_path_factory.mktemp("forgetful"), extra_args=["--retain-ended", "0", "--access-log"]
    )
    server.start()
    yield server
    server.stop()


def dashboard_once(server: ServerProcess, flow_id: str) -> Any:
    """A dashboard session on `flow_id` after one refresh (the page's periodic callback, called once)."""
    from flowlab_widgets.dashboard import Dashboard

    async def main() -> Dashboard:
        board = Dashboard(server.url, server.api_key, flow_id=flow_id)
        try:
            await board.refresh()
        finally:
            await board.client.aclose()
        return board

    return in_fresh_thread(lambda: asyncio.run(main()))


def _selected(monitor: FlowMonitor) -> Any:
    snap = monitor.snapshot
    return next((s for s in snap.statuses if s.id == snap.item_id), None) if snap else None


def _assert_words_thresholds_as_its_kind(kind: str, case: KindCase, header: str) -> None:
    assert f"per {case.per}" in header, header
    assert ("pairs: uniform" in header) == (kind == "pairwise"), header
    assert ("k = 3 · whole order" in header) == (kind == "listwise"), header


def _assert_draws_its_kinds_figures(case: KindCase, view: Any, shown: list[Any]) -> None:
    """The kind's view, its figures in order (and nothing else) where the widget shows figures, its panels."""
    assert type(view).__name__ == case.view
    assert [f.title.text for f in view.figures] == list(case.figures)
    assert len(shown) == len(view.figures) and all(a is b for a, b in zip(shown, view.figures, strict=True))
    assert tuple(view.sources) == case.panels


def _monitor_figures(monitor: FlowMonitor) -> list[Any]:
    return [w._model for w in monitor.figure_widgets]


def _dashboard_figures(board: Any) -> list[Any]:
    """The figures in the dashboard's visible kind panel (its caption, a row of figures, its notes)."""
    (panel,) = [p for p in board.kind_panels.values() if p.column.visible]
    return [pane.object for pane in panel.column.objects[1].objects]


@pytest.mark.parametrize("kind", list(KIND_CASES))
def test_monitor_dashboard_and_browser_show_a_live_and_an_ended_item_of_every_kind(
    kind: str, forgetful_server: ServerProcess
) -> None:
    pytest.importorskip("panel")
    from flowlab_widgets.kinds import view_for

    server, case = forgetful_server, KIND_CASES[kind]
    log_start = len(server.log())
    client = server.client()
    flow = case.create(client)
    monitor = in_fresh_thread(lambda: FlowMonitor(flow, poll_interval=0.1))
    item = flow.create_new_flow_batch(case.batch, time_to_live=120)
    try:
        assert monitor.view.kind == kind and isinstance(monitor.view, view_for(kind))
        _assert_draws_its_kinds_figures(case, monitor.view, _monitor_figures(monitor))
        _assert_words_thresholds_as_its_kind(kind, case, monitor.header.value)
        # A kind without a matrix says so rather than drawing one empty.
        assert ("no win-loss matrix" in monitor.caption.value) != monitor.view.has_matrix

        with ExitStack() as crowd:
            case.crowd(crowd, server, flow)

            def drawn_while_live() -> bool:
                st = _selected(monitor)
                return (
                    st is not None
                    and not st.is_terminal
                    and st.response_count >= 2
                    and monitor._shown == (st.id, st.version)
                    and not monitor.view.empty_panels()
                )

            assert wait_until(drawn_while_live, timeout=60), (monitor.view.empty_panels(), _selected(monitor))
            row = monitor.item_rows[item.id]
            assert row.progress.max == case.max_total, "thresholds counted over the whole item"
            assert f"per {case.per}" in row.counts.value

            board = dashboard_once(server, flow.id)
            assert board.item_id == item.id and board.view is not None and board.view.kind == kind
            assert not board._statuses[-1].is_terminal
            assert not board.view.empty_panels(), board.view.empty_panels()
            assert [k for k, panel in board.kind_panels.items() if panel.column.visible] == [kind]
            _assert_draws_its_kinds_figures(case, board.view, _dashboard_figures(board))
            _assert_words_thresholds_as_its_kind(kind, case, board.header.object)
            assert "color:#b91c1c" not in board.message.object, board.message.object

        item.stop()
        assert wait_until(lambda: httpx.get(f"{server.url}/v1/health").json()["live_items"] == 0, timeout=20), (
            "the ended item should leave memory at once (--retain-ended 0)"
        )
        assert wait_until(lambda: "Stopped" in monitor.item_rows[item.id].state_html.value, timeout=20)

        # Ended and out of memory: a monitor opened from the FlowBrowser and a new dashboard session read it back
        # from the database.
        browser = FlowBrowser(client, amount=100, monitor_options={"live": False})
        try:
            label = next(text for text, value in browser.flow_list.options if value == flow.id)
            assert kind in label and f"per {case.per}" in label, label
            browser.flow_list.value = flow.id
            browser.open_button.click()
            opened = browser.monitor
            assert opened.view.kind == kind and opened.selected_item_id == item.id
            _assert_draws_its_kinds_figures(case, opened.view, _monitor_figures(opened))
            assert "color:#b91c1c" not in opened.message.value, opened.message.value
            assert not opened.view.empty_panels(), opened.view.empty_panels()
            assert "Stopped" in opened.item_rows[item.id].state_html.value
            case.matches_server(opened.view, item)
        finally:
            browser.close()
        board = dashboard_once(server, flow.id)
        assert board.item_id == item.id and board._statuses[-1].is_terminal
        assert "color:#b91c1c" not in board.message.object, board.message.object
        assert not board.view.empty_panels(), board.view.empty_panels()
        _assert_draws_its_kinds_figures(case, board.view, _dashboard_figures(board))
        case.matches_server(board.view, item)
    finally:
        monitor.close()
        with contextlib.suppress(flowlab.FlowlabError):
            item.stop()
        client.close()
    log = server.log()[log_start:]
    assert "Traceback" not in log and " 500 " not in log, log[-4000:]


def test_every_kind_names_its_figure_factory_and_each_draws_its_own_figures() -> None:
    """No server: every kind the server knows has a view (its figure factory, `view_for(kind)`), each builds
    the figures its case lists, and a view with nothing read yet reports every panel empty."""
    from flowlab_widgets.kinds import VIEWS, view_for

    from flowlab.schemas import TaskKindName

    assert set(KIND_CASES) == set(VIEWS) == set(typing.get_args(TaskKindName)), "a case per kind"
    drawn = {}
    for kind, case in KIND_CASES.items():
        view = view_for(kind)(width=600, height=300)
        assert view.kind == kind
        _assert_draws_its_kinds_figures(case, view, view.figures)
        assert view.empty_panels() == list(case.panels)
        drawn[kind] = case.figures
    assert len(set(drawn.values())) == len(drawn) - 1, "only RLHF and chat share their figures (per-model ratings)"


def test_a_kind_without_a_view_gets_its_results_as_a_table() -> None:
    from flowlab_widgets.kinds import KindView, Reading, read_item, view_for

    view_class = view_for("essay")  # a kind a newer server might have
    assert issubclass(view_class, KindView) and view_class.kind == "essay"
    assert view_for("essay") is view_class
    assert "essay" in view_class.caption and "table" in view_class.caption
    view = view_class()
    assert view.figures == [] and view.empty_panels() == ["results table"]

    class Result:
        def to_dataframe(self) -> pd.DataFrame:
            return pd.DataFrame({"key": ["a", XSS_WHY], "score": [1.0, 2.0]})

    class Item:
        def get_results(self, *, timeout: float, partial: bool) -> Result:
            assert (timeout, partial) == (0, True), "a view never waits for an item to end"
            return Result()

    view.show(read_item(view, Item()))
    assert view.empty_panels() == []
    assert "<table" in view.notes and "&lt;img" in view.notes and "<img" not in view.notes
    status = SimpleNamespace(response_count=3, min_response_threshold=2, max_response_threshold=5, n_datapoints=4)
    assert view_class.progress(status).max == 5
    # A failing results read is reported, not raised: the rest of the page still shows.
    failing = SimpleNamespace(get_results=lambda **_: (_ for _ in ()).throw(flowlab.NotFound(404, "gone")))
    reading = read_item(view, failing)
    assert isinstance(reading, Reading) and reading.errors and reading.get("result") is None

    # The dashboard gives such a flow a panel of its own: the table, no figures, the other kinds' panels hidden.
    pytest.importorskip("panel")
    from flowlab_widgets.dashboard import Dashboard

    board = Dashboard("http://127.0.0.1:9", "fl_key_unused")
    board._show_kind(SimpleNamespace(kind="pairwise"))
    shown, panel = board._show_kind(SimpleNamespace(kind="essay"))
    assert shown.kind == "essay" and shown.figures == [] and "essay" in panel.caption.object
    assert [k for k, p in board.kind_panels.items() if p.column.visible] == ["essay"]


def test_kind_names_appear_only_in_the_kinds_views() -> None:
    """The seam: the dashboard, FlowMonitor and FlowBrowser ask `view_for(kind)`; no other widget module names
    a kind (the check the issue gives, as a test)."""
    import re
    from pathlib import Path

    import flowlab_widgets

    root = Path(flowlab_widgets.__file__).parent
    named = re.compile(r'"(pairwise|classify|rlhf|chat|listwise|write)"')
    offenders = [
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and "kinds" not in p.relative_to(root).parts and named.search(p.read_text(errors="replace"))
    ]
    assert offenders == []
    from flowlab_widgets.kinds import VIEWS

    from flowlab.schemas import TaskKindName

    assert set(VIEWS) == set(typing.get_args(TaskKindName)), "every kind the server knows has a view"


def test_rlhf_text_reaches_the_widgets_escaped() -> None:
    from flowlab_widgets.figures import RlhfCharts
    from flowlab_widgets.kinds import Reading, view_for

    from flowlab import schemas
    from flowlab.client._models import FlowItemState, RlhfFlowItemResult

    task = schemas.RlhfTaskResult(
        key="t", index=0, annotations=1, responses=[], likert_mean=None, likert_distribution={}, justifications=[]
    )
    task.justifications.append(XSS_WHY)
    result = RlhfFlowItemResult("i", FlowItemState.COMPLETED, 1, False, [task], [], {}, 1)
    charts = RlhfCharts()
    charts.update(result)
    assert charts.latest_justifications == [XSS_WHY], "handed back as plain text"
    view = view_for("rlhf")()
    view.show(Reading(values={"result": result}))
    assert "<img" not in view.notes and "&lt;img" in view.notes, "shown escaped, as text"


def test_monitor_follows_the_flow_over_sse_on_the_event_loop(
    flowlab_server: ServerProcess, client: flowlab.Client, crowd: SimulatedCrowd
) -> None:
    flow = client.flow.create_ranking_flow(
        name="monitor sse", instruction="Which is better?", max_response_threshold=50, min_response_threshold=10
    )

    async def main() -> FlowMonitor:
        monitor = FlowMonitor(flow, throttle=0.2)  # created inside a running loop, as in a kernel
        assert monitor.live.mode == "sse"
        await asyncio.sleep(0.3)
        item = flow.create_new_flow_batch(datapoints=datapoints(4, "sse"), time_to_live=30)
        assert await monitor.wait_until_done(timeout=30), monitor.live.error
        assert monitor.selected_item_id == item.id
        assert monitor.response_count == item.get_response_count() == 50
        pd.testing.assert_frame_equal(monitor.heatmap.to_frame(), item.get_win_loss_matrix())
        monitor.stop()
        return monitor

    monitor = in_fresh_thread(lambda: asyncio.run(main()))
    assert monitor.live.mode == "off"
    assert monitor.live.events > 0, "the monitor should have heard the flow's server-sent events"
    assert monitor.live.error is None
    # Throttled: far fewer refreshes than votes.
    assert 1 <= monitor.live.refreshes < 50
    monitor.close()


def test_monitor_falls_back_to_polling_when_the_stream_fails(client: flowlab.Client) -> None:
    flow = client.flow.create_ranking_flow(name="monitor fallback", instruction="Which?", max_response_threshold=5)
    item = flow.create_new_flow_batch(datapoints=datapoints(3, "fb"), time_to_live=30)

    async def broken_stream() -> Any:
        raise flowlab.ConnectError("no stream today")
        yield  # pragma: no cover - makes this an async generator

    async def main() -> FlowMonitor:
        monitor = FlowMonitor(flow, live=False, poll_interval=0.1)
        monitor.live.subscribe = broken_stream
        monitor.live.start()
        assert await monitor.wait_for(lambda m: m.live.mode == "polling", timeout=5)
        refreshes = monitor.live.refreshes
        assert await monitor.wait_for(lambda m: m.live.refreshes >= refreshes + 2, timeout=5)
        monitor.stop()
        return monitor

    monitor = in_fresh_thread(lambda: asyncio.run(main()))
    assert isinstance(monitor.live.error, flowlab.ConnectError)
    assert monitor.selected_item_id == item.id
    monitor.close()


def test_instruction_editor_calls_update_config_and_only_new_items_pick_it_up(client: flowlab.Client) -> None:
    flow = client.flow.create_ranking_flow(name="editor", instruction="Which is better?", max_response_threshold=20)
    old = flow.create_new_flow_batch(datapoints=datapoints(3, "old"), time_to_live=60)
    monitor = FlowMonitor(flow, live=False)
    try:
        assert monitor.instruction_input.value == "Which is better?"
        monitor.instruction_input.value = "Which one is more factual?"
        monitor.update_button.click()

        config = client.flow.get_flow_by_id(flow.id).config
        assert config.instruction == "Which one is more factual?"
        assert config.config_version == 2
        assert "config v2" in monitor.message.value and "existing item" in monitor.message.value

        new = flow.create_new_flow_batch(datapoints=datapoints(3, "new"), time_to_live=60)
        assert old.get_progress().instruction == "Which is better?"
        assert new.get_progress().instruction == "Which one is more factual?"
        monitor.refresh()
        assert "older" in monitor.item_rows[old.id].instruction.value
        assert "older" not in monitor.item_rows[new.id].instruction.value
        assert monitor.selected_item_id == new.id  # follows the newest item

        monitor.instruction_input.value = "   "
        monitor.update_button.click()
        assert "cannot be empty" in monitor.message.value
        assert client.flow.get_flow_by_id(flow.id).config.config_version == 2
    finally:
        monitor.close()


def test_monitor_shows_a_countdown_and_can_switch_items(client: flowlab.Client) -> None:
    flow = client.flow.create_ranking_flow(name="countdown", instruction="Which?", max_response_threshold=20)
    first = flow.create_new_flow_batch(datapoints=datapoints(3, "a"), time_to_live=120)
    second = flow.create_new_flow_batch(datapoints=datapoints(4, "b"), time_to_live=120)
    monitor = FlowMonitor(flow, live=False)
    try:
        assert "left" in monitor.item_rows[first.id].ttl.value
        assert monitor.selected_item_id == second.id
        monitor.item_picker.value = first.id
        assert monitor.selected_item_id == first.id
        assert monitor.heatmap.keys == first.keys
    finally:
        monitor.close()


# ---------------------------------------------------------------- FlowBrowser


def test_flow_browser_lists_opens_and_deletes(client: flowlab.Client) -> None:
    flow = client.flow.create_ranking_flow(name="browse me", instruction="Which?", max_response_threshold=10)
    browser = FlowBrowser(client, amount=50, monitor_options={"live": False})
    try:
        assert flow.id in [value for _label, value in browser.flow_list.options]
        browser.flow_list.value = flow.id
        browser.open_button.click()  # FlowBrowser.open_flow(): `open()` is ipywidgets' own, which opens the comm
        assert isinstance(browser.monitor, FlowMonitor) and browser.monitor.flow.id == flow.id
        assert browser.monitor_area.children == (browser.monitor,)

        browser.delete_button.click()  # arms
        assert browser.delete_button.description == "Confirm delete"
        assert flow.id in [f.id for f in client.flow.find_flows(amount=50)]
        browser.delete_button.click()  # deletes
        assert flow.id not in [f.id for f in client.flow.find_flows(amount=50)]
        assert flow.id not in [value for _label, value in browser.flow_list.options]
        assert browser.monitor is None
    finally:
        if browser.monitor is not None:
            browser.monitor.close()


# ---------------------------------------------------------------- RankingExplorer


def _synthetic_votes(seed: int = 0, n_votes: int = 1200) -> pd.DataFrame:
    """Votes on 6 datapoints by 8 careful annotators and 4 random clickers."""
    rng = np.random.default_rng(seed)
    truth = np.linspace(-3.0, 3.0, 6)
    rows = []
    for _ in range(n_votes):
        a, b = rng.choice(6, size=2, replace=False)
        annotator = int(rng.integers(12))
        p_a = 0.5 if annotator >= 8 else 1 / (1 + np.exp(truth[b] - truth[a]))
        a_wins = rng.random() < p_a
        w, lo = (a, b) if a_wins else (b, a)
        rows.append({"annotator_id": f"ann{annotator}", "winner": int(w), "loser": int(lo), "tie": False})
    return pd.DataFrame(rows)


def test_ranking_explorer_compares_elo_and_bradley_terry() -> None:
    keys = [f"k{i}" for i in range(6)]
    explorer = RankingExplorer(votes=_synthetic_votes(), keys=keys, n_bootstrap=30)
    fit = explorer.fit
    assert fit is not None
    ranked = explorer.bt_chart.keys_by_rank
    assert "k5" in ranked[:2] and "k0" in ranked[-2:], ranked
    assert fit.kendall_tau > 0.6
    # Both charts share the y-axis, in Bradley–Terry order.
    assert explorer.bt_chart.figure.y_range is explorer.elo_chart.figure.y_range
    assert list(explorer.bt_chart.figure.y_range.factors) == list(reversed(explorer.bt_chart.keys_by_rank))

    spread = np.ptp(fit.elo.ratings)
    explorer.k_slider.value = 48
    assert np.ptp(explorer.fit.elo.ratings) > spread  # a bigger K moves ratings further

    wide = np.mean(explorer.fit.bt.ci_high - explorer.fit.bt.ci_low)
    explorer.prior_slider.value = 5.0
    assert np.mean(explorer.fit.bt.ci_high - explorer.fit.bt.ci_low) < wide  # a strong prior shrinks

    explorer.prior_slider.value = 0.1
    explorer.weighting.value = True
    weighted = explorer.fit
    assert weighted.reliability is not None and len(weighted.reliability) == 12
    reliability = dict(zip(explorer.annotator_ids, weighted.reliability, strict=True))
    careful = [reliability[f"ann{i}"] for i in range(8)]
    random_clickers = [reliability[f"ann{i}"] for i in range(8, 12)]
    assert min(careful) > max(random_clickers), reliability
    frame = explorer.to_dataframe()
    assert list(frame.columns[:4]) == ["bt_rank", "bt_score", "bt_low", "bt_high"]
    assert "reliability" in explorer.annotator_table.value


def test_ranking_explorer_reads_a_flow_item(client: flowlab.Client, crowd: SimulatedCrowd) -> None:
    flow = client.flow.create_ranking_flow(name="explore", instruction="Which?", max_response_threshold=40)
    item = flow.create_new_flow_batch(datapoints=datapoints(4, "ex"), time_to_live=30)
    item.get_results(timeout=30)
    explorer = RankingExplorer(item, n_bootstrap=20)
    assert explorer.datapoint_keys == item.keys
    assert int(np.sum(explorer.fit.bt.votes)) == 2 * item.get_response_count()


# ---------------------------------------------------------------- dashboard (app logic; the page is a browser test)


def test_dashboard_refresh_shows_the_flow_its_items_and_figures(
    flowlab_server: ServerProcess, client: flowlab.Client, crowd: SimulatedCrowd
) -> None:
    pytest.importorskip("panel")
    from flowlab_widgets.dashboard import Dashboard

    flow = client.flow.create_ranking_flow(
        name="dashboard logic", instruction="Which is clearer?", max_response_threshold=30
    )
    item = flow.create_new_flow_batch(datapoints=datapoints(4, "dash"), time_to_live=30)
    item.get_results(timeout=30)

    async def main() -> Dashboard:
        board = Dashboard(flowlab_server.url, flowlab_server.api_key, flow_id=flow.id)
        await board.refresh()
        await board.client.aclose()
        return board

    board = in_fresh_thread(lambda: asyncio.run(main()))
    assert board.refreshes == 1
    assert board.item_id == item.id
    assert not board.save_button.disabled
    assert 'class="flowlab-count"' in board.counts.object and ">30<" in board.counts.object
    assert item.id in board.items_table.object
    pd.testing.assert_frame_equal(board.view.heatmap.to_frame(), item.get_win_loss_matrix())
    assert board.view.ranking.keys_by_rank == item.get_results().ranking
    assert board.throughput.last_count == 30
    assert board.instruction.value == "Which is clearer?"
    assert board.annotators.source.data["votes"]


def test_dashboard_opens_on_the_newest_item_with_votes() -> None:
    pytest.importorskip("panel")
    from flowlab_widgets.dashboard import Dashboard

    def item(item_id: str, votes: int) -> SimpleNamespace:
        status = SimpleNamespace(id=item_id, state="Running", response_count=votes, version=votes)
        return SimpleNamespace(id=item_id, last_status=status)

    board = Dashboard("http://127.0.0.1:9", "fl_key_unused")
    board._statuses = []
    picked = board._pick_item([item("old", 40), item("voted", 12), item("just-pushed", 0)])
    assert picked.id == "voted", "a batch just pushed would show an all-zero heatmap"
    assert board._pick_item([item("a", 0), item("b", 0)]).id == "b", "with no votes anywhere, the newest"


def test_dashboard_without_flows_offers_no_editor(flowlab_server: ServerProcess) -> None:
    pytest.importorskip("panel")
    from flowlab_widgets.dashboard import Dashboard

    async def main() -> Dashboard:
        # A researcher with no flows yet sees the empty state, and nothing to save.
        key = (
            await flowlab.AsyncClient(url=flowlab_server.url, api_key=flowlab_server.api_key).create_api_key("new")
        ).key
        board = Dashboard(flowlab_server.url, key)
        await board.refresh()
        await board.client.aclose()
        return board

    board = in_fresh_thread(lambda: asyncio.run(main()))
    assert "No flows yet" in board.header.object
    assert board.save_button.disabled and board.instruction.disabled


def test_proxy_entry_point_launches_the_dashboard() -> None:
    from importlib.metadata import entry_points

    from flowlab_widgets.proxy import setup_dashboard

    (ep,) = [ep for ep in entry_points(group="jupyter_serverproxy_servers") if ep.name == "flowlab-dashboard"]
    config = ep.load()()
    assert config == setup_dashboard()
    assert config["command"][-3:] == ["dashboard", "--port", "{port}"]
    assert config["launcher_entry"]["title"] == "flowlab dashboard"
    assert config["environment"]["FLOWLAB_DASHBOARD_PREFIX"] == "{base_url}flowlab-dashboard"
    assert config["absolute_url"] is True


def test_monitor_keeps_an_old_selected_item_and_closes_rows_that_scroll_away(flowlab_server: Any) -> None:
    from flowlab_widgets import FlowMonitor

    client = flowlab_server.client()
    flow = client.flow.create_ranking_flow(name="many items", instruction="Which?", max_response_threshold=3)
    first = flow.create_new_flow_batch(datapoints=["a", "b"], time_to_live=60)
    flow.create_new_flow_batch(datapoints=["a", "b"], time_to_live=60)  # so `first` is not the latest
    monitor = FlowMonitor(flow, live=False, max_items=2)
    try:
        monitor.select(first)
        for _ in range(3):
            flow.create_new_flow_batch(datapoints=["c", "d"], time_to_live=60)
        monitor.refresh()
        assert monitor.selected_item_id == first.id
        assert first.id in [value for _, value in monitor.item_picker.options]
        assert len(monitor.item_rows) == 2, "rows that scrolled out of the list were closed and dropped"
    finally:
        monitor.close()
        for item in flow.get_flow_items(amount=None):
            item.stop()


def test_no_workbench_widget_shadows_an_ipywidgets_method() -> None:
    """A widget that redefines one of ipywidgets' own methods breaks it in the frontend: FlowBrowser.open()
    replaced Widget.open(), which creates the comm, and JupyterLab then said "model not found". Only close()
    may be extended (each one calls super().close())."""
    import importlib
    import inspect
    import pkgutil

    import flowlab_widgets
    import ipywidgets

    base = {name for cls in (ipywidgets.DOMWidget, ipywidgets.Box) for name in dir(cls)} - {"close"}
    for info in pkgutil.iter_modules(flowlab_widgets.__path__):
        module = importlib.import_module(f"flowlab_widgets.{info.name}")
        for cls in vars(module).values():
            if inspect.isclass(cls) and issubclass(cls, ipywidgets.Widget) and cls.__module__ == module.__name__:
                own = {name for name, value in vars(cls).items() if callable(value) and not name.startswith("__")}
                assert not own & base, f"{cls.__name__} redefines ipywidgets' {sorted(own & base)}"


def test_explorer_table_headers_line_up_with_their_columns() -> None:
    import re

    from flowlab_widgets import RankingExplorer

    votes = pd.DataFrame(
        {"annotator_id": ["p", "q", "p", "q"], "winner": [0, 1, 0, 2], "loser": [1, 2, 2, 0], "tie": [False] * 4}
    )
    explorer = RankingExplorer(votes=votes, keys=["x", "y", "z"])
    table = explorer.annotator_table.value
    header = re.search(r"<tr>(<th.*?)</tr>", table)
    first = re.search(r"<tr>(<td.*?)</tr>", table)
    assert header and first
    aligns = lambda row: re.findall(r"text-align:(\w+)", row)  # noqa: E731
    assert aligns(header[1]) == aligns(first[1]) and len(aligns(header[1])) == 5


def test_a_reviewed_write_item_marks_the_best_demonstration_per_prompt_and_escapes_what_people_wrote(
    client: flowlab.Client,
) -> None:
    from flowlab_widgets.kinds import read_item, view_for

    review = client.flow.create_rlhf_flow(
        "widgets: review", "Which answer is better?", justification="off", rewrite="off", max_response_threshold=2
    )
    flow = client.flow.create_write_flow("widgets: write", "Answer.", max_response_threshold=2, review=review)
    item = flow.create_new_flow_batch(
        [{"id": "q1", "prompt": "What is 2 + 2?"}, {"id": "q2", "prompt": "Name a colour."}], time_to_live=60
    )
    view = view_for("write")()
    view.show(read_item(view, item))  # live: no best yet, and waiting for one is no error
    assert "★" not in view.notes and view.rows == []
    with SimulatedCrowd(client.url, client.api_key, annotators=6, rate=6000, accuracy=1.0, seed=4):
        best = item.best_demonstrations(timeout=60)
    reading = read_item(view, item)
    assert reading.errors == [] and reading.get("best") == best
    view.show(reading)
    assert not view.empty_panels()
    assert "<b>2</b> of 2 prompts done" in view.notes and "median" in view.notes
    marked = {(r["prompt"], r["author"]) for r in view.rows if r["best"]}
    assert marked == {(b["key"], b["annotator_id"]) for b in best} and len(marked) == 2
    assert view.notes.count("<td>★</td>") == 2

    from flowlab_widgets.kinds.write import table_html

    rows = [dict(view.rows[0], text=XSS_WHY, author=XSS_WHY)]
    shown = table_html(rows, reviewed=False)
    assert "<img" not in shown and "&lt;img" in shown, "what people wrote is shown as text"
