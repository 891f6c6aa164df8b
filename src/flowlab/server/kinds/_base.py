"""What most task kinds share: the defaults of `TaskKind`'s declarations, and the datapoint shapes that belong
to one kind only (a starting conversation is a chat task, a prompt with responses an RLHF task)."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from flowlab import schemas
from flowlab.server.errors import Invalid

if TYPE_CHECKING:
    from flowlab.server.kinds import FollowUp
    from flowlab.server.model import FlowConfig, ItemRecord, Lease
    from flowlab.server.store import Row


class KindBase:
    """Defaults a kind overrides where it differs."""

    name: str
    title: str
    owns: tuple[str, ...] = ()
    takes_pairs = False
    compares_sets = False
    min_responses = 2  # a prompt with responses is there to compare them
    assets_per_datapoint = False
    gold: str | None = None  # most kinds' flows take no validation set
    default_lease = 60.0
    default_live_items = 10

    def complete(self, cfg: FlowConfig) -> FlowConfig:
        return cfg

    def tasks_in(self, n_datapoints: int) -> int:
        return n_datapoints  # a task per datapoint

    def annotator_cap(self, cfg: FlowConfig) -> int | None:
        return cfg.max_votes_per_annotator  # a person answers each task once; an item's tasks are theirs to take

    def check_datapoint(self, d: schemas.DatapointIn, where: str) -> None:
        refuse_conversation(d, where)
        refuse_responses(d, where)
        self.check_assets(d, where)

    def check_assets(self, d: schemas.DatapointIn, where: str) -> None:
        if d.context_assets and not self.assets_per_datapoint:
            raise Invalid(
                f"Context assets per datapoint are for classify flows; a {self.title} batch shares one list of "
                "context_assets, given with the batch.",
                field=f"{where}.context_assets",
            )

    def linked_flows(self, cfg: FlowConfig) -> list[tuple[str, str, str]]:
        return []  # a flow of most kinds names no other flow

    def follow_up(self, item: ItemRecord, results: Any) -> FollowUp | None:
        return None  # most kinds' items end with nothing to ask elsewhere

    def matrix(self, item: ItemRecord) -> schemas.WinLossMatrix | None:
        return None  # only a kind that compares pairs has one

    def answered_by(self, item: ItemRecord) -> Collection[str]:
        return item.tally.annotators.keys()  # type: ignore[no-any-return]  # an `Assignments` tally's people

    def pair_votes(self, rows: list[Row]) -> list[schemas.Vote] | None:
        return None  # most kinds compare no pairs

    def consensus_sql(self, mine: str) -> str | None:
        return None  # a kind whose answers have no single value to agree on (a whole annotation) has none

    async def consensus(self, store: Any, mine: str, params: list[Any]) -> list[tuple[str, int, int]]:
        """(annotator_id, compared, agreed) per person, from `consensus_sql`; a kind whose answers SQL cannot
        compare overrides this."""
        sql = self.consensus_sql(mine)
        if sql is None:
            return []
        rows = await store.aread(sql, params)
        return [(r["annotator_id"], int(r["compared"] or 0), int(r["agreed"] or 0)) for r in rows]

    def single_view_task(self, lease: Lease, now: float, a: schemas.DatapointView, **fields: Any) -> schemas.Task:
        """A task that shows one view (`a`, no `b`) of the lease's item, with what every such task carries; `fields`
        adds the kind's own view (and may override the item's context)."""
        item = lease.item
        cfg = item.config
        common: dict[str, Any] = {
            "task_id": lease.task_id,
            "item_id": item.id,
            "flow_id": item.flow.id,
            "instruction": cfg.instruction,
            "context": item.context,
            "context_assets": item.context_assets,
            "a": a,
            "b": None,
            "allow_ties": False,
            "render_markdown": cfg.markdown,
            "lease_expires_at": lease.expires_at,
            "lease_seconds": cfg.lease_seconds,
            "server_time": now,
            "kind": self.name,
            "settings": cfg.settings,
        }
        return schemas.Task(**(common | fields))


def refuse_conversation(d: schemas.DatapointIn, where: str) -> None:
    if d.messages is not None or d.guidance is not None:
        raise Invalid(
            "A starting conversation with guidance is a chat task; push it to a flow made with create_chat_flow().",
            field=f"{where}.messages",
        )


def refuse_responses(d: schemas.DatapointIn, where: str) -> None:
    if d.responses is not None or d.prompt is not None:
        raise Invalid(
            "Prompts with responses are RLHF tasks; push them to a flow made with create_rlhf_flow().",
            field=f"{where}.responses",
        )
