"""RLHF flows: how long aggregating a big item takes, and whether the simulated crowd chooses the truly better
response as often as its accuracy implies.

Run: `python benchmarks/bench_rlhf.py` (about a minute). The annotator page's submit → next task figure is
measured by bench_page.py.
"""

from __future__ import annotations

import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import KEY, Server, write_table

from flowlab import Client, schemas
from flowlab.crowd import SimulatedCrowd
from flowlab.crowd._oracle import prefer_probability
from flowlab.server.auth import Principal
from flowlab.server.clock import FakeClock
from flowlab.server.kinds.rlhf import aggregate
from flowlab.server.media import MediaStore
from flowlab.server.service import FlowService
from flowlab.server.store.sqlite import SQLiteStore

TASKS, ANNOTATIONS = 1_000, 5


def bench_aggregation(rows: list[tuple[str, str, str, str]]) -> None:
    """An item of 1,000 two-response tasks with 5 annotations each on the seed's four dimensions (a 1-5
    scale), a rewrite in a third of them and a justification in all: the live aggregate, timed."""

    async def scenario() -> list[float]:
        with tempfile.TemporaryDirectory() as tmp:
            store = SQLiteStore(Path(tmp) / "db.sqlite3")
            service = FlowService(store, MediaStore(Path(tmp) / "media"), FakeClock(), seed=1)
            service.bootstrap(Path(tmp), KEY)
            await store.start()
            service.resume()
            who = Principal("key_bench", "bench", "admin")
            flow = await service.flows.create(
                who,
                schemas.FlowCreate(
                    name="agg", instruction="?", kind="rlhf", rlhf=schemas.RlhfSpec(), max_response_threshold=5
                ),
            )
            datapoints = [
                schemas.DatapointIn(
                    id=f"t{i}",
                    prompt=f"q{i}",
                    responses=[schemas.ResponseIn("a", text=f"first {i}"), schemas.ResponseIn("b", text=f"second {i}")],
                )
                for i in range(TASKS)
            ]
            status = await service.create_item(
                who, flow.id, schemas.ItemCreate(datapoints=datapoints, time_to_live=3600)
            )
            item = service.items.live[status.id]
            rng = random.Random(0)
            dims = [d.key for d in schemas.RlhfSpec().dimensions]
            for i in range(TASKS):
                responses = item.datapoints[i].responses or []
                for k in range(ANNOTATIONS):
                    order = ["a", "b"] if rng.random() < 0.5 else ["b", "a"]
                    record = schemas.Annotation(
                        task_id=f"task{i}-{k}",
                        annotator_id=f"ann{k}",
                        datapoint=i,
                        order=order,
                        ratings={s: {d: rng.randint(1, 5) for d in dims} for s in order},
                        rewrites={order[0]: "a better answer"} if rng.random() < 0.33 else {},
                        selected=order[0],
                        likert=rng.randint(1, 4),
                        justification="The chosen one answers the question more directly.",
                        created_at=0.0,
                    )
                    item.tally.add(record, responses)
                    item.response_count += 1
            times = []
            for _ in range(15):
                started = time.perf_counter()
                aggregate(item)
                times.append((time.perf_counter() - started) * 1000)
            await store.close()
            return times

    times = sorted(asyncio.run(scenario()))
    median = times[len(times) // 2]
    rows.append(
        (
            f"RLHF aggregation, {TASKS:,} tasks × {ANNOTATIONS} annotations, 2 responses, 4 dimensions (ratings "
            "with intervals, choices, Likert, Krippendorff's α, rewrites, justifications): median / max of 15",
            f"{median:.1f} / {times[-1]:.1f} ms",
            "≤ 50 ms",
            "yes" if median <= 50 else "no",
        )
    )


def bench_crowd_agreement(rows: list[tuple[str, str, str, str]]) -> None:
    """Two responses per task whose true scores differ by 1.5 logits: the crowd should choose the better one
    with probability accuracy × P(better) + (1 − accuracy) / 2, P(better) the Bradley–Terry chance."""
    gap = 1.5
    tasks = [
        {
            "id": f"t{i}",
            "prompt": f"Question {i}",
            "responses": [
                {"source_id": "better", "content": f"good {i}", "private_metadata": {"true_score": gap / 2}},
                {"source_id": "worse", "content": f"bad {i}", "private_metadata": {"true_score": -gap / 2}},
            ],
        }
        for i in range(200)
    ]
    with Server() as server, Client(url=server.url, api_key=KEY) as client:
        for accuracy in (0.6, 0.8, 1.0):
            flow = client.flow.create_rlhf_flow(f"acc {accuracy}", "Better?", max_response_threshold=5)
            item = flow.create_new_flow_batch(tasks, time_to_live=600)
            with SimulatedCrowd(
                server.url, KEY, annotators=30, rate=30_000, accuracy=accuracy, seed=int(accuracy * 10)
            ):
                res = item.get_results(timeout=300)
            chosen = next(m for m in res.models if m.source_id == "better").selected_share or 0.0
            expected = accuracy * prefer_probability(gap / 2, -gap / 2) + (1 - accuracy) / 2
            n = res.total_responses
            se = (expected * (1 - expected) / n) ** 0.5
            rows.append(
                (
                    f"RLHF, crowd at {accuracy:.0%} accuracy, true scores 1.5 logits apart, {n:,} annotations: "
                    "better response chosen (expected)",
                    f"{chosen:.1%} ({expected:.1%})",
                    "within 3 standard errors",
                    "yes" if abs(chosen - expected) <= 3 * se else "no",
                )
            )


def main() -> None:
    rows: list[tuple[str, str, str, str]] = []
    bench_aggregation(rows)
    bench_crowd_agreement(rows)
    write_table("rlhf", "RLHF flows", rows)


if __name__ == "__main__":
    main()
