"""The import's SQL on PostgreSQL: lookups by a JSON array of keys, COPY for every write."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import OperationalError

from bot.tagging.import_store import (
    HistoryRow,
    InsertRow,
    ProfileStore,
    ProfileUpdate,
)

CHANGES_TABLE = "import_profile_changes"
# Planner statistics are refreshed once the import has added this many rows, and again each
# time it has added as many as the table held at the last refresh.
ANALYZE_MIN_ROWS = 10_000
# How long an import into an empty table waits to lock it before going without dropping
# its indexes.
LOCK_WAIT = "2s"


class PostgresProfileStore(ProfileStore):
    """COPY goes through the same psycopg connection, so it is inside the import's transaction;
    updates are COPYed into a temporary table and applied with one UPDATE … FROM.

    Statistics that still describe a small table mislead the planner once an import has
    grown it (seen: each key looked up by a scan of a whole multi-column index), so the
    import runs ANALYZE as the table doubles. ANALYZE counts the import's own rows; what it
    writes to pg_class stays even if the import is rolled back, until the next autovacuum.
    """

    def __init__(self, conn: Connection, attributes: Sequence[str]) -> None:
        super().__init__(conn, attributes)
        estimate = conn.exec_driver_sql(
            "SELECT reltuples FROM pg_class WHERE oid = 'customer_profiles'::regclass"
        ).scalar()
        # -1: never analysed.
        self._rows_at_analyze = max(int(estimate or 0), 0)
        self._added_since_analyze = 0
        columns = ", ".join(self.columns)
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

    def _drop_secondary_indexes(self) -> list[str]:
        rows = self.conn.exec_driver_sql(
            "SELECT c.relname, pg_get_indexdef(c.oid) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = 'customer_profiles'::regclass "
            "AND NOT i.indisprimary AND NOT i.indisunique"
        ).all()
        # DROP INDEX waits for every reader of the table to finish. Rather than queue behind
        # a long one (and make everyone after it queue too), keep the indexes.
        savepoint = self.conn.begin_nested()
        try:
            self.conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_WAIT}'")
            for name, _ in rows:
                self.conn.exec_driver_sql(f'DROP INDEX "{name}"')
        except OperationalError:
            savepoint.rollback()
            return []
        self.conn.exec_driver_sql("SET LOCAL lock_timeout TO DEFAULT")
        savepoint.commit()
        return [definition for _, definition in rows]

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

    def insert(self, rows: Sequence[InsertRow]) -> None:
        self._copy(self._copy_insert, rows)
        self._added_since_analyze += len(rows)
        if self._added_since_analyze >= max(ANALYZE_MIN_ROWS, self._rows_at_analyze):
            self.conn.exec_driver_sql("ANALYZE customer_profiles")
            self._rows_at_analyze += self._added_since_analyze
            self._added_since_analyze = 0

    def update(self, rows: Sequence[ProfileUpdate], updated_at: Any) -> None:
        # PostgreSQL leaves an index alone when its columns keep their values: whole rows.
        if not rows:
            return
        self._copy(
            self._copy_changes, ((row.customer_key, *row.values, updated_at) for row in rows)
        )
        self.conn.exec_driver_sql(self._sql_apply)
        self.conn.exec_driver_sql(f"TRUNCATE {CHANGES_TABLE}")

    def history(self, rows: Sequence[HistoryRow]) -> None:
        self._copy(
            "COPY attribute_history "
            "(customer_key, attribute, old_value, new_value, changed_at, import_id) FROM STDIN",
            rows,
        )

    def close(self) -> None:
        # The temporary table goes with the transaction (ON COMMIT DROP).
        self.build_deferred_indexes()

    def _copy(self, sql: str, rows: Any) -> None:
        with self.raw.cursor() as cursor, cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row(row)
