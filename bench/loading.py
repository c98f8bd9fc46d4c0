"""Bulk loading of generated bench datasets: executemany on SQLite, COPY on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from bot.store.db import Database

Rows = dict[str, list[tuple[Any, ...]]]


def load_rows(
    db: Database,
    chunks: Iterable[Rows],
    tables: Mapping[str, Sequence[str]],
    progress: Callable[[Rows], None],
) -> None:
    """Write each chunk (table → rows in `tables`' column order) in its own transaction."""
    raw = db.engine.raw_connection()
    triggers: list[str] = []
    try:
        cur = raw.cursor()
        if db.is_postgres:
            # Foreign-key and bookkeeping triggers per row would dominate a bulk load; the
            # generators write consistent rows, customer numbers and reachability included.
            cur.execute("SET session_replication_role = replica")
        else:
            cur.execute("PRAGMA synchronous=OFF")
            # SQLite cannot switch triggers off: take them out for the load, as above.
            cur.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")
            for name, sql in cur.fetchall():
                cur.execute(f'DROP TRIGGER "{name}"')
                triggers.append(sql)
        for rows in chunks:
            if not db.is_postgres:
                cur.execute("BEGIN")
            for table, values in rows.items():
                if not values:
                    continue
                names = ", ".join(f'"{c}"' for c in tables[table])
                if db.is_postgres:
                    with cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                        for row in values:
                            copy.write_row(row)
                else:
                    marks = ", ".join("?" * len(tables[table]))
                    cur.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", values)
            if db.is_postgres:
                raw.commit()
            else:
                cur.execute("COMMIT")
            progress(rows)
        if db.is_postgres and "customers" in tables:
            # Rows brought their own customer numbers; new customers continue after them.
            cur.execute(
                "SELECT setval(pg_get_serial_sequence('customers', 'cid'),"
                " (SELECT coalesce(max(cid), 0) + 1 FROM customers), false)"
            )
            raw.commit()
        for sql in triggers:
            cur.execute(sql)
        if "follow_tags" in tables:
            # corp_tag_holders is the one derived table the generators leave to the store:
            # touching every corp tag makes its triggers fill it (migration 0011).
            if db.is_postgres:
                cur.execute("SET session_replication_role = origin")
            cur.execute("UPDATE corp_tags SET name = name")
            raw.commit()
    finally:
        raw.close()
