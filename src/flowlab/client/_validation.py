"""Validation sets as objects, in hosted's calls: find them, read their settings, change them, delete them."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from flowlab import schemas
from flowlab.client._core import Call, Op, decode
from flowlab.client._errors import ValidationError
from flowlab.client._flows import _Bound

DIMENSIONS_KEPT = (
    "flowlab keeps a validation set's dimensions with it but scores each annotator over all their gold answers, "
    "not per dimension (client.annotators.list(): gold_answered, gold_correct)."
)


def warn_dimensions(dimensions: Sequence[str], *, stacklevel: int) -> None:
    if dimensions:
        warnings.warn(DIMENSIONS_KEPT, stacklevel=stacklevel)


def find_sets(name: str, amount: int, page: int) -> Op[list[schemas.ValidationSet]]:
    if amount < 1 or page < 1:
        raise ValidationError(422, "amount and page must be at least 1 (pages count from 1).", field="amount")
    params = {"limit": amount, "offset": (page - 1) * amount, "name": name}
    resp = yield Call("GET", "/v1/validation-sets", params=params)
    return decode(resp.content, list[schemas.ValidationSet])


def update_set(set_id: str, changes: dict[str, Any]) -> Op[schemas.ValidationSet]:
    resp = yield Call("PATCH", f"/v1/validation-sets/{set_id}", json=changes)
    return decode(resp.content, schemas.ValidationSet)


def delete_set(set_id: str) -> Op[None]:
    yield Call("DELETE", f"/v1/validation-sets/{set_id}")


def _dimensions(dimensions: Sequence[str]) -> list[str]:
    if isinstance(dimensions, str) or not all(isinstance(d, str) for d in dimensions):
        raise ValidationError(422, "dimensions is a list of names, e.g. ['quality'].", field="dimensions")
    return list(dimensions)


class _SetBase(_Bound):
    """A validation set: its id, name and settings as last read (`info`)."""

    def __init__(self, transport: Any, info: schemas.ValidationSet) -> None:
        self._transport = transport
        self.info = info

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def dimensions(self) -> list[str]:
        """Hosted's tracking dimensions, kept with the set (flowlab scores annotators over all gold answers)."""
        return list(self.info.dimensions)

    @property
    def kind(self) -> str:
        """The flows it serves: "pairwise" (gold pairs, ranking flows) or "classify" (gold labels)."""
        return self.info.kind

    @property
    def pair_count(self) -> int:
        return self.info.pair_count

    @property
    def label_count(self) -> int:
        return self.info.label_count

    @property
    def created_at(self) -> float:
        return self.info.created_at

    @property
    def should_alert(self) -> bool:
        """Whether an annotator who answers a gold question wrong is shown its explanation."""
        return self.info.should_alert

    @property
    def can_be_flagged(self) -> bool:
        return self.info.can_be_flagged

    def view(self) -> None:
        """Print the set's summary (hosted opens its web page; flowlab has none for validation sets)."""
        questions = f"{self.pair_count} gold pairs" if self.kind == "pairwise" else f"{self.label_count} gold labels"
        print(
            f"Validation set {self.name!r} ({self.id}) on {self.url}: {questions} for {self.kind} flows; "
            f"dimensions {self.dimensions}; wrong answers explained: {self.should_alert}; "
            f"can be flagged: {self.can_be_flagged}."
        )

    def __str__(self) -> str:
        return f"name: {self.name!r} id: {self.id} dimensions: {self.dimensions}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.name!r} {self.kind} dimensions={self.dimensions}>"


class ValidationSet(_SetBase):
    """A validation set, as hosted's `RapidataValidationSet`: `id`, `name`, `dimensions`, `update_dimensions()`,
    `update_should_alert()`, `update_can_be_flagged()`, `view()`, `delete()`. Flows copy its gold questions when
    they are created, so a change reaches flows made after it."""

    def refresh(self) -> ValidationSet:
        resp: schemas.ValidationSet = self._transport.run(_get(self.id))
        self.info = resp
        return self

    def update_dimensions(self, dimensions: list[str]) -> ValidationSet:
        warn_dimensions(dimensions, stacklevel=2)
        self.info = self._transport.run(update_set(self.id, {"dimensions": _dimensions(dimensions)}))
        return self

    def update_should_alert(self, should_alert: bool) -> ValidationSet:
        """Whether an annotator who answers a gold question wrong is shown its explanation (True by default);
        their record counts the answer either way."""
        self.info = self._transport.run(update_set(self.id, {"should_alert": bool(should_alert)}))
        return self

    def update_can_be_flagged(self, can_be_flagged: bool) -> ValidationSet:
        """Kept with the set, as hosted's; flowlab never sets a gold question aside for its accuracy."""
        self.info = self._transport.run(update_set(self.id, {"can_be_flagged": bool(can_be_flagged)}))
        return self

    def delete(self) -> None:
        """Delete the set; flows made from it keep the gold questions they copied."""
        self._transport.run(delete_set(self.id))


class AsyncValidationSet(_SetBase):
    """`ValidationSet`'s async twin (`view()` reads what is cached, so it stays a plain call)."""

    async def refresh(self) -> AsyncValidationSet:
        self.info = await self._transport.run(_get(self.id))
        return self

    async def update_dimensions(self, dimensions: list[str]) -> AsyncValidationSet:
        warn_dimensions(dimensions, stacklevel=2)
        self.info = await self._transport.run(update_set(self.id, {"dimensions": _dimensions(dimensions)}))
        return self

    async def update_should_alert(self, should_alert: bool) -> AsyncValidationSet:
        self.info = await self._transport.run(update_set(self.id, {"should_alert": bool(should_alert)}))
        return self

    async def update_can_be_flagged(self, can_be_flagged: bool) -> AsyncValidationSet:
        self.info = await self._transport.run(update_set(self.id, {"can_be_flagged": bool(can_be_flagged)}))
        return self

    async def delete(self) -> None:
        await self._transport.run(delete_set(self.id))


def _get(set_id: str) -> Op[schemas.ValidationSet]:
    resp = yield Call("GET", f"/v1/validation-sets/{set_id}")
    return decode(resp.content, schemas.ValidationSet)
