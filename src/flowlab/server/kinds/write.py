"""Written demonstrations, the fifth task kind (seed 002's "prompts for annotators to respond to"): an annotator
reads a prompt (or a conversation), with guidance and reference material when the datapoint has them, and writes
the response from scratch, within the flow's lengths. Thresholds count demonstrations per prompt, as RLHF flows
count annotations per task; nobody writes twice for one prompt.

A flow may name a review flow (an RLHF flow): when one of its items ends, the demonstrations of each prompt (with
the datapoint's model responses beside them, if asked) become one task of a new item of the review flow, made in
the same transaction as the ended item's final record, so people rate what people wrote.
"""

from __future__ import annotations

import random
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

import msgspec

from flowlab import schemas
from flowlab.server.datapoints import datapoint_view
from flowlab.server.errors import Invalid
from flowlab.server.kinds import FollowUp, Refusal
from flowlab.server.kinds._assign import Assignments, PerDatapointThresholds, next_task
from flowlab.server.kinds._base import KindBase
from flowlab.server.kinds.rlhf import check_min_answers
from flowlab.server.worktime import hidden_within

if TYPE_CHECKING:
    from flowlab.server.model import FlowConfig, ItemRecord, Lease
    from flowlab.server.store import Op, Row

MAX_CHARS = 100_000  # the most a flow may let one demonstration hold
MAX_MODEL_RESPONSES = 7  # beside at least one demonstration, a review task holds at most 8 responses
HUMAN = "human:"  # a demonstration's source id in records and review tasks: "human:<annotator id>"


class WriteTally(Assignments):
    """Who writes for which prompt (`Assignments`), the demonstrations that count (`records`) and those of
    suspended people (`aside`)."""

    __slots__ = ("aside", "records")

    def __init__(self, n: int, max_answers: int) -> None:
        super().__init__(n, max_answers)
        self.records: list[schemas.Demonstration] = []
        self.aside: list[schemas.Demonstration] = []

    def add(self, record: schemas.Demonstration) -> None:
        self.answer(record.datapoint, record.annotator_id)
        self.records.append(record)

    def recount(self, excluded: Collection[str]) -> int:
        every = self.records + self.aside
        self.records = []
        self.clear_answers()
        self.aside = [r for r in every if r.annotator_id in excluded]
        for record in every:
            if record.annotator_id not in excluded:
                self.add(record)
        return len(self.records)


class Write(PerDatapointThresholds, KindBase):
    name = "write"
    title = "write"
    create_call = "client.flow.create_write_flow()"
    min_datapoints = 1
    min_responses = 0  # a prompt may carry model responses for its review, or none
    answers_table = "demonstrations"
    answers_path = "demonstrations"
    result_type = schemas.WriteResults
    default_lease = 900.0  # writing a good answer takes minutes
    owns = ("write",)

    def check_config(self, cfg: FlowConfig) -> None:
        spec = cfg.write
        if spec is None:
            raise Invalid("A write flow needs its spec (min_chars, max_chars, allow_paste).", field="write")
        if not 1 <= spec.max_chars <= MAX_CHARS:
            raise Invalid(f"max_chars is 1 to {MAX_CHARS:,}; got {spec.max_chars}.", field="write.max_chars")
        if not 1 <= spec.min_chars <= spec.max_chars:
            raise Invalid(
                f"min_chars is at least 1 and at most max_chars ({spec.max_chars}); got {spec.min_chars}.",
                field="write.min_chars",
            )
        if spec.review_time_to_live is not None and not spec.review_time_to_live > 0:
            raise Invalid("review_time_to_live is a number of seconds above 0.", field="write.review_time_to_live")
        check_min_answers(cfg, "demonstration")

    def complete(self, cfg: FlowConfig) -> FlowConfig:
        return cfg if cfg.write is not None else msgspec.structs.replace(cfg, write=schemas.WriteSpec())

    def linked_flows(self, cfg: FlowConfig) -> list[tuple[str, str, str]]:
        spec = cfg.write
        if spec is None or spec.review_flow_id is None:
            return []
        return [(spec.review_flow_id, "rlhf", "write.review_flow_id")]

    def check_datapoint(self, d: schemas.DatapointIn, where: str) -> None:
        if any(x is not None for x in (d.text, d.url, d.media, d.messages)) or d.prompt is None:
            raise Invalid(
                "Each datapoint of a write flow is a prompt to answer: {id, prompt: str or [{role, content}, ...], "
                "guidance, reference, responses (model responses for its review, optional)}.",
                field=where,
            )
        if len(d.responses or ()) > MAX_MODEL_RESPONSES:
            raise Invalid(
                f"A write prompt carries at most {MAX_MODEL_RESPONSES} model responses for its review.",
                field=f"{where}.responses",
            )
        for name in ("guidance", "reference"):
            value = getattr(d, name)
            if value is not None and len(value) > schemas.MAX_CONTEXT_CHARS:
                raise Invalid(
                    f"{name} holds at most {schemas.MAX_CONTEXT_CHARS:,} characters.", field=f"{where}.{name}"
                )
        self.check_assets(d, where)

    def new_tally(self, item: ItemRecord, seed: float) -> WriteTally:
        tally = WriteTally(len(item.datapoints), item.config.max_response_threshold)
        tally.cap = self.annotator_cap(item.config)
        return tally

    def replay(self, item: ItemRecord, rows: list[Row]) -> None:
        for r in rows:
            self._add(item, from_row(r))

    def _add(self, item: ItemRecord, record: schemas.Demonstration) -> None:
        item.tally.add(record)
        item.response_count += 1

    # ------------------------------------------------------------ asking

    def ask(self, item: ItemRecord, rng: random.Random, annotator_id: str, now: float) -> tuple[int | None, None]:
        """The prompt with the fewest demonstrations (counting leases out) this annotator has not had."""
        return next_task(item, annotator_id, rng, now), None

    def closed(self, lease: Lease) -> None:
        lease.item.tally.unlease(lease.question)

    def task_view(self, lease: Lease, rng: random.Random, now: float) -> schemas.Task:
        item = lease.item
        cfg = item.config
        assert cfg.write is not None
        dp = item.datapoints[lease.question]
        return self.single_view_task(
            lease,
            now,
            datapoint_view(dp),
            write=schemas.WriteTaskView(
                prompt=dp.prompt or [],
                guidance=dp.guidance,
                reference=dp.reference,
                min_chars=cfg.write.min_chars,
                max_chars=cfg.write.max_chars,
                allow_paste=cfg.write.allow_paste,
            ),
        )

    # ------------------------------------------------------------ answering

    def check(self, lease: Lease, answer: schemas.Answer) -> schemas.Demonstration:
        spec = lease.item.config.write
        assert spec is not None
        if answer.choice != "submit" or answer.write is None:
            raise Refusal(
                "invalid_demonstration",
                "Answer a write task with choice 'submit' and the text in 'write' (or choice 'skip').",
                "write",
            )
        text = answer.write.text.strip()
        return schemas.Demonstration(
            task_id=lease.task_id,
            annotator_id=lease.annotator_id,
            datapoint=lease.question,
            text=check_text(spec, text),
            created_at=0.0,
            hidden_seconds=answer.hidden_seconds,  # as reported; `answer_ops` keeps it within the server's clock
            pasted_chars=check_pasted(spec, answer.write.pasted_chars, len(text)),
        )

    def answer_ops(self, lease: Lease, checked: schemas.Demonstration, annotator_id: str, now: float) -> list[Op]:
        checked.annotator_id, checked.created_at, checked.shown_at = annotator_id, now, lease.on_screen_since
        checked.hidden_seconds = hidden_within(checked.hidden_seconds, checked.shown_at, now)
        return [
            (
                "INSERT OR IGNORE INTO demonstrations (task_id, item_id, annotator_id, datapoint, text, created_at, "
                "shown_at, pasted_chars) VALUES (?,?,?,?,?,?,?,?)",
                (
                    lease.task_id,
                    lease.item.id,
                    annotator_id,
                    checked.datapoint,
                    checked.text,
                    now,
                    checked.shown_at,
                    checked.pasted_chars,
                ),
            )
        ]

    def count(self, lease: Lease, checked: schemas.Demonstration) -> None:
        self._add(lease.item, checked)

    def release(self, lease: Lease, *, defer: bool, now: float) -> None:
        pass  # a released prompt simply has fewer demonstrations again, so it is asked next

    def recount(self, item: ItemRecord, excluded: Collection[str]) -> None:
        item.response_count = item.tally.recount(excluded)

    # ------------------------------------------------------------ aggregates

    def delta(self, item: ItemRecord, start: int, stop: int) -> list[tuple[int, int, int]]:
        return [(r.datapoint, 0, 0) for r in item.tally.records[start:stop]]

    def snapshot(self, item: ItemRecord) -> list[list[float]]:
        return [[float(n)] for n in item.tally.answered.tolist()]  # demonstrations per prompt

    async def results(self, item: ItemRecord) -> schemas.WriteResults:
        return aggregate(item)

    def final(self, item: ItemRecord) -> tuple[schemas.WriteResults, None]:
        return aggregate(item), None

    def votes(self, rows: list[Row]) -> list[schemas.Demonstration]:
        return [from_row(r) for r in rows]

    def follow_up(self, item: ItemRecord, results: Any) -> FollowUp | None:
        """The review item of an ended write item: each prompt whose demonstrations (and model responses, if
        asked) make two or more responses becomes an RLHF task; none when the flow names no review flow or no
        prompt has two."""
        spec = item.config.write
        if spec is None or spec.review_flow_id is None:
            return None
        by_prompt: dict[int, list[schemas.Demonstration]] = {}
        for r in item.tally.records:
            by_prompt.setdefault(r.datapoint, []).append(r)
        tasks = []
        for i, dp in enumerate(item.datapoints):
            responses = [
                schemas.ResponseIn(source_id=HUMAN + r.annotator_id, text=r.text) for r in by_prompt.get(i, [])
            ]
            if not responses:
                continue
            if spec.review_model_responses:
                responses += [
                    schemas.ResponseIn(
                        source_id=m.source_id,
                        text=m.text,
                        url=m.url,
                        media=m.media,
                        media_type=m.media_type,
                        private_metadata=m.private_metadata,
                    )
                    for m in dp.responses or ()
                ]
            if len(responses) < 2:
                continue
            tasks.append(
                schemas.DatapointIn(
                    id=dp.key, prompt=dp.prompt, responses=responses, private_metadata=dp.private_metadata
                )
            )
        if not tasks:
            return None

        def record(review_item_id: str) -> None:
            results.review_item_id = review_item_id

        request = schemas.ItemCreate(
            datapoints=tasks,
            context=item.context,
            private_metadata={"write_item_id": item.id, **(item.private_metadata or {})},
        )
        return FollowUp(spec.review_flow_id, request, spec.review_time_to_live, record)


def check_text(spec: schemas.WriteSpec, text: str) -> str:
    """The demonstration as stored (stripped), or a Refusal naming the flow's limit it breaks."""

    def refuse(detail: str) -> Refusal:
        return Refusal("invalid_demonstration", detail, "write.text")

    if not text:
        raise refuse("Write a response: the text is empty.")
    if len(text) < spec.min_chars:
        raise refuse(f"Write at least {spec.min_chars:,} characters (min_chars); this has {len(text):,}.")
    if len(text) > spec.max_chars:
        raise refuse(f"A response holds at most {spec.max_chars:,} characters (max_chars); this has {len(text):,}.")
    return text


def check_pasted(spec: schemas.WriteSpec, pasted: int, length: int) -> int:
    if pasted < 0:
        raise Refusal("invalid_demonstration", "pasted_chars counts characters: 0 or more.", "write.pasted_chars")
    if pasted and not spec.allow_paste:
        raise Refusal(
            "invalid_demonstration",
            "This flow asks for responses written, not pasted (allow_paste is off).",
            "write.pasted_chars",
        )
    return min(pasted, length)


def from_row(r: Row) -> schemas.Demonstration:
    return schemas.Demonstration(
        task_id=r["task_id"],
        annotator_id=r["annotator_id"],
        datapoint=int(r["datapoint"]),
        text=r["text"],
        created_at=float(r["created_at"]),
        shown_at=r.get("shown_at"),
        hidden_seconds=r.get("hidden_seconds"),
        pasted_chars=int(r.get("pasted_chars") or 0),
        excluded=bool(r.get("excluded")),
    )


def result_of(r: schemas.Demonstration) -> schemas.DemonstrationResult:
    return schemas.DemonstrationResult(
        annotator_id=r.annotator_id,
        text=r.text,
        chars=len(r.text),
        seconds=r.seconds,
        pasted_share=r.pasted_chars / len(r.text) if r.text else 0.0,
    )


def aggregate(item: ItemRecord) -> schemas.WriteResults:
    """Per prompt, its demonstrations in the order they were written, with author, length and time on task."""
    tally: WriteTally = item.tally
    per: list[list[schemas.DemonstrationResult]] = [[] for _ in item.datapoints]
    for r in tally.records:
        per[r.datapoint].append(result_of(r))
    return schemas.WriteResults(
        item_id=item.id,
        state=item.state,  # type: ignore[arg-type]
        total_responses=item.response_count,
        partial=item.state not in schemas.TERMINAL_STATES,
        tasks=[
            schemas.WriteTaskResult(key=dp.key, index=i, demonstrations=per[i]) for i, dp in enumerate(item.datapoints)
        ],
        version=item.version,
        annotators=len({r.annotator_id for r in tally.records}),
    )


WRITE = Write()
