"""The store: migrations, the unmigrated-database refusal, aware datetimes."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bot.clock import FrozenClock
from bot.store.db import Database, DatabaseNotMigrated
from bot.store.models import OutboxItem


def test_unmigrated_database_is_refused_with_the_command_to_run(tmp_path: Path) -> None:
    database = Database.from_url(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(DatabaseNotMigrated, match="bot db upgrade"):
        database.check_migrated()


def test_migrated_database_passes_the_check(db: Database) -> None:
    db.check_migrated()


def test_datetimes_round_trip_as_aware_utc(db: Database, clock: FrozenClock) -> None:
    now = clock.now()

    def add(session):
        session.add(
            OutboxItem(
                idempotency_key="k1",
                kind="test",
                payload={"a": 1},
                due_at=now,
                created_at=now,
                updated_at=now,
            )
        )

    db.call(add)
    due = db.call(lambda s: s.scalar(select(OutboxItem.due_at)))
    assert due is not None
    assert due.utcoffset() == timedelta(0)
    assert due == now


def test_outbox_key_is_unique(db: Database, clock: FrozenClock) -> None:
    now = clock.now()

    def add(session):
        session.add(
            OutboxItem(
                idempotency_key="same",
                kind="test",
                payload={},
                due_at=now,
                created_at=now,
                updated_at=now,
            )
        )

    db.call(add)
    with pytest.raises(IntegrityError):
        db.call(add)
