"""Hosted programs that used to break on flowlab, written as hosted users write them: only the import line and
the client construction differ (`from rapidata import ...` / `RapidataClient()`)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

import pytest

from flowlab import (  # hosted: from rapidata import ...
    ClassifyDatapointResult,
    ClassifyFlowItemResult,
    FailedUpload,
    FailedUploadException,
    FlowItemResult,
    NotFound,
    RapidataClassifyFlow,
    RapidataFlow,
    RapidataRankingFlow,
    RapidataValidationSet,
    rapidata_config,
)
from flowlab import Client as RapidataClient  # hosted: from rapidata import RapidataClient
from flowlab.client._uploads import path_suffix
from flowlab.crowd import SimulatedCrowd

from .conftest import ServerProcess

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
    b"\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82"
)


@pytest.fixture
def client(flowlab_server: ServerProcess) -> RapidataClient:
    return RapidataClient(url=flowlab_server.url, api_key=flowlab_server.api_key)  # hosted: RapidataClient()


def _png(path: Path, shade: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(PNG + bytes([shade]))  # a different file each: trailing bytes after IEND are ignored
    return path


# ---------------------------------------------------------------- 1. the names hosted code imports


def test_hosted_names_are_the_classes_of_flowlabs_objects(client: RapidataClient) -> None:
    ranking = client.flow.create_ranking_flow("names", "Which is better?")
    classify = client.flow.create_classify_flow("names", "Is it safe?", ["safe", "unsafe"])

    def describe(flow: RapidataFlow) -> str:  # as hosted's docs branch on a flow's kind
        if isinstance(flow, RapidataClassifyFlow):
            return "classify"
        return "ranking" if isinstance(flow, RapidataRankingFlow) else "other"

    assert describe(client.flow.get_flow_by_id(classify.id)) == "classify"
    assert describe(client.flow.get_flow_by_id(ranking.id)) == "ranking"
    assert all(isinstance(f, RapidataFlow) for f in client.flow.find_flows(name="names", amount=5))
    vset = client.validation.create_compare_set("names", "?", [["good", "bad"]], ["good"], data_type="text")
    assert isinstance(vset, RapidataValidationSet)
    assert isinstance(client.validation.get_validation_set_by_id(vset.id), RapidataValidationSet)
    vset.delete()
    ranking.delete()
    classify.delete()


def test_failed_uploads_raise_hosteds_exception_naming_every_failure(client: RapidataClient, tmp_path: Path) -> None:
    good = _png(tmp_path / "ok.png", 1)
    flow = client.flow.create_ranking_flow("uploads", "Which is better?", 5)
    missing = str(tmp_path / "nowhere" / "cat.png")
    with pytest.raises(FailedUploadException) as caught:
        flow.create_new_flow_batch([str(good), missing, "photos/dog.pgn"])
    err = caught.value
    assert err.failed_uploads == [missing, "photos/dog.pgn"], "every failure at once, as given"
    assert all(isinstance(f, FailedUpload) for f in err.detailed_failures)
    assert [f.error_type for f in err.detailed_failures] == ["FileNotFoundError", "ValueError"]
    assert "datapoints[1]: no file at" in str(err) and "did you mean .png" in str(err)
    assert 'data_type="text"' in str(err) and "accept_failed_uploads=True" in str(err)
    assert isinstance(err, ValueError), "code that catches ValueError keeps working"
    assert flow.get_flow_items() == [], "nothing was created"
    with pytest.warns(UserWarning, match="2 of 4 datapoints could not be uploaded"):
        item = flow.create_new_flow_batch([str(good), missing, "photos/dog.pgn", "text"], accept_failed_uploads=True)
    assert item.keys == ["ok.png", "text"]
    flow.delete()


def test_rapidata_config_takes_hosteds_settings_and_acts_on_logging_and_retries(tmp_path: Path) -> None:
    upload, log = rapidata_config.upload, rapidata_config.logging
    before = (upload.maxWorkers, upload.maxRetries, log.level, log.log_file)
    try:
        rapidata_config.upload.maxWorkers = 20  # hosted's documented example: kept, uploads go one at a time
        rapidata_config.upload.maxRetries = 1
        assert rapidata_config.upload.maxWorkers == 20 and rapidata_config.upload.maxRetries == 1
        with pytest.raises(ValueError, match=r"from 0\.0 to 1\.0"):
            rapidata_config.upload.failureTolerance = 2.0
        with pytest.raises(AttributeError, match="no setting 'maxWorker'"):
            rapidata_config.upload.maxWorker = 3  # a typo is an error, never silently kept
        with pytest.raises(AttributeError, match="fixed once the process starts"):
            rapidata_config.upload.cacheShards = 8
        rapidata_config.logging.log_file = str(tmp_path / "sdk.log")
        rapidata_config.logging.level = "DEBUG"
        assert logging.getLogger("flowlab").getEffectiveLevel() == logging.DEBUG
        logging.getLogger("flowlab.test").debug("written through rapidata_config")
        assert "written through rapidata_config" in (tmp_path / "sdk.log").read_text()
    finally:
        rapidata_config.logging.log_file = None
        upload.maxWorkers, upload.maxRetries, log.level = before[0], before[1], before[2]
        logging.getLogger("flowlab").setLevel(logging.NOTSET)


def test_uploads_are_retried_as_rapidata_config_says(tmp_path: Path) -> None:
    import httpx

    posts = []

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/media":
            posts.append(request)
            if len(posts) < 3:
                return httpx.Response(503, json={"detail": "restarting", "code": "unavailable"})
            return httpx.Response(201, json={"sha256": "0" * 64, "media_type": "image/png", "kind": "image", "size": 1})
        return httpx.Response(404, json={"detail": "only uploads here"})

    from flowlab.client import _core as core

    image = _png(tmp_path / "retry.png", 2)
    client = RapidataClient(transport=httpx.MockTransport(answer))
    saved = rapidata_config.upload.maxRetries
    try:
        rapidata_config.upload.maxRetries = 2
        point = client._transport.run(core._datapoint(str(image), "datapoints[0]"))
        assert len(posts) == 3 and point["media"] == "0" * 64
        posts.clear()
        rapidata_config.upload.maxRetries = 1
        with pytest.raises(FailedUploadException, match="restarting"):
            client._transport.run(core._datapoint(str(image), "datapoints[0]"))
        assert len(posts) == 2
    finally:
        rapidata_config.upload.maxRetries = saved


# ---------------------------------------------------------------- 2. validation sets as hosted has them


def test_validation_sets_are_found_changed_and_deleted_as_hosted(client: RapidataClient) -> None:
    tag = "vsets-4b2e"
    with pytest.warns(UserWarning, match="scores each annotator over all their gold answers"):
        first = client.validation.create_compare_set(
            f"{tag} pairs",
            "Which is better?",
            [["a careful reply", "zxcv"]],
            ["a careful reply"],
            data_type="text",
            explanation=["The other is noise."],
            dimensions=["quality"],
        )
    second = client.validation.create_classification_set(
        f"{tag} labels", "Is it safe?", ["safe", "unsafe"], ["hello", "kill"], [["safe"], ["unsafe"]], data_type="text"
    )
    third = client.validation.create_compare_set(f"{tag} more", "?", [["x", "y"]], ["x"], data_type="text")
    assert first.dimensions == ["quality"] and second.dimensions == []
    found = client.validation.find_validation_sets(name=tag, amount=2, page=1)
    assert [s.id for s in found] == [third.id, second.id], "newest first, a page of `amount`"
    assert [s.id for s in client.validation.find_validation_sets(tag, 2, 2)] == [first.id]
    assert [s.name for s in client.validation.find_validation_sets(name=f"{tag} lab")] == [f"{tag} labels"]
    assert client.validation.find_validation_sets(name="no set is called this") == []

    with pytest.warns(UserWarning):
        assert first.update_dimensions(["quality", "safety"]) is first
    assert client.validation.get_validation_set_by_id(first.id).dimensions == ["quality", "safety"]
    first.update_can_be_flagged(False).update_should_alert(False)
    again = client.validation.get_validation_set_by_id(first.id)
    assert (again.should_alert, again.can_be_flagged) == (False, False)
    # A flow made after update_should_alert(False) copies the gold without its explanation: no alert.
    flow = client.flow.create_ranking_flow("gold quiet", "Which is better?", validation_set_id=first.id)
    quiet = flow._transport.run(_validation_pairs(flow.id))
    assert quiet[0].explanation is None
    assert str(first) == f"name: '{tag} pairs' id: {first.id} dimensions: ['quality', 'safety']"

    second.delete()
    with pytest.raises(NotFound, match="No validation set"):
        client.validation.get_validation_set_by_id(second.id)
    assert [s.id for s in client.validation.find_validation_sets(name=tag)] == [third.id, first.id]
    flow.delete()
    for s in (first, third):
        s.delete()


def _validation_pairs(flow_id: str):  # type: ignore[no-untyped-def]
    import msgspec

    from flowlab import schemas
    from flowlab.client._core import Call

    resp = yield Call("GET", f"/v1/flows/{flow_id}/validation-pairs")
    return msgspec.json.decode(resp.content, type=list[schemas.ValidationPair])


def test_openapi_lists_the_validation_set_routes(flowlab_server: ServerProcess) -> None:
    import httpx

    doc = httpx.get(f"{flowlab_server.url}/schema/openapi.json").json()
    assert {"get", "post"} <= set(doc["paths"]["/v1/validation-sets"])
    assert {"get", "patch", "delete"} <= set(doc["paths"]["/v1/validation-sets/{set_id}"])
    names = {p["name"] for p in doc["paths"]["/v1/validation-sets"]["get"]["parameters"]}
    assert {"name", "limit", "offset"} <= names


# ---------------------------------------------------------------- 3. results keyed by file name, as hosted


def test_local_files_are_keyed_by_their_name_with_the_path_kept(
    client: RapidataClient, flowlab_server: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for i, name in enumerate(["media/img1.jpg", "media/img2.jpg", "model_a/0001.png", "model_b/0001.png"]):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(PNG + bytes([i]))
    flow = client.flow.create_ranking_flow("keys", "Which image looks better?", 18)
    item = flow.create_new_flow_batch(
        ["media/img1.jpg", Path("media/img2.jpg").absolute(), "model_a/0001.png", "model_b/0001.png"],
        time_to_live=120,
    )
    assert item.keys == ["img1.jpg", "img2.jpg", "model_a/0001.png", "model_b/0001.png"]
    with SimulatedCrowd(flowlab_server.url, flowlab_server.api_key, annotators=12, rate=6000, seed=3):
        results = item.get_results(timeout=60)
    assert set(results.datapoints) == {"img1.jpg", "img2.jpg", "model_a/0001.png", "model_b/0001.png"}
    results.datapoints["img1.jpg"]  # hosted's key: a KeyError before
    assert results.sources["img1.jpg"] == "media/img1.jpg", "the path as given stays on the result"
    assert results.sources["img2.jpg"] == str(tmp_path / "media" / "img2.jpg")
    assert results["model_b/0001.png"].source == "model_b/0001.png"
    assert [d.source for d in item.get_datapoints()][:2] == ["media/img1.jpg", str(tmp_path / "media/img2.jpg")]
    same = flow.create_new_flow_batch(["media/img1.jpg", "media/img1.jpg"], time_to_live=60)
    assert same.keys == ["img1.jpg", "img1.jpg#2"], "the same file twice is numbered, as equal texts are"
    same.stop()
    flow.delete()


# ---------------------------------------------------------------- 4. results are hosted's frozen dataclasses


def test_results_are_hosteds_frozen_dataclasses(client: RapidataClient, flowlab_server: ServerProcess) -> None:
    flow = client.flow.create_classify_flow(
        "dataclasses", "Is it an animal?", ["yes", "no"], max_responses_per_datapoint=3, min_responses_per_datapoint=3
    )
    item = flow.create_new_flow_batch(["a cat", "a chair"], data_type="text", time_to_live=60)
    with SimulatedCrowd(flowlab_server.url, flowlab_server.api_key, annotators=6, rate=6000, seed=4):
        results = item.get_results(timeout=60)
    assert isinstance(results, ClassifyFlowItemResult)
    plain = dataclasses.asdict(results)  # raised before
    assert plain["total_responses"] == 6 and set(plain["datapoints"]) == {"a cat", "a chair"}
    json.dumps(plain)
    cat = results.datapoints["a cat"]
    assert dataclasses.asdict(cat)["response_count"] == 3
    assert cat == ClassifyDatapointResult(cat.majority_value, dict(cat.distribution), 3), "hosted's positional order"
    assert cat == ClassifyDatapointResult(
        majority_value=cat.majority_value, distribution=dict(cat.distribution), response_count=3
    )
    assert repr(cat) == f"ClassifyDatapointResult(majority_value={cat.majority_value!r}, " + (
        f"distribution={cat.distribution!r}, response_count=3)"
    )
    assert cat.confidence is not None and cat.key == "a cat", "flowlab's extras stay on the object"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cat.majority_value = "no"  # type: ignore[misc]
    hosted_shaped = ClassifyFlowItemResult(dict(results.datapoints), 6)
    assert results == hosted_shaped and repr(results) == repr(hosted_shaped)
    flow.delete()

    ranking = FlowItemResult({"a.png": 1250.0, "b.png": 1150.0}, 30)  # hosted's positional constructor
    assert (ranking.datapoints, ranking.total_votes) == ({"a.png": 1250.0, "b.png": 1150.0}, 30)
    assert ranking == FlowItemResult(datapoints={"a.png": 1250.0, "b.png": 1150.0}, total_votes=30)
    assert repr(ranking) == "FlowItemResult(datapoints={'a.png': 1250.0, 'b.png': 1150.0}, total_votes=30)"
    assert [f.name for f in dataclasses.fields(FlowItemResult)][:2] == ["datapoints", "total_votes"]
    assert [f.name for f in dataclasses.fields(ClassifyFlowItemResult)][:2] == ["datapoints", "total_responses"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ranking.total_votes = 3  # type: ignore[misc]


def test_ranking_results_convert_with_asdict(client: RapidataClient, flowlab_server: ServerProcess) -> None:
    flow = client.flow.create_ranking_flow("asdict", "Which is better?", 12)
    item = flow.create_new_flow_batch(["good", "bad", "fine"], data_type="text", time_to_live=60)
    with SimulatedCrowd(flowlab_server.url, flowlab_server.api_key, annotators=8, rate=6000, seed=5):
        results = item.get_results(timeout=60)
    plain = dataclasses.asdict(results)
    assert plain["total_votes"] == 12 and plain["datapoints"] == results.datapoints
    assert {d["key"] for d in plain["details"]} == {"good", "bad", "fine"}
    json.dumps(plain)
    assert results == FlowItemResult(dict(results.datapoints), 12)
    assert results.to_dataframe().loc["good", "votes"] == results["good"].votes
    flow.delete()


# ---------------------------------------------------------------- 5. hosted's client-side checks


def test_context_assets_hold_one_to_ten_assets(client: RapidataClient) -> None:
    flow = client.flow.create_ranking_flow("assets", "Which fits the picture?", 5)
    with pytest.raises(ValueError, match=r"context_assets holds 1 to 10 assets.*got 0") as empty:
        flow.create_new_flow_batch(["a", "b"], context_assets=[])
    assert empty.value.field == "context_assets"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="got 11"):
        flow.create_new_flow_batch(["a", "b"], context_assets=[f"note {i}" for i in range(11)])
    item = flow.create_new_flow_batch(["a", "b"], context_assets=[f"note {i}" for i in range(10)], time_to_live=60)
    assert item.keys == ["a", "b"], "ten assets are fine"
    item.stop()
    classify = client.flow.create_classify_flow("assets", "Is it safe?", ["safe", "unsafe"])
    with pytest.raises(ValueError, match=r"context_assets\[1\] holds 11 assets"):
        classify.create_new_flow_batch(["x", "y"], context_assets=[["n"], [f"n{i}" for i in range(11)]])
    with pytest.raises(ValueError, match="one per datapoint"):
        classify.create_new_flow_batch(["x", "y"], contexts=["only one"])
    flow.delete()
    classify.delete()


# ---------------------------------------------------------------- 6. a mistyped path is refused, text is text


@pytest.mark.parametrize(
    "text",
    [
        "Hello world.",
        "Use and/or sparingly.",
        "and/or",
        "km/h",
        "https://example.com/cat.pgn",
        "see notes.txt",
        "example.org",
        "node.js",
        "v1.2",
        "3.14",
        "I prefer .png over .jpg",
        "e.g.",
        "src/main.py",
        "cat.pgn",  # no folder: could be anything, so it is text
        "Line one\nphotos/cat.png",
    ],
)
def test_ordinary_text_is_never_taken_for_a_path(text: str) -> None:
    assert path_suffix(text) is None


@pytest.mark.parametrize(
    "path", ["photos/cat.pgn", "cat.png", "Screen Shot 2024.png", "~/shots/a.JPG", "C:\\shots\\a.jgp", "clips/a.mkv"]
)
def test_strings_shaped_like_media_paths_are_paths(path: str) -> None:
    assert path_suffix(path) is not None


def test_a_mistyped_media_path_is_refused_unless_it_is_text(client: RapidataClient, tmp_path: Path) -> None:
    flow = client.flow.create_ranking_flow("typos", "Which image looks better?", 5)
    with pytest.raises(FailedUploadException, match=r"datapoints\[1\]: 'photos/cat.pgn' looks like a path") as err:
        flow.create_new_flow_batch(["Hello world.", "photos/cat.pgn", "and/or"])
    assert err.value.field == "datapoints[1]"
    with pytest.raises(FailedUploadException, match=r"datapoints\[0\]: no file at 'photos/cat.png'") as missing:
        flow.create_new_flow_batch(["photos/cat.png", "a dog"])
    assert os.getcwd() in str(missing.value), "it says where relative paths start from"
    item = flow.create_new_flow_batch(["photos/cat.pgn", "and/or"], data_type="text", time_to_live=60)
    assert [d.kind for d in item.get_datapoints()] == ["text", "text"], 'data_type="text" keeps the string'
    item.stop()
    texts = ["Hello world.", "Use and/or sparingly.", "https://example.com/a", "see notes.txt", "example.org"]
    item = flow.create_new_flow_batch(texts, time_to_live=60)
    assert [d.kind for d in item.get_datapoints()] == ["text", "text", "url", "text", "text"]
    item.stop()
    (tmp_path / "notes.txt").write_text("private")
    item = flow.create_new_flow_batch([str(tmp_path / "notes.txt"), "x"], time_to_live=60)
    assert item.get_datapoints()[0].text == str(tmp_path / "notes.txt"), "a non-media file is never read"
    item.stop()
    with pytest.raises(FailedUploadException, match=r"datapoints\[0\]\[0\]: 'shots/a.pgn'"):
        client.validation.create_compare_set("typo gold", "?", [["shots/a.pgn", "b"]], ["b"])
    flow.delete()


def test_async_validation_sets_are_the_twins(flowlab_server: ServerProcess) -> None:
    import asyncio

    from flowlab import AsyncClient, AsyncValidationSet

    async def main() -> None:
        async with AsyncClient(url=flowlab_server.url, api_key=flowlab_server.api_key) as client:
            made = await client.validation.create_compare_set("async-9d1c", "?", [["x", "y"]], ["x"], data_type="text")
            assert isinstance(made, AsyncValidationSet)
            found = await client.validation.find_validation_sets(name="async-9d1c")
            assert [s.id for s in found] == [made.id]
            await made.update_should_alert(False)
            assert (await client.validation.get_validation_set_by_id(made.id)).should_alert is False
            await made.delete()
            assert await client.validation.find_validation_sets(name="async-9d1c") == []

    asyncio.run(main())
