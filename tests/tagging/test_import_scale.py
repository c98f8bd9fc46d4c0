"""What a large import does for speed, shown on small files: indexes dropped and built again
for an empty table, planner statistics kept current, repeated keys found while parsing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text

from bot.clock import FrozenClock
from bot.store.db import Database
from bot.tagging import import_postgres
from bot.tagging.import_seen import SeenKeys
from bot.tagging.importer import ImportReport, import_customers
from tests.tagging.import_world import HEADER, add_world, profiles, sample_rows, settings, write_csv


def run(db: Database, path: Path, clock: FrozenClock, **options: Any) -> ImportReport:
    return import_customers(db, path, settings=settings(), now=clock.now(), **options)


def profile_indexes(db: Database) -> set[str | None]:
    return {index["name"] for index in inspect(db.engine).get_indexes("customer_profiles")}


def many_rows(count: int) -> list[list[str]]:
    return [HEADER] + [
        [f"K{i:06d}", "", "", f"{i * 1000}.00", "Y", "", "40", "", "陆家嘴支行", *[""] * 5]
        for i in range(count)
    ]


def test_an_import_into_an_empty_table_leaves_every_index_in_place(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    add_world(db, clock.now())
    indexes = profile_indexes(db)
    assert "ix_customer_profiles_aum" in indexes
    path = write_csv(tmp_path / "bank.csv", sample_rows())
    assert run(db, path, clock, dry_run=True).status == "dry-run"
    assert profile_indexes(db) == indexes
    refused = run(db, write_csv(tmp_path / "bad.csv", [HEADER, ["K1", "", "", "x"]]), clock)
    assert refused.refused
    assert profile_indexes(db) == indexes
    assert run(db, path, clock).inserted == 5
    assert profile_indexes(db) == indexes
    assert len(profiles(db)) == 5
    with db.engine.connect() as conn:  # the rebuilt index holds every row
        found = conn.execute(text("SELECT count(*) FROM customer_profiles WHERE aum >= 0"))
        assert found.scalar() == 5


def test_a_reader_of_the_table_is_not_queued_behind_on_postgresql(
    postgres_db: Database, clock: FrozenClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dropping an index needs the table to itself; with a reader in the way the import goes
    without, rather than make everyone after the reader wait too."""
    monkeypatch.setattr(import_postgres, "LOCK_WAIT", "100ms")
    indexes = profile_indexes(postgres_db)
    with postgres_db.engine.connect() as reader:
        reader.execute(text("SELECT count(*) FROM customer_profiles")).scalar()  # holds a lock
        report = run(postgres_db, write_csv(tmp_path / "bank.csv", many_rows(50)), clock)
        reader.rollback()
    assert report.inserted == 50
    assert profile_indexes(postgres_db) == indexes


def test_postgresql_statistics_follow_the_table_as_an_import_grows_it(
    postgres_db: Database, clock: FrozenClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(import_postgres, "ANALYZE_MIN_ROWS", 10)
    with postgres_db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE customer_profiles"))  # the statistics of an empty one

    def estimate() -> float:
        with postgres_db.engine.connect() as conn:
            return float(
                conn.execute(
                    text("SELECT reltuples FROM pg_class WHERE relname = 'customer_profiles'")
                ).scalar_one()
            )

    assert estimate() == 0
    run(postgres_db, write_csv(tmp_path / "bank.csv", many_rows(300)), clock, chunk_size=50)
    # Analysed at 50, 100 and 200 rows added: the planner knows of 200 at least.
    assert estimate() >= 200


def test_repeated_keys_name_the_first_line_across_batches() -> None:
    with SeenKeys() as seen:
        assert seen.repeated(["A", "B", "", "C"], [2, 3, 4, 5]) == {}
        # A again twice, B again once, D new and then again within the batch.
        got = seen.repeated(["A", "D", "A", "B", "D"], [6, 7, 8, 9, 10])
        assert got == {0: 2, 2: 2, 3: 3, 4: 7}
        assert seen.repeated(["E"], [11]) == {}


def attributes(db: Database) -> dict[str, tuple[Any, ...]]:
    names = (
        *("external_userid", "match_method", "aum", "payroll", "birth_date", "age"),
        *("products", "branch", "occupation", "interests", "district", "last_login_at"),
        "opened_at",
    )
    return {key: tuple(getattr(p, name) for name in names) for key, p in profiles(db).items()}


def test_an_update_writes_each_changed_column_whatever_else_changed_with_it(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    """Updates are grouped by the columns they change: every group lands whole."""
    add_world(db, clock.now())
    rows = sample_rows()
    run(db, write_csv(tmp_path / "day1.csv", rows), clock)
    rows[1][3], rows[1][8] = "10", "陆家嘴支行"  # alice: AUM and branch
    rows[2][3] = "20"  # bob: AUM alone
    rows[3][9], rows[3][12] = "教师", "2026-11-22 09:00"  # C0003: occupation and login
    rows[4][5] = "1950-01-01"  # C0004: birth date, so age too
    rows[5][1] = "wm_frank"  # C0005: the link and its method
    day2 = write_csv(tmp_path / "day2.csv", rows)
    assert run(db, day2, clock).updated == 5
    updated = attributes(db)
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM attribute_history"))
        conn.execute(text("DELETE FROM customer_profiles"))
    run(db, day2, clock)
    assert updated == attributes(db)  # as if day 2 had been the first import
