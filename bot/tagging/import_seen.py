"""Customer keys already read from the file being imported, and the line each was first on.

Kept where the rows are parsed (in the parsing process for large files), so a duplicate is
rejected with its original cells while good rows travel to the importing process without
theirs. No SQLAlchemy here: the parsing process imports this.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

# SQLite's page cache for the keys; the rest of the table waits in its temporary file.
CACHE_KIB = 16 * 1024


class SeenKeys:
    """A private temporary SQLite database (on disk, deleted when closed): memory stays flat
    however many keys the file has."""

    def __init__(self) -> None:
        # "" opens a temporary database of this connection's own.
        self._db = sqlite3.connect("", isolation_level=None)
        self._db.execute("PRAGMA journal_mode = OFF")
        self._db.execute("PRAGMA synchronous = OFF")
        self._db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        self._db.execute(
            "CREATE TABLE seen (customer_key TEXT PRIMARY KEY, line INTEGER NOT NULL) WITHOUT ROWID"
        )

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SeenKeys:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def repeated(self, keys: Sequence[str], lines: Sequence[int]) -> dict[int, int]:
        """Record a batch of keys read in file order ("" for a row without one); return, by
        position in the batch, the line each repeated key was first read on."""
        first: dict[str, int] = {}
        again: list[tuple[int, str]] = []
        for position, key in enumerate(keys):
            if not key:
                continue
            if key in first:
                again.append((position, key))
            else:
                first[key] = position
        db = self._db
        before = db.total_changes
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO seen (customer_key, line) VALUES (?, ?) ON CONFLICT DO NOTHING",
            [(key, lines[position]) for key, position in first.items()],
        )
        db.execute("COMMIT")
        earlier: dict[str, int] = {}
        if db.total_changes - before < len(first):
            # Some keys were read in an earlier batch: only then is a lookup needed.
            rows = db.execute(
                "SELECT customer_key, line FROM seen "
                "WHERE customer_key IN (SELECT value FROM json_each(?))",
                (json.dumps(list(first)),),
            )
            earlier = {key: line for key, line in rows if line != lines[first[key]]}
        out = {first[key]: line for key, line in earlier.items()}
        for position, key in again:
            out[position] = earlier.get(key, lines[first[key]])
        return out
