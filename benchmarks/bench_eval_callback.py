"""HumanEvalCallback's cost to a training step: a real TRL GRPOTrainer on the tests' tiny model (CPU), an eval of
16 prompts checkpointed every 5 steps against a real server while the simulated crowd votes (server and crowd on
the same two cores as the trainer), results polled every 2 s (the default) into the trainer's logs.

Measured: the seconds each step spends inside the callback with generation left out (its `overhead`: deciding,
queueing the checkpoint for the sender thread, copying the newest results into a log), per step and on
checkpoint steps alone; and, as a cross-check, the wall time of a step with the callback against the same run
without it, less the generation the callback does. Target: ≤ 50 ms a step beyond generation.

Run: `python benchmarks/bench_eval_callback.py` (about a minute; needs torch and trl, the dev extra).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
from _harness import KEY, Server, pct, write_table

from flowlab import Client
from flowlab.crowd import SimulatedCrowd
from flowlab.integrations.trl import HumanEvalCallback, as_text

STEPS = 40
EVERY = 5
PROMPTS = [f"Say something {i}:" for i in range(16)]
POLL = 2.0  # the callback's default


def _train(url: str, client: Client, *, with_callback: bool) -> tuple[float, HumanEvalCallback | None, Any]:
    import datasets
    import trl

    from tests.test_trl_formats import char_tokenizer, tiny_llama

    def rule(prompts: list[Any], completions: list[Any], **_: Any) -> list[float]:  # the proxy reward
        return [float(len(as_text(c))) for c in completions]

    tokenizer = char_tokenizer()
    args = trl.GRPOConfig(
        output_dir="/tmp/flowlab-bench-eval-callback",
        max_steps=STEPS,
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=8,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        seed=0,
        disable_tqdm=True,
    )
    trainer = trl.GRPOTrainer(
        model=tiny_llama(tokenizer),
        reward_funcs=[rule],
        args=args,
        train_dataset=datasets.Dataset.from_list([{"prompt": p} for p in PROMPTS] * 4),
        processing_class=tokenizer,
    )
    callback = None
    if with_callback:
        ev = client.evals.create(
            "callback cost",
            PROMPTS,
            anchor=["eee"] * len(PROMPTS),
            anchor_metadata=[{"true_score": 3.0}] * len(PROMPTS),
            votes_per_pair=2,
        )
        callback = HumanEvalCallback(
            ev,
            every=EVERY,
            metadata=lambda p, c: {"true_score": c.count("e")},
            poll=POLL,
            max_new_tokens=8,
        ).attach(trainer)
    started = time.perf_counter()
    trainer.train()
    return time.perf_counter() - started, callback, trainer.state.log_history


def main() -> int:
    rows: list[tuple[str, str, str, str]] = []
    with (
        Server() as server,
        Client(url=server.url, api_key=KEY) as client,
        SimulatedCrowd(server.url, KEY, annotators=12, rate=2_000, accuracy=1.0, seed=2),
    ):
        _train(server.url, client, with_callback=False)  # warm-up: imports, first allocations
        plain, _, _ = _train(server.url, client, with_callback=False)
        timed, callback, history = _train(server.url, client, with_callback=True)
    assert callback is not None
    overhead_ms = [s * 1000 for s in callback.overhead]
    on_checkpoints = [overhead_ms[s - 1] for s in callback.submitted if s - 1 < len(overhead_ms)]
    generation = sum(callback.generation)
    logged = sum(1 for h in history if "human/win_rate" in h)
    ok = max(overhead_ms) <= 50
    rows.append(
        (
            f"HumanEvalCallback's own time per step, generation excluded ({STEPS} GRPO steps, a checkpoint every "
            f"{EVERY}, {len(PROMPTS)} prompts, results polled every {POLL:g} s)",
            f"p50 {statistics.median(overhead_ms):.2f} ms, p99 {pct(overhead_ms, 99):.2f} ms, max "
            f"{max(overhead_ms):.2f} ms; on checkpoint steps max {max(on_checkpoints):.2f} ms",
            "≤ 50 ms a step beyond generation",
            "yes" if ok else "no",
        )
    )
    extra = (timed - plain - generation) / STEPS * 1000
    rows.append(
        (
            f"a step's wall time with the callback vs without, less its generation ({STEPS} steps each)",
            f"{extra:+.1f} ms a step ({timed / STEPS * 1000:.0f} vs {plain / STEPS * 1000:.0f} ms; generation "
            f"{generation / len(callback.generation) * 1000:.0f} ms a checkpoint); {logged} logs carried "
            "people's results",
            "≤ 50 ms a step beyond generation",
            "yes" if extra <= 50 else "no",
        )
    )
    write_table("eval_callback", "HumanEvalCallback: what a training step pays", rows)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
