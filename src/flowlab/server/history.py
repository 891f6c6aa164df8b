"""Ended items, read back from the database: their final record, datapoints and votes, with a small cache."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import msgspec

from flowlab import schemas
from flowlab.server.kinds import all_kinds
from flowlab.server.store import Row, Store


def answer_tables() -> list[str]:
    """The tables the kinds keep their answers in (some kinds share one)."""
    return sorted({kind.answers_table for kind in all_kinds()})


class EndedRecord(msgspec.Struct):
    """What an item leaves behind when it ends, in `items.final`: everything later reads need, so none of
    them recomputes a fit or touches the votes."""

    kind: str
    status: schemas.ItemStatus
    results: msgspec.Raw  # the kind's results, exactly as they are served
    matrix: msgspec.Raw  # its win-loss matrix, or null for kinds without one


def has_matrix(record: EndedRecord) -> bool:
    return bytes(record.matrix) != b"null"


@dataclass(slots=True)
class EndedItem:
    id: str
    flow_id: str
    owner: str
    record: EndedRecord


class History:
    """Reads of ended items. Results and matrices are final, so a cache bounded in bytes (a 1,000-datapoint
    item's matrix alone is megabytes) keeps the recent ones."""

    def __init__(self, store: Store, *, cache_bytes: int = 32 * 2**20) -> None:
        self.store = store
        self.cache_bytes = cache_bytes
        self._cache: OrderedDict[str, tuple[EndedItem, int]] = OrderedDict()
        self._cached_bytes = 0
        self._record = msgspec.json.Decoder(EndedRecord)
        self._status = msgspec.json.Decoder(schemas.ItemStatus)

    async def get(self, item_id: str) -> EndedItem | None:
        hit = self._cache.get(item_id)
        if hit is not None:
            self._cache.move_to_end(item_id)
            return hit[0]
        rows = await self.store.aread(
            "SELECT i.id, i.flow_id, i.final, f.owner FROM items i JOIN flows f ON f.id = i.flow_id "
            "WHERE i.id = ? AND i.final IS NOT NULL",
            (item_id,),
        )
        if not rows:
            return None
        row = rows[0]
        ended = EndedItem(row["id"], row["flow_id"], row["owner"], self._record.decode(row["final"]))
        size = len(row["final"])
        self._cache[item_id] = (ended, size)
        self._cached_bytes += size
        while self._cached_bytes > self.cache_bytes and len(self._cache) > 1:
            _, (_, dropped) = self._cache.popitem(last=False)
            self._cached_bytes -= dropped
        return ended

    async def body(self, item_id: str) -> str | None:
        rows = await self.store.aread("SELECT body FROM items WHERE id = ?", (item_id,))
        return str(rows[0]["body"]) if rows else None

    async def answers(self, item_id: str, table: str) -> list[Row]:
        """Every durable answer of an item (live or ended) from its kind's table, in commit order: the
        database is their only home."""
        assert table in answer_tables(), table
        return await self.store.aread(f"SELECT * FROM {table} WHERE item_id = ? ORDER BY seq", (item_id,))

    async def statuses(self, flow_id: str) -> list[schemas.ItemStatus]:
        rows = await self.store.aread(
            "SELECT ended_status FROM items WHERE flow_id = ? AND final IS NOT NULL ORDER BY created_at", (flow_id,)
        )
        return [self._status.decode(r["ended_status"]) for r in rows]

    async def accepted_by(self, task_ids: list[str]) -> dict[str, str]:
        """task id -> the annotator whose answer to it is durable, for those of `task_ids` answered: how a
        retry is recognised once the task has left the memory of recent outcomes."""
        found: dict[str, str] = {}
        for i in range(0, len(task_ids), 500):
            chunk = task_ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for table in (*answer_tables(), "gold_answers"):
                rows = await self.store.aread(
                    f"SELECT task_id, annotator_id FROM {table} WHERE task_id IN ({marks})", chunk
                )
                found |= {r["task_id"]: r["annotator_id"] for r in rows}
        return found

    def forget_flow(self, flow_id: str) -> None:
        for item_id in [k for k, (v, _) in self._cache.items() if v.flow_id == flow_id]:
            self._cached_bytes -= self._cache.pop(item_id)[1]


def encode_record(kind: str, status: schemas.ItemStatus, results: Any, matrix: Any) -> str:
    enc = msgspec.json.encode
    record = EndedRecord(
        kind=kind,
        status=status,
        results=msgspec.Raw(enc(results)),
        matrix=msgspec.Raw(enc(matrix)),
    )
    return enc(record).decode()
