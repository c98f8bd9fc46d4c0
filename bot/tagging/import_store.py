"""The import's reads and writes on its one connection, in each engine's stored forms.

Stored profiles come back as the engine keeps them (see stored_forms) and are compared with
rows encoded the same way. Writes bypass the ORM: SQLite takes executemany, PostgreSQL COPY.

Into an empty customer_profiles (the first import) every row is an insert, and keeping the
secondary indexes up to date row by row costs more than the rest of the import together
(their keys are random: amounts, ages, branches). Those indexes are dropped inside the
import's transaction and built again, each in one sorted pass, just before it commits; a
rollback brings them back as they were. On PostgreSQL dropping an index locks the table
against readers too, until the import commits: only an empty table is worth that.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import Connection, Table, delete, insert, select, update

from bot.store.models import AttributeChange, Customer, ImportRun

RUNS = cast(Table, ImportRun.__table__)
HISTORY = cast(Table, AttributeChange.__table__)
CUSTOMERS = cast(Table, Customer.__table__)
# (customer_key, external_userid, match_method, *attributes, imported_at, updated_at)
InsertRow = tuple[Any, ...]
# (customer_key, attribute, old_value, new_value, changed_at, import_id)
HistoryRow = tuple[str, str, str | None, str | None, Any, int]
# ProfileStore.columns: the link and the match method, then the attributes.
ATTRIBUTES_FROM = 2


class ProfileUpdate(NamedTuple):
    """A stored profile's new values (in the order of `ProfileStore.columns`), and the
    positions among them that differ from what is stored."""

    customer_key: str
    values: tuple[Any, ...]
    changed: tuple[int, ...]


class ProfileStore(ABC):
    """One import's view of customer_profiles and friends, on the import's connection."""

    def __init__(self, conn: Connection, attributes: Sequence[str]) -> None:
        self.conn = conn
        # The DBAPI connection under `conn`, inside the same transaction.
        self.raw: Any = conn.connection.driver_connection
        self.attributes = tuple(attributes)
        # external_userid and match_method lead every stored tuple.
        self.columns = ("external_userid", "match_method", *self.attributes)
        self._deferred_indexes: list[str] = []
        if conn.exec_driver_sql("SELECT 1 FROM customer_profiles LIMIT 1").first() is None:
            self._deferred_indexes = self._drop_secondary_indexes()

    @abstractmethod
    def _drop_secondary_indexes(self) -> list[str]:
        """Drop customer_profiles' indexes other than the primary key and unique ones;
        return the statements that create them again."""

    def build_deferred_indexes(self) -> None:
        """Build the indexes dropped for an import into an empty table, before commit."""
        for definition in self._deferred_indexes:
            self.conn.exec_driver_sql(definition)
        self._deferred_indexes = []

    @abstractmethod
    def known_customers(self, external_userids: Sequence[str]) -> set[str]:
        """The ids that are customers in the mirror."""

    @abstractmethod
    def stored(self, keys: Sequence[str]) -> dict[str, tuple[Any, ...]]:
        """customer_key → (external_userid, match_method, *attributes) as stored."""

    def links(self, keys: Sequence[str]) -> dict[str, str | None]:
        """customer_key → the external_userid its stored profile is linked to."""
        return {key: stored[0] for key, stored in self.stored(keys).items()}

    @abstractmethod
    def holders(self, external_userids: Sequence[str]) -> dict[str, str]:
        """external_userid → the customer key whose profile is linked to it."""

    @abstractmethod
    def insert(self, rows: Sequence[InsertRow]) -> None: ...

    @abstractmethod
    def update(self, rows: Sequence[ProfileUpdate], updated_at: Any) -> None: ...

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


def forgotten_customers(conn: Connection) -> frozenset[str]:
    """The customers `bot forget` erased: an import stores nothing for them again."""
    rows = conn.execute(
        select(CUSTOMERS.c.external_userid).where(CUSTOMERS.c.forgotten_at.is_not(None))
    )
    return frozenset(rows.scalars())


def expire_history(conn: Connection, attribute: str, *, until: datetime) -> int:
    """Delete `attribute`'s history rows changed at or before `until`; how many went."""
    result = conn.execute(
        delete(HISTORY).where(HISTORY.c.attribute == attribute, HISTORY.c.changed_at <= until)
    )
    return int(result.rowcount or 0)


def finish_run(conn: Connection, run_id: int, values: Mapping[str, Any]) -> None:
    conn.execute(update(RUNS).where(RUNS.c.id == run_id).values(**values))
