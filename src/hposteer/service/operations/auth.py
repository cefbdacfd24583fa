"""Tokens: creation (the secret is shown once), hashing at rest, and authentication.

Tokens are 256-bit random secrets, so a plain sha256 is a sufficient hash at rest (nothing to
brute-force), and it lets the lookup be an indexed equality. Validated tokens are cached for
``token_cache_s`` seconds to keep the database off the pilot hot path; a revocation takes
effect within that time.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time

from hposteer.service.operations.errors import Invalid, Unauthorized
from hposteer.service.operations.principal import Principal
from hposteer.service.store import tokens as token_store
from hposteer.service.store.database import Database, database_time

ROLES = ("user", "pilot", "admin")
TOKEN_PREFIX = "hps_"
_OWNER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def create_token(
    db: Database, *, role: str, owner: str, label: str = "", expires_in_s: float | None = None
) -> tuple[int, str]:
    """Store a new token; returns (id, secret). The secret is not recoverable afterwards."""
    if role not in ROLES:
        raise Invalid(f"unknown role {role!r}; choose one of: {', '.join(ROLES)}")
    if not _OWNER.match(owner):
        raise Invalid(
            f"invalid owner name {owner!r}: use 1-128 letters, digits and . _ @ -, starting with a letter or digit"
        )
    if expires_in_s is not None and expires_in_s <= 0:
        raise Invalid("a token's lifetime must be positive")
    secret = new_secret()
    with db.write() as conn:
        expires_at = None
        if expires_in_s is not None:
            expires_at = database_time(conn) + expires_in_s
        token_id = token_store.insert_token(conn, hash_token(secret), role, owner, label, expires_at)
    return token_id, secret


class TokenCache:
    """Remembers validated tokens for a short time (thread-safe)."""

    def __init__(self, ttl_s: float):
        self.ttl_s = ttl_s
        self._entries: dict[str, tuple[Principal, float]] = {}
        self._lock = threading.Lock()

    def get(self, token_hash: str) -> Principal | None:
        if self.ttl_s <= 0:
            return None
        with self._lock:
            entry = self._entries.get(token_hash)
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def put(self, token_hash: str, principal: Principal) -> None:
        if self.ttl_s <= 0:
            return
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[token_hash] = (principal, time.monotonic() + self.ttl_s)


def authenticate(db: Database, cache: TokenCache, secret: str | None) -> Principal:
    if not secret:
        raise Unauthorized(
            "no token given: send 'Authorization: Bearer <token>' (create one on the server host with "
            "`hposteer token create --role user --owner NAME`)"
        )
    digest = hash_token(secret)
    principal = cache.get(digest)
    if principal is not None:
        return principal
    with db.read() as conn:
        record = token_store.find_valid_token(conn, digest)
    if record is None:
        raise Unauthorized("the token is unknown, expired or revoked")
    principal = Principal(owner=record.owner, role=record.role, token_id=record.id)
    cache.put(digest, principal)
    return principal
