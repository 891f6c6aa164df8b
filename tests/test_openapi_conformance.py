"""The served OpenAPI document tells the truth: schemathesis (all phases: coverage, fuzzing, stateful) runs a
few thousand generated requests against a real server, with the admin key and with an annotator token, and
finds no server error and no disagreement between the document and the answers.

Left out: the key routes (a fuzzer that rotates or revokes its own key locks itself out), and the long polls
and event streams (they wait by design; tests/test_flows_api.py and the SSE tests cover them)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ServerProcess

pytestmark = pytest.mark.slow  # over half a minute each: `pytest -m 'not slow'` skips it

pytest.importorskip("schemathesis")
CONFIG = Path(__file__).parent / "schemathesis" / "schemathesis.toml"
EXCLUDE = r"^/v1/keys/|/events$|/wait$"


def schemathesis(server: ServerProcess, token: str, max_examples: int) -> str:
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or "st"
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "hooks", "PYTHONPATH": str(CONFIG.parent)}
    run = subprocess.run(
        [
            st,
            "--config-file",
            str(CONFIG),
            "run",
            f"{server.url}/schema/openapi.json",
            "-H",
            f"Authorization: Bearer {token}",
            "-n",
            str(max_examples),
            "--generation-deterministic",
            "--request-timeout",
            "20",
            "--exclude-path-regex",
            EXCLUDE,
        ],
        capture_output=True,
        text=True,
        timeout=400,
        env=env,
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-6000:]
    return out


@pytest.mark.parametrize("who", ["admin", "annotator"])
def test_the_openapi_document_matches_the_server(fresh_server: ServerProcess, who: str) -> None:
    token = fresh_server.api_key
    if who == "annotator":
        with fresh_server.client() as client:
            token = client.annotators.create("fuzzer").token
            # Work waiting, so a generated long poll finds a task at once instead of waiting out its `wait`.
            flow = client.flow.create_ranking_flow("fuzz", "Which?", max_response_threshold=1_000_000)
            flow.create_new_flow_batch([f"text {i}" for i in range(20)], data_type="text", time_to_live=3600)
    out = schemathesis(fresh_server, token, max_examples=6)
    cases = re.search(r"(\d+) generated, (\d+) passed", out)
    assert cases and cases.group(1) == cases.group(2) and int(cases.group(1)) > 300, out[-3000:]
    assert "Traceback" not in fresh_server.log(), "the server logged no unexpected error"
