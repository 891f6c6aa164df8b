"""Code written for the hosted Flows SDK runs on flowlab with only the import and the client changed.

Every test below is written the way hosted users write it (`from rapidata import RapidataClient` becomes
`from flowlab import Client`), against a real server and the simulated crowd."""

from __future__ import annotations

import json

import httpx
import msgspec
import pytest

import flowlab
from flowlab import Client, FlowItemResult, FlowItemState, schemas  # hosted: from rapidata import ...
from flowlab.crowd import SimulatedCrowd

from .conftest import ServerProcess


@pytest.fixture
def rapi(flowlab_server: ServerProcess) -> Client:
    return Client(url=flowlab_server.url, api_key=flowlab_server.api_key)  # hosted: RapidataClient()


def test_status_is_the_state_and_results_map_keys_to_elo(rapi: Client, flowlab_server: ServerProcess) -> None:
    flow = rapi.flow.create_ranking_flow(
        "Image Quality Ranking", "Which image looks better?", 30, 20, None, None, 2, 30
    )  # hosted's positional order: thresholds, validation set, settings, drain_duration, serve_timeout
    assert flow.config.drain_seconds == 2 and flow.config.lease_seconds == 30
    item = flow.create_new_flow_batch(
        ["a sunny beach", "a grey car park", "a mountain lake"],
        "which place would you rather be?",
        None,
        "text",
        [{"true_score": "5"}, {"true_score": "-5"}, {"true_score": "0"}],
        False,
        60,
    )
    status = item.get_status()
    assert status == FlowItemState.PENDING and status == "Pending" and status in ["Pending", "Running"]
    assert status.value == "Pending" and isinstance(status, str)
    # Three datapoints make three pairs, each shown to a person once: twelve people for 30 votes.
    with SimulatedCrowd(flowlab_server.url, flowlab_server.api_key, annotators=12, rate=6000, seed=11):
        results = item.get_results()
    assert item.get_status() == FlowItemState.COMPLETED
    assert isinstance(results, FlowItemResult)
    assert results.total_votes == 30
    assert set(results.datapoints) == {"a sunny beach", "a grey car park", "a mountain lake"}
    by_elo = sorted(results.datapoints.items(), key=lambda kv: -kv[1])
    assert by_elo[0][0] == "a sunny beach"
    assert abs(sum(results.datapoints.values()) / 3 - 1200) < 1e-6, "centred on the flow's starting Elo"
    json.dumps(results.datapoints)
    assert results["a sunny beach"].ci_low <= results["a sunny beach"].score <= results["a sunny beach"].ci_high
    assert results.to_dataframe().shape[0] == 3 and set(results.rewards()) == set(results.datapoints)
    detail = item.get_datapoints()
    assert [d.private_metadata for d in detail] == [{"true_score": "5"}, {"true_score": "-5"}, {"true_score": "0"}]
    progress = item.get_progress()  # flowlab's richer snapshot, under a call of its own
    assert progress.state == FlowItemState.COMPLETED and progress.response_count == 30
    assert item.get_response_count() == 30 == item.get_win_loss_matrix().to_numpy().sum()


def test_batch_arguments_as_hosted_checks_them(rapi: Client) -> None:
    flow = rapi.flow.create_ranking_flow(name="lists", instruction="?", max_response_threshold=5)
    with pytest.raises(ValueError, match="one per datapoint"):
        flow.create_new_flow_batch(["x", "y"], private_metadata=[{"k": "v"}])
    item = flow.create_new_flow_batch(["notes.txt", "https://example.invalid/a.png"], data_type="text")
    assert [d.kind for d in item.get_datapoints()] == ["text", "text"], "data_type='text' forces text"
    default_ttl = flow.create_new_flow_batch(["p", "q"]).get_progress()
    assert default_ttl.time_to_live == 300, "time_to_live=None takes the server's default"
    flow.delete()


def test_failed_uploads_are_left_out_only_when_accepted(rapi: Client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pathlib

    fake = tmp_path / "not-really.png"
    fake.write_bytes(b"this is not a png")  # the server refuses it: its bytes are no image
    flow = rapi.flow.create_ranking_flow(name="uploads", instruction="?", max_response_threshold=5)
    with pytest.raises(ValueError):
        flow.create_new_flow_batch(["one", "two", pathlib.Path(fake)])
    with pytest.warns(UserWarning, match="1 of 3 datapoints could not be uploaded"):
        item = flow.create_new_flow_batch(["one", "two", pathlib.Path(fake)], accept_failed_uploads=True)
    assert item.keys == ["one", "two"]
    flow.delete()


def test_update_config_with_hosted_names_and_only_new_items_see_it(rapi: Client) -> None:
    flow = rapi.flow.create_ranking_flow(name="cfg", instruction="Old?", max_response_threshold=10)
    old = flow.create_new_flow_batch(["a", "b"], time_to_live=60)
    flow.update_config("New?", starting_elo=1500, min_responses=3, max_responses=8, drain_duration=1, serve_timeout=20)
    c = flow.config
    assert (c.instruction, c.starting_elo, c.min_response_threshold, c.max_response_threshold) == ("New?", 1500, 3, 8)
    assert (c.drain_seconds, c.lease_seconds) == (1, 20)
    flow.update_config(max_response_threshold=9)  # flowlab's own names keep working
    new = flow.create_new_flow_batch(["a", "b"], time_to_live=60)
    assert old.get_progress().instruction == "Old?" and new.get_progress().instruction == "New?"
    assert new.get_progress().max_response_threshold == 9
    with pytest.raises(ValueError, match="both given"):
        flow.update_config(min_responses=2, min_response_threshold=4)
    for item in (old, new):
        item.stop()
    flow.delete()


def test_find_flows_and_flow_items_page_newest_first(rapi: Client) -> None:
    tag = "paging-7c1e"
    flows = [
        rapi.flow.create_ranking_flow(name=f"{tag} {i}", instruction="?", max_response_threshold=5) for i in range(5)
    ]
    newest = [f.id for f in reversed(flows)]
    assert [f.id for f in rapi.flow.find_flows(tag, 2, 1)] == newest[:2]
    assert [f.id for f in rapi.flow.find_flows(name=tag, amount=2, page=3)] == newest[4:]
    assert rapi.flow.find_flows(name=f"{tag} 3")[0].id == flows[3].id
    assert rapi.flow.find_flows(name="no flow is called this") == []
    items = [flows[0].create_new_flow_batch([f"x{i}", f"y{i}"], time_to_live=60) for i in range(12)]
    page1 = flows[0].get_flow_items()
    assert [i.id for i in page1] == [i.id for i in reversed(items)][:10], "amount=10, page=1 by default"
    assert [i.id for i in flows[0].get_flow_items(amount=5, page=3)] == [items[1].id, items[0].id]
    assert len(flows[0].get_flow_items(amount=None)) == 12
    for f in flows:
        f.delete()


def test_validation_sets_are_made_once_and_referred_to_by_id(rapi: Client, flowlab_server: ServerProcess) -> None:
    vset = rapi.flow.create_validation_set(
        "obvious", [("a clear, correct answer", "asdf qwer zxcv", "a"), ("noise !!!", "a careful reply", "b")]
    )
    assert vset.pair_count == 2 and vset.id.startswith("vset_")
    flow = rapi.flow.create_ranking_flow("gold", "Which is better?", 40, 40, vset.id, gold_rate=0.5)  # hosted order
    assert flow.config.validation_pair_count == 2
    item = flow.create_new_flow_batch(["x", "y", "z"], time_to_live=60)
    annotators_before = {a.id: a.gold_answered for a in rapi.annotators.list()}
    with SimulatedCrowd(flowlab_server.url, flowlab_server.api_key, annotators=16, rate=6000, seed=12):
        item.get_results(timeout=30)
    answered = [a for a in rapi.annotators.list() if a.gold_answered > annotators_before.get(a.id, 0)]
    assert answered, "the set's gold pairs were mixed into the tasks"
    with pytest.raises(flowlab.NotFound, match="No validation set 'vset_nope'"):
        rapi.flow.create_ranking_flow(name="v", instruction="?", validation_set_id="vset_nope")
    flow.delete()


def test_settings_take_hosted_setting_objects_and_the_page_gets_them(fresh_server: ServerProcess) -> None:
    from flowlab import AllowNeitherBothSetting, CustomSetting, MarkdownSetting, NoShuffleSetting

    rapi = Client(url=fresh_server.url, api_key=fresh_server.api_key)  # a server with only this flow's work

    with pytest.warns(UserWarning, match="does not act on them.*x_hosted_flag"):
        flow = rapi.flow.create_ranking_flow(
            "settings",
            "Which is better?",
            settings=[
                NoShuffleSetting(),
                AllowNeitherBothSetting(250),
                MarkdownSetting(),
                CustomSetting("x_hosted_flag", "1"),
            ],
        )
    assert flow.config.settings == {
        "no_shuffle": "true",
        "compare_unsure": "250",
        "use_main_text_markdown": "true",
        "x_hosted_flag": "1",
    }
    assert flow.config.allow_ties and flow.config.render_markdown, "settings that are flowlab options set them"
    flow.create_new_flow_batch([f"answer {i}" for i in range(6)], data_type="text", time_to_live=60)
    ann = rapi.annotators.create("settings-viewer")
    r = httpx.post(f"{rapi.url}/v1/tasks/next-batch", json={"n": 15}, headers={"Authorization": f"Bearer {ann.token}"})
    tasks = msgspec.json.decode(r.content, type=schemas.TaskBatch).tasks
    assert len(tasks) == 15 and all(t.settings == flow.config.settings for t in tasks)
    assert all(t.b is not None and t.a.ref < t.b.ref for t in tasks), "no_shuffle: A is the earlier datapoint"
    calmer = flow.update_config(settings={"no_shuffle": "true"})  # Unsure and Markdown taken away again
    assert not calmer.config.allow_ties and not calmer.config.render_markdown
    with pytest.raises(ValueError, match="between 0 and 95"):
        flowlab.PlayPercentageVideoSetting(120)
    with pytest.raises(ValueError, match="is not a setting"):
        rapi.flow.create_ranking_flow(name="v", instruction="?", settings=[object()])
    with pytest.raises(flowlab.ValidationError, match="whole number") as err:
        rapi.flow.create_ranking_flow(name="v", instruction="?", settings={"media_played_percentage": "most"})
    assert err.value.field == "settings"
    flow.delete()


def test_compare_sets_in_hosted_calls(rapi: Client) -> None:
    vset = rapi.validation.create_compare_set(
        name="obvious pairs",
        instruction="Which is better?",
        datapoints=[["a careful reply", "zxcv"], ["!!!", "a clear answer"]],
        truths=["a careful reply", "a clear answer"],
        data_type="text",
        explanation=["The other is noise.", None],
    )
    assert vset.pair_count == 2 and vset.kind == "pairwise"
    flow = rapi.flow.create_ranking_flow("gold pairs", "Which is better?", validation_set_id=vset.id)
    assert flow.config.validation_pair_count == 2
    with pytest.raises(ValueError, match="must be one of the two datapoints"):
        rapi.validation.create_compare_set("bad", "?", [["x", "y"]], ["z"])
    with pytest.raises(ValueError, match="leave contexts and media_contexts out"):
        rapi.validation.create_compare_set("bad", "?", [["x", "y"]], ["x"], contexts=["c"])
    flow.delete()
