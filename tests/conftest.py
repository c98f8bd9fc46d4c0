"""Shared fixtures: a migrated database on SQLite and on PostgreSQL, and a frozen clock."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from bot.clock import SHANGHAI, FrozenClock
from bot.store.db import Database, make_engine
from bot.store.migrate import upgrade
from bot.store.models import Base

POSTGRES_ENV = "BOT_TEST_POSTGRES_URL"


@pytest.fixture
def clock() -> FrozenClock:
    # A Monday morning in the bank's zone.
    return FrozenClock(datetime(2026, 11, 23, 9, 0, 0, tzinfo=SHANGHAI))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating per test is slow)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.fail(
            f"{POSTGRES_ENV} is not set: run the suite through scripts/test, which starts PostgreSQL"
        )
    return url


@pytest.fixture(scope="session")
def postgres_migrated(postgres_url: str) -> str:
    engine = make_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    upgrade(engine)
    engine.dispose()
    return postgres_url


def _truncate_all(db: Database) -> None:
    names = ", ".join(t.name for t in reversed(Base.metadata.sorted_tables))
    with db.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty database; every test using it runs on both engines."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "bot.db"
        shutil.copy(template, path)
        database = Database.from_url(f"sqlite:///{path}")
    else:
        url: str = request.getfixturevalue("postgres_migrated")
        database = Database.from_url(url)
        _truncate_all(database)
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def sqlite_db(sqlite_template: Path, tmp_path: Path) -> Iterator[Database]:
    """SQLite only, for tests whose subject is not the engine."""
    path = tmp_path / "bot.db"
    shutil.copy(sqlite_template, path)
    database = Database.from_url(f"sqlite:///{path}")
    yield database
    database.dispose()
