"""The import's SQL on PostgreSQL: lookups by a JSON array of keys, COPY for every write."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection

from bot.tagging.import_store import (
    SEEN_TABLE,
    HistoryRow,
    InsertRow,
    ProfileStore,
    UpdateRow,
)

CHANGES_TABLE = "import_profile_changes"


class PostgresProfileStore(ProfileStore):
    """COPY goes through the same psycopg connection, so it is inside the import's transaction;
    updates are COPYed into a temporary table and applied with one UPDATE … FROM."""

    def __init__(self, conn: Connection, attributes: Sequence[str]) -> None:
        super().__init__(conn, attributes)
        columns = ", ".join(self.columns)
        conn.exec_driver_sql(
            f"CREATE TEMPORARY TABLE {SEEN_TABLE} "
            "(customer_key text PRIMARY KEY, line integer NOT NULL) ON COMMIT DROP"
        )
        conn.exec_driver_sql(
            f"CREATE TEMPORARY TABLE {CHANGES_TABLE} ON COMMIT DROP AS "
            f"SELECT customer_key, {columns}, updated_at FROM customer_profiles WITH NO DATA"
        )
        # Read numeric as float and JSON as text: the forms the parser produces.
        read = ", ".join(
            {"aum": "aum::float8 AS aum", "products": "products::text AS products"}.get(name, name)
            for name in self.columns
        )
        listed = "IN (SELECT json_array_elements_text(%(values)s::json))"
        self._sql_known = f"SELECT external_userid FROM customers WHERE external_userid {listed}"
        self._sql_stored = (
            f"SELECT customer_key, {read} FROM customer_profiles WHERE customer_key {listed}"
        )
        self._sql_holders = (
            "SELECT external_userid, customer_key FROM customer_profiles "
            f"WHERE external_userid {listed}"
        )
        self._sql_seen = f"SELECT customer_key, line FROM {SEEN_TABLE} WHERE customer_key {listed}"
        self._copy_insert = (
            f"COPY customer_profiles (customer_key, {columns}, imported_at, updated_at) FROM STDIN"
        )
        self._copy_changes = (
            f"COPY {CHANGES_TABLE} (customer_key, {columns}, updated_at) FROM STDIN"
        )
        assignments = ", ".join(f"{name} = c.{name}" for name in (*self.columns, "updated_at"))
        self._sql_apply = (
            f"UPDATE customer_profiles p SET {assignments} FROM {CHANGES_TABLE} c "
            "WHERE p.customer_key = c.customer_key"
        )

    def _lookup(self, sql: str, values: Sequence[str]) -> list[tuple[Any, ...]]:
        if not values:
            return []
        with self.raw.cursor() as cursor:
            # One JSON text parameter: psycopg dumps a list as an array element by element
            # in Python, which costs more than the query.
            cursor.execute(sql, {"values": json.dumps(values)})
            rows: list[tuple[Any, ...]] = cursor.fetchall()
            return rows

    def known_customers(self, external_userids: Sequence[str]) -> set[str]:
        return {row[0] for row in self._lookup(self._sql_known, external_userids)}

    def stored(self, keys: Sequence[str]) -> dict[str, tuple[Any, ...]]:
        return {row[0]: row[1:] for row in self._lookup(self._sql_stored, keys)}

    def holders(self, external_userids: Sequence[str]) -> dict[str, str]:
        return {row[0]: row[1] for row in self._lookup(self._sql_holders, external_userids)}

    def first_lines(self, keys: Sequence[str]) -> dict[str, int]:
        return {row[0]: row[1] for row in self._lookup(self._sql_seen, keys)}

    def remember(self, first_lines: Mapping[str, int]) -> None:
        self._copy(f"COPY {SEEN_TABLE} (customer_key, line) FROM STDIN", first_lines.items())

    def insert(self, rows: Sequence[InsertRow]) -> None:
        self._copy(self._copy_insert, rows)

    def update(self, rows: Sequence[UpdateRow]) -> None:
        if not rows:
            return
        self._copy(self._copy_changes, rows)
        self.conn.exec_driver_sql(self._sql_apply)
        self.conn.exec_driver_sql(f"TRUNCATE {CHANGES_TABLE}")

    def history(self, rows: Sequence[HistoryRow]) -> None:
        self._copy(
            "COPY attribute_history "
            "(customer_key, attribute, old_value, new_value, changed_at, import_id) FROM STDIN",
            rows,
        )

    def close(self) -> None:
        """Nothing to do: the temporary tables go with the transaction (ON COMMIT DROP)."""

    def _copy(self, sql: str, rows: Any) -> None:
        with self.raw.cursor() as cursor, cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row(row)
