"""Classify flows, written as hosted-SDK users write them (only the import and the client differ), against a
real server and the simulated crowd; and the kind's lifecycle in process, with a fake clock."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

import flowlab
from flowlab import ClassifyDatapointResult, ClassifyFlowItemResult, FlowItemState, schemas
from flowlab.crowd import SimulatedCrowd
from flowlab.server.clock import FakeClock
from flowlab.server.errors import Invalid

from .conftest import ServerProcess
from .test_history import _service, _settle
from .test_lifecycle import RESEARCHER, annotator
from .test_rlhf import task_of

ANIMALS = ["cat", "dog", ("Bird", "bird")]


def test_a_classify_flow_end_to_end_as_hosted_code_writes_it(flowlab_server: ServerProcess) -> None:
    client = flowlab.Client(url=flowlab_server.url, api_key=flowlab_server.api_key)  # hosted: RapidataClient()
    flow = client.flow.create_classify_flow(
        name="Animals",
        instruction="Which animal is described?",
        categories=ANIMALS,
        max_responses_per_datapoint=5,
        min_responses_per_datapoint=3,
    )
    truth = ["cat", "dog", "bird", "cat", "dog", "bird", "cat", "dog"]
    texts = [f"description {i} of a {t}" for i, t in enumerate(truth)]
    item = flow.create_new_flow_batch(
        datapoints=texts,
        contexts=[f"photo {i}" for i in range(len(texts))],
        data_type="text",
        private_metadata=[{"true_category": t} for t in truth],
        time_to_live=60,
    )
    assert item.get_progress().state in (FlowItemState.PENDING, "Pending")
    seen = []
    with SimulatedCrowd(flowlab_server.url, flowlab_server.api_key, annotators=12, rate=3000, accuracy=0.8, seed=3):
        deadline = time.monotonic() + 30
        while item.get_response_count() < 40 and time.monotonic() < deadline:
            seen.append(item.get_response_count())  # live, never blocks
            time.sleep(0.05)
        results = item.get_results(timeout=30)
    assert isinstance(results, ClassifyFlowItemResult)
    assert results.total_responses == 40 == item.get_response_count()
    assert item.get_progress().state == FlowItemState.COMPLETED
    assert seen == sorted(seen)
    assert list(results.datapoints) == texts
    right = 0
    for key, r in results.datapoints.items():
        assert isinstance(r, ClassifyDatapointResult)
        assert list(r.distribution) == ["cat", "dog", "bird"], "every category, zero-filled, in order"
        assert sum(r.distribution.values()) == r.response_count == 5
        top = max(r.distribution.values())
        if list(r.distribution.values()).count(top) > 1:
            assert r.majority_value is None, "a tie has no majority"
        right += r.majority_value == truth[texts.index(key)]
        assert 0 < (r.confidence or 0) <= 1 and r.weighted_value in ("cat", "dog", "bird")
    assert right >= 6, f"the majority of an 80 % crowd is right on most datapoints ({right} of 8)"
    frame = results.to_dataframe()
    assert list(frame.columns[-3:]) == ["n_cat", "n_dog", "n_bird"] and frame.shape[0] == 8
    labels = item.get_labels()
    assert len(labels) == 40 and labels.groupby(["annotator_id", "datapoint"]).size().max() == 1, (
        "nobody labels a datapoint twice"
    )
    with pytest.raises(ValueError, match="only available for ranking"):
        item.get_win_loss_matrix()
    again = client.flow.get_flow_by_id(flow.id)
    assert isinstance(again, flowlab.ClassifyFlow) and again.config.categories[2].label == "Bird"
    assert [i.id for i in again.get_flow_items()] == [item.id]
    flow.delete()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"categories": ["only"]}, "between 2 and 8"),
        ({"categories": [str(i) for i in range(9)]}, "between 2 and 8"),
        ({"categories": [("A", "x"), ("B", "x")]}, "unique"),
        ({"categories": ["a", "b"], "min_responses_per_datapoint": 0}, "at least 1"),
        (
            {"categories": ["a", "b"], "max_responses_per_datapoint": 2, "min_responses_per_datapoint": 3},
            "at least min",
        ),
    ],
)
def test_classify_flow_arguments_are_checked_as_hosted_checks_them(
    client: flowlab.Client, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        client.flow.create_classify_flow(name="bad", instruction="?", **kwargs)  # type: ignore[arg-type]


def test_classify_batches_check_their_lists(client: flowlab.Client) -> None:
    flow = client.flow.create_classify_flow(name="lists", instruction="?", categories=["a", "b"])
    with pytest.raises(flowlab.ValidationError, match="one per datapoint") as err:
        flow.create_new_flow_batch(["x", "y"], contexts=["only one"])
    assert err.value.field == "contexts"
    with pytest.raises(flowlab.ValidationError, match="one per datapoint"):
        flow.create_new_flow_batch(["x", "y"], private_metadata=[{"k": "v"}])
    with pytest.raises(flowlab.ValidationError, match="must be a list") as err:
        flow.create_new_flow_batch(["x", "y"], context_assets=["https://e.org/a.png", []])
    assert err.value.field == "context_assets[0]"
    # A ranking flow given categories straight over HTTP: the server refuses it, naming the field.
    r = httpx.post(
        f"{client.url}/v1/flows",
        json={"name": "r", "instruction": "?", "categories": [{"label": "a", "value": "a"}]},
        headers={"Authorization": f"Bearer {client.api_key}"},
    )
    assert r.status_code == 422 and r.json()["field"] == "categories"
    flow.delete()


async def yes_no_flow(service: Any, *, max_answers: int) -> schemas.Flow:
    """An in-process classify flow with categories y/n, at least one answer per datapoint on average."""
    return await service.flows.create(  # type: ignore[no-any-return]
        RESEARCHER,
        schemas.FlowCreate(
            name="c",
            instruction="?",
            kind="classify",
            categories=[schemas.Category("Yes", "y"), schemas.Category("No", "n")],
            max_response_threshold=max_answers,
            min_response_threshold=1,
        ),
    )


def test_classify_lifecycle_with_a_fake_clock(tmp_path: Path) -> None:
    clock = FakeClock()

    async def scenario() -> None:
        service, store = await _service(tmp_path, clock)
        people = [await annotator(service, f"a{i}") for i in range(3)]
        flow = await yes_no_flow(service, max_answers=2)
        status = await service.create_item(
            RESEARCHER,
            flow.id,
            schemas.ItemCreate(datapoints=[schemas.DatapointIn(text=t) for t in ("p", "q", "r")], time_to_live=60),
        )
        item = service.items.live[status.id]
        served: dict[str, list[int]] = {}
        for who in people[:2]:
            for _ in range(3):
                task = service.answers.lease_next(who)
                assert task is not None and task.kind == "classify" and task.b is None
                assert [c.value for c in task.categories or []] == ["y", "n"]
                served.setdefault(who.id, []).append(task.a.ref)
                with pytest.raises(Invalid, match="not a category"):
                    await service.answers.answer(who, task.task_id, schemas.Answer(choice="maybe"))
                ack = await service.answers.answer(who, task.task_id, schemas.Answer(choice="y"))
                assert ack.status == "accepted"
            assert service.answers.lease_next(who) is None, "nothing left this annotator has not labelled"
        assert all(sorted(refs) == [0, 1, 2] for refs in served.values())
        assert item.state == "Completed", "every datapoint reached its maximum of 2"
        assert service.answers.lease_next(people[2]) is None
        results = await service.items.results_of(RESEARCHER, item.id)
        assert isinstance(results, schemas.ClassifyResults)
        assert [d.distribution for d in results.datapoints] == [{"y": 2, "n": 0}] * 3
        await _settle(service)
        ended = await service.items.results_of(RESEARCHER, item.id)
        assert ended == results, "read back from the database as it was"

        # Out of time with 2 answers on 3 datapoints: below the average minimum of 1 per datapoint.
        short = await service.create_item(
            RESEARCHER,
            flow.id,
            schemas.ItemCreate(datapoints=[schemas.DatapointIn(text=t) for t in ("s", "t", "u")], time_to_live=10),
        )
        for who in people[:2]:
            task = service.answers.lease_next(who)
            assert task is not None
            await service.answers.answer(who, task.task_id, schemas.Answer(choice="n" if who is people[0] else "y"))
        clock.advance(11)
        service.tick()
        assert service.items.live[short.id].state == "Incomplete"
        await store.close()

    asyncio.run(scenario())


def test_a_live_classify_item_survives_a_restart(tmp_path: Path) -> None:
    clock = FakeClock()
    made: dict[str, str] = {}

    async def first() -> None:
        service, store = await _service(tmp_path, clock)
        who = await annotator(service, "ada")
        made["who"] = who.id
        flow = await yes_no_flow(service, max_answers=3)
        status = await service.create_item(
            RESEARCHER, flow.id, schemas.ItemCreate(datapoints=[schemas.DatapointIn(text="p")], time_to_live=60)
        )
        made["item"] = status.id
        task = service.answers.lease_next(who)
        assert task is not None
        await service.answers.answer(who, task.task_id, schemas.Answer(choice="n"))
        await store.close()

    async def second() -> None:
        service, store = await _service(tmp_path, clock)
        item = service.items.live[made["item"]]
        assert item.response_count == 1 and item.tally.counts.tolist() == [[0, 1]]
        ada = service.people.annotators[made["who"]].principal
        assert service.answers.lease_next(ada) is None, "ada already labelled the only datapoint"
        other = await annotator(service, "bo")
        assert service.answers.lease_next(other) is not None
        await store.close()

    asyncio.run(first())
    asyncio.run(second())


def test_each_datapoint_brings_its_own_context_assets(client: flowlab.Client) -> None:
    flow = client.flow.create_classify_flow(name="assets", instruction="?", categories=["a", "b"])
    item = flow.create_new_flow_batch(
        ["x", "y"], context_assets=[["https://example.org/ref-x.png", "a caption"], []], data_type="text"
    )
    own = {d.key: d.context_assets for d in item.get_datapoints()}
    assert [(a.url, a.text) for a in own["x"] or []] == [("https://example.org/ref-x.png", None), (None, "a caption")]
    assert own["y"] == []
    ann = client.annotators.create("assets-viewer")
    seen = {}
    for _ in range(2):
        task = task_of(client, ann.token, item.id)
        seen[task.a.text] = [a.url or a.text for a in task.context_assets]
    assert seen == {"x": ["https://example.org/ref-x.png", "a caption"], "y": []}
    # A ranking batch shares one list of context assets; per datapoint is refused, naming the datapoint.
    ranking = client.flow.create_ranking_flow(name="r", instruction="?")
    r = httpx.post(
        f"{client.url}/v1/flows/{ranking.id}/items",
        json={"datapoints": [{"text": "p"}, {"text": "q", "context_assets": [{"kind": "text", "text": "c"}]}]},
        headers={"Authorization": f"Bearer {client.api_key}"},
    )
    assert r.status_code == 422 and r.json()["field"] == "datapoints[1].context_assets"
    flow.delete()
    ranking.delete()


async def gold_flow(service: Any, *, gold_rate: float) -> schemas.Flow:
    """A y/n classify flow whose gold label says "a cat" is y (with an explanation for a wrong answer)."""
    made = await service.flows.create_validation_set(
        RESEARCHER,
        schemas.ValidationSetCreate(
            name="gold",
            labels=[schemas.ValidationLabel(schemas.DatapointIn(text="a cat"), ["Yes"], explanation="It is a cat.")],
        ),
    )
    assert made.kind == "classify" and made.label_count == 1
    return await service.flows.create(  # type: ignore[no-any-return]
        RESEARCHER,
        schemas.FlowCreate(
            name="g",
            instruction="Is it a cat?",
            kind="classify",
            categories=[schemas.Category("Yes", "y"), schemas.Category("No", "n")],
            max_response_threshold=3,
            min_response_threshold=1,
            validation_set_id=made.id,
            gold_rate=gold_rate,
        ),
    )


def test_classify_gold_is_asked_checked_explained_and_survives_a_restart(tmp_path: Path) -> None:
    clock = FakeClock()
    made: dict[str, str] = {}

    async def first() -> None:
        service, store = await _service(tmp_path, clock)
        flow = await gold_flow(service, gold_rate=1.0)
        assert flow.validation_label_count == 1
        status = await service.create_item(
            RESEARCHER, flow.id, schemas.ItemCreate(datapoints=[schemas.DatapointIn(text="p")], time_to_live=60)
        )
        made["item"] = status.id
        careless, careful = await annotator(service, "careless"), await annotator(service, "careful")
        made["careless"], made["careful"] = careless.id, careful.id
        for who, choice in ((careless, "n"), (careful, "y")):
            task = service.answers.lease_next(who)
            assert task is not None and task.a.text == "a cat", "every task is gold at gold_rate 1"
            assert 0 <= task.a.ref < 1, "a gold task carries a ref of the item, like any other"
            ack = await service.answers.answer(who, task.task_id, schemas.Answer(choice=choice))
            assert ack.status == "accepted"
            assert ack.explanation == ("It is a cat." if choice == "n" else None), "explained only when wrong"
        item = service.items.live[status.id]
        assert item.response_count == 0, "gold answers are not the item's answers"
        assert {i: tuple(g) for i, g in item.tally.gold.items()} == {0: (1, 0), 1: (1, 1)}
        assert service.people.annotators[careless.id].gold_answered == 1
        await store.close()

    async def second() -> None:
        service, store = await _service(tmp_path, clock)
        item = service.items.live[made["item"]]
        gold = {name: item.tally.gold[item.tally.annotators[made[name]]] for name in ("careless", "careful")}
        assert gold == {"careless": [1, 0], "careful": [1, 1]}, "replayed from the database, per item"
        await store.close()

    asyncio.run(first())
    asyncio.run(second())


def test_gold_decides_between_annotators_who_disagree(tmp_path: Path) -> None:
    """Two annotators who contradict each other on every datapoint: agreement alone cannot tell who is
    right; the gold record does, and the weighted consensus follows the one who passes gold."""
    clock = FakeClock()

    async def scenario() -> None:
        service, store = await _service(tmp_path, clock)
        flow = await gold_flow(service, gold_rate=0.0)
        status = await service.create_item(
            RESEARCHER,
            flow.id,
            schemas.ItemCreate(datapoints=[schemas.DatapointIn(text=t) for t in "pqrs"], time_to_live=60),
        )
        item = service.items.live[status.id]
        good, bad = await annotator(service, "good"), await annotator(service, "bad")
        for who, choice in ((good, "y"), (bad, "n")):
            for _ in range(4):
                task = service.answers.lease_next(who)
                assert task is not None
                await service.answers.answer(who, task.task_id, schemas.Answer(choice=choice))
        before = await service.items.results_of(RESEARCHER, item.id)
        assert isinstance(before, schemas.ClassifyResults)
        assert {d.majority_value for d in before.datapoints} == {None}, "one each way: no majority"
        for who, right in ((good, 1), (bad, 0)):
            for _ in range(6):
                item.tally.add_gold(who.id, right)  # as a gold answer's count does
        after = await service.items.results_of(RESEARCHER, item.id)
        assert isinstance(after, schemas.ClassifyResults)
        assert {d.weighted_value for d in after.datapoints} == {"y"}
        assert all((d.confidence or 0) > 0.8 for d in after.datapoints)
        await store.close()

    asyncio.run(scenario())


def test_classify_gold_from_a_hosted_classification_set(flowlab_server: ServerProcess) -> None:
    client = flowlab.Client(url=flowlab_server.url, api_key=flowlab_server.api_key)  # hosted: RapidataClient()
    vset = client.validation.create_classification_set(
        name="animals gold",
        instruction="Which animal is described?",
        answer_options=["cat", "dog", "Bird"],
        datapoints=["purrs and has whiskers", "barks at the postman"],
        truths=[["cat"], ["dog"]],
        data_type="text",
        explanations=["Purring is a cat's.", None],
    )
    assert vset.label_count == 2 and vset.kind == "classify"
    assert client.validation.get_validation_set_by_id(vset.id).name == "animals gold"
    flow = client.flow.create_classify_flow(
        "gold animals", "Which animal is described?", ANIMALS, 4, 4, vset.id, gold_rate=0.5
    )  # hosted's positional order, and flowlab's gold rate
    assert flow.config.validation_label_count == 2
    truth = ["cat", "dog", "bird", "cat"]
    item = flow.create_new_flow_batch(
        [f"animal {i}" for i in range(4)], data_type="text", private_metadata=[{"true_category": t} for t in truth]
    )
    before = {a.id: a.gold_answered for a in client.annotators.list()}
    with SimulatedCrowd(flowlab_server.url, flowlab_server.api_key, annotators=6, rate=6000, seed=8, name="goldcl"):
        results = item.get_results(timeout=30)
    after = [a for a in client.annotators.list() if a.name.startswith("goldcl")]
    assert sum(a.gold_answered - before.get(a.id, 0) for a in after) > 0, "gold labels were mixed in"
    assert all(a.gold_correct <= a.gold_answered for a in after)
    assert results.total_responses == 16
    with pytest.raises(ValueError, match="must name one or more of answer_options"):
        client.validation.create_classification_set("bad", "?", ["a", "b"], ["x"], [["c"]])
    pairs = client.validation.create_compare_set("pairs", "?", [["good", "bad"]], ["good"], data_type="text")
    with pytest.raises(flowlab.ValidationError, match="holds gold for ranking flows") as err:
        client.flow.create_classify_flow("wrong set", "?", ["a", "b"], validation_set_id=pairs.id)
    assert err.value.field == "validation_set_id"
    flow.delete()


def test_gold_goes_only_with_work_and_once_per_annotator(tmp_path: Path) -> None:
    async def scenario() -> None:
        service, store = await _service(tmp_path, FakeClock())
        flow = await gold_flow(service, gold_rate=1.0)
        status = await service.create_item(
            RESEARCHER, flow.id, schemas.ItemCreate(datapoints=[schemas.DatapointIn(text="p")], time_to_live=60)
        )
        who = await annotator(service, "once")
        first = service.answers.lease_next(who)
        assert first is not None and first.a.text == "a cat", "gold first, at gold_rate 1"
        await service.answers.answer(who, first.task_id, schemas.Answer(choice="y"))
        real = service.answers.lease_next(who)
        assert real is not None and real.a.text == "p", "the one gold label was asked already: real work"
        await service.answers.answer(who, real.task_id, schemas.Answer(choice="n"))
        assert service.answers.lease_next(who) is None, "done with the item: no more gold either"
        assert service.items.live[status.id].state in ("Running", "Completed")
        await store.close()

    asyncio.run(scenario())
