"""Shared fixtures: a migrated database on SQLite and on PostgreSQL, and a frozen clock."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bot.clock import SHANGHAI, FrozenClock
from bot.store.db import Database, make_engine, normalise_url
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
    # Closing the last connection checkpoints the WAL into the file, so a copy is complete.
    engine.dispose()
    assert not path.with_name(path.name + "-wal").exists()
    return path


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.fail(
            f"{POSTGRES_ENV} is not set: run the suite through scripts/test, "
            "which starts PostgreSQL"
        )
    return url


@pytest.fixture(scope="session")
def postgres_migrated(postgres_url: str) -> Iterator[str]:
    """A database of this test session's own, so concurrent runs never see each other."""
    admin = make_engine(postgres_url, isolation_level="AUTOCOMMIT")
    name = f"bot_test_{os.getpid()}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = (
        make_url(normalise_url(postgres_url))
        .set(database=name)
        .render_as_string(hide_password=False)
    )
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


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
def postgres_db(postgres_migrated: str) -> Iterator[Database]:
    """PostgreSQL only, migrated and empty, for behaviour SQLite does not have (row locks,
    SKIP LOCKED, concurrent readers)."""
    database = Database.from_url(postgres_migrated)
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


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no tables at all, on SQLite and on PostgreSQL, for migrations."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    base = os.environ.get("BOT_TEST_POSTGRES_URL")
    if not base:
        pytest.fail("BOT_TEST_POSTGRES_URL is not set: run the suite through scripts/test")
    admin = make_engine(base, isolation_level="AUTOCOMMIT")
    name = f"bot_migrate_{os.getpid()}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(normalise_url(base)).set(database=name).render_as_string(False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
