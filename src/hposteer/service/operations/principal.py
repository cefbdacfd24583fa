"""Who is calling: the owner and role behind a token."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    """Who is calling: the owner name and role of the token used."""

    owner: str
    role: str  # user | pilot | admin
    token_id: int

    @property
    def sees_all(self) -> bool:
        return self.role == "admin"

    @property
    def owner_scope(self) -> str | None:
        """The owner filter for queries: None means every owner (admins)."""
        return None if self.sees_all else self.owner
