"""HumanEvalCallback against a real server and the simulated crowd: inside a real TRL GRPOTrainer on a tiny model
(CPU), checkpoints go out every N steps and people's results reach the trainer's logs and the reporters; when the
sentinel fires, `on_divergence="stop"` ends training at the next step boundary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
trl = pytest.importorskip("trl")
transformers = pytest.importorskip("transformers")
datasets = pytest.importorskip("datasets")

import flowlab  # noqa: E402
from flowlab.crowd import SimulatedCrowd  # noqa: E402
from flowlab.integrations.trl import HumanEvalCallback, as_text  # noqa: E402

from .conftest import ServerProcess, wait_for  # noqa: E402
from .test_trl_formats import char_tokenizer, offline, tiny_llama  # noqa: E402, F401
from .test_trl_integration import common  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:`(is_)?gradient_checkpointing` is deprecated:FutureWarning")

PROMPTS = ["Add 2 and 2:", "Name a colour:", "Say hello:", "Count to three:"]
TAGS = ["maths", "chat", "chat", "maths"]


def _crowd(server: ServerProcess, seed: int) -> SimulatedCrowd:
    return SimulatedCrowd(server.url, server.api_key, annotators=6, rate=60_000, bulk=True, accuracy=1.0, seed=seed)


def _e_count(prompt: Any, completion: str) -> dict[str, Any]:
    return {"true_score": as_text(completion).count("e")}


class Reporter(transformers.TrainerCallback):  # type: ignore[misc]
    """Stands in for a `report_to` integration: records every log it is given, as it is given."""

    def __init__(self) -> None:
        self.logs: list[dict[str, Any]] = []

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
        self.logs.append(dict(logs or {}))


def test_grpo_checkpoints_reach_people_and_their_results_reach_the_trainers_logs(
    flowlab_server: ServerProcess, tmp_path: Path
) -> None:
    client = flowlab.Client(url=flowlab_server.url, api_key=flowlab_server.api_key)
    ev = client.evals.create(
        "grpo evals",
        PROMPTS,
        tags=TAGS,
        anchor=["e" * 3] * len(PROMPTS),
        anchor_metadata=[{"true_score": 3.0}] * len(PROMPTS),
        votes_per_pair=2,
    )
    callback = HumanEvalCallback(ev, every=2, metadata=_e_count, poll=0.2, max_new_tokens=6)
    calls = 0

    def length(prompts: list[Any], completions: list[Any], **_: Any) -> list[float]:
        # From the third step on, wait (with a deadline) for people's verdict on the first checkpoint, so the
        # run is long enough for a log to carry it, whatever the machine's speed.
        nonlocal calls
        calls += 1
        if calls >= 3:
            wait_for(lambda: callback.refresh().get("human/votes", 0) >= 8, 30.0, "votes on checkpoint 2")
        return [float(len(as_text(c))) for c in completions]

    tokenizer = char_tokenizer()
    args = trl.GRPOConfig(
        **common(tmp_path),
        max_steps=4,
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=6,
        temperature=1.0,
    )
    reporter = Reporter()
    trainer = trl.GRPOTrainer(
        model=tiny_llama(tokenizer),
        reward_funcs=[length],
        args=args,
        train_dataset=datasets.Dataset.from_list([{"prompt": p} for p in PROMPTS]),
        processing_class=tokenizer,
        callbacks=[reporter],
    )
    callback.attach(trainer)  # first in line: the reporter sees what it adds
    with _crowd(flowlab_server, seed=3):
        trainer.train()
        wait_for(lambda: (ev.history().query("tag == 'all'").votes >= 8).sum() == 2, 30.0, "both checkpoints voted")
    assert trainer.state.global_step == 4
    assert callback.submitted == [2, 4] and len(callback.generation) == 2, "a checkpoint every two steps"
    logged = [row for row in trainer.state.log_history if "human/win_rate" in row]
    assert logged, "people's results reached the trainer's log history"
    row = logged[0]
    assert row["human/checkpoint"] == 2 and row["human/votes"] >= 8
    assert row["human/win_low"] <= row["human/win_rate"] <= row["human/win_high"]
    assert {"human/win_rate/maths", "human/win_rate/chat"} <= set(row) and row["human/divergence"] == 0.0
    assert any("human/win_rate" in logs for logs in reporter.logs), "the reporting callbacks saw them too"

    history = ev.history()
    assert sorted(set(history.step)) == [2, 4]
    step2_reward = next(r["reward"] for r in trainer.state.log_history if r.get("step") == 2 and "reward" in r)
    assert history.query("step == 2 and tag == 'all'").proxy_reward.iloc[0] == pytest.approx(step2_reward)
    assert not callback.errors
    assert max(callback.overhead) < 5.0, "sanity only: the figure itself is measured by benchmarks/bench_trl.py"


def test_on_divergence_stop_ends_training_at_the_next_step_once_the_sentinel_fires(
    flowlab_server: ServerProcess,
) -> None:
    """The hooks a trainer calls, driven step by step: the proxy reward the trainer logs climbs while the
    completions' true quality (what the crowd reads) falls; once people's votes make the sentinel fire, the
    next step boundary stops training with "stop" and not with "log"."""
    client = flowlab.Client(url=flowlab_server.url, api_key=flowlab_server.api_key)
    evals = {
        mode: client.evals.create(
            f"hacking {mode}",
            PROMPTS,
            tags=TAGS,
            anchor=["reference"] * len(PROMPTS),
            anchor_metadata=[{"true_score": 0.0}] * len(PROMPTS),
            votes_per_pair=3,
            window=4,
        )
        for mode in ("stop", "log")
    }
    quality = {1: 2.0, 2: 0.5, 3: -1.0, 4: -2.5, 5: -4.0, 6: -5.5}

    def generate(model: Any, prompts: list[Any]) -> list[str]:
        return [f"{'long ' * step} answer to {p}" for p in prompts]

    callbacks = {}
    for mode, ev in evals.items():
        callbacks[mode] = HumanEvalCallback(
            ev,
            every=1,
            generate=generate,
            metadata=lambda p, c: {"true_score": quality[c.count("long ")]},
            on_divergence=mode,  # type: ignore[arg-type]
            poll=0.2,
        )
    args = transformers.TrainingArguments(output_dir="unused", report_to=[])
    states = {mode: transformers.TrainerState() for mode in evals}
    with _crowd(flowlab_server, seed=5):
        for step in range(1, 6):
            for mode, cb in callbacks.items():
                states[mode].global_step = step
                states[mode].log_history.append({"step": step, "reward": 1.0 + step})
                control = cb.on_step_end(args, states[mode], transformers.TrainerControl(), model=None)
                assert not control.should_training_stop, "nothing fired yet"
        with pytest.warns(UserWarning, match="possible reward hacking"):
            wait_for(lambda: callbacks["stop"].refresh() and callbacks["stop"].diverged_at is not None, 60.0, "a fire")
        wait_for(lambda: callbacks["log"].refresh() and callbacks["log"].diverged_at is not None, 60.0, "a fire")
    for mode, cb in callbacks.items():
        states[mode].global_step = 6
        control = cb.on_step_end(args, states[mode], transformers.TrainerControl(), model=None)
        assert control.should_training_stop == (mode == "stop"), mode
        logs: dict[str, Any] = {}
        cb.on_log(args, states[mode], control, logs=logs)
        assert logs["human/divergence"] == 1.0
        cb.on_train_end(args, states[mode], control)
        assert cb.submitted == [1, 2, 3, 4, 5, 6] and not cb.errors


def test_bad_arguments_say_what_to_do(researcher: flowlab.Client) -> None:
    ev = researcher.evals.create("args", PROMPTS, anchor=["x"] * len(PROMPTS))
    with pytest.raises(ValueError, match="every must be"):
        HumanEvalCallback(ev, every=0)
    with pytest.raises(ValueError, match='"log" or "stop"'):
        HumanEvalCallback(ev, every=1, on_divergence="halt")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one prompt for each of the eval's 4 prompts"):
        HumanEvalCallback(ev, every=1, prompts=["only one"])
