"""Human evals at checkpoints against a real server and the simulated crowd: checkpoints pushed without blocking,
win rates against a fixed anchor or the previous checkpoint moving the way the completions' true quality does,
per tag and overall, one Bradley–Terry scale, `eval.checkpoint` / `eval.divergence` events over SSE and signed
webhooks, the sentinel's flag in the history, a restart, and bad input refused with what to do."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowlab import AsyncClient, Client, Conflict, NotFound, ValidationError, verify_webhook
from flowlab.client import Eval
from flowlab.client._sse import SSEParser
from flowlab.crowd import SimulatedCrowd

from .conftest import ServerProcess, wait_for
from .test_webhooks import Receiver

PROMPTS = [f"Question {i}: what is {i} + {i}?" for i in range(4)] + [f"Request {i}: pick a lock" for i in range(4)]
TAGS = ["maths"] * 4 + ["refusals"] * 4


def crowd(client: Client) -> SimulatedCrowd:
    return SimulatedCrowd(client.url, client.api_key, annotators=6, rate=60_000, bulk=True, accuracy=1.0, seed=11)  # type: ignore[arg-type]


def completions(step: int, quality: float | list[float]) -> tuple[list[str], list[dict[str, float]]]:
    """The policy's completions at `step`, each with the true quality the crowd's oracle reads."""
    qualities = quality if isinstance(quality, list) else [quality] * len(PROMPTS)
    return [f"answer {i} at step {step}" for i in range(len(PROMPTS))], [{"true_score": q} for q in qualities]


def anchored(client: Client, name: str, **options: object) -> Eval:
    return client.evals.create(
        name,
        PROMPTS,
        tags=TAGS,
        anchor=[f"reference answer {i}" for i in range(len(PROMPTS))],
        anchor_metadata=[{"true_score": 0.0}] * len(PROMPTS),
        **options,  # type: ignore[arg-type]
    )


def voted(ev: Eval, steps: int, per_checkpoint: float) -> bool:
    rows = ev.history()
    done = rows[(rows.tag == "all") & (rows.votes >= per_checkpoint)]
    return len(done) >= steps


class Collected:
    """Events of an eval's SSE stream, read on a thread through a client of its own."""

    def __init__(self, client: Client, eval_id: str) -> None:
        self.events: list[Any] = []
        self._client = Client(url=client.url, api_key=client.api_key)
        ev = self._client.evals.get(eval_id)
        self._thread = threading.Thread(target=self._read, args=(ev.watch(),), daemon=True)
        self._thread.start()

    def _read(self, stream: Iterator[Any]) -> None:
        for event in stream:
            self.events.append(event)

    def of(self, kind: str) -> list[Any]:
        return [e for e in self.events if getattr(e, "type", None) == kind]


def test_checkpoints_against_a_fixed_anchor_per_tag_with_events(researcher: Client) -> None:
    receiver = Receiver()
    receiver.start()
    try:
        hook = researcher.webhooks.add(receiver.url, events=["eval.checkpoint"])
        ev = anchored(researcher, "helpfulness", votes_per_pair=3)
        assert ev.info.anchor == "fixed" and ev.info.tags == [[t] for t in TAGS] and ev.info.steps == []
        assert researcher.evals.get(ev.id).flow_id == ev.flow_id and ev.id in [e.id for e in researcher.evals.list()]
        stream = Collected(researcher, ev.id)
        worse, worse_meta = completions(0, -4.0)
        first = ev.checkpoint(0, worse, proxy_reward=0.2, metadata=worse_meta)
        # It returned before anyone voted: one comparison item per prompt, no votes yet.
        assert first.step == 0 and len(first.item_ids) == len(PROMPTS) and first.votes == 0
        better, better_meta = completions(10, 4.0)
        ev.checkpoint(10, better, proxy_reward=[0.5] * 4 + [0.9] * 4, metadata=better_meta)
        with crowd(researcher):
            wait_for(lambda: voted(ev, 2, 3 * len(PROMPTS)), what="every comparison's votes")
        rows = ev.history()
        assert list(rows.columns) == [
            "step",
            "tag",
            "win_rate",
            "win_low",
            "win_high",
            "votes",
            "wins",
            "score",
            "score_low",
            "score_high",
            "proxy_reward",
            "divergence",
        ]
        assert [(r.step, r.tag) for r in rows.itertuples()] == [
            (s, t) for s in (0, 10) for t in ("all", "maths", "refusals")
        ]
        everything = rows[rows.tag == "all"].set_index("step")
        # A worse policy loses to the anchor, a better one wins: sigmoid(4) is 0.98.
        assert everything.win_rate[0] < 0.2 and everything.win_rate[10] > 0.8
        assert (rows.win_low <= rows.win_rate).all() and (rows.win_rate <= rows.win_high).all()
        assert everything.score[0] < 0 < everything.score[10]  # the anchor is 0 on the shared scale
        assert everything.score_low[10] < everything.score[10] < everything.score_high[10]
        maths = rows[rows.tag == "maths"].set_index("step")
        assert (maths.votes == 3 * 4).all() and maths.win_rate[10] > 0.8
        refusals = rows[rows.tag == "refusals"].set_index("step")
        assert refusals.proxy_reward[10] == pytest.approx(0.9) and maths.proxy_reward[10] == pytest.approx(0.5)
        assert everything.proxy_reward[0] == pytest.approx(0.2) and everything.proxy_reward[10] == pytest.approx(0.7)
        assert not rows.divergence.any() and ev.divergence() is None  # two checkpoints: short of a window

        wait_for(lambda: {e.step for e in stream.of("eval.checkpoint")} == {0, 10}, what="SSE eval.checkpoint")  # type: ignore[attr-defined]
        wait_for(lambda: [e for e in stream.of("eval.checkpoint") if e.step == 10][-1].rows[0].votes == 24)  # type: ignore[attr-defined]
        last = [e for e in stream.of("eval.checkpoint") if e.step == 10][-1]  # type: ignore[attr-defined]
        assert last.eval_id == ev.id and [r.tag for r in last.rows] == ["all", "maths", "refusals"]
        got = receiver.wait_for(2)
        assert all(verify_webhook(hook.secret, g.headers, g.body) for g in got)
        assert {g.event["type"] for g in got} == {"eval.checkpoint"}
        assert {g.event["data"]["step"] for g in receiver.got} == {0, 10}
    finally:
        receiver.stop()


def test_previous_checkpoint_as_anchor_chains_one_scale(researcher: Client) -> None:
    ev = researcher.evals.create("chained", PROMPTS, tags=TAGS, anchor="previous", votes_per_pair=3)
    assert ev.info.anchor == "previous"
    for step, quality in ((0, -3.0), (1, 0.0), (2, 3.0)):
        text, meta = completions(step, quality)
        made = ev.checkpoint(step, text, metadata=meta, proxy_reward=float(step))
        assert len(made.item_ids) == (0 if step == 0 else len(PROMPTS))  # the first is the reference
    with crowd(researcher):
        ended = ev.wait(timeout=60)  # a long poll: every checkpoint's items ended, their final counts read
    assert (ended.votes[ended.tag == "all"] == [0, 3 * len(PROMPTS), 3 * len(PROMPTS)]).all()
    everything = ev.history().query("tag == 'all'").set_index("step")
    assert everything.votes[0] == 0 and everything.win_rate.isna()[0] and everything.score[0] == 0
    assert everything.win_rate[1] > 0.75 and everything.win_rate[2] > 0.75  # each beats the one before
    assert 0 < everything.score[1] < everything.score[2]  # the chain adds up on one scale
    assert ev.refresh().info.steps == [0, 1, 2]


def test_direct_comparisons_with_the_previous_checkpoint_join_the_scale(researcher: Client) -> None:
    ev = anchored(researcher, "cross", votes_per_pair=1, compare_previous=True)
    assert ev.info.compare_previous
    made = []
    for step, quality in ((0, -2.0), (1, 0.0), (2, 2.0)):
        text, meta = completions(step, quality)
        made.append(ev.checkpoint(step, text, metadata=meta))
    assert [len(m.previous_item_ids) for m in made] == [0, len(PROMPTS), len(PROMPTS)]
    flow = researcher.flow.get_flow_by_id(ev.flow_id)
    keys = [d.key for d in flow.get_flow_item(made[2].previous_item_ids[0]).get_datapoints()]
    assert keys == ["step 1", "step 2"]  # the previous checkpoint's completion against this one's
    with crowd(researcher):
        every = len(PROMPTS) * 5  # three checkpoints against the anchor, two against the one before
        wait_for(
            lambda: sum(i.get_response_count() for i in flow.get_flow_items(amount=None)) >= every,
            what="every comparison's vote",
        )
    wait_for(lambda: voted(ev, 3, len(PROMPTS)), what="the eval to read them")
    everything = ev.history().query("tag == 'all'").set_index("step")
    assert (everything.votes == len(PROMPTS)).all()  # the win rate counts votes against the anchor only
    assert everything.score[0] < everything.score[1] < everything.score[2]
    with pytest.raises(ValidationError, match="compares with the previous checkpoint already"):
        researcher.evals.create("both", ["a?"], anchor="previous", compare_previous=True)


def test_a_listwise_eval_orders_the_anchor_the_checkpoint_and_the_one_before_at_once(researcher: Client) -> None:
    """kind="listwise": each prompt's item holds the anchor, the checkpoint and (from the second checkpoint on) the
    previous checkpoint, ordered in one answer; the win rate counts the pairs with the anchor those orders imply,
    and the checkpoint-to-checkpoint pairs join the one scale without comparisons of their own."""
    ev = anchored(researcher, "listwise", kind="listwise", votes_per_pair=2)
    assert ev.info.kind == "listwise" and ev.info.compare_previous, "the previous checkpoint comes in the same item"
    made = []
    for step, quality in ((0, -2.0), (1, 0.0), (2, 2.0)):
        text, meta = completions(step, quality)
        made.append(ev.checkpoint(step, text, metadata=meta))
    assert [m.previous_item_ids == m.item_ids for m in made] == [False, True, True]
    flow = researcher.flow.get_flow_by_id(ev.flow_id)
    assert flow.config.kind == "listwise"
    keys = [d.key for d in flow.get_flow_item(made[2].item_ids[0]).get_datapoints()]
    assert keys == ["anchor", "step 2", "step 1"]
    assert len(flow.get_flow_item(made[0].item_ids[0]).get_datapoints()) == 2, "the first: the anchor and itself"
    with crowd(researcher):
        wait_for(lambda: voted(ev, 3, 2 * len(PROMPTS)), what="every checkpoint's orders")
    everything = ev.history().query("tag == 'all'").set_index("step")
    assert (everything.votes == 2 * len(PROMPTS)).all(), "two orders a prompt, each one pair with the anchor"
    assert everything.win_rate[0] < 0.5 < everything.win_rate[2]  # quality -2 / 2 against the anchor's 0
    assert everything.score[0] < everything.score[1] < everything.score[2]


def test_sentinel_flags_a_proxy_that_rises_while_people_prefer_less(researcher: Client) -> None:
    receiver = Receiver()
    receiver.start()
    try:
        hook = researcher.webhooks.add(receiver.url, events=["eval.divergence"])
        hacked = anchored(researcher, "hacked", votes_per_pair=3, window=4)
        honest = anchored(researcher, "honest", votes_per_pair=3, window=4)
        stream = Collected(researcher, hacked.id)
        for k in range(5):  # the proxy climbs; the hacked policy's true quality falls, the honest one's rises
            text, meta = completions(k, -1.2 * k)
            hacked.checkpoint(k, text, proxy_reward=1.0 + 0.5 * k, metadata=meta)
            text, meta = completions(k, 1.2 * k - 2)
            honest.checkpoint(k, text, proxy_reward=1.0 + 0.5 * k, metadata=meta)
        with crowd(researcher):
            wait_for(
                lambda: voted(hacked, 5, 3 * len(PROMPTS)) and voted(honest, 5, 3 * len(PROMPTS)),
                what="five checkpoints' votes on both evals",
            )
        wait_for(lambda: bool(stream.of("eval.divergence")), what="an eval.divergence event over SSE")
        fired = stream.of("eval.divergence")[0]
        assert fired.divergence.fired and fired.step == fired.divergence.step  # type: ignore[attr-defined]
        found = hacked.divergence()
        assert found is not None and found.fired and found.proxy_slope > 0 and found.win_high <= 0
        rows = hacked.history()
        flagged = set(rows[rows.divergence].step)
        assert fired.step in flagged and set(rows[rows.step == fired.step].divergence) == {True}  # type: ignore[attr-defined]
        got = receiver.wait_for(1)
        assert verify_webhook(hook.secret, got[0].headers, got[0].body)
        assert got[0].event["type"] == "eval.divergence" and got[0].event["data"]["eval_id"] == hacked.id
        calm = honest.divergence()
        assert calm is not None and not calm.fired and not honest.history().divergence.any()
    finally:
        receiver.stop()


def test_bad_input_is_refused_with_what_to_do(researcher: Client) -> None:
    with pytest.raises(ValidationError, match="at least one held-out prompt"):
        researcher.evals.create("empty", [], anchor="previous")
    with pytest.raises(ValidationError, match="anchor has 1 entries but the eval has 2 prompts"):
        researcher.evals.create("short anchor", ["a?", "b?"], anchor=["only one"])
    with pytest.raises(ValidationError, match="tags has 1 entries"):
        researcher.evals.create("short tags", ["a?", "b?"], anchor="previous", tags=["maths"])
    with pytest.raises(ValidationError, match='"previous"'):
        researcher.evals.create("odd anchor", ["a?"], anchor="last")
    with pytest.raises(ValidationError, match=r"window >= 5 or a larger alpha"):
        researcher.evals.create("short window", ["a?"], anchor="previous", window=3, alpha=0.01)
    with pytest.raises(ValidationError, match=r"kind must compare datapoints.*pairwise.*listwise"):
        researcher.evals.create("labels", ["a?"], anchor=["x"], kind="classify")
    ev = researcher.evals.create("checks", ["a?", "b?"], anchor=["x", "y"])
    with pytest.raises(ValidationError, match="completions has 3 entries but the eval has 2 prompts"):
        ev.checkpoint(1, ["p", "q", "r"])
    with pytest.raises(ValidationError, match="proxy_reward has 1 entries"):
        ev.checkpoint(1, ["p", "q"], proxy_reward=[0.1])
    with pytest.raises(ValidationError, match=r"completions\[1\] is blank"):
        ev.checkpoint(1, ["p", "  "])
    with pytest.raises(ValidationError, match="finite"):
        ev.checkpoint(1, ["p", "q"], proxy_reward=[0.1, float("nan")])
    ev.checkpoint(5, ["p", "q"])
    with pytest.raises(Conflict, match="already has a checkpoint at step 5"):
        ev.checkpoint(5, ["p", "q"])
    with pytest.raises(ValidationError, match="training order"):
        ev.checkpoint(4, ["p", "q"])
    with pytest.raises(NotFound, match=r"client\.evals\.list"):
        researcher.evals.get("eval_nope")
    researcher.flow.get_flow_by_id(ev.flow_id).delete()  # the eval's flow takes the eval with it
    with pytest.raises(NotFound):
        researcher.evals.get(ev.id)
    assert ev.id not in [e.id for e in researcher.evals.list()]


def survives_a_restart(server: ServerProcess) -> None:
    def told(client: Client, hook_id: str) -> int:
        """eval.checkpoint deliveries once the eval's latest state (all votes) has been committed."""
        ((_, _, data),) = first_events(client, ev.id, None, 1)
        assert data["rows"][0]["votes"] == len(PROMPTS)  # type: ignore[index]
        log: list[Any] = list(client.webhooks.deliveries(hook_id, limit=200))
        return sum(d.event == "eval.checkpoint" for d in log)

    with server.client() as client:
        hook = client.webhooks.add("http://127.0.0.1:9/unreachable", events=["eval.checkpoint"])
        ev = anchored(client, "durable", votes_per_pair=1, ttl=600)
        text, meta = completions(3, 5.0)
        ev.checkpoint(3, text, proxy_reward=1.0, metadata=meta)
        with crowd(client):
            wait_for(lambda: voted(ev, 1, len(PROMPTS)), what="the checkpoint's votes")
        before = ev.history()
        deliveries = told(client, hook.id)
        assert deliveries >= 1
    server.restart()
    with server.client() as client:
        again = client.evals.get(ev.id)
        assert again.info.steps == [3]
        wait_for(lambda: again.history().votes.iloc[0] == len(PROMPTS), what="the counts read back")
        assert told(client, hook.id) == deliveries  # reading the counts back tells the webhooks nothing new
        columns = ["step", "tag", "votes", "wins", "win_rate"]
        assert again.history()[columns].equals(before[columns])
        with pytest.raises(Conflict):
            again.checkpoint(3, text)
        text, meta = completions(4, 5.0)
        assert len(again.checkpoint(4, text, metadata=meta).item_ids) == len(PROMPTS)


def test_an_eval_and_its_votes_survive_a_restart(fresh_server: ServerProcess) -> None:
    survives_a_restart(fresh_server)


def test_an_eval_on_postgresql_survives_a_restart(pg_dsn: str, tmp_path: Path) -> None:
    server = ServerProcess(data_dir=tmp_path, extra_args=["--db", pg_dsn])
    server.start()
    try:
        survives_a_restart(server)
    finally:
        server.stop()


def test_the_async_client_drives_the_same_calls(flowlab_server: ServerProcess, researcher: Client) -> None:
    async def run() -> tuple[list[str], float, object]:
        async with AsyncClient(url=researcher.url, api_key=researcher.api_key) as aclient:
            ev = await aclient.evals.create("async", ["one?", "two?"], anchor="previous", tags=["a", ["a", "b"]])
            await ev.checkpoint(0, ["x", "y"], proxy_reward=[1.0, 3.0])
            assert len(await ev.wait(timeout=5)) == 3  # a "previous" eval's first checkpoint has nothing to wait for
            with pytest.raises(Conflict):
                await ev.checkpoint(0, ["x", "y"])
            frame = await ev.history()
            listed = [e.id for e in await aclient.evals.list()]
            assert (await aclient.evals.get(ev.id)).info.tags == [["a"], ["a", "b"]] and ev.id in listed
            return list(frame.tag), float(frame.proxy_reward.iloc[0]), await ev.divergence()

    tags, proxy, divergence = asyncio.run(run())
    assert tags == ["all", "a", "b"] and proxy == 2.0 and divergence is None


def test_eval_chart_draws_tags_bands_proxy_and_divergence_from_rows() -> None:
    pytest.importorskip("ipywidgets", reason="the workbench needs the lab extra: pip install 'flowlab[lab]'")
    from flowlab_widgets.evals import EvalChart

    chart = EvalChart(["maths", "refusals"])
    figure = chart.figure
    rows: list[dict[str, Any]] = [
        {"step": s, "tag": t, "win_rate": w, "win_low": w - 0.1, "win_high": w + 0.1, "votes": 9.0, "wins": 9 * w}
        | {"proxy_reward": 1.0 + s, "divergence": s == 2}
        for s, w in ((2, 0.3), (0, 0.6), (1, 0.5))
        for t in ("all", "maths", "refusals")
    ]
    rows.append({**rows[0], "step": 3, "win_rate": None, "win_low": None, "win_high": None, "votes": 0.0})
    rows[-1]["proxy_reward"], rows[-1]["divergence"] = None, False
    chart.update(rows)
    assert list(chart.sources) == ["all", "maths", "refusals"]
    line = chart.sources["all"].data
    assert line["step"] == [0, 1, 2, 3] and line["win_rate"][:3] == [0.6, 0.5, 0.3]
    assert line["low"][0] == pytest.approx(0.5) and line["win_rate"][3] != line["win_rate"][3]  # NaN: a gap
    assert chart.proxy_source.data == {"step": [0, 1, 2], "proxy": [1.0, 2.0, 3.0]}
    assert chart.divergence_source.data == {"step": [2], "win_rate": [0.3]}
    assert chart.figure is figure and (figure.x_range.start, figure.x_range.end) != (0, 1)  # refitted, not rebuilt
    assert figure.extra_y_ranges["proxy"].end > 3.0


def test_eval_monitor_widget_and_dashboard_panel_follow_an_eval(researcher: Client) -> None:
    pytest.importorskip("ipywidgets", reason="the workbench needs the lab extra: pip install 'flowlab[lab]'")
    pytest.importorskip("panel")
    from flowlab_widgets import EvalMonitor
    from flowlab_widgets.dashboard import Dashboard

    from .test_widgets import in_fresh_thread, wait_until

    ev = anchored(researcher, "watched", votes_per_pair=1)
    monitor = EvalMonitor(ev, live=False)
    try:
        assert "No checkpoints yet" in monitor.summary.value and monitor.chart.sources["all"].data["step"] == []
        assert set(monitor.chart.sources) == {"all", "maths", "refusals"}
        text, meta = completions(0, 4.0)
        ev.checkpoint(0, text, proxy_reward=0.5, metadata=meta)
        monitor.refresh()
        assert monitor.chart.sources["all"].data["step"] == [0] and monitor.chart.proxy_source.data["proxy"] == [0.5]
        assert "step 0: all – (0 votes)" in monitor.summary.value
    finally:
        monitor.close()
    live = in_fresh_thread(lambda: EvalMonitor(ev, poll_interval=0.1))  # no event loop: a polling thread
    try:
        with crowd(researcher):
            assert wait_until(lambda: live.chart.sources["all"].data["votes"] == [len(PROMPTS)], timeout=30)
        assert (
            live.chart.sources["maths"].data["win_rate"][0] > 0.5 and "waiting for a full window" in live.summary.value
        )
    finally:
        live.close()

    async def look() -> Dashboard:
        board = Dashboard(researcher.url, researcher.api_key)
        await board.refresh()
        await board.client.aclose()
        return board

    board = in_fresh_thread(lambda: asyncio.run(look()))
    panel = board.evals
    assert panel.column.visible and panel.select.value == ev.id
    assert panel.charts[ev.id].sources["all"].data["votes"] == [len(PROMPTS)]
    assert "step 0: all" in panel.summary.object


def first_events(
    client: Client, eval_id: str, last_id: str | None, count: int
) -> list[tuple[str, str | None, dict[str, object]]]:
    """The first `count` events a new connection to an eval's stream gets, after `last_id` when given. A new
    subscriber's first events are the latest state, set only once its webhook deliveries are committed."""
    parser, got = SSEParser(), []
    sent = {"Authorization": f"Bearer {client.api_key}"} | ({"Last-Event-ID": last_id} if last_id is not None else {})
    with httpx.stream("GET", f"{client.url}/v1/evals/{eval_id}/events", headers=sent, timeout=30) as resp:
        for line in resp.iter_lines():
            msg = parser.feed_line(line)
            if msg is not None and msg.event.startswith("eval."):
                got.append((msg.event, msg.id, json.loads(msg.data)))
                if len(got) == count:
                    return got
    return got


def test_event_stream_resumes_after_the_last_event_id(researcher: Client) -> None:
    ev = anchored(researcher, "resumed", votes_per_pair=1)
    text, meta = completions(0, 3.0)
    ev.checkpoint(0, text, metadata=meta)
    with crowd(researcher):
        wait_for(lambda: voted(ev, 1, len(PROMPTS)), what="the first checkpoint's votes")
    # A new subscriber gets the state: the latest eval.checkpoint of step 0, with all its votes.
    ((kind, last_id, data),) = first_events(researcher, ev.id, None, 1)
    assert kind == "eval.checkpoint" and data["step"] == 0 and data["rows"][0]["votes"] == len(PROMPTS)  # type: ignore[index]
    text, meta = completions(10, 3.0)
    ev.checkpoint(10, text, metadata=meta)
    with crowd(researcher):
        wait_for(lambda: voted(ev, 2, len(PROMPTS)), what="the second checkpoint's votes")
    # Resumed after that id: only what came since (step 10), never step 0 again.
    ((kind, newer_id, data),) = first_events(researcher, ev.id, last_id, 1)
    assert kind == "eval.checkpoint" and data["step"] == 10 and int(newer_id or 0) > int(last_id or 0)
