"""Time on task in Chromium: the page counts the time its tab was hidden while a task was on screen and sends it
with the answer, so the stored time on task is time looked at."""

from __future__ import annotations

import sqlite3
from typing import Any

from .test_annotate import Annotator, wait_until

# The Page Visibility API as a hidden tab reports it; headless Chromium never hides a tab by itself.
SET_VISIBILITY = """(state) => {
  Object.defineProperty(document, "visibilityState", { configurable: true, get: () => state });
  Object.defineProperty(document, "hidden", { configurable: true, get: () => state === "hidden" });
  document.dispatchEvent(new Event("visibilitychange"));
}"""


def stored(server: Any, annotator_id: str) -> list[sqlite3.Row]:
    with sqlite3.connect(server.data_dir / "flowlab.sqlite3") as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute(
            "SELECT task_id, created_at, shown_at, hidden_seconds FROM votes WHERE annotator_id=? ORDER BY created_at",
            (annotator_id,),
        ).fetchall()


def test_time_in_a_hidden_tab_is_sent_with_the_answer_and_left_out_of_time_on_task(fresh_server, browser):
    client = fresh_server.client()
    flow = client.flow.create_ranking_flow(
        name="hidden", instruction="Which is better?", max_response_threshold=50, max_votes_per_annotator=50
    )
    flow.create_new_flow_batch(datapoints=[f"answer {i}" for i in range(5)], time_to_live=300)
    person = client.annotators.create("Ada")
    ctx = browser.new_context()
    try:
        check_hidden_time(fresh_server, client, ctx, person)
    finally:
        ctx.close()


def check_hidden_time(fresh_server: Any, client: Any, ctx: Any, person: Any) -> None:
    tab = Annotator(ctx, person.join_url)
    first = tab.wait_for_pair()
    tab.page.wait_for_timeout(300)
    tab.page.evaluate(SET_VISIBILITY, "hidden")  # the person switches to another tab ...
    tab.page.wait_for_timeout(1500)
    tab.page.evaluate(SET_VISIBILITY, "visible")  # ... and comes back
    tab.page.wait_for_timeout(300)
    second = tab.answer("click:a")
    tab.answer("click:b")  # the second task was never hidden
    assert wait_until(lambda: len(stored(fresh_server, person.id)) == 2)

    rows = {r["task_id"]: r for r in stored(fresh_server, person.id)}
    hidden = rows[first]["hidden_seconds"]
    assert 1.4 <= hidden <= 3.0, f"the 1.5 s the tab was hidden, not {hidden}"
    on_screen = rows[first]["created_at"] - rows[first]["shown_at"]
    assert on_screen - hidden < on_screen - 1.4, "time on task leaves the hidden time out"
    assert rows[second]["hidden_seconds"] is None, "a task that was never hidden sends none"

    report = client.annotators.report().loc[person.id]
    assert report.answers == 2
    times = sorted(max(0.0, r["created_at"] - r["shown_at"] - (r["hidden_seconds"] or 0)) for r in rows.values())
    assert abs(report.active_minutes * 60 - sum(times)) < 1e-6
    assert not tab.errors, tab.errors
