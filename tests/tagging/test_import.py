"""Importing the bank's export: parsing, matching, history and re-imports, on both engines."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.clock import FrozenClock
from bot.store.db import Database
from bot.store.models import AttributeChange, FollowRelation, ImportRun
from bot.tagging.importer import ImportReport, import_customers
from tests.tagging.import_world import (
    HEADER,
    add_world,
    naive,
    profiles,
    sample_rows,
    settings,
    snapshot,
    write_csv,
    write_xlsx,
)


def run(db: Database, path: Path, clock: FrozenClock, **options: Any) -> ImportReport:
    return import_customers(db, path, settings=settings(), now=clock.now(), **options)


def check_sample_profiles(db: Database) -> None:
    got = profiles(db)
    assert sorted(got) == ["C0001", "C0002", "C0003", "C0004", "C0005"]
    alice = got["C0001"]
    assert alice.external_userid == "wm_alice"
    assert alice.match_method == "id"
    assert alice.aum == pytest.approx(1234567.89)
    assert alice.payroll is True
    assert alice.birth_date == date(1960, 3, 15)
    assert alice.age == 66  # on 2026-11-23, the import's date
    assert alice.products == ["基金B", "理财A"]  # deduplicated and sorted
    assert alice.branch == "南京西路支行"
    assert alice.occupation == "教师"
    assert alice.interests == "书法, 太极"
    assert alice.district == "静安寺"
    assert alice.last_login_at == datetime(2026, 11, 20, 0, 15, tzinfo=UTC)  # 08:15 Shanghai
    assert alice.opened_at == date(2010, 5, 1)
    assert alice.imported_at == alice.updated_at
    bob = got["C0002"]
    assert (bob.external_userid, bob.match_method) == ("wm_bob", "mobile")
    assert bob.aum == 50000
    assert bob.payroll is False
    assert (bob.birth_date, bob.age) == (None, 45)  # age given, no birth date
    assert bob.products == []
    assert (bob.interests, bob.district) == (None, None)
    assert bob.last_login_at == datetime(2026, 10, 31, 16, 0, tzinfo=UTC)  # a date = midnight
    assert bob.opened_at == date(2024, 1, 5)
    carol_or_dave = got["C0003"]
    assert carol_or_dave.external_userid is None  # ambiguous: not guessed
    assert carol_or_dave.aum == pytest.approx(800.5)
    assert carol_or_dave.age == 36
    assert carol_or_dave.last_login_at is None
    nobody = got["C0004"]
    assert nobody.external_userid is None
    assert (nobody.birth_date, nobody.age) == (date(1949, 10, 1), 77)
    assert nobody.last_login_at == datetime(2026, 11, 21, 16, 0, tzinfo=UTC)
    assert nobody.opened_at == date(1998, 3, 3)
    erin = got["C0005"]
    # wm_nobody is not a customer, so the +86 mobile decides.
    assert (erin.external_userid, erin.match_method) == ("wm_erin", "mobile")
    assert erin.aum == 12000
    assert erin.payroll is True
    assert (erin.birth_date, erin.age) == (None, None)
    assert erin.last_login_at == datetime(2026, 11, 22, 13, 5, 9, tzinfo=UTC)


def check_sample_report(report: ImportReport) -> None:
    assert report.status == "imported"
    assert (report.rows, report.inserted, report.updated, report.unchanged) == (5, 5, 0, 0)
    assert (report.matched_by_id, report.matched_by_mobile) == (1, 2)
    assert (report.ambiguous, report.unmatched, report.conflicts, report.rejected) == (1, 1, 0, 0)
    assert report.changed_external_userids == {"wm_alice", "wm_bob", "wm_erin"}
    assert report.history_rows == 0  # a new profile's values are the profile itself
    assert report.reject_path is None


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk"])
def test_csv_in_each_encoding_imports_every_field(
    db: Database, clock: FrozenClock, tmp_path: Path, encoding: str
) -> None:
    add_world(db, clock.now())
    path = write_csv(tmp_path / "bank.csv", sample_rows(), encoding)
    report = run(db, path, clock)
    check_sample_report(report)
    assert report.encoding == encoding
    check_sample_profiles(db)


def test_xlsx_with_typed_cells_imports_the_same(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    add_world(db, clock.now())
    # openpyxl gives date-times without a zone; the importer reads them as Shanghai time.
    rows: list[list[Any]] = [
        HEADER,
        ["C0001", "wm_alice", None, 1234567.89, "Y", naive(1960, 3, 15), None,
         "理财A|基金B|理财A", "南京西路支行", "教师", "书法, 太极", "静安寺",
         naive(2026, 11, 20, 8, 15), naive(2010, 5, 1)],
        ["C0002", None, "+86 139-0000-1111", 50000, "否", None, 45, None, "南京西路支行",
         "个体", None, None, "2026/11/1", "2024/1/5"],
        ["C0003", None, 13900002222, Decimal("800.50"), 0, "1990-02-28", None, "存款",
         "陆家嘴支行", None, None, None, None, None],
        [None] * len(HEADER),  # a blank row is skipped
        ["C0004", None, "13900003333", 0, "N", "1949年10月1日", None, None, None, "退休",
         "广场舞", "五角场", "20261122", naive(1998, 3, 3)],
        ["C0005", "wm_nobody", 8613900004444, "12,000", True, None, None, "国债", None,
         None, None, None, "2026-11-22T21:05:09+08:00", "2021-07-07"],
    ]  # fmt: skip
    report = run(db, write_xlsx(tmp_path / "bank.xlsx", rows), clock)
    check_sample_report(report)
    assert report.kind == "xlsx"
    check_sample_profiles(db)


def test_ambiguous_and_unmatched_rows_are_stored_and_reported_masked(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    add_world(db, clock.now())
    report = run(db, write_csv(tmp_path / "bank.csv", sample_rows()), clock)
    samples = {(s.line, s.customer_key, s.mobile, s.reason) for s in report.unmatched_samples}
    assert samples == {
        (4, "C0*03", "139****2222", "mobile matches several customers"),
        (5, "C0*04", "139****3333", "no WeCom customer found"),  # frank's relation ended
    }
    assert "13900002222" not in repr(report)
    run_row = one_run(db)
    assert (run_row.rows, run_row.matched, run_row.unmatched, run_row.changed) == (5, 3, 2, 5)
    assert run_row.status == "imported"
    assert run_row.file_sha256 == report.sha256
    assert len(report.sha256) == 64


def one_run(db: Database) -> ImportRun:
    with db.session() as s:
        runs = s.scalars(select(ImportRun)).all()
    assert len(runs) == 1
    return runs[0]


def history(db: Database) -> list[tuple[str, str, str | None, str | None, int | None]]:
    with db.session() as s:
        changes = s.scalars(
            select(AttributeChange).order_by(
                AttributeChange.customer_key, AttributeChange.attribute
            )
        ).all()
        return [
            (c.customer_key, c.attribute, c.old_value, c.new_value, c.import_id) for c in changes
        ]


def test_reimporting_the_same_file_changes_nothing(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    add_world(db, clock.now())
    path = write_csv(tmp_path / "bank.csv", sample_rows())
    run(db, path, clock)
    before = profiles(db)
    clock.advance(86_400)
    again = run(db, path, clock)
    assert (again.inserted, again.updated, again.unchanged, again.history_rows) == (0, 0, 5, 0)
    assert again.changed == 0
    assert again.changed_external_userids == set()
    assert history(db) == []
    after = profiles(db)
    assert {k: p.updated_at for k, p in after.items()} == {
        k: p.updated_at for k, p in before.items()
    }


def test_each_real_change_is_one_history_row_from_old_to_new(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    add_world(db, clock.now())
    rows = sample_rows()
    first = run(db, write_csv(tmp_path / "day1.csv", rows), clock)
    rows[1][3] = "2,000,000"  # alice's AUM
    rows[1][7] = "基金B|理财A"  # same products in another order: not a change
    rows[2][8] = "陆家嘴支行"  # bob's branch
    rows[2][12] = "2026-11-23 07:00"  # bob's last login
    rows[4][5] = ""  # C0004's birth date cleared: age becomes unknown too
    clock.advance(86_400)
    second = run(db, write_csv(tmp_path / "day2.csv", rows), clock)
    assert (second.inserted, second.updated, second.unchanged) == (0, 3, 2)
    assert second.changed_external_userids == {"wm_alice", "wm_bob"}
    assert second.import_id is not None
    assert second.import_id != first.import_id
    run_id = second.import_id
    assert history(db) == [
        ("C0001", "aum", "1234567.89", "2000000.00", run_id),
        ("C0002", "branch", "南京西路支行", "陆家嘴支行", run_id),
        (
            "C0002",
            "last_login_at",
            "2026-11-01T00:00:00+08:00",
            "2026-11-23T07:00:00+08:00",
            run_id,
        ),
        ("C0004", "age", "77", None, run_id),
        ("C0004", "birth_date", "1949-10-01", None, run_id),
    ]
    with db.session() as s:
        stamps = {c.changed_at for c in s.scalars(select(AttributeChange))}
    assert stamps == {clock.now()}
    alice = profiles(db)["C0001"]
    assert alice.aum == 2_000_000
    assert alice.updated_at == clock.now()
    assert alice.imported_at < alice.updated_at  # first imported the day before


def test_age_follows_the_birthday_of_the_import_date(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    rows = [HEADER, ["C1", "", "", "", "", "1966-11-24", "", "", "", "", "", "", "", ""]]
    path = write_csv(tmp_path / "bank.csv", rows)
    run(db, path, clock)
    assert profiles(db)["C1"].age == 59
    clock.advance(86_400)  # 2026-11-24: the 60th birthday
    report = run(db, path, clock)
    assert report.updated == 1
    assert profiles(db)["C1"].age == 60
    assert [(h[1], h[2], h[3]) for h in history(db)] == [("age", "59", "60")]


def test_a_row_that_matches_nobody_keeps_its_earlier_link(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    add_world(db, clock.now())
    path = write_csv(tmp_path / "bank.csv", sample_rows())
    run(db, path, clock)
    with db.session() as s:  # bob's managers delete the remark mobile
        for relation in s.scalars(
            select(FollowRelation).where(FollowRelation.external_userid == "wm_bob")
        ):
            relation.remark_mobiles = []
    again = run(db, path, clock)
    assert (again.matched_by_mobile, again.kept_match, again.unchanged) == (1, 1, 5)
    assert profiles(db)["C0002"].external_userid == "wm_bob"
    assert profiles(db)["C0002"].match_method == "mobile"


def test_a_new_match_relinks_and_is_history(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    add_world(db, clock.now())
    rows = sample_rows()
    run(db, write_csv(tmp_path / "a.csv", rows), clock)
    rows[5][1] = "wm_frank"  # the bank now knows C0005's WeCom id
    report = run(db, write_csv(tmp_path / "b.csv", rows), clock)
    assert report.matched_by_id == 2
    assert report.changed_external_userids == {"wm_frank", "wm_erin"}  # erin loses its data
    c5 = profiles(db)["C0005"]
    assert (c5.external_userid, c5.match_method) == ("wm_frank", "id")
    assert [h[1:4] for h in history(db)] == [("external_userid", "wm_erin", "wm_frank")]


def test_a_customer_linked_to_another_key_is_a_conflict_not_a_steal(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    add_world(db, clock.now())
    rows = [HEADER, ["K1", "wm_alice", *[""] * 12], ["K2", "wm_alice", *[""] * 12]]
    report = run(db, write_csv(tmp_path / "a.csv", rows), clock)
    assert (report.matched_by_id, report.conflicts) == (1, 1)
    assert report.unmatched_samples[0].reason == "customer linked to another key"
    # Across chunks and imports too: K3 in a later chunk, then K4 in a later import.
    rows = [HEADER, ["K1", "wm_alice", *[""] * 12], ["K3", "wm_alice", *[""] * 12]]
    report = run(db, write_csv(tmp_path / "b.csv", rows), clock, chunk_size=1)
    assert (report.matched_by_id, report.conflicts) == (1, 1)
    report = run(db, write_csv(tmp_path / "c.csv", [HEADER, ["K4", "wm_alice", *[""] * 12]]), clock)
    assert report.conflicts == 1
    linked = {k: p.external_userid for k, p in profiles(db).items()}
    assert linked == {"K1": "wm_alice", "K2": None, "K3": None, "K4": None}


def test_columns_missing_from_the_file_are_left_as_they_were(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    add_world(db, clock.now())
    run(db, write_csv(tmp_path / "full.csv", sample_rows()), clock)
    partial = [["客户号", "企业微信客户ID", "AUM", "备注"], ["C0001", "wm_alice", "10", "x"]]
    report = run(db, write_csv(tmp_path / "aum.csv", partial), clock)
    assert report.updated == 1
    assert "手机号" in report.columns_not_in_file
    assert report.ignored_columns == ("备注",)
    alice = profiles(db)["C0001"]
    assert alice.aum == 10
    assert (alice.branch, alice.age, alice.products) == ("南京西路支行", 66, ["基金B", "理财A"])


def test_duplicate_keys_are_found_across_chunks(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    rows = [HEADER] + [[f"K{i}", *[""] * 13] for i in range(1, 8)] + [["K3", *[""] * 13]]
    rows += [[f"K{i}", *[""] * 13] for i in range(8, 300)]
    report = run(
        db, write_csv(tmp_path / "bank.csv", rows), clock, chunk_size=3, max_reject_ratio=0.5
    )
    assert (report.rows, report.rejected, report.inserted) == (300, 1, 299)
    assert report.reject_samples == [(9, "duplicate customer key, first on line 4")]


def test_dry_run_reports_the_same_and_writes_nothing(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    add_world(db, clock.now())
    path = write_csv(tmp_path / "bank.csv", sample_rows())
    before = snapshot(db)
    dry = run(db, path, clock, dry_run=True)
    assert snapshot(db) == before
    assert dry.status == "dry-run"
    assert dry.import_id is None
    real = run(db, path, clock)
    assert (dry.inserted, dry.matched_by_id, dry.matched_by_mobile, dry.ambiguous) == (
        real.inserted,
        real.matched_by_id,
        real.matched_by_mobile,
        real.ambiguous,
    )
    assert dry.changed_external_userids == real.changed_external_userids


def test_parsing_in_a_second_process_gives_the_same_outcome(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    add_world(db, clock.now())
    rows = [*sample_rows(), ["C0002", *[""] * (len(HEADER) - 1)], ["C0009", "x"]]
    path = write_csv(tmp_path / "bank.csv", rows)
    report = run(db, path, clock, parallel=True, chunk_size=2, max_reject_ratio=0.5)
    assert report.reject_samples == [
        (7, "duplicate customer key, first on line 3"),
        (8, "has 2 fields, the header has 14"),
    ]
    assert (report.inserted, report.matched_by_id, report.matched_by_mobile) == (5, 1, 2)
    check_sample_profiles(db)


def test_xlsx_rows_may_stop_at_their_last_filled_cell(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    add_world(db, clock.now())
    rows: list[list[Any]] = [HEADER, ["K1", "wm_alice", None, "100"], ["K2"]]
    report = run(db, write_xlsx(tmp_path / "short.xlsx", rows), clock)
    assert (report.rows, report.rejected, report.inserted) == (2, 0, 2)
    got = profiles(db)
    assert (got["K1"].external_userid, got["K1"].aum, got["K1"].branch) == ("wm_alice", 100, None)
    assert got["K2"].aum is None
