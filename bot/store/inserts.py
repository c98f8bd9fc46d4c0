"""INSERT … ON CONFLICT DO NOTHING for whichever engine a session or connection is on."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

from bot.store.models import Base


def insert_new(dialect: str, table: Table | type[Base], keys: Sequence[str]) -> Insert:
    """INSERT into `table` (a Core table, or a model for an ORM-enabled statement),
    skipping rows whose `keys` (a unique index) exist already: the two engines spell it
    with their own insert constructs."""
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=list(keys))
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=list(keys))
    raise RuntimeError(f"unsupported database dialect {dialect!r}")


__all__ = ["insert_new"]
