"""Human votes as rewards inside real TRL trainers on the CPU: GRPO with `human_reward` and OnlineDPO with
`human_pair_reward`, against a real server and the simulated crowd, whose oracle scores a completion by how
many times it says "e" (handed to it through `metadata=`)."""

from __future__ import annotations

import copy
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
trl = pytest.importorskip("trl")
transformers = pytest.importorskip("transformers")
datasets = pytest.importorskip("datasets")

import flowlab  # noqa: E402
from flowlab.crowd import SimulatedCrowd  # noqa: E402
from flowlab.integrations.trl import EMPTY, as_text, human_pair_reward, human_reward  # noqa: E402

from .conftest import ServerProcess  # noqa: E402
from .test_trl_formats import char_tokenizer, offline, tiny_llama  # noqa: E402, F401

pytestmark = pytest.mark.filterwarnings("ignore:`(is_)?gradient_checkpointing` is deprecated:FutureWarning")


def e_count(prompt: Any, completion: Any) -> dict[str, Any]:
    return {"true_score": as_text(completion).count("e")}


def prompts(n: int) -> Any:
    return datasets.Dataset.from_list([{"prompt": f"Say something {i}:"} for i in range(n)])


def common(tmp_path: Path) -> dict[str, Any]:
    return {
        "output_dir": str(tmp_path),
        "logging_steps": 1,
        "report_to": [],
        "save_strategy": "no",
        "use_cpu": True,
        "bf16": False,
        "gradient_checkpointing": False,
        "seed": 0,
    }


def test_grpo_learns_from_human_votes_and_falls_back_when_nobody_votes(
    flowlab_server: ServerProcess, tmp_path: Path
) -> None:
    client = flowlab.Client(url=flowlab_server.url, api_key=flowlab_server.api_key)
    flow = client.flow.create_ranking_flow("grpo", "Which says more?", max_response_threshold=8)
    reward = human_reward(flow, wait=15, metadata=e_count)
    tokenizer = char_tokenizer()
    args = trl.GRPOConfig(
        **common(tmp_path),
        max_steps=2,
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=8,
        temperature=1.0,
    )
    trainer = trl.GRPOTrainer(
        model=tiny_llama(tokenizer),
        reward_funcs=[reward],
        args=args,
        train_dataset=prompts(8),
        processing_class=tokenizer,
    )
    with SimulatedCrowd(flowlab_server.url, flowlab_server.api_key, annotators=10, rate=20_000, accuracy=1.0, seed=4):
        trainer.train()
    assert trainer.state.global_step == 2
    items = list(reversed(flow.get_flow_items(amount=None)))
    assert len(items) == 2 * 2, "one item per prompt group: two groups of four completions a step"
    for item in items:
        assert len(item.keys) == 4 and item.get_status().is_terminal
    assert [h["unvoted_share"] for h in reward.history] == [0.0, 0.0]
    logged = [row for row in trainer.state.log_history if "human/votes" in row]
    assert logged and all(row["human/votes"] == 16 for row in logged), "8 votes a group, two groups a step"
    assert all("rewards/human_reward/mean" in row for row in logged), "TRL logs the reward by the function's name"

    # Nobody votes: without a fallback every completion is None (GRPO leaves them out of the baseline); with
    # one, its rewards stand in.
    batch_prompts = ["Hello:"] * 4 + ["Bye:"] * 4
    completions = ["eee", "e", "", "ee", "x", "y", "ze", "e e"]
    quick = human_reward(flow, wait=0.3)
    assert quick(batch_prompts, completions) == [None] * 8
    assert quick.history[-1]["unvoted_share"] == 1.0
    made = flow.get_flow_items(amount=2)
    assert {d.text for item in made for d in item.get_datapoints()} >= {EMPTY, "eee"}, (
        "an empty completion is shown as such"
    )

    def length(prompts: list[Any], completions: list[Any], **_: Any) -> list[float]:
        return [float(len(c)) for c in completions]

    backed = human_reward(flow, wait=0.3, fallback=length)
    assert backed(batch_prompts, completions) == [float(len(c)) for c in completions]
    flow.delete()


def test_a_judged_reward_is_still_a_grpo_reward_function(flowlab_server: ServerProcess, tmp_path: Path) -> None:
    """`human_reward(judge=...)` inside a real GRPOTrainer: TRL's call reaches the judge, two pairs a step go
    to people, and the routing report reaches the trainer's logs."""
    client = flowlab.Client(url=flowlab_server.url, api_key=flowlab_server.api_key)
    flow = client.flow.create_ranking_flow("grpo judged", "Which says more?", max_response_threshold=2)

    def judge(prompts: list[Any], completions: list[Any], **_: Any) -> list[float]:  # a rule as the reward model
        return [float(len(as_text(c))) for c in completions]

    reward = human_reward(flow, wait=15, metadata=e_count, judge=judge, budget=2, seed=0)
    tokenizer = char_tokenizer()
    args = trl.GRPOConfig(
        **common(tmp_path), max_steps=1, per_device_train_batch_size=8, num_generations=4, max_completion_length=8
    )
    trainer = trl.GRPOTrainer(
        model=tiny_llama(tokenizer),
        reward_funcs=[reward],
        args=args,
        train_dataset=prompts(8),
        processing_class=tokenizer,
    )
    with SimulatedCrowd(flowlab_server.url, flowlab_server.api_key, annotators=6, rate=20_000, accuracy=1.0, seed=3):
        trainer.train()
    assert trainer.state.global_step == 1
    items = flow.get_flow_items(amount=None)
    assert len(items) == 2 and all(len(item.keys) == 2 for item in items), "two pairs, not whole groups"
    logged = [row for row in trainer.state.log_history if "human/pairs_to_people" in row]
    assert logged and logged[0]["human/pairs_to_people"] == 2 and logged[0]["human/votes"] == 4
    assert list(reward.calibration.report()["to_people"]) == [2]
    flow.delete()


def test_rewards_relative_to_a_reference_and_deferred_collection(flowlab_server: ServerProcess) -> None:
    client = flowlab.Client(url=flowlab_server.url, api_key=flowlab_server.api_key)
    flow = client.flow.create_ranking_flow("reference", "Which says more?", max_response_threshold=40)

    def sharp(prompt: Any, completion: Any) -> dict[str, Any]:  # a clear preference, so 40 votes settle the order
        return {"true_score": 3 * as_text(completion).count("e")}

    reward = human_reward(flow, wait=20, metadata=sharp, reference="e")
    batch = ["P:"] * 3
    pending = reward.submit(batch, ["eeeee", "eee", ""], step=7)
    assert [len(item.keys) for item in pending.items] == [4], "three completions and the reference"
    with SimulatedCrowd(flowlab_server.url, flowlab_server.api_key, annotators=10, rate=20_000, accuracy=1.0, seed=5):
        rewards = reward.collect(pending)
    assert all(r is not None for r in rewards)
    assert rewards[0] > rewards[1] > 0 > rewards[2], "scores relative to the reference (one 'e'), not centred"
    flow.delete()


def test_online_dpo_gets_one_vote_per_pair_and_unjudged_pairs_are_reported(
    flowlab_server: ServerProcess, tmp_path: Path
) -> None:
    from trl.experimental.online_dpo import OnlineDPOConfig, OnlineDPOTrainer

    client = flowlab.Client(url=flowlab_server.url, api_key=flowlab_server.api_key)
    flow = client.flow.create_ranking_flow("online dpo", "Which says more?", max_response_threshold=3)
    reward = human_pair_reward(flow, wait=15, metadata=e_count, seed=0)
    tokenizer = char_tokenizer()
    model = tiny_llama(tokenizer)
    args = OnlineDPOConfig(
        **common(tmp_path), max_steps=1, per_device_train_batch_size=2, max_new_tokens=8, max_length=64
    )
    trainer = OnlineDPOTrainer(
        model=model,
        ref_model=copy.deepcopy(model),
        reward_funcs=[reward],
        args=args,
        train_dataset=prompts(4),
        processing_class=tokenizer,
    )
    with SimulatedCrowd(flowlab_server.url, flowlab_server.api_key, annotators=6, rate=20_000, accuracy=1.0, seed=6):
        trainer.train()
    assert trainer.state.global_step == 1
    items = flow.get_flow_items(amount=None)
    assert len(items) == 2 and all(len(item.keys) == 2 for item in items), "one two-completion item per pair"
    assert reward.history[-1]["unjudged"] == 0

    # With nobody voting, the pairs are neither "first wins" nor silently 0: a coin decides, with a warning.
    alone = human_pair_reward(flow, wait=0.3, seed=1)
    with pytest.warns(UserWarning, match="2 of 2 pairs got no vote"):
        out = alone(["a", "b", "a", "b"], ["x", "y", "z", "w"])
    assert sorted(zip(out[:2], out[2:], strict=True)) in ([(0.0, 1.0), (1.0, 0.0)], [(0.0, 1.0)] * 2, [(1.0, 0.0)] * 2)
    strict = human_pair_reward(flow, wait=0.3, on_unjudged="raise")
    with pytest.raises(RuntimeError, match="got no vote"):
        strict(["a", "a"], ["x", "y"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        backed = human_pair_reward(flow, wait=0.3, fallback=lambda prompts, completions, **_: [0.2, 0.7])
        assert backed(["a", "a"], ["x", "y"]) == [0.2, 0.7]
    flow.delete()


def test_given_pairs_are_the_only_pairs_asked(client: flowlab.Client, flowlab_server: ServerProcess) -> None:
    flow = client.flow.create_ranking_flow("pairs", "Better?", max_response_threshold=12)
    item = flow.create_new_flow_batch(["a", "b", "c", "d"], data_type="text", pairs=[(0, 1), (2, 3)], time_to_live=30)
    # Two given pairs and 12 votes: six people, each comparing each pair once.
    with SimulatedCrowd(flowlab_server.url, flowlab_server.api_key, annotators=6, rate=20_000, seed=7):
        item.get_results(timeout=20)
    matrix = item.get_win_loss_matrix()
    compared = {(w, loser) for w in matrix.index for loser in matrix.columns if matrix.loc[w, loser] > 0}
    assert compared and all({w, loser} in ({"a", "b"}, {"c", "d"}) for w, loser in compared)
    with pytest.raises(flowlab.ValidationError, match="two different datapoint positions") as err:
        flow.create_new_flow_batch(["a", "b"], data_type="text", pairs=[(0, 0)])
    assert err.value.field == "pairs[0]"
    statuses = client.flow.wait_items([item.id], timeout=1)
    assert statuses[0].is_terminal

    async def twin() -> list[Any]:
        async with flowlab.AsyncClient(url=client.url, api_key=client.api_key) as aclient:
            again = await aclient.flow.get_flow_by_id(flow.id)
            return await again.wait_items([item], timeout=1)

    import asyncio

    assert [s.id for s in asyncio.run(twin())] == [item.id]
    open_item = flow.create_new_flow_batch(["p", "q"], data_type="text", time_to_live=60)
    started = time.monotonic()
    (still,) = client.flow.wait_items([open_item], timeout=0.5)
    assert not still.is_terminal and 0.4 < time.monotonic() - started < 5, "returns at the timeout"
    flow.delete()


def test_the_fallback_is_called_as_trl_calls_reward_functions(flowlab_server: ServerProcess) -> None:
    client = flowlab.Client(url=flowlab_server.url, api_key=flowlab_server.api_key)
    flow = client.flow.create_ranking_flow("fallback calls", "Which?", max_response_threshold=4)
    seen: dict[str, Any] = {}

    def accuracy(completions: list[Any], solution: list[str], completion_ids: Any, **kwargs: Any) -> list[float]:
        seen.update(solution=solution, ids=completion_ids, step="step" in kwargs)
        return [float(c == s) for c, s in zip(completions, solution, strict=True)]

    reward = human_reward(flow, wait=0.3, fallback=accuracy)
    before = len(flow.get_flow_items(amount=None))
    out = reward(
        ["alone", "pair", "pair"],
        ["4", "x", "4"],
        [[1], [2], [3]],
        solution=["4", "4", "4"],
        step=[1, 2, 3],  # a dataset column may be called anything, `step` included
    )
    assert out == [1.0, 0.0, 1.0], "nobody voted: the fallback's rewards, from the dataset's own column"
    assert seen == {"solution": ["4", "4", "4"], "ids": [[1], [2], [3]], "step": True}
    assert len(flow.get_flow_items(amount=None)) == before + 1, "a lone completion gets no item of its own"
    # A reference nobody compared: nothing to be relative to, so the group counts as unvoted.
    assert human_reward(flow, wait=0.3, reference="ref")(["p", "p"], ["a", "b"]) == [None, None]
    flow.delete()
