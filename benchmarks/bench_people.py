"""Real people at scale, against a real `flowlab serve` process on this machine (server and load share the box).

(a) Enrollment: 500 participants open one Prolific-style link within a minute (Poisson arrivals). Each is an
    HTTP-level participant that does what the page does when a browser opens the link:
    GET /join/<secret>?PROLIFIC_PID=…, the page's stylesheet and ES modules (found in the HTML and the modules'
    imports, wave by wave, as a browser with an empty cache fetches them), GET and POST /v1/enroll/<secret>,
    GET /v1/annotator/me, then POST /v1/tasks/next with wait 0 (the page's first look) answering 200 with a task.
    Not measured: the page's event stream (opened beside the first task, never before it) and the browser's own
    parsing and rendering. Each participant opens its own connections, as separate browsers do.
(b) The single-vote path (64 annotators, fetch + answer, saturated; `bench_service.single_vote_load`) with
    audiences on — members enrolled through a link with a quota, a flow restricted to their audience whose
    continuous gold (`suspend_below`) is checked on every gold answer — against the same flow and gold without
    audiences (annotators made by the key). Runs alternate, 10 s each, three of each in the same minutes,
    because this machine's speed drifts; the medians are compared.

Run: `python benchmarks/bench_people.py` (about three minutes).
"""

from __future__ import annotations

import asyncio
import random
import re
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import KEY, Server, annotator_tokens, pct, write_table
from bench_service import single_vote_load

from flowlab import Client

PARTICIPANTS = 500
WINDOW = 60.0  # seconds over which they arrive
ROUNDS = 3
DURATION = 10.0
ANNOTATORS = 64
ASSET = re.compile(r'(?:src|href)="(/static/[^"]+)"|from "\./([^"]+)"')

Row = tuple[str, str, str, str]


def _assets(text: str) -> list[str]:
    return [m.group(1) or f"/static/{m.group(2)}" for m in ASSET.finditer(text)]


RETRIES = 0  # requests sent again after the server closed a kept-alive connection under them


class _Browser(httpx.AsyncClient):
    """A browser sends a request again when the kept-alive connection it went out on turns out closed (the
    server's keep-alive timeout racing the request); httpx does not, so this does, and counts it."""

    async def request(self, *args: object, **kwargs: object) -> httpx.Response:  # type: ignore[override]
        global RETRIES
        try:
            return await super().request(*args, **kwargs)  # type: ignore[arg-type]
        except (httpx.ReadError, httpx.RemoteProtocolError):
            RETRIES += 1
            return await super().request(*args, **kwargs)  # type: ignore[arg-type]


async def participant(base: str, secret: str, pid: str) -> tuple[float, int]:
    """Open the link as a browser would and take the first task: (seconds from opening it to the task, requests)."""
    params = {"PROLIFIC_PID": pid, "STUDY_ID": "study-bench", "SESSION_ID": f"session-{pid}"}
    requests = 0
    # verify=False: plain HTTP here, and loading the CA bundle costs ~24 ms of the load generator's one thread.
    async with _Browser(base_url=base, timeout=60, verify=False) as http:
        t0 = time.perf_counter()
        page = await http.get(f"/join/{secret}", params=params)
        page.raise_for_status()
        requests += 1
        seen: set[str] = set()
        wave = _assets(page.text)
        while wave:  # the stylesheet and annotate.js, then the modules it imports, then theirs
            wave = [a for a in dict.fromkeys(wave) if a not in seen]
            seen.update(wave)
            got = await asyncio.gather(*(http.get(a) for a in wave))
            requests += len(got)
            for r in got:
                r.raise_for_status()
            wave = [
                a
                for r in got
                if r.headers.get("content-type", "").startswith("text/javascript")
                for a in _assets(r.text)
            ]
        (await http.get(f"/v1/enroll/{secret}")).raise_for_status()
        made = await http.post(f"/v1/enroll/{secret}", json={"params": params})
        made.raise_for_status()
        auth = {"Authorization": f"Bearer {made.json()['token']}"}
        (await http.get("/v1/annotator/me", headers=auth)).raise_for_status()
        task = await http.post("/v1/tasks/next", json={"wait": 0}, headers=auth)
        requests += 4
        if task.status_code != 200 or "task_id" not in task.json():
            raise RuntimeError(f"participant {pid} got no task: {task.status_code} {task.text[:200]}")
        return time.perf_counter() - t0, requests


def bench_enrollment(rows: list[Row]) -> dict[str, float]:
    with Server() as server, Client(url=server.url, api_key=KEY) as client:
        audience = client.audiences.create("Prolific raters")
        link = audience.enrollment_link(platform="prolific", completion_code="BENCH", limit=PARTICIPANTS)
        flow = client.flow.create_ranking_flow(
            name="enrollment",
            instruction="Which reply is better?",
            max_response_threshold=100_000,
            audiences=[audience],
        )
        for k in range(4):  # 4 items of 50 datapoints: 4,900 pairs, more than 500 people's first tasks
            flow.create_new_flow_batch(datapoints=[f"item {k} reply {i}" for i in range(50)], time_to_live=3600)
        secret = urlsplit(link).path.rsplit("/", 1)[-1]
        rng = random.Random(0)
        arrivals = sorted(rng.uniform(0, WINDOW) for _ in range(PARTICIPANTS))

        async def main() -> tuple[list[float], list[BaseException], int, float]:
            start = time.perf_counter()

            async def arrive(i: int, at: float) -> tuple[float, int]:
                await asyncio.sleep(max(0.0, start + at - time.perf_counter()))
                return await participant(server.url, secret, f"pid-{i:04d}")

            outcomes = await asyncio.gather(*(arrive(i, at) for i, at in enumerate(arrivals)), return_exceptions=True)
            took = [o[0] for o in outcomes if isinstance(o, tuple)]
            failed = [o for o in outcomes if isinstance(o, BaseException)]
            requests = sum(o[1] for o in outcomes if isinstance(o, tuple))
            return took, failed, requests, time.perf_counter() - start

        took, failed, requests, wall = asyncio.run(main())
        enrolled = audience.refresh().enrolled
    ms = [t * 1000 for t in took]
    served = len(took)
    per = requests / max(served, 1)
    rows.append(
        (
            f"{PARTICIPANTS} participants open one Prolific link within {WINDOW:.0f} s: opening the link → first "
            f"task served, p50 / p99 (HTTP-level participant, {per:.0f} requests each)",
            f"{pct(ms, 50):.0f} / {pct(ms, 99):.0f} ms",
            "p99 ≤ 1,000 ms",
            "yes" if served and pct(ms, 99) <= 1000 else "no",
        )
    )
    rows.append(
        (
            "participants enrolled and served a first task / enrolled on the server",
            f"{served} / {enrolled} of {PARTICIPANTS} (all done {wall:.0f} s after the first arrival)",
            "all, within the minute",
            "yes" if served == enrolled == PARTICIPANTS and wall <= WINDOW + 5 else "no",
        )
    )
    rows.append(
        (
            "requests sent again after the server closed a kept-alive connection (a browser does so by itself)",
            f"{RETRIES} of {requests:,}",
            "-",
            "-",
        )
    )
    if failed:
        print(f"{len(failed)} participants failed; the first: {failed[0]!r}", file=sys.stderr)
    return {"p50_ms": pct(ms, 50), "p99_ms": pct(ms, 99), "served": served}


def _vote_run(with_audiences: bool) -> float:
    """One 10 s saturated run of the single-vote path on a fresh server; acknowledged votes per second."""
    with Server() as server, Client(url=server.url, api_key=KEY) as client:
        gold = [(f"{i} + {i} = {2 * i}", f"{i} + {i} = {2 * i + 1}", "a") for i in range(20)]
        options = {"validation_pairs": gold, "gold_rate": 0.1, "max_response_threshold": 1_000_000}
        if with_audiences:
            # Continuous gold at a mark nobody here falls below (they answer "a": half the gold right, and none of
            # 20 right is a one-in-a-million run), so every gold answer runs the check and nobody leaves the run;
            # a quota makes every lease check it too.
            audience = client.audiences.create("bench", suspend_below=0.05, min_gold=20)
            link = audience.enrollment_link(platform="prolific", quota=1_000_000)
            secret = urlsplit(link).path.rsplit("/", 1)[-1]
            tokens = [
                httpx.post(
                    f"{server.url}/v1/enroll/{secret}",
                    json={"params": {"PROLIFIC_PID": f"p{i}", "STUDY_ID": "s", "SESSION_ID": "s"}},
                ).json()["token"]
                for i in range(ANNOTATORS)
            ]
            flow = client.flow.create_ranking_flow(name="votes", instruction="Which?", audiences=[audience], **options)
        else:
            tokens = annotator_tokens(server.url, ANNOTATORS)
            flow = client.flow.create_ranking_flow(name="votes", instruction="Which?", **options)
        for k in range(4):
            flow.create_new_flow_batch(datapoints=[f"item {k} datapoint {i}" for i in range(50)], time_to_live=3600)
        acked, _lat, secs = asyncio.run(single_vote_load(server.port, tokens, fetch_next=False, duration=DURATION))
        if with_audiences and audience.refresh().suspended:
            print(f"{audience.last.suspended} annotators were suspended during the run", file=sys.stderr)
    return acked / secs


def bench_votes(rows: list[Row]) -> dict[str, list[float]]:
    runs: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(ROUNDS):
        for case in ("off", "on"):
            runs[case].append(_vote_run(case == "on"))
            print(f"votes/s, audiences {case}: {runs[case][-1]:,.0f}", flush=True)
    off, on = statistics.median(runs["off"]), statistics.median(runs["on"])
    change = on / off - 1
    rows.append(
        (
            f"single-vote path, {ANNOTATORS} annotators, fetch + answer, saturated, without audiences: votes/s "
            f"({ROUNDS} × {DURATION:.0f} s alternated, median; runs)",
            f"{off:,.0f} ({' / '.join(f'{x:,.0f}' for x in runs['off'])})",
            "(today's path)",
            "-",
        )
    )
    rows.append(
        (
            "the same with audiences: link-enrolled members with a quota, flow restricted to their audience, "
            "continuous gold checked (median; runs)",
            f"{on:,.0f} ({' / '.join(f'{x:,.0f}' for x in runs['on'])}), {change:+.1%}",
            "within 10 % of today's",
            "yes" if change >= -0.10 else "no",
        )
    )
    return runs


def main() -> None:
    rows: list[Row] = []
    bench_enrollment(rows)
    bench_votes(rows)
    write_table("people", "Real people: enrollment through a link, and the vote path with audiences", rows)


if __name__ == "__main__":
    main()
