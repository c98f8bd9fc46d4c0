"""What an import keeps to itself: forgotten customers' rows, and raw AUM past the trend window."""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

import bot.clock
from bot.cli import app
from bot.clock import FrozenClock
from bot.privacy_forget import PROFILE_FIELDS, forget_customer
from bot.store.db import Database
from bot.store.migrate import upgrade
from bot.store.models import AttributeChange, CustomerProfile, ImportRun
from bot.tagging.engine import retag_customers
from bot.tagging.importer import ImportReport, import_customers
from bot.tagging.rules import AUM_TREND_DAYS
from tests.tagging.import_world import (
    HEADER,
    add_world,
    profiles,
    sample_rows,
    settings,
    write_csv,
)

ROOT = Path(__file__).resolve().parents[2]
DAY = 86_400


def run(db: Database, path: Path, clock: FrozenClock, **options: Any) -> ImportReport:
    return import_customers(db, path, settings=settings(), now=clock.now(), **options)


def forget(db: Database, external_userid: str, now: datetime) -> None:
    """`bot forget`: the mark, the profile's personal fields and remark mobiles erased, the
    customer's history deleted."""
    db.call(lambda s: forget_customer(s, external_userid, now=now))


def history(db: Database) -> list[tuple[str, str, str | None, str | None]]:
    with db.session() as s:
        rows = s.scalars(select(AttributeChange).order_by(AttributeChange.id))
        return [(c.customer_key, c.attribute, c.old_value, c.new_value) for c in rows]


def personal(profile: CustomerProfile) -> dict[str, Any]:
    return {name: getattr(profile, name) for name in PROFILE_FIELDS}


def erased() -> dict[str, Any]:
    return dict.fromkeys(PROFILE_FIELDS)


def blank_row(key: str, external_userid: str = "") -> list[str]:
    return [key, external_userid, *[""] * (len(HEADER) - 2)]


def imported_then_forgotten(
    db: Database, clock: FrozenClock, tmp_path: Path, *external_userids: str
) -> None:
    """The sample world imported once, then `bot forget` for each customer named."""
    add_world(db, clock.now())
    run(db, write_csv(tmp_path / "day1.csv", sample_rows()), clock)
    for external_userid in external_userids:
        forget(db, external_userid, clock.now())


def test_a_forgotten_customers_row_stores_nothing(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    imported_then_forgotten(db, clock, tmp_path, "wm_alice", "wm_bob")
    before = profiles(db)
    clock.advance(DAY)
    rows = sample_rows()
    rows[1][3] = "2,000,000"  # alice, by her external_userid
    rows[2][8] = "陆家嘴支行"  # bob: his remark mobile is erased, his key keeps its link
    rows[2][12] = "2026-11-23 07:00"
    rows.append(["C0099", "wm_alice", "", "88", "Y", "1960-03-15", *[""] * 8])  # a new key
    report = run(db, write_csv(tmp_path / "day2.csv", rows), clock)

    assert report.forgotten == 3
    assert (report.matched_by_id, report.matched_by_mobile, report.kept_match) == (0, 1, 0)
    assert (report.ambiguous, report.unmatched, report.rejected) == (1, 1, 0)
    assert (report.inserted, report.updated, report.history_rows) == (0, 0, 0)
    assert report.changed_external_userids == set()
    assert {s.line for s in report.unmatched_samples} == {4, 5}  # carol-or-dave, C0004
    assert "forgotten=3" in report.summary()
    after = profiles(db)
    assert "C0099" not in after
    for key, link in (("C0001", "wm_alice"), ("C0002", "wm_bob")):
        assert personal(after[key]) == erased()
        # Not even what `bot forget` keeps (branch, payroll) is refreshed from the row.
        assert (after[key].external_userid, after[key].branch, after[key].payroll) == (
            link,
            before[key].branch,
            before[key].payroll,
        )
        assert after[key].updated_at == before[key].updated_at
    assert history(db) == []
    with db.session() as s:
        import_run = s.scalars(select(ImportRun).order_by(ImportRun.id.desc())).first()
        assert import_run is not None
        # 6 rows: 3 forgotten, erin linked, 2 stored without a link.
        assert (import_run.rows, import_run.matched, import_run.unmatched) == (6, 1, 2)


def test_a_forgotten_customers_bad_rows_stay_out_of_the_reject_file(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    imported_then_forgotten(db, clock, tmp_path, "wm_alice", "wm_bob")
    rows = sample_rows()
    rows[1][3] = "1,234,567.89 元 abc"  # alice's bad AUM
    rows[2][5] = "1988-02-30"  # bob's bad birth date: his key is linked to him
    rows[4][3] = "lots"  # C0004, nobody forgotten: rejected as usual
    rows.append(blank_row("", "wm_alice"))  # no key, but alice's external_userid
    rows.append(blank_row("C0001"))  # a second line for alice's key
    rows.append(["C0001", "wm_alice", "x"])  # and one with too few fields
    reject_path = tmp_path / "rejects.csv"
    report = run(
        db,
        write_csv(tmp_path / "day2.csv", rows),
        clock,
        reject_path=reject_path,
        max_reject_ratio=0.5,
    )

    assert (report.rows, report.rejected, report.forgotten) == (8, 1, 5)
    assert [line for line, _ in report.reject_samples] == [5]
    text = reject_path.read_text(encoding="utf-8-sig")
    assert text.count("\n") == 2  # the header and C0004's row
    assert "C0004" in text
    for secret in ("wm_alice", "C0001", "C0002", "1988-02-30", "1,234,567.89"):
        assert secret not in text
    assert personal(profiles(db)["C0001"]) == erased()


def test_the_command_says_how_many_rows_were_forgotten(
    tmp_path: Path, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    db = Database.from_url(url)
    upgrade(db.engine)
    imported_then_forgotten(db, clock, tmp_path, "wm_alice")
    db.dispose()
    monkeypatch.setattr(bot.clock, "SystemClock", lambda tz: FrozenClock(clock.now(), tz))
    # The command points the root logger at the runner's stream, closed afterwards.
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    result = CliRunner().invoke(
        app,
        ["import-customers", "--config", str(ROOT / "config.yaml"), str(tmp_path / "day1.csv")],
        env={"BOT_DATABASE__URL": url},
    )
    assert result.exit_code == 0, result.output
    assert re.search(r"forgotten customers \(nothing stored\)\s+│\s+1 │", result.output)
    assert "C0001" not in result.output
    assert "wm_alice" not in result.output


def test_raw_aum_history_feeds_the_trend_then_expires(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    add_world(db, clock.now())
    rows = sample_rows()
    run(db, write_csv(tmp_path / "day1.csv", rows), clock)
    clock.advance(DAY)
    rows[1][3] = "1,500,000"  # alice's AUM
    rows[2][8] = "陆家嘴支行"  # bob's branch
    day2 = write_csv(tmp_path / "day2.csv", rows)
    run(db, day2, clock)
    changed_at = clock.now()
    aum_change = ("C0001", "aum", "1234567.89", "1500000.00")
    assert history(db) == [aum_change, ("C0002", "branch", "南京西路支行", "陆家嘴支行")]
    # The 30-day AUM trend is read from that raw history.
    retag_customers(db, ["wm_alice"], settings=settings(), now=clock.now())
    assert profiles(db)["C0001"].aum_trend == pytest.approx(0.215, abs=1e-4)

    clock.set(changed_at + timedelta(days=AUM_TREND_DAYS - 1))
    assert run(db, day2, clock).aum_history_expired == 0
    clock.set(changed_at + timedelta(days=AUM_TREND_DAYS))
    assert run(db, day2, clock, dry_run=True).aum_history_expired == 0
    assert [h for h in history(db) if h[1] == "aum"] == [aum_change]
    report = run(db, day2, clock)
    assert report.aum_history_expired == 1
    assert "aum_history_expired=1" in report.summary()
    # Past the window the amount is needed by nothing: the tier timeline is the engine's
    # asset_tier history (what `bot explain` shows), and other attributes keep theirs.
    assert history(db) == [
        ("C0002", "branch", "南京西路支行", "陆家嘴支行"),
        ("C0001", "asset_tier", None, "T3"),
        ("C0001", "lifecycle", None, "growth"),
    ]
