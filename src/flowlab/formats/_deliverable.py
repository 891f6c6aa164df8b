"""A batch project's deliverable: every export format its task kind has, as tables (lists of flat-ish dicts)
built from the project's ended items. The SDK writes them to JSONL files or hands them to `datasets`.

Each kind says what it delivers in `formats/kinds/<kind>.py` (a `Deliverable`); this module knows none of them
by name."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from flowlab import schemas
from flowlab.formats._records import counted


class ExportedItem(msgspec.Struct):
    """One ended item as a deliverable is built from it, typed for its kind."""

    detail: schemas.ItemDetail
    results: Any
    answers: list[Any]


@dataclass(frozen=True)
class Made:
    """What every format of a deliverable may draw on beside the item: the flow and who the annotators are."""

    flow: schemas.Flow
    contributors: Mapping[str, str] | None = None


Builder = Callable[[ExportedItem, Made], list[dict[str, Any]]]


@dataclass(frozen=True)
class Deliverable:
    """What one task kind delivers: its results and answers as the export sends them, and its formats in the
    order a deliverable lists them (the first is one row per task)."""

    results: type
    answers: type
    formats: dict[str, Builder] = field(default_factory=dict)
    names_contributors: bool = False  # its records name annotators: the SDK looks their names up


def of_kind(kind: str) -> Deliverable:
    """The deliverable of task kind `kind` (the module of that name in `formats/kinds/`)."""
    from flowlab.formats import kinds

    known = sorted(m.name for m in pkgutil.iter_modules(kinds.__path__))
    if kind not in known:
        raise ValueError(f"no deliverable for task kind {kind!r}; kinds with one: {known}")
    return importlib.import_module(f"{kinds.__name__}.{kind}").DELIVERABLE  # type: ignore[no-any-return]


def formats_of(kind: str) -> tuple[str, ...]:
    return tuple(of_kind(kind).formats)


def typed(kind: str, item: schemas.ProjectExportItem) -> ExportedItem:
    """The wire's item with its results and answers decoded into the kind's structs; a deliverable holds the
    answers its results count (those of people suspended while the item was live are left out)."""
    made = of_kind(kind)
    return ExportedItem(
        detail=item.detail,
        results=msgspec.convert(item.results, made.results),
        answers=counted(msgspec.convert(item.answers, list[made.answers])),  # type: ignore[name-defined]
    )


def task_id(item: ExportedItem) -> str:
    """A ranking item's task id: the dataset row's `id`, kept in the item's metadata, else the item's own."""
    meta = item.detail.private_metadata or {}
    return str(meta.get("task_id", item.detail.status.id))


def deliverable(
    kind: str,
    items: Sequence[ExportedItem],
    *,
    flow: schemas.Flow,
    contributors: Mapping[str, str] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Format name -> rows, for every format of `kind`."""
    made = Made(flow, contributors)
    return {name: [row for it in items for row in build(it, made)] for name, build in of_kind(kind).formats.items()}


def plain(value: Any) -> Any:
    return msgspec.to_builtins(value)
