"""Who may call the server: researchers' API keys, and annotators with their running tallies."""

from __future__ import annotations

import logging
import os
import random
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowlab import schemas
from flowlab.server.auth import KEY_PREFIX, TOKEN_PREFIX, Auth, Principal, digest, new_secret
from flowlab.server.clock import Clock
from flowlab.server.errors import Forbidden, Invalid, NotFound
from flowlab.server.store import Op, Row, Store

log = logging.getLogger("flowlab.server")

# Ids name things; they grant nothing (tokens and keys are the secrets, made by `new_secret`), so a fast
# generator seeded from the OS is enough, and spares a system call on every task handed out.
_ids = random.Random(secrets.randbits(128))


def new_id(prefix: str) -> str:
    return f"{prefix}_{_ids.getrandbits(64):016x}"


def require_text(value: str, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Invalid(f"{field} must be a non-empty string.", field=field)
    return value


@dataclass(slots=True)
class AnnotatorInfo:
    principal: Principal
    created_at: float
    votes: int = 0
    gold_answered: int = 0
    gold_correct: int = 0
    last_seen: float | None = None
    # Enrolled through an audience's link: the audience, their platform id, the link, and their standing.
    audience_id: str | None = None
    participant: str | None = None
    link_id: str | None = None
    state: schemas.AnnotatorState = "active"
    suspended_at: float | None = None

    def stats(self) -> schemas.AnnotatorStats:
        return schemas.AnnotatorStats(
            id=self.principal.id,
            name=self.principal.name,
            created_at=self.created_at,
            revoked=self.principal.revoked,
            votes=self.votes,
            gold_answered=self.gold_answered,
            gold_correct=self.gold_correct,
            gold_agreement=(self.gold_correct / self.gold_answered) if self.gold_answered else None,
            last_seen=self.last_seen,
            state=self.state,
            audience_id=self.audience_id,
            participant=self.participant,
            suspended_at=self.suspended_at,
        )


class People:
    """Keys and annotators, all held in memory (they are few); their rows, tallies included, are the truth."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.auth = Auth()
        self.annotators: dict[str, AnnotatorInfo] = {}
        self.admin_ids: set[str] = set()
        self.keys: dict[str, tuple[Principal, float]] = {}  # key id -> (who, created at)
        self.key_file: Path | None = None  # where `flowlab serve` saved a generated admin key

    def restore(self, keys: list[Row], annotators: list[Row]) -> list[Principal]:
        """Add the keys and annotators of these rows; those already known take their row's revocation, secret
        and tallies (a cluster's other processes change them). Returns the principals revoked by the rows."""
        self.admin_ids |= {row["id"] for row in keys if row["admin"]}
        revoked: list[Principal] = []
        for row in keys:
            known = self.keys.get(row["id"])
            if known is None:
                p = Principal(
                    row["id"], row["name"], "admin" if row["admin"] else "researcher", revoked=bool(row["revoked"])
                )
                self.auth.add(row["key_hash"], p)
                self.keys[p.id] = (p, row["created_at"])
            else:
                self._update(known[0], row["key_hash"], bool(row["revoked"]), revoked)
        for row in annotators:
            tallies = {
                "votes": int(row.get("votes") or 0),
                "gold_answered": int(row.get("gold_answered") or 0),
                "gold_correct": int(row.get("gold_correct") or 0),
                "last_seen": row.get("last_seen"),
            }
            info = self.annotators.get(row["id"])
            if info is None:
                p = Principal(row["id"], row["name"], "annotator", owner=row["owner"], revoked=bool(row["revoked"]))
                self.auth.add(row["token_hash"], p)
                info = self.annotators[p.id] = AnnotatorInfo(p, row["created_at"], **tallies)
                info.audience_id, info.participant = row.get("audience_id"), row.get("participant")
                info.link_id = row.get("link_id")
            else:
                self._update(info.principal, row["token_hash"], bool(row["revoked"]), revoked)
                info.votes, info.gold_answered, info.gold_correct = (
                    tallies["votes"],
                    tallies["gold_answered"],
                    tallies["gold_correct"],
                )
                info.last_seen = max(info.last_seen or 0.0, tallies["last_seen"] or 0.0) or None
            info.state = row.get("state") or "active"
            info.suspended_at = row.get("suspended_at")
        return revoked

    def _update(self, p: Principal, secret_hash: str, is_revoked: bool, revoked: list[Principal]) -> None:
        if self.auth.by_hash.get(secret_hash) is not p:
            self.auth.replace(p, secret_hash)  # rotated elsewhere
        if is_revoked and not p.revoked:
            p.revoked = True
            revoked.append(p)

    def look_up(self, secret_hash: str) -> Principal | None:
        """A secret this process has not seen: made by another process of the cluster a moment ago?"""
        keys = self.store.read("SELECT * FROM keys WHERE key_hash = ?", (secret_hash,))
        annotators = self.store.read("SELECT * FROM annotators WHERE token_hash = ?", (secret_hash,))
        if keys or annotators:
            self.restore(keys, annotators)
        return self.auth.by_hash.get(secret_hash)

    def ensure_admin(self, data_dir: Path, env_key: str | None) -> str | None:
        self.key_file = data_dir / "admin_key"
        return self._ensure_admin(data_dir, env_key)

    def _ensure_admin(self, data_dir: Path, env_key: str | None) -> str | None:
        """On an empty database make the first admin key. Returns a newly generated key, if any. On a database
        that has one, an env key that is none of its keys is ignored, and said so loudly."""
        if any(p.role == "admin" for p in self.auth.by_hash.values()):
            known = self.auth.by_hash.get(digest(env_key)) if env_key else None
            if env_key and (known is None or known.revoked or not known.is_researcher):
                log.warning(
                    "FLOWLAB_API_KEY is not a key of this database, so it grants nothing here: the admin key is "
                    "the one made when the database was created (%s, if it was generated). Use that key, or an "
                    "admin can give this database a new one with `flowlab keys rotate`.",
                    data_dir / "admin_key",
                )
            return None
        key = env_key or new_secret(KEY_PREFIX)
        _, op = self._add_key(key, "admin", admin=True)
        self.store.write_now([op])
        if env_key:
            return None
        _write_secret(data_dir / "admin_key", key)
        return key

    def _add_key(self, key: str, name: str, *, admin: bool) -> tuple[Principal, Op]:
        principal = Principal(new_id("key"), name, "admin" if admin else "researcher")
        h = digest(key)
        op: Op = (
            "INSERT INTO keys (id, name, key_hash, admin, created_at) VALUES (?,?,?,?,?)",
            (principal.id, name, h, int(admin), self.clock.now()),
        )
        self.auth.add(h, principal)
        self.keys[principal.id] = (principal, self.clock.now())
        if admin:
            self.admin_ids.add(principal.id)
        return principal, op

    async def create_key(self, who: Principal, name: str) -> schemas.KeyCreated:
        if who.role != "admin":
            raise Forbidden("Only the admin key can create API keys; ask whoever runs this server.")
        name = require_text(name, "name")
        key = new_secret(KEY_PREFIX)
        principal = Principal(new_id("key"), name, "researcher")
        await self.store.write(
            [
                (
                    "INSERT INTO keys (id, name, key_hash, admin, created_at) VALUES (?,?,?,?,?)",
                    (principal.id, name, digest(key), 0, self.clock.now()),
                )
            ]
        )
        self.auth.add(digest(key), principal)  # usable only once durable
        self.keys[principal.id] = (principal, self.clock.now())
        return schemas.KeyCreated(id=principal.id, name=name, key=key, admin=False)

    def list_keys(self, who: Principal) -> list[schemas.KeyInfo]:
        """Every key for the admin; a researcher sees their own."""
        return [
            schemas.KeyInfo(id=p.id, name=p.name, admin=p.role == "admin", created_at=at, revoked=p.revoked)
            for p, at in sorted(self.keys.values(), key=lambda k: k[1])
            if who.role == "admin" or p.id == who.id
        ]

    def _key(self, who: Principal, key_id: str) -> Principal:
        found = self.keys.get(key_id)
        if found is None or (who.role != "admin" and found[0].id != who.id):
            raise NotFound(f"No API key {key_id!r} that this key may manage; list them with `flowlab keys list`.")
        return found[0]

    async def revoke_key(self, who: Principal, key_id: str) -> None:
        """The admin revokes a researcher's key: it stops working at once; its flows stay."""
        if who.role != "admin":
            raise Forbidden("Only the admin key can revoke API keys; a researcher can rotate their own.")
        target = self._key(who, key_id)
        if target.role == "admin":
            raise Forbidden("The admin key cannot be revoked (nobody could manage the server); rotate it instead.")
        await self.store.write([("UPDATE keys SET revoked=1 WHERE id=?", (target.id,))])
        target.revoked = True

    async def rotate_key(self, who: Principal, key_id: str) -> schemas.KeyCreated:
        """A new secret for the key (the admin's, or a researcher's own): the old one stops working once the
        new one is durable. Everything the key owns stays with it."""
        target = self._key(who, key_id)
        if target.revoked:
            raise Forbidden(f"API key {key_id!r} is revoked; make a new one with `flowlab keys create`.")
        key = new_secret(KEY_PREFIX)
        await self.store.write([("UPDATE keys SET key_hash=? WHERE id=?", (digest(key), target.id))])
        old = next((h for h, p in self.auth.by_hash.items() if p is target), None)
        self.auth.replace(target, digest(key))
        # The key file `flowlab serve` wrote when it made the admin key follows the rotation.
        kept = self.key_file
        if kept is not None and old is not None and kept.is_file() and digest(kept.read_text().strip()) == old:
            _write_secret(kept, key)
        return schemas.KeyCreated(id=target.id, name=target.name, key=key, admin=target.role == "admin")

    async def create_annotator(self, who: Principal, name: str, base_url: str) -> schemas.AnnotatorCreated:
        name = require_text(name, "name")
        token = new_secret(TOKEN_PREFIX)
        principal = Principal(new_id("ann"), name, "annotator", owner=who.id)
        now = self.clock.now()
        await self.store.write(
            [
                (
                    "INSERT INTO annotators (id, name, token_hash, owner, created_at) VALUES (?,?,?,?,?)",
                    (principal.id, name, digest(token), who.id, now),
                )
            ]
        )
        self.auth.add(digest(token), principal)
        self.annotators[principal.id] = AnnotatorInfo(principal, now)
        return schemas.AnnotatorCreated(
            id=principal.id, name=name, token=token, join_url=f"{base_url.rstrip('/')}/annotate#token={token}"
        )

    def add_enrolled(self, info: AnnotatorInfo, token_hash: str) -> None:
        """A person who enrolled through a link, once their row is durable."""
        self.auth.add(token_hash, info.principal)
        self.annotators[info.principal.id] = info

    def list_annotators(self, who: Principal) -> list[schemas.AnnotatorStats]:
        return [a.stats() for a in self.annotators.values() if who.role == "admin" or a.principal.owner == who.id]

    def annotator_stats(self, annotator_id: str) -> schemas.AnnotatorStats:
        return self.annotators[annotator_id].stats()

    def owned_annotator(self, who: Principal, annotator_id: str) -> AnnotatorInfo:
        info = self.annotators.get(annotator_id)
        if info is None or not (who.role == "admin" or info.principal.owner == who.id):
            raise NotFound(f"No annotator {annotator_id!r} among yours; list them with GET /v1/annotators.")
        return info

    def scope(self, who: Principal) -> str | None:
        """Whose flows an annotator works on: one made with the admin key, everyone's; else its researcher's."""
        return None if who.owner in self.admin_ids else who.owner

    def suspended(self) -> set[str]:
        """The people suspended now: their answers are left out of live items' results."""
        return {a for a, info in self.annotators.items() if info.state == "suspended"}

    def seen(self, annotator_id: str, now: float) -> None:
        info = self.annotators.get(annotator_id)
        if info is not None:
            info.last_seen = now

    def tally_ops(
        self,
        annotator_id: str,
        answers: dict[str, list[str]],
        gold: list[tuple[str, int]],
        now: float,
        *,
        replayed: bool = False,
    ) -> list[Op]:
        """The row updates that keep an annotator's tallies in step with the answers committed beside them,
        to run before those answers' inserts: `answers` maps each answer table to the task ids going into it,
        `gold` lists (task id, correct). With `replayed` (some of these answers were in a commit whose outcome
        was lost with its connection) the answers already stored are subtracted, so a tally counts each answer
        once, as the rows do; otherwise one plain increment, which keeps the hot path cheap."""
        if not replayed:
            votes = sum(len(ids) for ids in answers.values())
            if not (votes or gold):
                return []
            return [
                (
                    "UPDATE annotators SET votes = votes + ?, gold_answered = gold_answered + ?, "
                    "gold_correct = gold_correct + ?, last_seen = ? WHERE id = ?",
                    (votes, len(gold), sum(c for _, c in gold), now, annotator_id),
                )
            ]
        ops: list[Op] = []
        for table, task_ids in answers.items():
            for chunk in _chunks(task_ids):
                marks = ",".join("?" * len(chunk))
                ops.append(
                    (
                        f"UPDATE annotators SET votes = votes + ? - (SELECT count(*) FROM {table} "
                        f"WHERE task_id IN ({marks})), last_seen = ? WHERE id = ?",
                        (len(chunk), *chunk, now, annotator_id),
                    )
                )
        for chunk_g in _chunks(gold):
            ids = [t for t, _ in chunk_g]
            marks = ",".join("?" * len(ids))
            ops.append(
                (
                    f"UPDATE annotators SET gold_answered = gold_answered + ? - (SELECT count(*) FROM gold_answers "
                    f"WHERE task_id IN ({marks})), gold_correct = gold_correct + ? - (SELECT coalesce(sum(correct), 0) "
                    f"FROM gold_answers WHERE task_id IN ({marks})), last_seen = ? WHERE id = ?",
                    (len(ids), *ids, sum(c for _, c in chunk_g), *ids, now, annotator_id),
                )
            )
        return ops

    def count(self, annotator_id: str, votes: int, gold: int, gold_correct: int) -> None:
        info = self.annotators.get(annotator_id)
        if info is not None:
            info.votes += votes
            info.gold_answered += gold
            info.gold_correct += gold_correct


def _chunks(values: list[Any], size: int = 500) -> list[list[Any]]:
    return [values[i : i + size] for i in range(0, len(values), size)]


def _write_secret(path: Path, secret: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret + "\n")
