"""A second handle on the test database, as a second instance on another host would have."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.store.db import Database


@pytest.fixture
def twin(db: Database) -> Iterator[Database]:
    """Another engine and pool on the same database as `db` (SQLite file or PostgreSQL)."""
    other = Database.from_url(db.engine.url.render_as_string(hide_password=False))
    try:
        yield other
    finally:
        other.dispose()
