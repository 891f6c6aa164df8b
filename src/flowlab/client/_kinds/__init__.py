"""The SDK's side of each task kind in a batch project: how a dataset's rows become the items of a flow of that
kind (`client.projects.create`). Each kind says it in its module here (`ROWS`, a `ProjectRows`); the project
code asks `rows_of(kind)` and names no kind.

What a row holds, per kind:

- ranking (`pairwise`): `a` and `b` (or `datapoints`, a list of two or more), an optional `context` (or
  `prompt`) and `id`; one row is one comparison task, one item.
- `listwise`: `datapoints` (a list of three or more to rank, k at a time), an optional `context` (or `prompt`)
  and `id`; one row is one ranking task, one item.
- `classify`: `datapoint` (or `text`, `url`, `path`), an optional `context` and `id`; rows are grouped into
  items of `per_item` datapoints.
- `rlhf`: `id`, `prompt`, `responses` (`[{"source_id", "content"}, ...]`), as a flow's RLHF task.
- `chat`: `id`, `messages` (the conversation to start from, possibly empty), `guidance`, as a flow's chat task;
  the flow's models must be served while the project runs.
- `write`: `id`, `prompt` (text, or a conversation `[{"role", "content"}, ...]`), an optional `guidance` and
  `reference`, and `responses` (model responses for the review stage, optional), as a write flow's prompt.

Other columns travel with the task as its private metadata and come back in the deliverable. In CSV files a
cell holding a list or a dict (`datapoints`, `responses`, `prompt`, `private_metadata`) is written as JSON.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flowlab.client import _core as core
from flowlab.client._core import Op
from flowlab.client._errors import ValidationError

JSON_CELLS = ("datapoints", "responses", "prompt", "messages", "private_metadata", "metadata")

# (the row, where it is for errors, its number in the dataset from 1) -> an op making the item or the datapoint
Reader = Callable[[Mapping[str, Any], str, int], Op[dict[str, Any]]]


@dataclass(frozen=True)
class ProjectRows:
    """How one kind reads a dataset's rows: `read` makes one row into an item (`per_item` None: a row is an
    item) or into one datapoint, `per_item` of them grouped into an item unless the caller says otherwise."""

    read: Reader
    per_item: int | None = None

    def items(self, rows: Sequence[Mapping[str, Any]], source: str, per_item: int | None) -> Iterator[Op[Any]]:
        """The project's items, one op each (an op may upload the row's files first)."""
        if self.per_item is None:
            for i, row in enumerate(rows):
                yield self.read(row, f"row {i + 1} of {source}", i + 1)
            return
        size = per_item or self.per_item
        for start in range(0, len(rows), size):
            yield _group(self.read, rows[start : start + size], source, start)


def rows_of(kind: str) -> ProjectRows:
    """How a project of flows of kind `kind` reads its rows (the module of that name here)."""
    known = sorted(m.name for m in pkgutil.iter_modules(__path__))
    if kind not in known:
        raise ValidationError(
            422, f"Flows of kind {kind!r} cannot run batch projects; these kinds can: {', '.join(known)}.", field="flow"
        )
    return importlib.import_module(f"{__name__}.{kind}").ROWS  # type: ignore[no-any-return]


def _group(read: Reader, rows: Sequence[Mapping[str, Any]], source: str, start: int) -> Op[dict[str, Any]]:
    points = []
    for j, row in enumerate(rows):
        points.append((yield from read(row, f"row {start + j + 1} of {source}", start + j + 1)))
    return {"datapoints": points}


# ------------------------------------------------------------------ what every kind's reader uses


def cells(row: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A row with JSON-written cells (from CSV) decoded and missing values (None, NaN) left out."""
    out = {}
    for k, v in row.items():
        if v is None or (isinstance(v, float) and v != v):
            continue
        if k in JSON_CELLS and isinstance(v, str) and v.lstrip()[:1] in ("[", "{"):
            try:
                v = json.loads(v)
            except json.JSONDecodeError as exc:
                raise ValidationError(
                    422, f"{where}: column {k!r} is not valid JSON: {exc.msg}.", field=where
                ) from None
        out[str(k)] = v
    return out


def metadata(row: dict[str, Any], where: str) -> dict[str, Any]:
    """The row's own metadata dict merged with its other columns."""
    given = row.pop("private_metadata", None) or row.pop("metadata", None) or {}
    if not isinstance(given, Mapping):
        raise ValidationError(422, f"{where}: private_metadata is a dict.", field=where)
    return {**row, **given}


def text(value: Any, name: str, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(422, f"{where}: {name} is text; got {type(value).__name__}.", field=where)
    return value or None


def task(raw: Mapping[str, Any], where: str, number: int, columns: Sequence[str]) -> dict[str, Any]:
    """A task of a kind whose rows are its tasks as the flow takes them: the named columns, an `id` (the row's
    number when it has none), the other columns as private metadata."""
    row = cells(raw, where)
    out: dict[str, Any] = {k: row.pop(k) for k in ("id", *columns) if k in row}
    out.setdefault("id", str(number))
    meta = metadata(row, where)
    if meta:
        out["private_metadata"] = meta
    return out


def ranked_item(raw: Mapping[str, Any], where: str, least: int, what: str) -> Op[dict[str, Any]]:
    """An item of datapoints to rank from a row: `datapoints` (a list of at least `least`), or `a` and `b` when
    two may be compared; an optional `context` (or `prompt`), and `id` kept as the task id."""
    row = cells(raw, where)
    task_id = row.pop("id", None)
    context = text(row.pop("context", None) or row.pop("prompt", None), "context", where)
    if "datapoints" in row:
        given = row.pop("datapoints")
        if not isinstance(given, Sequence) or isinstance(given, str) or len(given) < least:
            raise ValidationError(
                422,
                f"{where}: datapoints is a list of {_count(least)} or more to {'compare' if least <= 2 else 'rank'}.",
                field=where,
            )
        points = []
        for j, d in enumerate(given):
            points.append((yield from core._datapoint(d, f"{where}.datapoints[{j}]")))
    elif least <= 2 and "a" in row and "b" in row:
        points = []
        for side in ("a", "b"):
            point = yield from core._datapoint(row.pop(side), f"{where}.{side}")
            points.append({"id": side, **point})
    else:
        columns = "columns a and b (or datapoints, a list)" if least <= 2 else "a datapoints column (a list)"
        raise ValidationError(
            422,
            f"{where}: a {what} task has {columns}; it has {sorted(raw) or 'none'}.",
            field=where,
        )
    meta = metadata(row, where)
    if task_id is not None:
        meta["task_id"] = str(task_id)
    item: dict[str, Any] = {"datapoints": points}
    if context is not None:
        item["context"] = context
    if meta:
        item["private_metadata"] = meta
    return item


def _count(n: int) -> str:
    return {2: "two", 3: "three"}.get(n, str(n))
