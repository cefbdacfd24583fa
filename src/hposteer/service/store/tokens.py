"""Tokens: only their sha256 is stored; the secret is shown once, at creation."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, insert, select, update

from hposteer.service.store.database import now_expr
from hposteer.service.store.tables import tokens


@dataclass(frozen=True)
class TokenRecord:
    id: int
    role: str
    owner: str
    label: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None


def insert_token(conn: Connection, token_hash: str, role: str, owner: str, label: str, expires_at: float | None) -> int:
    result = conn.execute(
        insert(tokens)
        .values(
            token_hash=token_hash,
            role=role,
            owner=owner,
            label=label,
            created_at=now_expr(),
            expires_at=expires_at,
        )
        .returning(tokens.c.id)
    )
    return int(result.scalar_one())


def find_valid_token(conn: Connection, token_hash: str) -> TokenRecord | None:
    """The token with this hash if it is neither revoked nor expired (by the database clock)."""
    row = conn.execute(
        select(tokens).where(
            tokens.c.token_hash == token_hash,
            tokens.c.revoked_at.is_(None),
            (tokens.c.expires_at.is_(None)) | (tokens.c.expires_at > now_expr()),
        )
    ).first()
    if row is None:
        return None
    return TokenRecord(row.id, row.role, row.owner, row.label, row.created_at, row.expires_at, row.revoked_at)


def list_tokens(conn: Connection) -> list[TokenRecord]:
    rows = conn.execute(select(tokens).order_by(tokens.c.id)).all()
    return [TokenRecord(r.id, r.role, r.owner, r.label, r.created_at, r.expires_at, r.revoked_at) for r in rows]


def revoke_token(conn: Connection, token_id: int) -> bool:
    result = conn.execute(
        update(tokens).where(tokens.c.id == token_id, tokens.c.revoked_at.is_(None)).values(revoked_at=now_expr())
    )
    return result.rowcount == 1
