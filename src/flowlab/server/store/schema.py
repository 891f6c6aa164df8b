"""The tables, written once for both databases, and the start-up queries that read back live work only."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from flowlab.server.store import Row, Snapshot

# {real} and {serial} differ between SQLite and PostgreSQL; everything else is shared.
TABLES = """
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, key_hash TEXT NOT NULL UNIQUE,
    admin INTEGER NOT NULL, created_at {real} NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS annotators (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE, owner TEXT NOT NULL,
    created_at {real} NOT NULL, revoked INTEGER NOT NULL DEFAULT 0,
    votes BIGINT NOT NULL DEFAULT 0, gold_answered BIGINT NOT NULL DEFAULT 0,
    gold_correct BIGINT NOT NULL DEFAULT 0, last_seen {real},
    audience_id TEXT, participant TEXT, link_id TEXT, state TEXT NOT NULL DEFAULT 'active', suspended_at {real},
    study_id TEXT, session_id TEXT);
CREATE TABLE IF NOT EXISTS audiences (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, name TEXT NOT NULL, description TEXT, qualification TEXT,
    suspend_below {real}, min_gold BIGINT NOT NULL DEFAULT 10, secret TEXT NOT NULL, created_at {real} NOT NULL);
CREATE TABLE IF NOT EXISTS quiz_answers (
    task_id TEXT PRIMARY KEY, annotator_id TEXT NOT NULL, audience_id TEXT NOT NULL, position INTEGER NOT NULL,
    correct INTEGER NOT NULL, created_at {real} NOT NULL, shown_at {real}, hidden_seconds {real});
CREATE TABLE IF NOT EXISTS enrollment_links (
    id TEXT PRIMARY KEY, audience_id TEXT NOT NULL, secret TEXT NOT NULL UNIQUE, platform TEXT, id_param TEXT,
    max_people BIGINT, expires_at {real}, completion_code TEXT, screen_out_code TEXT, quota BIGINT,
    enrolled BIGINT NOT NULL DEFAULT 0, revoked INTEGER NOT NULL DEFAULT 0, created_at {real} NOT NULL);
CREATE TABLE IF NOT EXISTS flows (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, config TEXT NOT NULL, created_at {real} NOT NULL,
    updated_at {real} NOT NULL, ended_version BIGINT NOT NULL DEFAULT 0, node TEXT);
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY, flow_id TEXT NOT NULL, body TEXT NOT NULL, created_at {real} NOT NULL,
    state TEXT NOT NULL, started_at {real}, ended_at {real}, reason TEXT,
    final TEXT, ended_status TEXT, project_id TEXT);
CREATE INDEX IF NOT EXISTS items_flow ON items(flow_id, created_at);
CREATE TABLE IF NOT EXISTS votes (
    seq {serial}, task_id TEXT NOT NULL UNIQUE, item_id TEXT NOT NULL,
    annotator_id TEXT NOT NULL, winner INTEGER NOT NULL, loser INTEGER NOT NULL, tie INTEGER NOT NULL,
    created_at {real} NOT NULL, chose_first INTEGER, shown_at {real}, excluded INTEGER NOT NULL DEFAULT 0,
    hidden_seconds {real}, level TEXT);
CREATE INDEX IF NOT EXISTS votes_item ON votes(item_id);
CREATE TABLE IF NOT EXISTS labels (
    seq {serial}, task_id TEXT NOT NULL UNIQUE, item_id TEXT NOT NULL,
    annotator_id TEXT NOT NULL, datapoint INTEGER NOT NULL, value TEXT NOT NULL, created_at {real} NOT NULL,
    shown_at {real}, excluded INTEGER NOT NULL DEFAULT 0, hidden_seconds {real});
CREATE INDEX IF NOT EXISTS labels_item ON labels(item_id);
CREATE TABLE IF NOT EXISTS annotations (
    seq {serial}, task_id TEXT NOT NULL UNIQUE, item_id TEXT NOT NULL,
    annotator_id TEXT NOT NULL, datapoint INTEGER NOT NULL, body TEXT NOT NULL, created_at {real} NOT NULL,
    shown_at {real}, excluded INTEGER NOT NULL DEFAULT 0, hidden_seconds {real});
CREATE INDEX IF NOT EXISTS annotations_item ON annotations(item_id);
CREATE TABLE IF NOT EXISTS rankings (
    seq {serial}, task_id TEXT NOT NULL UNIQUE, item_id TEXT NOT NULL,
    annotator_id TEXT NOT NULL, ordering TEXT NOT NULL, mode TEXT NOT NULL, created_at {real} NOT NULL,
    shown_at {real}, excluded INTEGER NOT NULL DEFAULT 0, hidden_seconds {real});
CREATE INDEX IF NOT EXISTS rankings_item ON rankings(item_id);
CREATE TABLE IF NOT EXISTS demonstrations (
    seq {serial}, task_id TEXT NOT NULL UNIQUE, item_id TEXT NOT NULL,
    annotator_id TEXT NOT NULL, datapoint INTEGER NOT NULL, text TEXT NOT NULL, created_at {real} NOT NULL,
    shown_at {real}, excluded INTEGER NOT NULL DEFAULT 0, hidden_seconds {real},
    pasted_chars INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS demonstrations_item ON demonstrations(item_id);
CREATE TABLE IF NOT EXISTS gold_answers (
    task_id TEXT PRIMARY KEY, annotator_id TEXT NOT NULL, flow_id TEXT NOT NULL,
    correct INTEGER NOT NULL, created_at {real} NOT NULL, item_id TEXT, shown_at {real}, hidden_seconds {real});
CREATE TABLE IF NOT EXISTS validation_sets (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, name TEXT NOT NULL, pairs TEXT NOT NULL, created_at {real} NOT NULL,
    labels TEXT NOT NULL DEFAULT '[]', dimensions TEXT NOT NULL DEFAULT '[]', should_alert INTEGER NOT NULL DEFAULT 1,
    can_be_flagged INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS media (
    sha256 TEXT PRIMARY KEY, media_type TEXT NOT NULL, kind TEXT NOT NULL, size INTEGER NOT NULL,
    created_at {real} NOT NULL);
CREATE TABLE IF NOT EXISTS webhooks (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, url TEXT NOT NULL, secret TEXT NOT NULL, events TEXT NOT NULL,
    flow_id TEXT, description TEXT NOT NULL, created_at {real} NOT NULL);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id TEXT PRIMARY KEY, endpoint_id TEXT NOT NULL, msg_id TEXT NOT NULL, event TEXT NOT NULL,
    payload TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL, response_status INTEGER,
    last_error TEXT, created_at {real} NOT NULL, delivered_at {real}, next_attempt_at {real});
CREATE INDEX IF NOT EXISTS deliveries_endpoint ON webhook_deliveries(endpoint_id, created_at);
CREATE TABLE IF NOT EXISTS projects (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, flow_id TEXT NOT NULL, name TEXT NOT NULL, state TEXT NOT NULL,
    live_items INTEGER NOT NULL, created_at {real} NOT NULL, started_at {real}, completed_at {real},
    active_seconds {real} NOT NULL DEFAULT 0, next_seq BIGINT NOT NULL DEFAULT 0,
    items_total BIGINT NOT NULL DEFAULT 0, tasks_total BIGINT NOT NULL DEFAULT 0,
    needed_total BIGINT NOT NULL DEFAULT 0, items_done BIGINT NOT NULL DEFAULT 0,
    tasks_done BIGINT NOT NULL DEFAULT 0, needed_done BIGINT NOT NULL DEFAULT 0,
    answers_done BIGINT NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS project_queue (
    project_id TEXT NOT NULL, seq BIGINT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (project_id, seq));
CREATE TABLE IF NOT EXISTS evals (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, flow_id TEXT NOT NULL, name TEXT NOT NULL, body TEXT NOT NULL,
    created_at {real} NOT NULL);
CREATE TABLE IF NOT EXISTS eval_checkpoints (
    eval_id TEXT NOT NULL, step BIGINT NOT NULL, body TEXT NOT NULL, created_at {real} NOT NULL,
    divergence INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (eval_id, step));
CREATE TABLE IF NOT EXISTS nodes (
    id TEXT PRIMARY KEY, url TEXT NOT NULL, lock_key BIGINT NOT NULL, started_at {real} NOT NULL,
    seen_at {real} NOT NULL);
"""

# Columns added since the first release, as in TABLES: (table, column, declaration). A database made before
# them gets them at start-up, and BACKFILL fills what can be derived.
ADDED_COLUMNS = [
    ("flows", "ended_version", "BIGINT NOT NULL DEFAULT 0"),
    ("items", "final", "TEXT"),
    ("items", "ended_status", "TEXT"),  # the final record's status alone, so listings never read results
    ("annotators", "votes", "BIGINT NOT NULL DEFAULT 0"),
    ("annotators", "gold_answered", "BIGINT NOT NULL DEFAULT 0"),
    ("annotators", "gold_correct", "BIGINT NOT NULL DEFAULT 0"),
    ("annotators", "last_seen", "{real}"),
    # Classify flows' gold answers belong to the item they were asked in: its consensus weighs them.
    ("gold_answers", "item_id", "TEXT"),
    ("validation_sets", "labels", "TEXT NOT NULL DEFAULT '[]'"),
    ("items", "project_id", "TEXT"),  # the batch project the item was queued by, if any
    ("flows", "node", "TEXT"),  # PostgreSQL: the `flowlab serve` process (`nodes` row) that serves the flow
    ("votes", "chose_first", "INTEGER"),  # 1: the winner was shown first; 0: second; NULL: a tie, or older
    # When the answer's task was first on the annotator's screen (time on task = created_at - shown_at).
    ("votes", "shown_at", "{real}"),
    ("labels", "shown_at", "{real}"),
    ("annotations", "shown_at", "{real}"),
    # Hosted's validation-set settings: tracking dimensions, whether a wrong gold answer is explained, flagging.
    ("validation_sets", "dimensions", "TEXT NOT NULL DEFAULT '[]'"),
    ("validation_sets", "should_alert", "INTEGER NOT NULL DEFAULT 1"),
    ("validation_sets", "can_be_flagged", "INTEGER NOT NULL DEFAULT 1"),
    # People who enrolled through an audience's link: who they are on their platform, and their standing.
    ("annotators", "audience_id", "TEXT"),
    ("annotators", "participant", "TEXT"),
    ("annotators", "link_id", "TEXT"),
    ("annotators", "state", "TEXT NOT NULL DEFAULT 'active'"),
    ("annotators", "suspended_at", "{real}"),
    ("annotators", "study_id", "TEXT"),
    ("annotators", "session_id", "TEXT"),
    # Answers of a person suspended while their item was live: kept, marked, left out of its results.
    ("votes", "excluded", "INTEGER NOT NULL DEFAULT 0"),
    ("labels", "excluded", "INTEGER NOT NULL DEFAULT 0"),
    ("annotations", "excluded", "INTEGER NOT NULL DEFAULT 0"),
    # Time on task is time looked at: the seconds the page's tab was hidden while the task was on screen, as the
    # page reports them with the answer (NULL: none reported). Gold and quiz answers record when they were shown too.
    ("votes", "hidden_seconds", "{real}"),
    ("labels", "hidden_seconds", "{real}"),
    ("annotations", "hidden_seconds", "{real}"),
    ("gold_answers", "shown_at", "{real}"),
    ("gold_answers", "hidden_seconds", "{real}"),
    ("quiz_answers", "shown_at", "{real}"),
    ("quiz_answers", "hidden_seconds", "{real}"),
    # Absolute ranking flows: 'good' / 'bad' for a "both good" / "both bad" answer (stored with tie = 1, so a
    # reader that knows nothing of levels sees a tie); NULL otherwise.
    ("votes", "level", "TEXT"),
]

BACKFILL = {
    # Annotator counters used to be recounted from every vote at start-up; now they are kept in their row.
    ("annotators", "votes"): [
        "UPDATE annotators SET votes = (SELECT count(*) FROM votes v WHERE v.annotator_id = annotators.id), "
        "last_seen = (SELECT max(created_at) FROM votes v WHERE v.annotator_id = annotators.id)",
        "UPDATE annotators SET "
        "gold_answered = (SELECT count(*) FROM gold_answers g WHERE g.annotator_id = annotators.id), "
        "gold_correct = (SELECT coalesce(sum(correct), 0) FROM gold_answers g WHERE g.annotator_id = annotators.id)",
    ],
}

# After the added columns exist: the start-up query for live items reads this index, not the history.
INDEXES = [
    "CREATE INDEX IF NOT EXISTS items_live ON items(created_at) WHERE final IS NULL",
    "CREATE INDEX IF NOT EXISTS gold_item ON gold_answers(item_id) WHERE item_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS items_project ON items(project_id, id) WHERE project_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS deliveries_pending ON webhook_deliveries(next_attempt_at) WHERE status = 'pending'",
    # One participant id is one annotator per audience, whichever process or tab enrolled them first.
    "CREATE UNIQUE INDEX IF NOT EXISTS annotators_participant ON annotators(audience_id, participant) "
    "WHERE participant IS NOT NULL",
]

LOAD_QUERIES = {
    "keys": "SELECT * FROM keys",
    "annotators": "SELECT * FROM annotators",
    "flows": "SELECT * FROM flows ORDER BY created_at",
    "items": "SELECT * FROM items WHERE final IS NULL ORDER BY created_at",
    "webhooks": "SELECT * FROM webhooks ORDER BY created_at",
}
ITEM_COUNTS = "SELECT flow_id, count(*) AS n FROM items GROUP BY flow_id"
ANSWERS_OF = {  # the answers of live items, by the table each task kind stores them in
    "votes": "SELECT item_id, task_id, annotator_id, winner, loser, tie, level, created_at FROM votes "
    "WHERE item_id IN ({marks}) ORDER BY seq",
    "labels": "SELECT item_id, task_id, annotator_id, datapoint, value, created_at FROM labels "
    "WHERE item_id IN ({marks}) ORDER BY seq",
    "annotations": "SELECT item_id, task_id, annotator_id, datapoint, body, created_at FROM annotations "
    "WHERE item_id IN ({marks}) ORDER BY seq",
    "rankings": "SELECT item_id, task_id, annotator_id, ordering, mode, created_at FROM rankings "
    "WHERE item_id IN ({marks}) ORDER BY seq",
    "demonstrations": "SELECT item_id, task_id, annotator_id, datapoint, text, created_at, shown_at, hidden_seconds, "
    "pasted_chars FROM demonstrations WHERE item_id IN ({marks}) ORDER BY seq",
    "gold_answers": "SELECT item_id, task_id, annotator_id, correct, created_at FROM gold_answers "
    "WHERE item_id IN ({marks})",
}


def tables(real: str, serial: str) -> str:
    return TABLES.format(real=real, serial=serial)


def migrate(
    columns_of: Callable[[str], set[str]], execute: Callable[[str], object], real: str
) -> list[tuple[str, str]]:
    """Add the columns a database lacks, backfill them, and make the indexes that need them. Returns what
    was added."""
    added = []
    for table, column, decl in ADDED_COLUMNS:
        if column not in columns_of(table):
            execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl.format(real=real)}")
            added.append((table, column))
    for table_column in added:
        for sql in BACKFILL.get(table_column, []):
            execute(sql)
    for sql in INDEXES:
        execute(sql)
    return added


def load(query: Callable[[str, Sequence[Any]], list[Row]], *, items: bool = True) -> Snapshot:
    """Keys, annotators, flows and live items, with the votes of those items only. Without `items`, the
    items are left for `load_items` (a cluster's processes each load those of the flows they serve)."""
    q = {name: query(sql, ()) for name, sql in LOAD_QUERIES.items() if items or name != "items"}
    snap = Snapshot(
        keys=q["keys"],
        annotators=q["annotators"],
        flows=q["flows"],
        items=q.get("items", []),
        webhooks=q["webhooks"],
    )
    snap.item_counts = {r["flow_id"]: int(r["n"]) for r in query(ITEM_COUNTS, ())}
    snap.votes = _answers_of(query, [r["id"] for r in snap.items])
    return snap


def load_items(query: Callable[[str, Sequence[Any]], list[Row]], flow_ids: list[str]) -> tuple[list[Row], list[Row]]:
    """The live items of these flows and their answers, as `load` reads them for every flow."""
    rows: list[Row] = []
    for chunk in _chunks(flow_ids, 500):
        marks = ",".join("?" * len(chunk))
        rows += query(f"SELECT * FROM items WHERE final IS NULL AND flow_id IN ({marks})", chunk)
    rows.sort(key=lambda r: r["created_at"])
    return rows, _answers_of(query, [r["id"] for r in rows])


def _answers_of(query: Callable[[str, Sequence[Any]], list[Row]], item_ids: list[str]) -> list[Row]:
    answers: list[Row] = []
    for chunk in _chunks(item_ids, 500):
        # An item's answers all come in one chunk, in commit order: that is the order its log needs.
        for sql in ANSWERS_OF.values():
            answers += query(sql.format(marks=",".join("?" * len(chunk))), chunk)
    return answers


def _chunks(values: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]
