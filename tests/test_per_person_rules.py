"""The per-person rules of every kind: the cap on answers one person gives an item (`max_votes_per_annotator`) is
accepted by every SDK create call, sync and async, reaches the flow's config, and is honoured by the server; an
item whose people have given their share says it waits for others."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

import flowlab

FORM = {"dimensions": [{"key": "ok", "type": "boolean", "label": "OK"}], "likert_scale": 0, "justification": "off"}

# Each create call, with the arguments it needs besides the name, the instruction and the cap.
CREATE: dict[str, dict[str, Any]] = {
    "create_ranking_flow": {},
    "create_listwise_flow": {"k": 3},
    "create_classify_flow": {"categories": ["yes", "no"]},
    "create_rlhf_flow": FORM,
    "create_chat_flow": {},
    "create_write_flow": {},
}


@pytest.mark.parametrize("create", sorted(CREATE))
def test_every_create_call_takes_the_cap_sync_and_async(researcher: flowlab.Client, create: str) -> None:
    made = getattr(researcher.flow, create)(f"{create} capped", "Answer.", max_votes_per_annotator=2, **CREATE[create])
    assert made.config.max_votes_per_annotator == 2
    assert researcher.flow.get_flow_by_id(made.id).config.max_votes_per_annotator == 2, "stored on the server"

    async def run() -> int | None:
        async with flowlab.AsyncClient(url=researcher.url, api_key=researcher.api_key) as client:
            flow = await getattr(client.flow, create)(
                f"{create} async", "Answer.", max_votes_per_annotator=3, **CREATE[create]
            )
            again = await client.flow.get_flow_by_id(flow.id)
            assert again.config.max_votes_per_annotator == flow.config.max_votes_per_annotator
            return flow.config.max_votes_per_annotator

    assert asyncio.run(run()) == 3


@pytest.mark.parametrize("create", sorted(CREATE))
def test_a_cap_below_one_is_refused_by_every_create_call(researcher: flowlab.Client, create: str) -> None:
    call: Callable[..., Any] = getattr(researcher.flow, create)
    with pytest.raises(flowlab.ValidationError, match="max_votes_per_annotator"):
        call(f"{create} bad", "Answer.", max_votes_per_annotator=0, **CREATE[create])


WAITING = "waiting for other annotators"
RESPONSES = [{"source_id": "m1", "content": "one"}, {"source_id": "m2", "content": "two"}]

# A flow of each kind that takes answers per person, four datapoints to an item, and a cap of two of them a person.
KINDS: dict[str, tuple[str, dict[str, Any], Callable[[int], Any]]] = {
    "classify": (
        "create_classify_flow",
        {"categories": ["yes", "no"], "max_responses_per_datapoint": 1, "min_responses_per_datapoint": 1},
        lambda i: f"picture {i}",
    ),
    "rlhf": (
        "create_rlhf_flow",
        {**FORM, "max_response_threshold": 1},
        lambda i: {"id": f"p{i}", "prompt": f"question {i}?", "responses": RESPONSES},
    ),
    "listwise": ("create_listwise_flow", {"k": 3, "max_response_threshold": 4}, lambda i: f"answer {i}"),
    "write": ("create_write_flow", {"max_response_threshold": 1}, lambda i: f"Say hello in language {i}."),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_one_person_gives_their_share_then_the_item_waits_for_others(researcher: flowlab.Client, kind: str) -> None:
    """Four answers wanted, two at most from a person: one person gives two and the item waits for others, saying
    so (not asking them again); a second person gives the other two and the item completes."""
    from flowlab.crowd import SimulatedCrowd

    from .conftest import wait_for

    create, options, datapoint = KINDS[kind]
    flow = getattr(researcher.flow, create)(f"{kind} shared", "Answer.", max_votes_per_annotator=2, **options)
    assert flow.config.max_votes_per_annotator == 2
    item = flow.create_new_flow_batch([datapoint(i) for i in range(4)], time_to_live=120)
    first = SimulatedCrowd(researcher.url, researcher.api_key, annotators=1, rate=6000, seed=1, name=f"{kind}-first")
    with first:
        wait_for(lambda: item.get_progress().response_count == 2, 60, "the first person's two answers")
        polls = first.stats.idle_polls
        wait_for(lambda: first.stats.idle_polls > polls, 60, "the person to ask again and find nothing")
        progress = item.get_progress()
        assert progress.response_count == 2, "nobody gives an item more than their share"
        assert progress.state == "Running" and progress.waiting == WAITING
    with SimulatedCrowd(researcher.url, researcher.api_key, annotators=1, seed=2, name=f"{kind}-second"):
        wait_for(
            lambda: item.get_progress().state == "Completed", 60, "the second person's answers to complete the item"
        )
    assert item.get_progress().waiting is None
    people = item.get_annotators()
    assert sorted(people["answers"]) == [2, 2], people


def test_active_pair_selection_never_shows_a_person_a_pair_of_an_item_twice(researcher: flowlab.Client) -> None:
    """The active selector picks the pair whose answer is most uncertain; a person who saw it already gets another."""
    from flowlab.crowd import SimulatedCrowd

    flow = researcher.flow.create_ranking_flow(
        "active spread", "Which?", max_response_threshold=40, pair_selection="active"
    )
    assert flow.config.max_votes_per_annotator == 14
    item = flow.create_new_flow_batch([f"answer {i}" for i in range(5)], time_to_live=120)  # 10 pairs
    with SimulatedCrowd(researcher.url, researcher.api_key, annotators=4, rate=12_000, seed=7, name="active"):
        item.get_results(timeout=60)
    votes = item.get_votes()
    assert len(votes) == 40
    for annotator, theirs in votes.groupby("annotator_id"):
        pairs = [frozenset(p) for p in zip(theirs["winner"], theirs["loser"], strict=True)]
        assert len(pairs) == len(set(pairs)), f"{annotator} was shown a pair twice"
        assert len(theirs) <= 14
