"""Import errors: structural ones write nothing; bad rows are rejected by line, under a ratio."""

from __future__ import annotations

import codecs
import csv
import io
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.clock import FrozenClock
from bot.store.db import Database
from bot.store.models import ImportRun
from bot.tagging.importer import ImportFileError, ImportReport, import_customers
from tests.tagging.import_world import (
    HEADER,
    add_world,
    csv_text,
    profiles,
    sample_rows,
    settings,
    snapshot,
    write_csv,
)

BLANK = [""] * (len(HEADER) - 1)


def run(db: Database, path: Path, clock: FrozenClock, **options: Any) -> ImportReport:
    config = options.pop("config", settings())
    return import_customers(db, path, settings=config, now=clock.now(), **options)


def row(key: str, **cells: str) -> list[str]:
    """A row with the given cells by header title (the rest empty)."""
    values = dict.fromkeys(HEADER, "")
    values["客户号"] = key
    values.update(cells)
    return [values[title] for title in HEADER]


def read_rejects(path: Path) -> list[list[str]]:
    data = path.read_bytes()
    assert data.startswith(codecs.BOM_UTF8)  # so that Excel opens it as UTF-8
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))


@pytest.fixture
def imported(db: Database, clock: FrozenClock, tmp_path: Path) -> Database:
    """A store with the sample already imported, so 'unchanged' covers updates too."""
    add_world(db, clock.now())
    run(db, write_csv(tmp_path / "first.csv", sample_rows()), clock)
    return db


def test_a_file_in_neither_encoding_names_the_offset_and_line(
    imported: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    good = csv_text([HEADER, row("C0001", AUM="1")]).encode("utf-8")
    path = tmp_path / "broken.csv"
    path.write_bytes(good + b"C0002,\xff\xfe\n")
    before = snapshot(imported)
    with pytest.raises(ImportFileError) as caught:
        run(imported, path, clock)
    message = str(caught.value)
    assert str(path) in message
    assert f"invalid utf-8 byte at offset {len(good) + 6} (line 3)" in message
    assert "nor GBK (invalid gbk byte at offset" in message
    assert snapshot(imported) == before
    assert not path.with_name("broken.csv.rejects.csv").exists()


def test_a_gbk_file_is_refused_when_utf8_is_configured(
    imported: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "gbk.csv", sample_rows(), "gbk")
    before = snapshot(imported)
    with pytest.raises(ImportFileError, match=r"not UTF-8 as configured in import.encoding"):
        run(imported, path, clock, config=settings(encoding="utf-8"))
    assert snapshot(imported) == before
    report = run(imported, path, clock, config=settings(encoding="gbk"))
    assert report.unchanged == 5


def test_missing_columns_list_what_is_expected_and_what_the_file_has(
    imported: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "cols.csv", [["客户编号", "姓名", "AUM"], ["C0001", "张三", "5"]])
    before = snapshot(imported)
    with pytest.raises(ImportFileError) as caught:
        run(imported, path, clock)
    message = str(caught.value)
    assert "missing required column '客户号' (customer_key)" in message
    assert "'企业微信客户ID' (external_userid) or '手机号' (mobile)" in message
    assert "Expected headers: 客户号 (customer_key), 企业微信客户ID (external_userid)" in message
    assert message.endswith("The file has: 客户编号, 姓名, AUM")
    assert snapshot(imported) == before


def test_an_unknown_field_in_the_column_mapping_is_an_error(
    imported: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "bank.csv", sample_rows())
    config = settings(columns={"customer_key": "客户号", "mobile": "手机号", "salary": "工资"})
    with pytest.raises(ImportFileError, match=r"unknown field.*salary"):
        run(imported, path, clock, config=config)


def bad_file(tmp_path: Path) -> Path:
    rows = [HEADER, *sample_rows()[1:]]
    rows[1] = row("C0001", 企业微信客户ID="wm_alice", AUM="12,34")  # bad grouping
    rows += [
        row("C0006", AUM="abc", 开户日期="2024-02-30"),  # line 7: two problems
        row("", AUM="5"),  # line 8: no key
        row("C0002", AUM="7"),  # line 9: duplicate of line 3
        row("C0007", 出生日期="2030-01-01"),  # line 10: born in the future
        row("C0008", 代发标志="maybe", 年龄="200"),  # line 11
        ["C0009", "too", "few"],  # line 12
        row("C0010", 最近手机银行登录="yesterday"),  # line 13
        row("C0011", AUM="-5"),  # line 14
    ]
    return write_csv(tmp_path / "bad.csv", rows)


EXPECTED_REJECTS = [
    (2, "AUM: not an amount: '12,34'"),
    (7, "AUM: not an amount: 'abc'; 开户日期: not a date: '2024-02-30'"),
    (8, "客户号: missing customer key"),
    (9, "duplicate customer key, first on line 3"),
    (10, "出生日期: date out of range: 2030-01-01"),
    (11, "代发标志: not a yes/no value: 'maybe'; 年龄: age out of range: 200"),
    (12, "has 3 fields, the header has 14"),
    (13, "最近手机银行登录: not a date-time: 'yesterday'"),
    (14, "AUM: negative amount"),
]


def test_too_many_bad_rows_refuse_the_import_and_leave_the_store_unchanged(
    imported: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    path = bad_file(tmp_path)
    before = snapshot(imported)
    clock.advance(3600)
    report = run(imported, path, clock)
    assert report.refused
    assert report.status == "refused"
    assert report.refused_reason is not None
    assert "9 of 13 rows (69.23%) were rejected, more than the 1.00% allowed" in (
        report.refused_reason
    )
    assert snapshot(imported) == before  # no profile, history or import_runs row
    assert report.import_id is None
    assert report.reject_samples == EXPECTED_REJECTS
    rejects = read_rejects(path.with_name("bad.csv.rejects.csv"))
    assert rejects[0] == [*HEADER, "line", "error"]
    assert [(int(r[-2]), r[-1]) for r in rejects[1:]] == EXPECTED_REJECTS
    assert rejects[1][:4] == ["C0001", "wm_alice", "", "12,34"]  # the row as it was
    assert rejects[7][:3] == ["C0009", "too", "few"]


def test_bad_rows_under_the_ratio_are_rejected_and_the_rest_imported(
    imported: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    path = bad_file(tmp_path)
    reject_path = tmp_path / "out" / "rejects.csv"
    reject_path.parent.mkdir()
    clock.advance(3600)
    report = run(imported, path, clock, max_reject_ratio=0.7, reject_path=reject_path)
    assert report.status == "imported"
    assert (report.rows, report.rejected, report.valid) == (13, 9, 4)
    assert report.reject_path == reject_path
    assert len(read_rejects(reject_path)) == 1 + 9
    stored = profiles(imported)
    assert stored["C0001"].aum == pytest.approx(1234567.89)  # its bad row changed nothing
    assert stored["C0002"].aum == 50000  # line 3 is good; line 9 is the duplicate
    assert "C0006" not in stored
    with imported.session() as s:
        last = s.scalars(select(ImportRun).order_by(ImportRun.id.desc())).first()
    assert last is not None
    assert (last.status, last.rows, last.rejected) == ("partial", 13, 9)


@pytest.mark.parametrize(("bad", "refused"), [(1, False), (2, True)])
def test_the_ratio_is_a_maximum(
    db: Database, clock: FrozenClock, tmp_path: Path, bad: int, refused: bool
) -> None:
    rows = [HEADER] + [row(f"K{i}", AUM="x" if i < bad else "1") for i in range(100)]
    report = run(db, write_csv(tmp_path / "bank.csv", rows), clock)
    assert report.refused is refused
    assert len(profiles(db)) == (0 if refused else 99)


def test_a_structural_error_midway_rolls_back_the_chunks_already_written(
    imported: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    rows = [HEADER, row("N1", AUM="1"), row("N2", AUM="bad"), row("N3", AUM="3")]
    rows.append(row("N4", 兴趣爱好="x" * 200_000))  # beyond the csv module's field limit
    path = write_csv(tmp_path / "huge.csv", rows)
    before = snapshot(imported)
    with pytest.raises(ImportFileError, match=r"huge.csv: line 5: field larger than"):
        run(imported, path, clock, chunk_size=1, max_reject_ratio=1.0)
    assert snapshot(imported) == before
    assert list(tmp_path.glob("*rejects*")) == []
    assert list(tmp_path.glob(".*tmp")) == []


def test_line_numbers_count_physical_lines(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    rows = [HEADER, row("K1", 兴趣爱好="第一行\n第二行\n第三行"), row("K2", AUM="?")]
    report = run(db, write_csv(tmp_path / "bank.csv", rows), clock, max_reject_ratio=1.0)
    assert report.reject_samples == [(5, "AUM: not an amount: '?'")]
    assert profiles(db)["K1"].interests == "第一行\n第二行\n第三行"


def test_an_empty_file_is_an_error_and_a_header_alone_imports_nothing(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(ImportFileError, match="empty file, no header line"):
        run(db, empty, clock)
    report = run(db, write_csv(tmp_path / "header.csv", [HEADER]), clock)
    assert (report.status, report.rows) == ("imported", 0)


def test_unreadable_workbooks_are_errors(db: Database, clock: FrozenClock, tmp_path: Path) -> None:
    fake = tmp_path / "bank.xlsx"
    fake.write_bytes(b"not a zip file")
    with pytest.raises(ImportFileError, match="not a readable XLSX workbook"):
        run(db, fake, clock)
    old = tmp_path / "bank.xls"
    old.write_bytes(b"\xd0\xcf\x11\xe0")
    with pytest.raises(ImportFileError, match=r"\.xls files are not supported"):
        run(db, old, clock)
    with pytest.raises(ImportFileError, match="no such file"):
        run(db, tmp_path / "missing.csv", clock)


def test_a_clean_run_removes_an_old_reject_file(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "bank.csv", [HEADER, row("K1", AUM="?"), row("K2")])
    assert run(db, path, clock, max_reject_ratio=1.0).reject_path is not None
    write_csv(path, [HEADER, row("K1", AUM="1"), row("K2")])
    report = run(db, path, clock)
    assert report.reject_path is None
    assert not path.with_name("bank.csv.rejects.csv").exists()


def test_a_structural_error_in_the_parsing_process_writes_nothing(
    imported: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    rows = [HEADER, row("N1", AUM="1"), row("N2", AUM="3")]
    rows.append(row("N3", 兴趣爱好="x" * 200_000))
    path = write_csv(tmp_path / "huge.csv", rows)
    before = snapshot(imported)
    with pytest.raises(ImportFileError, match=r"huge.csv: line 4: field larger than"):
        run(imported, path, clock, chunk_size=1, parallel=True)
    assert snapshot(imported) == before


def test_reported_errors_mask_a_mobile_in_the_wrong_column(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "bank.csv", [HEADER, row("K1", AUM="13912345678x")])
    report = run(db, path, clock, max_reject_ratio=1.0)
    assert report.reject_samples == [(2, "AUM: not an amount: '139****5678x'")]
    assert report.reject_path is not None
    assert "13912345678x" in report.reject_path.read_text(encoding="utf-8-sig")  # the input
