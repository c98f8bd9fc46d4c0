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
    try:
        cur = raw.cursor()
        if db.is_postgres:
            # Foreign-key triggers per row would dominate a bulk load; generators are consistent.
            cur.execute("SET session_replication_role = replica")
        else:
            cur.execute("PRAGMA synchronous=OFF")
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
    finally:
        raw.close()
