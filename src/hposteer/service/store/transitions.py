"""State changes in SQL, guarded by the core transition table."""

from __future__ import annotations

from sqlalchemy import ColumnElement
from sqlalchemy.sql.elements import ColumnClause

from hposteer.service.core.states import State, sources


def may_enter(column: ColumnClause[str] | ColumnElement[str], target: State) -> ColumnElement[bool]:
    """``state IN (...)``: the rows whose state may move to ``target``."""
    return column.in_(sorted(s.value for s in sources(target)))
