"""Standard Webhooks signatures (standardwebhooks.com), shared by the server that signs deliveries and the
receivers that check them: `v1,` then base64 HMAC-SHA256 over `id.timestamp.body`, keyed by the bytes of the
endpoint's secret (`whsec_` + base64)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping


def sign_webhook(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value of one attempt."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def verify_webhook(
    secret: str, headers: Mapping[str, str], body: bytes, *, tolerance: float = 300.0, now: float | None = None
) -> bool:
    """Whether a received delivery is genuine and fresh (its timestamp within `tolerance` seconds of now).
    `headers` is any case-insensitive mapping of the request's headers, `body` its raw bytes."""
    try:
        msg_id, timestamp = headers["webhook-id"], int(headers["webhook-timestamp"])
        given = headers["webhook-signature"].split()
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = sign_webhook(secret, msg_id, timestamp, body)
    return any(hmac.compare_digest(expected, g) for g in given)
