"""Human votes as TRL rewards: what the reward function costs beyond the people's time, and what a GRPO run
gets from crowds of different sizes, with and without a fallback reward.

Run: `python benchmarks/bench_trl.py` (about three minutes; needs torch and trl, the dev extra).
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
from flowlab.integrations.trl import as_text, human_reward


def e_score(prompt: Any, completion: Any) -> dict[str, Any]:
    return {"true_score": as_text(completion).count("e")}


def bench_overhead(rows: list[tuple[str, str, str, str]]) -> None:
    """32 completions in 4 groups of 8: creating the items, then (once people have voted) the one long poll and
    the four results. The people's own time is left out by letting the crowd finish before collecting."""
    prompts = [p for g in range(4) for p in [f"prompt {g}"] * 8]
    completions = [f"completion {i} " + "e" * (i % 5) for i in range(32)]
    costs = []
    with Server() as server, Client(url=server.url, api_key=KEY) as client:
        flow = client.flow.create_ranking_flow("overhead", "Better?", max_response_threshold=8)
        reward = human_reward(flow, wait=30, metadata=e_score)
        with SimulatedCrowd(server.url, KEY, annotators=20, rate=60_000, seed=1):
            for _ in range(25):
                started = time.perf_counter()
                pending = reward.submit(prompts, completions)
                submitted = time.perf_counter() - started
                flow.wait_items(pending.items, timeout=30)  # the people's time
                started = time.perf_counter()
                values = reward.collect(pending)
                costs.append((submitted + time.perf_counter() - started) * 1000)
                assert sum(v is not None for v in values) >= 24
    costs = costs[5:]  # warm-up
    rows.append(
        (
            "human_reward overhead per step, 32 completions in 4 groups (create 4 items + one wait + 4 results; "
            "the crowd's voting time excluded): median / p95",
            f"{statistics.median(costs):.1f} / {pct(costs, 95):.1f} ms",
            "≤ 50 ms",
            "yes" if statistics.median(costs) <= 50 else "no",
        )
    )


def grpo_run(url: str, client: Client, *, annotators: int, steps: int, fallback: bool) -> dict[str, float]:
    import datasets
    import trl

    from tests.test_trl_formats import char_tokenizer, tiny_llama  # the tests' tiny model and tokenizer

    flow = client.flow.create_ranking_flow(f"grpo {annotators}", "Which says more?", max_response_threshold=24)

    def rule(prompts: list[Any], completions: list[Any], **_: Any) -> list[float]:  # a stand-in reward model
        return [as_text(c).count("e") / 4.0 for c in completions]

    reward = human_reward(flow, wait=3.0, metadata=e_score, fallback=rule if fallback else None)
    tokenizer = char_tokenizer()
    args = trl.GRPOConfig(
        output_dir="/tmp/flowlab-bench-grpo",
        max_steps=steps,
        per_device_train_batch_size=16,
        num_generations=8,
        max_completion_length=12,
        learning_rate=3e-2,
        beta=0.0,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        seed=0,
        disable_tqdm=True,
    )
    data = datasets.Dataset.from_list([{"prompt": "Say:"}] * 64)
    trainer = trl.GRPOTrainer(
        model=tiny_llama(tokenizer), reward_funcs=[reward], args=args, train_dataset=data, processing_class=tokenizer
    )
    # People, not a load generator: each annotator answers about one pair every 1.5 s.
    with SimulatedCrowd(url, KEY, annotators=annotators, rate=annotators * 40, accuracy=1.0, seed=annotators):
        started = time.monotonic()
        trainer.train()
        elapsed = time.monotonic() - started
    logged = [h for h in trainer.state.log_history if "human/unvoted_share" in h]
    last = client.flow.get_flow_by_id(flow.id).get_flow_items(amount=10)  # two groups a step: the last 5 steps
    counts = [d.text.count("e") for item in last for d in item.get_datapoints()]
    return {
        "step_s": elapsed / steps,
        "unvoted": statistics.mean(h["human/unvoted_share"] for h in logged),
        "e_last": statistics.mean(counts) if counts else 0.0,
    }


def bench_grpo(rows: list[tuple[str, str, str, str]]) -> None:
    with Server() as server, Client(url=server.url, api_key=KEY) as client:
        for annotators in (5, 20, 100):
            run = grpo_run(server.url, client, annotators=annotators, steps=12, fallback=False)
            rows.append(
                (
                    f"GRPO on human votes, {annotators} annotators (~0.7 votes/s each), 2 groups of 8 a step, "
                    "wait 3 s: step time / unvoted share / letters 'e' per completion in the last 5 steps",
                    f"{run['step_s']:.2f} s / {run['unvoted']:.0%} / {run['e_last']:.1f}",
                    "(informational)",
                    "-",
                )
            )
        for fallback in (False, True):
            run = grpo_run(server.url, client, annotators=5, steps=30, fallback=fallback)
            rows.append(
                (
                    f"GRPO, 5 annotators, 30 steps, {'with' if fallback else 'without'} a fallback reward (a rule "
                    "standing in for a reward model): letters 'e' per completion in the last 5 steps / unvoted share",
                    f"{run['e_last']:.1f} / {run['unvoted']:.0%}",
                    "(informational)",
                    "-",
                )
            )


def main() -> None:
    rows: list[tuple[str, str, str, str]] = []
    bench_overhead(rows)
    bench_grpo(rows)
    write_table("trl", "Human votes as TRL rewards", rows)


if __name__ == "__main__":
    main()
