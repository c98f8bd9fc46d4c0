"""The store: migrations, the unmigrated-database refusal, aware datetimes."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeout

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


async def test_sqlite_writers_of_one_process_take_turns(db: Database) -> None:
    """Concurrent transactions on worker threads all commit; on SQLite one at a time."""
    inside = 0
    most = 0
    guard = threading.Lock()

    def write(n: int) -> Callable[[Connection], None]:
        def work(connection: Connection) -> None:
            nonlocal inside, most
            with guard:
                inside += 1
                most = max(most, inside)
            connection.execute(
                text(
                    "INSERT INTO sync_checkpoints (step, done, run_id, updated_at)"
                    " VALUES (:step, false, 'r', CURRENT_TIMESTAMP)"
                ),
                {"step": f"step-{n}"},
            )
            with guard:
                inside -= 1

        return work

    await asyncio.gather(*(db.run_core(write(n)) for n in range(24)))

    count = db.call(lambda s: s.execute(text("SELECT count(*) FROM sync_checkpoints")).scalar())
    assert count == 24
    if db.dialect == "sqlite":
        assert most == 1


def test_a_writer_waits_its_turn_only_as_long_as_busy_timeout(tmp_path: Path) -> None:
    database = Database.from_url(f"sqlite:///{tmp_path / 'turns.db'}", busy_timeout_ms=10)
    # This thread's turn is under way: a transaction on another thread gives up after
    # busy_timeout with an error the callers already handle, instead of waiting forever.
    with database._turn(), concurrent.futures.ThreadPoolExecutor(1) as pool:
        attempt = pool.submit(database.call_core, lambda c: None)
        with pytest.raises(SQLAlchemyTimeout, match="turn to write"):
            attempt.result()
    assert database.call_core(lambda c: 1) == 1  # and the turn is free again afterwards


def _synchronous(connection: Connection) -> int:
    return int(connection.exec_driver_sql("PRAGMA synchronous").scalar_one())


def test_a_non_durable_write_skips_only_its_own_sync_on_sqlite(tmp_path: Path) -> None:
    database = Database.from_url(f"sqlite:///{tmp_path / 'sync.db'}")
    # SQLite's codes: 1 NORMAL (no fsync at commit in WAL mode), 2 FULL.
    assert database.call_core(_synchronous) == 2
    assert database.call_core(_synchronous, durable=False) == 1
    # The pooled connection goes back as it was, also when the work raised.
    with pytest.raises(ZeroDivisionError):
        database.call_core(lambda c: 1 // 0, durable=False)
    seen = {database.call_core(_synchronous) for _ in range(20)}  # more than the pool holds
    assert seen == {2}
    # And what it wrote is committed like any other transaction.
    database.call_core(
        lambda c: c.exec_driver_sql("CREATE TABLE t (x INTEGER)").close(), durable=False
    )
    assert database.call_core(lambda c: c.exec_driver_sql("SELECT count(*) FROM t").scalar()) == 0
