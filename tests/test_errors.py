"""Bad input gets a clear, typed error that names the field, and nothing acknowledged is lost."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

import httpx
import pytest

import flowlab
from flowlab import Client

from .conftest import ServerProcess


def png_bytes() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"\x00\xff\x00\x00"
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def flow(client: Client) -> flowlab.Flow:
    return client.flow.create_ranking_flow(name="errors", instruction="Which?", max_response_threshold=5)


def raw(server: ServerProcess, key: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key or server.api_key}"}
    return httpx.Client(base_url=server.url, headers=headers)


def test_unknown_ids_are_404(client: Client, flow: flowlab.Flow) -> None:
    with pytest.raises(flowlab.NotFound, match="find_flows"):
        client.flow.get_flow_by_id("flow_doesnotexist")
    with pytest.raises(flowlab.NotFound):
        flow.get_flow_item("item_doesnotexist")


def test_wrong_key_is_401(flowlab_server: ServerProcess) -> None:
    with (
        Client(url=flowlab_server.url, api_key="fl_key_wrong") as bad,
        pytest.raises(flowlab.AuthError, match="not valid") as err,
    ):
        bad.flow.find_flows()
    assert err.value.status == 401
    assert httpx.get(f"{flowlab_server.url}/v1/flows").status_code == 401


def test_another_researchers_flow_is_404(client: Client, flow: flowlab.Flow, flowlab_server: ServerProcess) -> None:
    other_key = client.create_api_key("someone else").key
    with Client(url=flowlab_server.url, api_key=other_key) as other:
        with pytest.raises(flowlab.NotFound):
            other.flow.get_flow_by_id(flow.id)
        assert flow.id not in [f.id for f in other.flow.find_flows(amount=100)]
        with pytest.raises(flowlab.AuthError) as err:
            other.create_api_key("nested")  # only the admin key makes keys
        assert err.value.status == 403


def test_annotator_token_on_researcher_routes_is_403(
    client: Client, flow: flowlab.Flow, flowlab_server: ServerProcess
) -> None:
    token = client.annotators.create("curious").token
    with Client(url=flowlab_server.url, api_key=token) as as_annotator:
        for call in (
            lambda: as_annotator.flow.find_flows(),
            lambda: as_annotator.flow.get_flow_by_id(flow.id),
            lambda: as_annotator.annotators.list(),
        ):
            with pytest.raises(flowlab.AuthError) as err:
                call()
            assert err.value.status == 403
    # ...and a researcher key on annotator routes is refused the other way round.
    assert raw(flowlab_server).post("/v1/tasks/next", json={}).status_code == 403


def test_malformed_json_and_wrong_types_are_400_naming_the_field(flowlab_server: ServerProcess) -> None:
    http = raw(flowlab_server)
    r = http.post("/v1/flows", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.headers["content-type"].startswith("application/problem+json")
    r = http.post("/v1/flows", json={"name": "n", "instruction": "i", "max_response_threshold": "lots"})
    assert r.status_code == 400 and r.json()["field"] == "max_response_threshold"
    r = http.post("/v1/flows", json={"name": "n", "instruction": "i", "max_responses": 3})
    assert r.status_code == 400 and r.json()["field"] == "max_responses"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_response_threshold": -1}, "max_response_threshold"),
        ({"max_response_threshold": 0}, "max_response_threshold"),
        ({"max_response_threshold": 5, "min_response_threshold": -2}, "min_response_threshold"),
        ({"max_response_threshold": 5, "min_response_threshold": 50}, "min_response_threshold"),
        ({"max_response_threshold": 5, "lease_seconds": 0}, "lease_seconds"),
        ({"max_response_threshold": 5, "gold_rate": 1.5}, "gold_rate"),
    ],
)
def test_bad_thresholds_are_refused(client: Client, kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(flowlab.ValidationError) as err:
        client.flow.create_ranking_flow(name="bad", instruction="Which?", **kwargs)  # type: ignore[arg-type]
    assert err.value.field == field and err.value.status == 422


def test_inverted_thresholds_in_update_config(flow: flowlab.Flow) -> None:
    with pytest.raises(flowlab.ValidationError, match="min_response_threshold"):
        flow.update_config(min_response_threshold=500)
    with pytest.raises(flowlab.ValidationError):
        flow.update_config()


@pytest.mark.parametrize("ttl", [0, -5, float("inf")])
def test_ttl_must_be_positive(flow: flowlab.Flow, ttl: float) -> None:
    with pytest.raises(flowlab.ValidationError) as err:
        flow.create_new_flow_batch(datapoints=["a", "b"], time_to_live=ttl)
    assert err.value.field == "time_to_live"


def test_empty_and_oversized_batches(flow: flowlab.Flow) -> None:
    with pytest.raises(flowlab.ValidationError, match="at least 2") as err:
        flow.create_new_flow_batch(datapoints=[])
    assert err.value.field == "datapoints"
    with pytest.raises(flowlab.ValidationError, match="at most 1000"):
        flow.create_new_flow_batch(datapoints=[f"t{i}" for i in range(1001)])
    with pytest.raises(flowlab.ValidationError, match="not a single value"):
        flow.create_new_flow_batch(datapoints="just one string")
    with pytest.raises(flowlab.ValidationError, match="unknown keys"):
        flow.create_new_flow_batch(datapoints=[{"id": "a", "txt": "typo"}, "b"])
    with pytest.raises(flowlab.ValidationError, match="share the id") as err:
        flow.create_new_flow_batch(datapoints=[{"id": "a", "text": "x"}, {"id": "a", "text": "y"}])
    assert err.value.field == "datapoints[1].id"
    with pytest.raises(flowlab.ValidationError) as err:
        flow.create_new_flow_batch(datapoints=["ok", {"id": "u", "url": "javascript:alert(1)"}])
    assert err.value.field == "datapoints[1].url"


def test_unknown_file_type_is_415(flow: flowlab.Flow, tmp_path: Path) -> None:
    notes = tmp_path / "notes.bin"
    notes.write_bytes(b"\x00\x01 not an image at all")
    with pytest.raises(flowlab.ValidationError, match="cannot recognise") as err:
        flow.create_new_flow_batch(datapoints=[notes, "b"])
    assert err.value.status == 415


def test_oversized_upload_is_413(tmp_path: Path) -> None:
    server = ServerProcess(data_dir=tmp_path, extra_args=["--max-upload-mb", "0.01"])
    server.start()
    try:
        big = tmp_path / "big.png"
        big.write_bytes(png_bytes() + b"\x00" * 20_000)
        with server.client() as client:
            flow = client.flow.create_ranking_flow(name="big", instruction="Which?", max_response_threshold=3)
            with pytest.raises(flowlab.ValidationError, match="larger than this server accepts") as err:
                flow.create_new_flow_batch(datapoints=[big, "b"])
            assert err.value.status == 413
    finally:
        server.stop()


def test_media_datapoints_are_uploaded_typed_and_served_back(
    client: Client, flow: flowlab.Flow, tmp_path: Path
) -> None:
    image = tmp_path / "pic.png"
    image.write_bytes(png_bytes())
    wav = tmp_path / "clip.wav"
    wav.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 24)
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 32)
    item = flow.create_new_flow_batch(
        datapoints=[str(image), wav, {"id": "vid", "path": str(video)}, "https://example.org/cat.jpg", "plain text"]
    )
    points = item.get_datapoints()
    assert [p.kind for p in points] == ["image", "audio", "video", "image", "text"]
    assert points[0].key == "pic.png" and points[2].key == "vid", "a file is keyed by its name, as hosted"
    assert points[0].source == str(image) and points[1].source == str(wav), "its path as given is kept"
    served = httpx.get(f"{client.url}/media/{points[0].media}")
    assert served.content == image.read_bytes() and served.headers["content-type"] == "image/png"
    assert "sandbox" in served.headers["content-security-policy"]
    # Uploading the same bytes again stores nothing new: media are content-addressed.
    again = flow.create_new_flow_batch(datapoints=[image, "x"]).get_datapoints()
    assert again[0].media == points[0].media


def test_duplicate_contents_get_distinct_keys(flow: flowlab.Flow) -> None:
    item = flow.create_new_flow_batch(datapoints=["same", "same", "other", {"id": "mine", "text": "same"}])
    assert item.keys == ["same", "same#2", "other", "mine"]


def test_second_answer_counts_once_over_http(researcher: Client, flowlab_server: ServerProcess) -> None:
    # A researcher of its own: their annotator is handed this item's tasks, not those of items other tests left.
    flow = researcher.flow.create_ranking_flow(name="errors", instruction="Which?", max_response_threshold=5)
    item = flow.create_new_flow_batch(datapoints=["a", "b", "c"], time_to_live=60)  # a pair each, never twice
    ann = raw(flowlab_server, researcher.annotators.create("twice").token)
    task = ann.post("/v1/tasks/next", json={}).json()
    assert task["item_id"] == item.id
    first = ann.post(f"/v1/tasks/{task['task_id']}/answer", json={"choice": "a"}).json()
    second = ann.post(f"/v1/tasks/{task['task_id']}/answer", json={"choice": "b"}).json()
    assert (first["status"], second["status"]) == ("accepted", "duplicate")
    assert item.get_response_count() == 1
    unknown = ann.post("/v1/tasks/task_nope/answer", json={"choice": "a"})
    assert unknown.status_code == 404
    fresh = ann.post("/v1/tasks/next", json={}).json()
    assert fresh["item_id"] == item.id
    bad = ann.post(f"/v1/tasks/{fresh['task_id']}/answer", json={"choice": "c"})
    assert bad.status_code == 422 and bad.json()["field"] == "choice" and bad.json()["code"] == "invalid_choice"
    assert ann.post(f"/v1/tasks/{fresh['task_id']}/answer", json={"choice": "b"}).json()["status"] == "accepted"
    item.stop()


def test_sdk_maps_server_errors_and_network_failures() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/flows/flow_conflict":
            return httpx.Response(
                409, json={"title": "Conflict", "status": 409, "detail": "It ended.", "code": "item_ended"}
            )
        return httpx.Response(503, text="<html>proxy error</html>")

    with Client(api_key="k", transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(flowlab.Conflict, match="It ended") as err:
            client.flow.get_flow_by_id("flow_conflict")
        assert err.value.code == "item_ended"
        with pytest.raises(flowlab.APIError, match="503") as err2:
            client.flow.find_flows()
        assert err2.value.status == 503

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with (
        Client(api_key="k", transport=httpx.MockTransport(refuse)) as client,
        pytest.raises(flowlab.ConnectError, match="Is `flowlab serve` running"),
    ):
        client.flow.find_flows()


def test_concurrent_deletes_of_one_flow_give_one_204_and_404s(client: Client, flowlab_server: ServerProcess) -> None:
    import asyncio

    flow = client.flow.create_ranking_flow(name="twice", instruction="Which?", max_response_threshold=3)

    async def delete_thrice() -> list[int]:
        async with httpx.AsyncClient(
            base_url=flowlab_server.url, headers={"Authorization": f"Bearer {flowlab_server.api_key}"}
        ) as http:
            rs = await asyncio.gather(*(http.delete(f"/v1/flows/{flow.id}") for _ in range(3)))
        return sorted(r.status_code for r in rs)

    assert asyncio.run(delete_thrice()) == [204, 404, 404]


def test_unparseable_urls_and_deep_json_are_4xx(flow: flowlab.Flow, flowlab_server: ServerProcess) -> None:
    with pytest.raises(flowlab.ValidationError) as err:
        flow.create_new_flow_batch(datapoints=["ok", {"id": "u", "url": "http://[::1"}])
    assert err.value.field == "datapoints[1].url"
    body = '{"datapoints":[{"text":"a"},{"text":"b"}],"private_metadata":{"x":' + "[" * 5000 + "]" * 5000 + "}}"
    r = raw(flowlab_server).post(
        f"/v1/flows/{flow.id}/items", content=body.encode(), headers={"Content-Type": "application/json"}
    )
    assert 400 <= r.status_code < 500


def test_malformed_validation_pairs_are_refused_at_creation(client: Client) -> None:
    with pytest.raises(flowlab.ValidationError) as err:
        client.flow.create_ranking_flow(
            name="gold", instruction="Which?", validation_pairs=[({"url": "http://[::1"}, "b", "a")]
        )
    assert err.value.field == "validation_pairs[0].a.url"


def test_text_that_names_a_local_non_media_file_is_sent_as_text(
    flow: flowlab.Flow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "notes.txt").write_text("secret")
    monkeypatch.chdir(tmp_path)
    item = flow.create_new_flow_batch(datapoints=["notes.txt", "other"])
    points = item.get_datapoints()
    assert points[0].kind == "text" and points[0].text == "notes.txt"


def test_resuming_an_ended_items_stream_closes_it(client: Client, flowlab_server: ServerProcess) -> None:
    flow = client.flow.create_ranking_flow(name="ended", instruction="Which?", max_response_threshold=3)
    item = flow.create_new_flow_batch(datapoints=["a", "b"], time_to_live=60)
    status = item.stop()
    with httpx.stream(
        "GET",
        f"{flowlab_server.url}/v1/items/{item.id}/events",
        timeout=5,
        headers={"Authorization": f"Bearer {flowlab_server.api_key}", "Last-Event-ID": str(status.version)},
    ) as r:
        body = r.read()
    assert b"event: item" not in body


def test_static_paths_name_files_or_get_404(flowlab_server: Any) -> None:
    for path in ("/static/%00", "/static/annotate.js%00", "/static/..%2fpages.py", "/static/nope.js"):
        r = httpx.get(flowlab_server.url + path)
        assert r.status_code == 404, (path, r.status_code)
    r = httpx.get(flowlab_server.url + "/static/annotate.js")
    assert r.status_code == 200 and r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["content-type"].startswith("text/javascript")


def test_join_links_never_come_from_the_host_header(flowlab_server: Any) -> None:
    r = httpx.post(
        flowlab_server.url + "/v1/annotators",
        json={"name": "host-check"},
        headers={"Authorization": f"Bearer {flowlab_server.api_key}", "Host": "evil.example"},
    )
    assert r.status_code == 201
    link = r.json()["join_url"]
    assert "evil.example" not in link and link.startswith(flowlab_server.url), link


def test_head_of_media_gives_its_headers(flowlab_server: Any) -> None:
    data = png_bytes()
    r = httpx.post(
        flowlab_server.url + "/v1/media",
        content=data,
        headers={
            "Authorization": f"Bearer {flowlab_server.api_key}",
            "Content-Type": "image/png",
            "X-Filename": "a.png",
        },
    )
    sha = r.json()["sha256"]
    got = httpx.get(f"{flowlab_server.url}/media/{sha}")
    head = httpx.head(f"{flowlab_server.url}/media/{sha}")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    assert head.headers["content-length"] == str(len(data))


def test_authentication_comes_before_the_body(flowlab_server: Any) -> None:
    # A broken body from nobody in particular: 401, not a 400 that describes the body.
    r = httpx.post(flowlab_server.url + "/v1/flows", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 401
    # A large one is refused before it is read (the server never holds it).
    big = b"x" * (40 * 2**20)
    r = httpx.post(flowlab_server.url + "/v1/media", content=big, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401
    # An authenticated JSON body above the JSON limit is 413, naming the limit.
    r = httpx.post(
        flowlab_server.url + "/v1/flows",
        content=b'{"name": "' + b"x" * (33 * 2**20) + b'"}',
        headers={"Authorization": f"Bearer {flowlab_server.api_key}", "Content-Type": "application/json"},
    )
    assert r.status_code == 413 and "larger than this server accepts" in r.json()["detail"]
    assert httpx.get(flowlab_server.url + "/v1/health").status_code == 200, "health needs no key"


FLOW = {"name": "n", "instruction": "Which?"}
HOSTILE = [
    # (path template, body, status, field): every one refused naming the field
    ("/v1/flows", {**FLOW, "max_response_threshold": 2**70}, 422, "max_response_threshold"),
    ("/v1/flows", {**FLOW, "max_response_threshold": 2_000_000}, 422, "max_response_threshold"),
    ("/v1/flows", {**FLOW, "name": "x" * 10_000}, 422, "name"),
    ("/v1/flows", {**FLOW, "instruction": "x" * 20_000}, 422, "instruction"),
    ("/v1/flows", {**FLOW, "max_response_threshold": "300"}, 400, "max_response_threshold"),
    ("/v1/flows", {**FLOW, "allow_ties": "true"}, 400, "allow_ties"),
    ("/v1/flows", {"instruction": "no name"}, 400, "name"),
    ("/v1/flows/{flow}/items", {"datapoints": [{"text": "a"}, {"text": "b"}], "context": "x" * 60_000}, 422, "context"),
    (
        "/v1/flows/{flow}/items",
        {"datapoints": [{"text": "a"}, {"text": "b"}], "time_to_live": 1e-300},
        422,
        "time_to_live",
    ),
    (
        "/v1/flows/{flow}/items",
        {"datapoints": [{"text": "a"}, {"text": "b"}], "time_to_live": "60"},
        400,
        "time_to_live",
    ),
    ("/v1/flows/{flow}/items", {"datapoints": [{"text": "a"}, {"txt": "b"}]}, 400, "datapoints[1].txt"),
    ("/v1/keys", {"name": "k" * 1000}, 422, "name"),
]


@pytest.mark.parametrize(("path", "body", "status", "field"), HOSTILE)
def test_hostile_input_is_refused_naming_the_field(
    flowlab_server: ServerProcess, flow: flowlab.Flow, path: str, body: dict[str, Any], status: int, field: str
) -> None:
    r = raw(flowlab_server).post(path.format(flow=flow.id), json=body)
    assert r.status_code == status, r.text
    assert r.json()["field"] == field, r.json()
    assert r.headers["content-type"].startswith("application/problem+json")


def test_an_out_of_range_number_names_its_field(flowlab_server: ServerProcess) -> None:
    body = b'{"name": "n", "instruction": "i", "lease_seconds": 1e400}'  # not JSON's to hold: infinity
    r = raw(flowlab_server).post("/v1/flows", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code in (400, 422) and r.json()["field"] == "lease_seconds", r.text


def test_a_json_body_must_say_it_is_json(flowlab_server: ServerProcess) -> None:
    r = raw(flowlab_server).post(
        "/v1/flows", content=b'{"name": "n", "instruction": "i"}', headers={"Content-Type": "text/plain"}
    )
    assert r.status_code == 415 and "application/json" in r.json()["detail"]


def test_a_batch_of_tasks_stays_a_few_megabytes(researcher: Client, flowlab_server: ServerProcess) -> None:
    # A researcher of its own: the batch holds this flow's big tasks only, not small ones other tests left.
    flow = researcher.flow.create_ranking_flow("big texts", "Which?", max_response_threshold=100)
    big = "x" * 190_000
    flow.create_new_flow_batch([big + str(i) for i in range(12)], context="c" * 40_000, data_type="text")
    token = researcher.annotators.create("batcher").token
    r = httpx.post(
        f"{flowlab_server.url}/v1/tasks/next-batch", json={"n": 100}, headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 200 and 1 <= len(r.json()["tasks"]) < 100
    assert len(r.content) < 6_000_000, f"{len(r.content):,} bytes"
    flow.delete()
