"""API keys for researchers, tokens for annotators: bearer secrets, stored only as hashes."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from flowlab.server.errors import Forbidden, Unauthorized

KEY_PREFIX = "fl_key_"
TOKEN_PREFIX = "fl_ann_"


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(24)


def digest(secret: str) -> str:
    # The secrets are 192-bit random strings, so a plain SHA-256 is enough: there is nothing to brute-force.
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(slots=True)
class Principal:
    id: str
    name: str
    role: Literal["admin", "researcher", "annotator"]
    owner: str | None = None  # for annotators: the key that made them
    revoked: bool = False

    @property
    def is_researcher(self) -> bool:
        return self.role in ("admin", "researcher")


class Auth:
    def __init__(self) -> None:
        self.by_hash: dict[str, Principal] = {}
        # In a cluster, a secret made by another process may not have reached this one yet: ask the database.
        self.on_miss: Callable[[str], Principal | None] | None = None

    def add(self, secret_hash: str, principal: Principal) -> None:
        self.by_hash[secret_hash] = principal

    def replace(self, principal: Principal, secret_hash: str) -> None:
        """The principal's secret is now this one; the old one stops working."""
        for old in [h for h, p in self.by_hash.items() if p is principal]:
            del self.by_hash[old]
        self.by_hash[secret_hash] = principal

    def identify(self, authorization: str | None) -> Principal:
        if not authorization or not authorization.lower().startswith("bearer "):
            raise Unauthorized(
                "Send your API key (or annotator token) as 'Authorization: Bearer <key>'. "
                "The SDK reads it from FLOWLAB_API_KEY."
            )
        hashed = digest(authorization[7:].strip())
        principal = self.by_hash.get(hashed)
        if principal is None and self.on_miss is not None:
            principal = self.on_miss(hashed)
        if principal is None or principal.revoked:
            raise Unauthorized(
                "This API key or annotator token is not valid (wrong, or revoked). "
                "Check FLOWLAB_API_KEY, or ask the server's admin for a new one."
            )
        return principal

    def researcher(self, authorization: str | None) -> Principal:
        principal = self.identify(authorization)
        if not principal.is_researcher:
            raise Forbidden("Annotator tokens can only fetch and answer tasks; this route needs a researcher API key.")
        return principal

    def annotator(self, authorization: str | None) -> Principal:
        principal = self.identify(authorization)
        if principal.role != "annotator":
            raise Forbidden(
                "This route is for annotators: create a token with `flowlab annotators create "
                "--name NAME` and use it instead of an API key."
            )
        return principal
