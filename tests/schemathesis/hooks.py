"""schemathesis hooks for tests/test_openapi_conformance.py: generated long-poll waits are kept short, so a
test case that finds no work answers in a second instead of the 30 seconds a real annotator may wait."""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.hook
def map_body(ctx: Any, body: Any) -> Any:
    wait = body.get("wait") if isinstance(body, dict) else None
    if isinstance(wait, int | float) and not isinstance(wait, bool) and 0.5 < wait <= 60:  # valid stays valid
        body["wait"] = 0.5
    return body
