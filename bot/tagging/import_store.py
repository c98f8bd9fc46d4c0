"""The import's reads and writes on its one connection, in each engine's stored forms.

Stored profiles come back as the engine keeps them (see stored_forms) and are compared with
rows encoded the same way. Writes bypass the ORM: SQLite takes executemany, PostgreSQL COPY.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, insert, update

from bot.store.models import ImportRun

RUNS = cast(Table, ImportRun.__table__)
SEEN_TABLE = "import_seen_keys"
# (customer_key, external_userid, match_method, *attributes, imported_at, updated_at)
InsertRow = tuple[Any, ...]
# (customer_key, external_userid, match_method, *attributes, updated_at)
UpdateRow = tuple[Any, ...]
# (customer_key, attribute, old_value, new_value, changed_at, import_id)
HistoryRow = tuple[str, str, str | None, str | None, Any, int]


class ProfileStore(ABC):
    """One import's view of customer_profiles and friends, on the import's connection."""

    def __init__(self, conn: Connection, attributes: Sequence[str]) -> None:
        self.conn = conn
        # The DBAPI connection under `conn`, inside the same transaction.
        self.raw: Any = conn.connection.driver_connection
        self.attributes = tuple(attributes)
        # external_userid and match_method lead every stored tuple.
        self.columns = ("external_userid", "match_method", *self.attributes)

    @abstractmethod
    def known_customers(self, external_userids: Sequence[str]) -> set[str]:
        """The ids that are customers in the mirror."""

    @abstractmethod
    def stored(self, keys: Sequence[str]) -> dict[str, tuple[Any, ...]]:
        """customer_key → (external_userid, match_method, *attributes) as stored."""

    @abstractmethod
    def holders(self, external_userids: Sequence[str]) -> dict[str, str]:
        """external_userid → the customer key whose profile is linked to it."""

    @abstractmethod
    def first_lines(self, keys: Sequence[str]) -> dict[str, int]:
        """Keys already read from this file, with the line each was first seen on."""

    @abstractmethod
    def remember(self, first_lines: Mapping[str, int]) -> None:
        """Record keys read from this file (kept in a temporary table, not in memory)."""

    @abstractmethod
    def insert(self, rows: Sequence[InsertRow]) -> None: ...

    @abstractmethod
    def update(self, rows: Sequence[UpdateRow]) -> None: ...

    @abstractmethod
    def history(self, rows: Sequence[HistoryRow]) -> None: ...

    @abstractmethod
    def close(self) -> None:
        """Drop what the import created for itself, before commit."""

    def reset(self) -> None:  # noqa: B027 - most engines have nothing to undo
        """Undo connection settings, after commit or rollback (connections are pooled)."""


def open_store(conn: Connection, attributes: Sequence[str]) -> ProfileStore:
    """The store for this connection's engine."""
    if conn.dialect.name == "postgresql":
        from bot.tagging.import_postgres import PostgresProfileStore

        return PostgresProfileStore(conn, attributes)
    from bot.tagging.import_sqlite import SqliteProfileStore

    return SqliteProfileStore(conn, attributes)


def start_run(conn: Connection, *, file_name: str, sha256: str, now: datetime) -> int:
    """The run's row, inserted first so history can point at it."""
    result = conn.execute(
        insert(RUNS).values(
            file_name=file_name[-255:], file_sha256=sha256, started_at=now, status="running"
        )
    )
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def finish_run(conn: Connection, run_id: int, values: Mapping[str, Any]) -> None:
    conn.execute(update(RUNS).where(RUNS.c.id == run_id).values(**values))
