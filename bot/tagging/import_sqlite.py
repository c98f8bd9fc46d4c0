"""The import's SQL on SQLite: `IN (SELECT value FROM json_each(?))` lookups, executemany writes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection

from bot.tagging.import_store import (
    HistoryRow,
    InsertRow,
    ProfileStore,
    ProfileUpdate,
)

CACHE_KIB = 64 * 1024


class SqliteProfileStore(ProfileStore):
    """One JSON array parameter per lookup keeps statements short however many keys."""

    def __init__(self, conn: Connection, attributes: Sequence[str]) -> None:
        super().__init__(conn, attributes)
        # Every chunk inserts into indexes keyed by random values (AUM, age, branch): with
        # SQLite's 2 MB default cache those inserts mostly re-read pages.
        self._cache_pages = conn.exec_driver_sql("PRAGMA cache_size").scalar()
        conn.exec_driver_sql(f"PRAGMA cache_size=-{CACHE_KIB}")
        listed = "IN (SELECT value FROM json_each(?))"
        columns = ", ".join(self.columns)
        self._sql_known = f"SELECT external_userid FROM customers WHERE external_userid {listed}"
        self._sql_stored = (
            f"SELECT customer_key, {columns} FROM customer_profiles WHERE customer_key {listed}"
        )
        self._sql_holders = (
            "SELECT external_userid, customer_key FROM customer_profiles "
            f"WHERE external_userid {listed}"
        )
        written = ("customer_key", *self.columns)
        self._sql_insert = (
            f"INSERT INTO customer_profiles ({', '.join(written)}, imported_at, updated_at) "
            f"VALUES ({', '.join('?' * (len(written) + 2))})"
        )
        self._sql_history = (
            "INSERT INTO attribute_history "
            "(customer_key, attribute, old_value, new_value, changed_at, import_id) "
            "VALUES (?, ?, ?, ?, ?, ?)"
        )

    def _drop_secondary_indexes(self) -> list[str]:
        # Indexes SQLite makes for PRIMARY KEY and UNIQUE constraints have no SQL. The import
        # holds the write lock already, and readers keep their snapshot: nobody waits.
        rows = self.conn.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' "
            "AND tbl_name = 'customer_profiles' AND sql IS NOT NULL "
            "AND sql NOT LIKE 'CREATE UNIQUE%'"
        ).all()
        for name, _ in rows:
            self.conn.exec_driver_sql(f'DROP INDEX "{name}"')
        return [sql for _, sql in rows]

    def _lookup(self, sql: str, values: Sequence[str]) -> list[tuple[Any, ...]]:
        if not values:
            return []
        # The raw cursor shares the connection, so the import's transaction, and hands back
        # plain tuples a good deal faster than result rows.
        cursor = self.raw.cursor()
        try:
            cursor.execute(sql, (json.dumps(values),))
            rows: list[tuple[Any, ...]] = cursor.fetchall()
            return rows
        finally:
            cursor.close()

    def known_customers(self, external_userids: Sequence[str]) -> set[str]:
        return {row[0] for row in self._lookup(self._sql_known, external_userids)}

    def stored(self, keys: Sequence[str]) -> dict[str, tuple[Any, ...]]:
        return {row[0]: row[1:] for row in self._lookup(self._sql_stored, keys)}

    def holders(self, external_userids: Sequence[str]) -> dict[str, str]:
        return {row[0]: row[1] for row in self._lookup(self._sql_holders, external_userids)}

    def insert(self, rows: Sequence[InsertRow]) -> None:
        self._many(self._sql_insert, rows)

    def update(self, rows: Sequence[ProfileUpdate], updated_at: Any) -> None:
        # SQLite rewrites the entries of every index on a column the statement sets, changed
        # or not: so only the changed columns are set, one statement per set of them.
        groups: dict[tuple[int, ...], list[tuple[Any, ...]]] = {}
        for row in rows:
            values = [row.values[i] for i in row.changed]
            groups.setdefault(row.changed, []).append((*values, updated_at, row.customer_key))
        for changed, params in groups.items():
            names = [self.columns[i] for i in changed]
            assignments = ", ".join(f"{name} = ?" for name in (*names, "updated_at"))
            sql = f"UPDATE customer_profiles SET {assignments} WHERE customer_key = ?"
            self._many(sql, params)

    def history(self, rows: Sequence[HistoryRow]) -> None:
        self._many(self._sql_history, rows)

    def close(self) -> None:
        self.build_deferred_indexes()

    def reset(self) -> None:
        self.conn.exec_driver_sql(f"PRAGMA cache_size={int(self._cache_pages or -2000)}")

    def _many(self, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
        if rows:
            cursor = self.raw.cursor()
            try:
                cursor.executemany(sql, rows)
            finally:
                cursor.close()
