"""Batch projects in the SDK: read a dataset (JSONL, JSON, CSV, a `datasets.Dataset`, a DataFrame, a list of
dicts), turn its rows into the items of the project's flow, follow the project, and build its deliverable.

What a row holds depends on the flow's kind, and each kind says how it reads one (`flowlab.client._kinds`,
whose docstring lists the columns per kind). Other columns travel with the task as its private metadata and
come back in the deliverable. In CSV files a cell holding a list or a dict (`datapoints`, `responses`,
`prompt`, `private_metadata`) is written as JSON.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from flowlab import schemas
from flowlab.client import _core as core
from flowlab.client._core import Call, Op, decode
from flowlab.client._errors import Conflict, ValidationError
from flowlab.client._flows import _Bound
from flowlab.client._kinds import rows_of
from flowlab.formats._deliverable import ExportedItem, deliverable, formats_of, of_kind, typed

if TYPE_CHECKING:
    import datasets

UPLOAD_CHUNK = 200  # items per request (the server takes up to 500)

_encoder = msgspec.json.Encoder()


# ------------------------------------------------------------------ reading a dataset


def read_rows(data: Any) -> tuple[list[dict[str, Any]], str]:
    """(rows, what to call them in errors) from a path, a `datasets.Dataset`, a DataFrame or dicts."""
    if isinstance(data, str | Path):
        path = Path(data).expanduser()
        if not path.is_file():
            raise ValidationError(422, f"No dataset file at {str(path)!r}.", field="data")
        return _read_file(path), path.name
    if hasattr(data, "to_dict") and hasattr(data, "columns"):  # a pandas DataFrame
        return [dict(r) for r in data.to_dict("records")], "the DataFrame"
    if hasattr(data, "features") and hasattr(data, "column_names"):  # a datasets.Dataset
        return [dict(r) for r in data], "the Dataset"
    if isinstance(data, Mapping) or not isinstance(data, Iterable):
        raise ValidationError(
            422,
            "data is a file path (.jsonl, .json, .csv), a datasets.Dataset, a DataFrame or a list of dicts; "
            f"got {type(data).__name__}.",
            field="data",
        )
    rows = list(data)
    for i, r in enumerate(rows):
        if not isinstance(r, Mapping):
            raise ValidationError(422, f"data[{i}] is a {type(r).__name__}; each row is a dict.", field=f"data[{i}]")
    return [dict(r) for r in rows], "data"


def _read_file(path: Path) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        rows = []
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValidationError(
                        422, f"Line {n} of {path.name} is not JSON: {exc.msg}.", field="data"
                    ) from None
                if not isinstance(row, dict):
                    raise ValidationError(422, f"Line {n} of {path.name} is not a JSON object.", field="data")
                rows.append(row)
        return rows
    if suffix == ".json":
        loaded = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(loaded, list) or not all(isinstance(r, dict) for r in loaded):
            raise ValidationError(422, f"{path.name} must hold a JSON list of objects, one per task.", field="data")
        return loaded
    if suffix in (".csv", ".tsv"):
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",")
            return [{k: v for k, v in r.items() if k is not None and v != ""} for r in reader]
    raise ValidationError(
        422, f"{path.name}: a dataset file is .jsonl, .json, .csv or .tsv; got {suffix or 'no suffix'}.", field="data"
    )


def project_items(kind: str, rows: Sequence[Mapping[str, Any]], source: str, per_item: int | None) -> Iterator[Op[Any]]:
    """The project's items, one op each (an op may upload the row's files first), as the flow's kind reads rows."""
    return rows_of(kind).items(rows, source, per_item)


# ------------------------------------------------------------------ the project's calls


def create_project(flow_id: str, name: str, live_items: int | None) -> Op[schemas.ProjectStatus]:
    body: dict[str, Any] = {"flow_id": flow_id, "name": name}
    if live_items is not None:
        body["live_items"] = live_items
    resp = yield Call("POST", "/v1/projects", json=body)
    return decode(resp.content, schemas.ProjectStatus)


def upload(project_id: str, items: Iterable[Op[Any]]) -> Op[schemas.ProjectStatus | None]:
    """Queue the items, `UPLOAD_CHUNK` to a request."""
    status = None
    chunk: list[dict[str, Any]] = []
    for make in items:
        chunk.append((yield from make))
        if len(chunk) == UPLOAD_CHUNK:
            status = yield from _post_tasks(project_id, chunk)
            chunk = []
    if chunk:
        status = yield from _post_tasks(project_id, chunk)
    return status


def _post_tasks(project_id: str, items: list[dict[str, Any]]) -> Op[schemas.ProjectStatus]:
    resp = yield Call("POST", f"/v1/projects/{project_id}/tasks", json={"items": items}, timeout=120.0)
    return decode(resp.content, schemas.ProjectStatus)


def project_call(project_id: str, action: str = "") -> Op[schemas.ProjectStatus]:
    """GET the status (no action), or POST start / pause / resume."""
    if action:
        resp = yield Call("POST", f"/v1/projects/{project_id}/{action}")
    else:
        resp = yield Call("GET", f"/v1/projects/{project_id}")
    return decode(resp.content, schemas.ProjectStatus)


def delete_project(project_id: str) -> Op[None]:
    yield Call("DELETE", f"/v1/projects/{project_id}")


def create_from(
    flow: Any, data: Any, name: str | None, live_items: int | None, per_item: int | None, start: bool
) -> Op[schemas.ProjectStatus]:
    """Read the dataset, make the project on `flow` (an object or its id), queue its items and start it. If a
    row is refused, the half-uploaded project is deleted."""
    config = flow.config if hasattr(flow, "config") else (yield from core.get_flow(str(flow)))
    rows, source = _prepare(data, per_item)
    items = project_items(config.kind, rows, source, per_item)
    status = yield from create_project(config.id, name or f"{config.name} batch", live_items)
    try:
        status = (yield from upload(status.id, items)) or status
    except Exception:
        yield from delete_project(status.id)
        raise
    if start:
        status = yield from project_call(status.id, "start")
    return status


def list_projects() -> Op[list[schemas.ProjectStatus]]:
    resp = yield Call("GET", "/v1/projects")
    return decode(resp.content, list[schemas.ProjectStatus])


def wait_project(project_id: str, timeout: float | None) -> Op[schemas.ProjectStatus]:
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = core.LONG_POLL_SECONDS if deadline is None else max(0.0, min(25.0, deadline - time.monotonic()))
        resp = yield Call("GET", f"/v1/projects/{project_id}/wait", params={"timeout": left}, timeout=left + 30.0)
        status = decode(resp.content, schemas.ProjectStatus)
        if status.state == "completed" or (deadline is not None and time.monotonic() >= deadline):
            return status


def export_project(project_id: str, partial: bool) -> Op[tuple[schemas.ProjectStatus, list[ExportedItem]]]:
    """Every ended item of the project, typed for its kind; refused while it runs unless `partial`."""
    items: list[ExportedItem] = []
    after = ""
    while True:
        resp = yield Call("GET", f"/v1/projects/{project_id}/export", params={"after": after, "limit": 500})
        page = decode(resp.content, schemas.ProjectExportPage)
        if not partial and page.project.state != "completed":
            p = page.project
            raise Conflict(
                409,
                f"Project {p.id} is {p.state} ({p.tasks_done:,} of {p.tasks_total:,} tasks done): wait() for it "
                "to complete, or pass partial=True for the tasks done so far.",
                field="partial",
            )
        items += [typed(page.project.kind, it) for it in page.items]
        if page.next is None:
            return page.project, items
        after = page.next


def build_deliverable(
    project_id: str, partial: bool
) -> Op[tuple[schemas.ProjectStatus, dict[str, list[dict[str, Any]]]]]:
    status, items = yield from export_project(project_id, partial)
    flow = yield from core.get_flow(status.flow_id)
    names = None
    if of_kind(status.kind).names_contributors:
        names = {a.id: a.name for a in (yield from core.list_annotators())}
    return status, deliverable(status.kind, items, flow=flow, contributors=names)


def save(
    folder: str | Path, status: schemas.ProjectStatus, tables: Mapping[str, list[dict[str, Any]]]
) -> dict[str, Path]:
    """Write each format as `<format>.jsonl` with a `manifest.json` saying what is where; the paths."""
    out = Path(folder).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, rows in tables.items():
        path = out / f"{name}.jsonl"
        with path.open("wb") as f:
            for row in rows:
                f.write(_encoder.encode(row) + b"\n")
        paths[name] = path
    manifest = {
        "project": msgspec.to_builtins(status),
        "formats": {name: {"file": p.name, "rows": len(tables[name])} for name, p in paths.items()},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    paths["manifest"] = out / "manifest.json"
    return paths


def as_datasets(tables: Mapping[str, list[dict[str, Any]]], fmt: str | None) -> Any:
    try:
        import datasets
    except ImportError:
        raise ImportError("to_dataset() needs Hugging Face datasets: pip install datasets") from None
    if fmt is not None and fmt not in tables:
        raise ValidationError(422, f"format is one of {sorted(tables)}; got {fmt!r}.", field="format")
    made = {name: _dataset(datasets, rows) for name, rows in tables.items() if name == fmt or (fmt is None and rows)}
    return made[fmt] if fmt is not None else datasets.DatasetDict(made)


def _dataset(datasets: Any, rows: list[dict[str, Any]]) -> Any:
    """A table as a Dataset. Arrow columns hold one type; where nested values mix types (the seed-001
    records, whose annotation values are numbers or text), the nested columns are carried as JSON text."""
    try:
        return datasets.Dataset.from_list(rows)
    except (TypeError, ValueError):  # pyarrow's ArrowInvalid and ArrowTypeError are ValueError and TypeError
        nested = {k for row in rows for k, v in row.items() if isinstance(v, dict | list)}
        return datasets.Dataset.from_list(
            [{k: json.dumps(v) if k in nested else v for k, v in row.items()} for row in rows]
        )


def progress_line(s: schemas.ProjectStatus) -> str:
    """One line of progress, for the CLI and text displays."""
    share = s.answers_done / s.answers_needed if s.answers_needed else 0.0
    rate = f"{s.rate:,.1f} answers/s" if s.rate is not None else "rate -"
    eta = "ETA -" if s.eta_seconds is None else f"ETA {_duration(s.eta_seconds)}"
    return f"{s.name} [{s.state}] {s.tasks_done:,}/{s.tasks_total:,} tasks, {share:.1%} of answers, {rate}, {eta}"


def _duration(seconds: float) -> str:
    seconds = round(seconds)  # an int
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


# ------------------------------------------------------------------ objects


def _prepare(data: Any, per_item: int | None) -> tuple[list[dict[str, Any]], str]:
    if per_item is not None and not 1 <= per_item <= 1000:
        raise ValidationError(422, "per_item is from 1 to 1,000 datapoints an item.", field="per_item")
    rows, source = read_rows(data)
    if not rows:
        raise ValidationError(422, f"{source} holds no rows; a project needs at least one task.", field="data")
    return rows, source


class _ProjectBase(_Bound):
    def __init__(self, transport: Any, status: schemas.ProjectStatus) -> None:
        self._transport = transport
        self.last_status = status

    @property
    def id(self) -> str:
        return self.last_status.id

    @property
    def name(self) -> str:
        return self.last_status.name

    @property
    def flow_id(self) -> str:
        return self.last_status.flow_id

    @property
    def kind(self) -> str:
        return self.last_status.kind

    @property
    def formats(self) -> tuple[str, ...]:
        """The deliverable's formats for this project's kind."""
        return formats_of(self.kind)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {progress_line(self.last_status)}>"


class Project(_ProjectBase):
    """A batch project: a dataset of tasks labelled through one flow, delivered when all are done."""

    def _call(self, action: str = "") -> schemas.ProjectStatus:
        self.last_status = self._transport.run(project_call(self.id, action))
        return self.last_status

    def get_progress(self) -> schemas.ProjectStatus:
        """Tasks and answers done of the total, the rate over the last minute, the time left (`eta_seconds`)."""
        return self._call()

    def get_status(self) -> str:
        """open, running, paused or completed."""
        return self._call().state

    def start(self) -> schemas.ProjectStatus:
        return self._call("start")

    def pause(self) -> schemas.ProjectStatus:
        """Hand out none of its tasks until `resume()`; tasks already out may still be answered."""
        return self._call("pause")

    def resume(self) -> schemas.ProjectStatus:
        return self._call("resume")

    def delete(self) -> None:
        """Drop the project's queued tasks and stop its live items (they stay in the flow, with their answers)."""
        self._transport.run(delete_project(self.id))

    def wait(self, timeout: float | None = None) -> schemas.ProjectStatus:
        """Block until the project completes (or `timeout` seconds pass); its status."""
        self.last_status = self._transport.run(wait_project(self.id, timeout))
        return self.last_status

    def deliverable(self, *, partial: bool = False) -> dict[str, list[dict[str, Any]]]:
        """Every format of the project's kind (`formats`) as rows; before it completes only with `partial`."""
        self.last_status, tables = self._transport.run(build_deliverable(self.id, partial))
        return tables

    def save_deliverable(self, folder: str | Path, *, partial: bool = False) -> dict[str, Path]:
        """Write the deliverable to `folder`: `<format>.jsonl` for each format and `manifest.json`."""
        tables = self.deliverable(partial=partial)
        return save(folder, self.last_status, tables)

    def to_dataset(
        self, format: str | None = None, *, partial: bool = False
    ) -> datasets.DatasetDict | datasets.Dataset:
        """The deliverable as Hugging Face datasets: a DatasetDict with one split per format, or one format's
        Dataset."""
        return as_datasets(self.deliverable(partial=partial), format)


class ProjectsAPI:
    """`client.projects`: batch projects (seed 002's first pipeline) from a dataset to a deliverable."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport

    def create(
        self,
        flow: Any,
        data: Any,
        *,
        name: str | None = None,
        live_items: int | None = None,
        per_item: int | None = None,
        start: bool = True,
    ) -> Project:
        """A project on `flow` (a flow object or its id) from `data`: a .jsonl/.json/.csv path, a
        `datasets.Dataset`, a DataFrame or a list of dicts (the module's docstring says what a row holds).
        The flow says what is asked and how many answers a task needs (`max_response_threshold`); its items
        run until answered, at most `live_items` at once. Rows of the kinds whose items hold many tasks
        (classify, RLHF, chat, write) are grouped `per_item` to an item; a ranking or listwise row is an
        item. With `start=False` the project waits for `start()`."""
        return Project(self._transport, self._transport.run(create_from(flow, data, name, live_items, per_item, start)))

    def get(self, project_id: str) -> Project:
        return Project(self._transport, self._transport.run(project_call(project_id)))

    def list(self) -> list[Project]:
        return [Project(self._transport, s) for s in self._transport.run(list_projects())]


class AsyncProject(_ProjectBase):
    """A batch project, for asyncio code: the same calls as `Project`, awaited."""

    async def _call(self, action: str = "") -> schemas.ProjectStatus:
        self.last_status = await self._transport.run(project_call(self.id, action))
        return self.last_status

    async def get_progress(self) -> schemas.ProjectStatus:
        return await self._call()

    async def get_status(self) -> str:
        return (await self._call()).state

    async def start(self) -> schemas.ProjectStatus:
        return await self._call("start")

    async def pause(self) -> schemas.ProjectStatus:
        return await self._call("pause")

    async def resume(self) -> schemas.ProjectStatus:
        return await self._call("resume")

    async def delete(self) -> None:
        await self._transport.run(delete_project(self.id))

    async def wait(self, timeout: float | None = None) -> schemas.ProjectStatus:
        self.last_status = await self._transport.run(wait_project(self.id, timeout))
        return self.last_status

    async def deliverable(self, *, partial: bool = False) -> dict[str, list[dict[str, Any]]]:
        self.last_status, tables = await self._transport.run(build_deliverable(self.id, partial))
        return tables

    async def save_deliverable(self, folder: str | Path, *, partial: bool = False) -> dict[str, Path]:
        return save(folder, self.last_status, await self.deliverable(partial=partial))

    async def to_dataset(
        self, format: str | None = None, *, partial: bool = False
    ) -> datasets.DatasetDict | datasets.Dataset:
        return as_datasets(await self.deliverable(partial=partial), format)


class AsyncProjectsAPI:
    """`client.projects` of the async client."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport

    async def create(
        self,
        flow: Any,
        data: Any,
        *,
        name: str | None = None,
        live_items: int | None = None,
        per_item: int | None = None,
        start: bool = True,
    ) -> AsyncProject:
        status = await self._transport.run(create_from(flow, data, name, live_items, per_item, start))
        return AsyncProject(self._transport, status)

    async def get(self, project_id: str) -> AsyncProject:
        return AsyncProject(self._transport, await self._transport.run(project_call(project_id)))

    async def list(self) -> list[AsyncProject]:
        return [AsyncProject(self._transport, s) for s in await self._transport.run(list_projects())]
