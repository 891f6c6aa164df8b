"""flowlab.formats' RLHF exports on hand-built tasks and annotations: task records (threads → turns → messages)
and TRL's preference, prompt-completion and unpaired-preference rows."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flowlab import formats, schemas

SPEC = schemas.RlhfSpec(
    dimensions=[
        schemas.Dimension("helpful", "Helpfulness", min=1, max=5),
        schemas.Dimension("safe", "Safe", type="boolean", allow_na=True),
        schemas.Dimension("tone", type="category", options=["formal", "casual"]),
        schemas.Dimension("notes", type="text", required=False),
    ],
    likert_scale=7,
)
SHA = "ab" * 32


def single_turn() -> schemas.Datapoint:
    return schemas.Datapoint(
        index=0,
        key="q0",
        kind="conversation",
        prompt=[schemas.ChatMessage("user", "What is 2 + 2?")],
        responses=[
            schemas.Response("model-a", "text", text="4"),
            schemas.Response("model-b", "text", text="5"),
        ],
    )


def multi_turn() -> schemas.Datapoint:
    return schemas.Datapoint(
        index=1,
        key="q1",
        kind="conversation",
        prompt=[
            schemas.ChatMessage("system", "Be brief."),
            schemas.ChatMessage("user", "Draw a cat."),
            schemas.ChatMessage("assistant", "Here is a cat."),
            schemas.ChatMessage("user", "Now a dog."),
        ],
        responses=[
            schemas.Response("model-a", "text", text="I cannot draw."),
            schemas.Response("model-b", "image", media=SHA, media_type="image/png"),
            schemas.Response("model-c", "image", url="https://example.org/dog.jpg", media_type="image/jpeg"),
        ],
    )


def annotation(
    datapoint: int = 0,
    *,
    order: list[str] | None = None,
    ratings: dict[str, dict[str, schemas.RatingValue]] | None = None,
    rewrites: dict[str, str] | None = None,
    selected: str | None = "model-a",
    likert: int | None = None,
    justification: str | None = "A is correct, B is not.",
    annotator: str = "ann-1",
    task_id: str = "task-1",
) -> schemas.Annotation:
    return schemas.Annotation(
        task_id=task_id,
        annotator_id=annotator,
        datapoint=datapoint,
        order=order if order is not None else ["model-a", "model-b"],
        ratings=ratings if ratings is not None else {},
        rewrites=rewrites or {},
        selected=selected,
        likert=likert,
        justification=justification,
        created_at=1_700_000_000.25,
    )


def keys(notes: list[dict[str, Any]]) -> list[str]:
    return [n["key"] for n in notes]


def values(notes: list[dict[str, Any]]) -> dict[str, Any]:
    return {n["key"]: n["value"] for n in notes}


# ---------------------------------------------------------------- task records


def test_a_record_has_the_task_thread_turn_message_shape() -> None:
    a = annotation(
        ratings={"model-a": {"helpful": 5, "safe": True, "tone": "formal"}, "model-b": {"helpful": 1, "safe": None}},
        likert=2,
    )
    [rec] = formats.rlhf_records(
        [single_turn()],
        [a],
        item_id="item-9",
        spec=SPEC,
        contributors={"ann-1": "Ada"},
        metadata={"batch": "b1", "flowlab_item_id": "overridden?"},
    )
    assert set(rec) == {"task_id", "status", "created_at", "completed_at", "metadata", "contributor", "threads"}
    assert rec["task_id"] == "task-1"
    assert rec["status"] == "completed"
    assert rec["created_at"] == rec["completed_at"] == "2023-11-14T22:13:20.250Z"
    assert rec["metadata"] == {"batch": "b1", "flowlab_item_id": "item-9", "datapoint_key": "q0", "datapoint_index": 0}
    assert rec["contributor"] == {"id": "ann-1", "name": "Ada"}
    [thread] = rec["threads"]
    assert set(thread) == {"id", "turns", "annotations"} and thread["annotations"] == []
    [turn] = thread["turns"]
    assert set(turn) == {"id", "messages", "annotations"}
    user, first, second = turn["messages"]
    assert user == {
        "role": "user",
        "content": {"text": "What is 2 + 2?", "attachments": []},
        "source_id": "user",
        "annotations": [],
    }
    assert (first["role"], first["source_id"], first["content"]) == (
        "assistant",
        "model-a",
        {"text": "4", "attachments": []},
    )
    assert first["annotations"] == [
        {"key": "helpful", "value": 5, "type": "integer", "title": "Helpfulness"},
        {"key": "safe", "value": True, "type": "boolean", "title": "Safe"},
        {"key": "tone", "value": "formal", "type": "category", "title": "tone"},
    ]
    assert values(second["annotations"]) == {"helpful": 1, "safe": None}  # None: not applicable
    assert values(turn["annotations"]) == {
        "selected_model_id": "model-a",
        "likert_value": 2,
        "justification": "A is correct, B is not.",
    }
    json.dumps(rec)  # plain JSON throughout


def test_the_contributor_name_is_none_without_a_directory() -> None:
    [rec] = formats.rlhf_records([single_turn()], [annotation()], item_id="i", spec=SPEC)
    assert rec["contributor"] == {"id": "ann-1", "name": None}
    assert rec["metadata"] == {"flowlab_item_id": "i", "datapoint_key": "q0", "datapoint_index": 0}


def test_responses_are_listed_in_the_order_the_annotator_saw_them() -> None:
    a = annotation(order=["model-b", "model-a"])
    [rec] = formats.rlhf_records([single_turn()], [a], item_id="i", spec=SPEC)
    messages = rec["threads"][0]["turns"][-1]["messages"]
    assert [m["source_id"] for m in messages] == ["user", "model-b", "model-a"]
    assert [m["content"]["text"] for m in messages[1:]] == ["5", "4"]


def test_a_rewrite_annotation_appears_only_on_the_rewritten_response() -> None:
    a = annotation(ratings={"model-a": {"helpful": 4}, "model-b": {"helpful": 2}}, rewrites={"model-b": "It is 4."})
    [rec] = formats.rlhf_records([single_turn()], [a], item_id="i", spec=SPEC)
    _, first, second = rec["threads"][0]["turns"][-1]["messages"]
    assert keys(first["annotations"]) == ["helpful"]
    assert keys(second["annotations"]) == ["helpful", "rewrite"]
    assert second["annotations"][-1] == {"key": "rewrite", "value": "It is 4.", "type": "text", "title": "Rewrite"}


def test_ratings_follow_the_spec_order_and_keep_keys_it_no_longer_names() -> None:
    a = annotation(ratings={"model-a": {"legacy": 3, "notes": "fine", "helpful": 4}})
    [rec] = formats.rlhf_records([single_turn()], [a], item_id="i", spec=SPEC)
    first = rec["threads"][0]["turns"][-1]["messages"][1]
    assert keys(first["annotations"]) == ["helpful", "notes", "legacy"]
    assert first["annotations"][-1] == {"key": "legacy", "value": 3, "type": "integer", "title": "legacy"}


def test_turn_annotations_are_present_but_empty_when_not_given() -> None:
    a = annotation(selected=None, likert=None, justification=None)
    [rec] = formats.rlhf_records([single_turn()], [a], item_id="i", spec=SPEC)
    assert values(rec["threads"][0]["turns"][-1]["annotations"]) == {
        "selected_model_id": None,
        "likert_value": None,
        "justification": None,
    }


def test_earlier_conversation_becomes_earlier_turns_without_annotations() -> None:
    a = annotation(1, order=["model-c", "model-a", "model-b"], selected="model-c")
    [rec] = formats.rlhf_records([single_turn(), multi_turn()], [a], item_id="i", spec=SPEC)
    first, last = rec["threads"][0]["turns"]
    assert first["id"] != last["id"]
    assert first["annotations"] == []
    assert [(m["role"], m["source_id"], m["content"]["text"]) for m in first["messages"]] == [
        ("system", "system", "Be brief."),
        ("user", "user", "Draw a cat."),
        ("assistant", "history", "Here is a cat."),
    ]
    assert all(m["annotations"] == [] for m in first["messages"])
    assert [m["source_id"] for m in last["messages"]] == ["user", "model-c", "model-a", "model-b"]
    assert last["messages"][0]["content"]["text"] == "Now a dog."
    assert rec["metadata"]["datapoint_key"] == "q1"


def test_a_leading_system_message_joins_the_first_turn() -> None:
    d = single_turn()
    d.index, d.prompt = 5, [schemas.ChatMessage("system", "Be kind."), schemas.ChatMessage("user", "Hi")]
    [rec] = formats.rlhf_records([d], [annotation(5)], item_id="i", spec=SPEC)
    [turn] = rec["threads"][0]["turns"]
    assert [(m["role"], m["source_id"]) for m in turn["messages"]] == [
        ("system", "system"),
        ("user", "user"),
        ("assistant", "model-a"),
        ("assistant", "model-b"),
    ]


def test_media_and_url_responses_are_attachments_with_empty_text() -> None:
    a = annotation(1, order=["model-a", "model-b", "model-c"])
    [rec] = formats.rlhf_records([multi_turn()], [a], item_id="i", spec=SPEC)
    _, text, media, url = rec["threads"][0]["turns"][-1]["messages"]
    assert text["content"] == {"text": "I cannot draw.", "attachments": []}
    assert media["content"] == {"text": "", "attachments": [{"url": f"/media/{SHA}", "mime_type": "image/png"}]}
    assert url["content"] == {
        "text": "",
        "attachments": [{"url": "https://example.org/dog.jpg", "mime_type": "image/jpeg"}],
    }


def test_one_record_per_annotation() -> None:
    annotations = [annotation(task_id="t1"), annotation(task_id="t2", annotator="ann-2"), annotation(task_id="t3")]
    recs = formats.rlhf_records([single_turn()], annotations, item_id="i", spec=SPEC, contributors={"ann-2": "Bo"})
    assert [r["task_id"] for r in recs] == ["t1", "t2", "t3"]
    assert [r["contributor"]["name"] for r in recs] == [None, "Bo", None]


def test_annotations_that_do_not_fit_their_datapoints_are_refused() -> None:
    with pytest.raises(ValueError, match="datapoint 7"):
        formats.rlhf_records([single_turn()], [annotation(7)], item_id="i", spec=SPEC)
    with pytest.raises(ValueError, match="model-z"):
        formats.rlhf_records([single_turn()], [annotation(order=["model-a", "model-z"])], item_id="i", spec=SPEC)
    not_rlhf = schemas.Datapoint(index=0, key="x", kind="text", text="hello")
    with pytest.raises(ValueError, match="not an RLHF task"):
        formats.preference_rows([not_rlhf], [annotation()], spec=SPEC)


# ---------------------------------------------------------------- preference rows


def test_a_single_user_message_gives_plain_string_rows() -> None:
    [row] = formats.preference_rows([single_turn()], [annotation(likert=1)], spec=SPEC)
    assert row == {
        "prompt": "What is 2 + 2?",
        "chosen": "4",
        "rejected": "5",
        "margin": 1.0,
        "chosen_source_id": "model-a",
        "rejected_source_id": "model-b",
        "annotator_id": "ann-1",
        "key": "q0",
    }


@pytest.mark.parametrize(
    ("order", "selected", "likert", "margin"),
    [
        (["model-a", "model-b"], "model-a", 1, 1.0),  # first shown much better, and chosen
        (["model-a", "model-b"], "model-a", 3, 1 / 3),
        (["model-a", "model-b"], "model-a", 4, 0.0),  # about the same
        (["model-b", "model-a"], "model-a", 7, 1.0),  # second shown much better, and chosen
        (["model-b", "model-a"], "model-a", 6, 2 / 3),
        (["model-a", "model-b"], "model-b", 7, 1.0),
        (["model-a", "model-b"], "model-a", 6, 0.0),  # the Likert answer leans toward the rejected side
        (["model-a", "model-b"], "model-a", None, 1.0),  # no Likert answer: the default
    ],
)
def test_the_margin_is_the_likert_strength_toward_the_chosen_response(
    order: list[str], selected: str, likert: int | None, margin: float
) -> None:
    a = annotation(order=order, selected=selected, likert=likert)
    [row] = formats.preference_rows([single_turn()], [a], spec=SPEC)
    assert row["chosen_source_id"] == selected
    assert row["margin"] == pytest.approx(margin)


def test_the_margin_scales_to_the_flows_likert_scale() -> None:
    spec5 = schemas.RlhfSpec(dimensions=SPEC.dimensions, likert_scale=5)
    rows = [formats.preference_rows([single_turn()], [annotation(likert=k)], spec=spec5)[0] for k in (1, 2, 3)]
    assert [r["margin"] for r in rows] == [1.0, 0.5, 0.0]
    unasked = schemas.RlhfSpec(dimensions=SPEC.dimensions, likert_scale=0)
    [row] = formats.preference_rows([single_turn()], [annotation(likert=None)], spec=unasked, default_margin=0.25)
    assert row["margin"] == 0.25
    with pytest.raises(ValueError, match=r"outside 1\.\.5"):
        formats.preference_rows([single_turn()], [annotation(likert=6)], spec=spec5)


def test_no_selection_gives_no_preference_rows() -> None:
    assert formats.preference_rows([single_turn()], [annotation(selected=None, likert=4)], spec=SPEC) == []


def test_three_responses_give_a_row_per_other_response_in_the_order_seen() -> None:
    a = annotation(1, order=["model-c", "model-a", "model-b"], selected="model-a", likert=None)
    rows = formats.preference_rows([multi_turn()], [a], spec=SPEC, default_margin=0.5)
    assert [(r["chosen_source_id"], r["rejected_source_id"]) for r in rows] == [
        ("model-a", "model-c"),
        ("model-a", "model-b"),
    ]
    assert all(r["margin"] == 0.5 for r in rows)
    # A multi-turn conversation: every column is conversational; media become their URL or path.
    assert rows[0]["prompt"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Draw a cat."},
        {"role": "assistant", "content": "Here is a cat."},
        {"role": "user", "content": "Now a dog."},
    ]
    assert rows[0]["chosen"] == [{"role": "assistant", "content": "I cannot draw."}]
    assert rows[0]["rejected"] == [{"role": "assistant", "content": "https://example.org/dog.jpg"}]
    assert rows[1]["rejected"] == [{"role": "assistant", "content": f"/media/{SHA}"}]


def test_one_multi_turn_task_makes_the_whole_export_conversational() -> None:
    annotations = [annotation(0), annotation(1, order=["model-a", "model-b"], selected="model-b")]
    rows = formats.preference_rows([single_turn(), multi_turn()], annotations, spec=SPEC)
    assert rows[0]["prompt"] == [{"role": "user", "content": "What is 2 + 2?"}]
    assert rows[0]["chosen"] == [{"role": "assistant", "content": "4"}]
    assert rows[1]["chosen"] == [{"role": "assistant", "content": f"/media/{SHA}"}]
    forced = formats.preference_rows([single_turn()], [annotation()], spec=SPEC, conversational=True)
    assert forced[0]["prompt"] == [{"role": "user", "content": "What is 2 + 2?"}]
    with pytest.raises(ValueError, match="multi-message prompt"):
        formats.preference_rows([single_turn(), multi_turn()], annotations, spec=SPEC, conversational=False)


def test_each_annotation_gives_its_own_rows() -> None:
    annotations = [annotation(annotator="ann-1"), annotation(annotator="ann-2", selected="model-b", likert=5)]
    rows = formats.preference_rows([single_turn()], annotations, spec=SPEC)
    assert [(r["annotator_id"], r["chosen"], r["rejected"]) for r in rows] == [("ann-1", "4", "5"), ("ann-2", "5", "4")]
    assert rows[1]["margin"] == pytest.approx(1 / 3)


# ---------------------------------------------------------------- prompt-completion rows


def test_sft_rows_come_from_rewrites_in_the_order_seen() -> None:
    a = annotation(1, order=["model-c", "model-b", "model-a"], rewrites={"model-a": "No.", "model-c": "A dog."})
    rows = formats.sft_rows([multi_turn()], [a, annotation(1, rewrites={})], spec=SPEC)
    assert [r["source_id"] for r in rows] == ["model-c", "model-a"]
    assert rows[0]["completion"] == [{"role": "assistant", "content": "A dog."}]
    assert rows[0]["prompt"][-1] == {"role": "user", "content": "Now a dog."}
    assert set(rows[0]) == {"prompt", "completion", "source_id", "annotator_id", "key"}


def test_sft_rows_for_a_single_user_message_are_plain_strings() -> None:
    a = annotation(rewrites={"model-b": "2 + 2 = 4."})
    assert formats.sft_rows([single_turn()], [a], spec=SPEC) == [
        {
            "prompt": "What is 2 + 2?",
            "completion": "2 + 2 = 4.",
            "source_id": "model-b",
            "annotator_id": "ann-1",
            "key": "q0",
        }
    ]


# ---------------------------------------------------------------- unpaired preference rows


def test_kto_labels_come_from_the_mean_scaled_rating() -> None:
    a = annotation(
        ratings={
            "model-a": {"helpful": 4, "safe": True, "tone": "casual", "notes": "ok"},  # (0.75 + 1) / 2
            "model-b": {"helpful": 3},  # exactly the middle: not above 0.5
        },
        selected="model-b",  # the ratings decide, not the selection
    )
    rows = formats.kto_rows([single_turn()], [a], spec=SPEC)
    assert [(r["source_id"], r["label"], r["score"]) for r in rows] == [
        ("model-a", True, pytest.approx(0.875)),
        ("model-b", False, pytest.approx(0.5)),
    ]
    assert rows[0]["prompt"] == "What is 2 + 2?" and rows[0]["completion"] == "4"
    assert set(rows[0]) == {"prompt", "completion", "label", "score", "source_id", "annotator_id", "key"}


def test_kto_ignores_not_applicable_ratings() -> None:
    a = annotation(ratings={"model-a": {"helpful": 2, "safe": None}, "model-b": {"helpful": None, "safe": True}})
    rows = formats.kto_rows([single_turn()], [a], spec=SPEC)
    assert [(r["label"], r["score"]) for r in rows] == [(False, 0.25), (True, 1.0)]


def test_kto_falls_back_to_the_selection_without_numeric_ratings() -> None:
    a = annotation(
        order=["model-b", "model-a"],
        ratings={"model-a": {"tone": "formal"}, "model-b": {"helpful": None, "safe": None}},
        selected="model-a",
    )
    rows = formats.kto_rows([single_turn()], [a], spec=SPEC)
    assert [(r["source_id"], r["label"], r["score"]) for r in rows] == [
        ("model-b", False, None),
        ("model-a", True, None),
    ]
    # Neither ratings nor a selection: nothing to label.
    assert formats.kto_rows([single_turn()], [annotation(selected=None)], spec=SPEC) == []


def test_kto_with_three_responses_and_media() -> None:
    a = annotation(
        1,
        order=["model-b", "model-c", "model-a"],
        ratings={"model-b": {"helpful": 5}, "model-c": {"helpful": 1}},
        selected=None,
    )
    rows = formats.kto_rows([multi_turn()], [a], spec=SPEC)
    assert [(r["source_id"], r["label"]) for r in rows] == [("model-b", True), ("model-c", False)]
    assert rows[0]["completion"] == [{"role": "assistant", "content": f"/media/{SHA}"}]


# ---------------------------------------------------------------- Hugging Face datasets


def test_every_trainer_format_loads_as_a_hugging_face_dataset() -> None:
    datasets = pytest.importorskip("datasets")
    ratings: dict[str, dict[str, schemas.RatingValue]] = {
        "model-a": {"helpful": 4, "safe": None},
        "model-b": {"tone": "formal"},
    }
    for points in ([single_turn()], [single_turn(), multi_turn()]):  # plain strings, then conversational
        annotations = [
            annotation(0, ratings=ratings, rewrites={"model-a": "Four."}, likert=2),
            annotation(1, order=["model-a", "model-b", "model-c"], selected="model-c", rewrites={"model-b": "Woof."}),
        ][: len(points)]
        for rows in (
            formats.preference_rows(points, annotations, spec=SPEC),
            formats.sft_rows(points, annotations, spec=SPEC),
            formats.kto_rows(points, annotations, spec=SPEC),
        ):
            ds = datasets.Dataset.from_list(rows)
            assert ds.num_rows == len(rows) > 0
            assert ds[0] == rows[0]
