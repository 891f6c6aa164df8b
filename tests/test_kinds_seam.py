"""The kind seam, without a server: what each kind declares, how a task handed back returns to the pool, and
that nothing outside the kinds' own modules names a kind."""

from __future__ import annotations

import random
import re
import typing
from pathlib import Path

import pytest

from flowlab import schemas
from flowlab.formats._deliverable import of_kind
from flowlab.server.errors import Invalid
from flowlab.server.kinds import all_kinds, gold_kind, kind_of
from flowlab.server.kinds._assign import RETURN_DELAY, Assignments

ROOT = Path(__file__).resolve().parent.parent


def test_a_task_handed_back_goes_to_others_at_once_and_to_its_annotator_later() -> None:
    rng = random.Random(0)
    tally = Assignments(1, max_answers=2)
    now = 100.0
    assert tally.next_for("ann", rng, now) == 0
    tally.unlease(0)  # the lease ended ...
    tally.give_back(0, "ann", now)  # ... unanswered: handed back
    assert tally.next_for("ann", rng, now + RETURN_DELAY / 2) is None, "not straight back to the one who returned it"
    assert tally.next_for("other", rng, now + 0.1) == 0, "open to everyone else at once"
    assert tally.next_for("ann", rng, now + RETURN_DELAY) == 0, "and to its annotator again later"
    tally.answer(0, "ann")
    tally.answer(0, "other")
    tally.unlease(0)
    tally.unlease(0)
    assert tally.n_full == 1 and tally.next_for("third", rng, now + 60) is None


def test_an_answered_datapoint_is_never_offered_to_its_annotator_again() -> None:
    rng = random.Random(1)
    tally = Assignments(2, max_answers=3)
    got = {tally.next_for("ann", rng, 0.0), tally.next_for("ann", rng, 0.0)}
    assert got == {0, 1}
    for d in got:
        tally.unlease(d)
        tally.answer(d, "ann")
    assert tally.next_for("ann", rng, 1e9) is None


@pytest.mark.parametrize("kind", all_kinds(), ids=lambda k: k.name)
def test_every_kind_declares_what_the_rest_of_the_server_asks_of_it(kind) -> None:  # type: ignore[no-untyped-def]
    assert kind_of(kind.name) is kind
    assert kind.title and kind.create_call.startswith("client.flow.create_")
    from flowlab.server.store.schema import ANSWERS_OF, TABLES

    # Its answers' table exists, and start-up replays a live item's answers from it.
    assert f"CREATE TABLE IF NOT EXISTS {kind.answers_table} (" in TABLES and kind.answers_table in ANSWERS_OF
    assert isinstance(kind.result_type, type) and kind.default_lease > 0 and kind.default_live_items > 0
    deliverable = of_kind(kind.name)
    assert deliverable.results is kind.result_type, "the SDK decodes results as the server sends them"
    assert list(deliverable.formats), "a batch project of every kind delivers something"
    assert kind.gold is None or gold_kind(kind.gold) is kind, "one kind takes each kind of validation set"
    for other in all_kinds():
        # A field two kinds own (a ranking's stopping rule) is read by each; every other field by one kind.
        assert other is kind or set(other.owns) & set(kind.owns) <= {"stop_when"}, "a config field belongs to one kind"


def test_a_config_field_of_another_kind_is_refused_naming_its_kind() -> None:
    import asyncio

    from flowlab.server.flows import Flows
    from flowlab.server.model import FlowConfig

    flows = Flows.__new__(Flows)  # check_config reads nothing else of the instance but the media catalogue
    cfg = FlowConfig(
        name="x", instruction="x", max_response_threshold=2, min_response_threshold=2, rlhf=schemas.RlhfSpec()
    )
    with pytest.raises(Invalid, match=r"rlhf is for RLHF flows \(made with client.flow.create_rlhf_flow\(\)\)") as e:
        asyncio.run(flows.check_config(cfg))
    assert e.value.field == "rlhf"


KIND_NAMES = ("pairwise", "classify", "rlhf", "chat", "listwise", "write")
# Where kind decisions may not be made: the server, the formats, batch projects (server and SDK) and the widgets.
# Each has its kinds' own modules (`kinds/` folders), which are the places that may name them.
CHECKED = ("src/flowlab/server", "src/flowlab/formats", "widgets", "src/flowlab/client/_projects.py")
# Modules outside `kinds/` that import one kind's module, and why that is no kind decision.
IMPORTS_ALLOWED = {
    "src/flowlab/server/relay.py": "the chat kind's model relay: it runs the chat sessions the kind leases",
    "widgets/flowlab_widgets/figures.py": "re-exports the kinds' figures under their older names, lazily",
}


def _checked_files() -> list[Path]:
    files = []
    for where in CHECKED:
        path = ROOT / where
        for f in [path] if path.is_file() else sorted(path.rglob("*.py")):
            if "kinds" in f.relative_to(ROOT).parts or "_kinds" in f.relative_to(ROOT).parts or "static" in f.parts:
                continue
            files.append(f)
    return files


def test_no_module_outside_the_kinds_names_a_kind() -> None:
    from flowlab.schemas import TaskKindName

    assert set(KIND_NAMES) == set(typing.get_args(TaskKindName)), "the check covers every kind the server knows"
    assert {k.name for k in all_kinds()} == set(KIND_NAMES)
    names = "|".join(KIND_NAMES)
    quoted = re.compile(rf"""["']({names})["']""")
    imported = re.compile(rf"kinds\.({names})\b|kinds import ({names.upper()})\b")
    assert quoted.search("if kind == 'listwise':") and quoted.search('kind_of("write")'), "the check sees a name"
    files = _checked_files()
    assert ROOT / "src/flowlab/client/_projects.py" in files and ROOT / "src/flowlab/server/projects.py" in files
    found, imports = [], []
    for path in files:
        where = str(path.relative_to(ROOT))
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if quoted.search(line):
                found.append(f"{where}:{n}: {line.strip()}")
            if imported.search(line) and where not in IMPORTS_ALLOWED:
                imports.append(f"{where}:{n}: {line.strip()}")
    assert not found, f"kind names outside the kinds' modules: {found}"
    assert not imports, f"one kind's module imported outside the kinds' modules: {imports}"


def test_a_person_who_saw_every_pair_gets_none_and_the_queue_stays_small() -> None:
    from flowlab.server.kinds.pairwise import PairQueue

    queue = PairQueue(4, random.Random(2))
    seen: set[tuple[int, int]] = set()
    for _ in range(6):
        a, b = queue.next_pair(seen)  # type: ignore[misc]
        seen.add((min(a, b), max(a, b)))
    assert len(seen) == 6, "six different pairs of four datapoints, none twice"
    for _ in range(100):
        assert queue.next_pair(seen) is None
    assert len(queue._queue) <= 2 * 4, "asking again and again does not grow the queue"
    assert queue.next_pair() is not None, "someone else still gets pairs"


@pytest.mark.parametrize("kind", all_kinds(), ids=lambda k: k.name)
def test_every_kind_has_its_words_and_its_view_on_the_annotator_page(kind) -> None:  # type: ignore[no-untyped-def]
    """The page knows every kind: its words (waiting screen, skip link, notices) are in `WORDS`, and its task is
    drawn either by the page's own pair view (target "pair": pairs and single datapoints) or by a view class that
    `prepare` builds for it, imported from a script the server serves."""
    from flowlab.server.routes.pages import STATIC_DIR, STATIC_FILES

    page = (STATIC_DIR / "annotate.js").read_text()
    table = page[page.index("const WORDS = {") : page.index("};", page.index("const WORDS = {"))]
    words = re.search(rf"^\s*{kind.name}: \{{(.*?)\}},?$", table, re.M | re.S)
    assert words, f"annotate.js's WORDS has no entry for {kind.name!r}"
    assert re.search(r'waiting: "[^"]+"', words.group(1)) and re.search(r'one: "[^"]+"', words.group(1))
    if 'target: "pair"' in words.group(1):
        return  # drawn by annotate.js itself, in #pair
    branch = re.search(rf'task\.kind === "{kind.name}"\) \{{\s*entry\.view = new (\w+)\(', page)
    assert branch, f"prepare() in annotate.js builds no view for {kind.name!r} tasks"
    view = branch.group(1)
    script = re.search(rf'^import \{{[^}}]*\b{view}\b[^}}]*\}} from "\./([\w.]+)";', page, re.M)
    assert script, f"{view} is not imported by annotate.js"
    assert script.group(1) in STATIC_FILES, f"{script.group(1)} is not among the files the server serves"
    assert f"export class {view}" in STATIC_FILES[script.group(1)].read_text()
