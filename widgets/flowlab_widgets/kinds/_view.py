"""The protocol a kind's view follows: what it reads for an item, the figures it draws, how it words its thresholds."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from flowlab import FlowlabError
from flowlab_widgets._common import esc

__all__ = ["RESULTS", "KindView", "Progress", "Read", "Reading", "aread_item", "read_item"]


@dataclass(frozen=True)
class Read:
    """One client call a view makes for the selected item: `getattr(item, method)(**kwargs)`, kept as `name`.

    An `optional` read that fails is reported instead of raised, so e.g. a ranking that cannot be fitted yet
    does not blank the counts and the heatmap read beside it.
    """

    name: str
    method: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    optional: bool = False

    def call(self, item: Any) -> Any:
        return getattr(item, self.method)(**self.kwargs)


# Every kind has results; reading them never waits for the item to end.
RESULTS = Read("result", "get_results", {"timeout": 0, "partial": True}, optional=True)


@dataclass
class Reading:
    """What one refresh read for the selected item: values by name, and what the optional reads said instead."""

    values: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def get(self, name: str) -> Any:
        return self.values.get(name)

    @contextlib.contextmanager
    def catch(self, read: Read) -> Iterator[None]:
        try:
            yield
        except FlowlabError as exc:
            if not read.optional:
                raise
            self.errors.append(str(exc))


def read_item(view: type[KindView] | KindView, item: Any) -> Reading:
    """Make `view`'s reads on a blocking SDK item (a notebook widget's worker thread)."""
    reading = Reading()
    for read in view.reads:
        with reading.catch(read):
            reading.values[read.name] = read.call(item)
    return reading


async def aread_item(view: type[KindView] | KindView, item: Any) -> Reading:
    """Make `view`'s reads on an `AsyncClient` item (the dashboard's event loop)."""
    reading = Reading()
    for read in view.reads:
        with reading.catch(read):
            reading.values[read.name] = await read.call(item)
    return reading


@dataclass(frozen=True)
class Progress:
    """An item's answers against its thresholds, both counted over the whole item."""

    done: int
    min: int  # answers the item needs before it may end early
    max: int  # answers that fill it
    text: str  # HTML: the count and the thresholds in the kind's own unit


class KindView:
    """What the workbench shows for one kind of task.

    The class says what needs no figures: the kind's name, the unit its thresholds count and whether they
    count per item or per datapoint (`summary`, `progress`), and the client calls it makes for an item
    (`reads`). An instance is the kind's figures, built once by the constructor; `show(reading)` replaces
    their sources' data. `caption` is shown above the figures and `notes` below them (both HTML, text
    escaped). The dashboard, `FlowMonitor` and `FlowBrowser` get a kind's view from `view_for(kind)`.
    """

    kind: ClassVar[str] = ""
    unit: ClassVar[str] = "responses"  # what a response is in this kind: votes, answers, annotations
    per: ClassVar[str | None] = None  # thresholds count per item (None) or per datapoint, task, ...
    has_matrix: ClassVar[bool] = False
    reads: ClassVar[tuple[Read, ...]] = (RESULTS,)
    caption: ClassVar[str] = ""

    def __init__(self, *, width: int = 860, height: int = 380, sizing_mode: str | None = None) -> None:
        """Build the figures; `width` is the room for all of them side by side (ignored with a sizing mode)."""
        self.figures: list[Any] = []
        self.sources: dict[str, Any] = {}  # what each panel draws from, by panel title
        self.notes = ""

    def show(self, reading: Reading) -> None:
        """Show what `reading` holds by replacing the figures' source data (nothing is rebuilt)."""
        raise NotImplementedError

    def empty_panels(self) -> list[str]:
        """The titles of the panels that show nothing (no rows in their source)."""
        return [title for title, source in self.sources.items() if not _rows(source)]

    # ------------------------------------------------------------ text, no figures needed

    @classmethod
    def settings(cls, config: Any) -> list[str]:
        """The kind's own settings for a flow's header (HTML, escaped)."""
        return []

    @classmethod
    def thresholds(cls, config: Any) -> str:
        return (
            f"min {config.min_response_threshold} / max {config.max_response_threshold} {cls.unit} "
            f"per {cls.per or 'item'}"
        )

    @classmethod
    def summary(cls, config: Any) -> str:
        """A flow's thresholds and settings in one line (HTML), e.g. for a header."""
        return " · ".join([esc(cls.thresholds(config)), *cls.settings(config)])

    @classmethod
    def progress(cls, status: Any) -> Progress:
        """An item's answers against its thresholds, both counted over the whole item."""
        scale = max(1, int(status.n_datapoints)) if cls.per else 1
        low, high = int(status.min_response_threshold), int(status.max_response_threshold)
        done = int(status.response_count)
        text = f"<b>{done}</b> {esc(cls.unit)} · min {low} / max {high} per {cls.per or 'item'}"
        return Progress(done=done, min=low * scale, max=high * scale, text=text)

    @classmethod
    def totals(cls, status: Any) -> tuple[int, int]:
        """(min, max) answers over the whole item, for `ItemProgressChart.update(..., totals=)`."""
        p = cls.progress(status)
        return p.min, p.max


def _rows(source: Any) -> int:
    data = getattr(source, "data", source)
    return max((len(column) for column in data.values()), default=0) if isinstance(data, Mapping) else len(data)
