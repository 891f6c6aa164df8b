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
