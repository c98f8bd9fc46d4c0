"""Parsing single cells of the bank's export (no database)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from bot.clock import SHANGHAI
from bot.tagging.fields import (
    FieldError,
    age_on,
    normalise_mobile,
    parse_age,
    parse_aum,
    parse_date,
    parse_datetime,
    parse_flag,
    parse_key,
    parse_products,
    parse_text,
)
from bot.tagging.import_report import mask_key
from bot.tagging.readers import ImportFileError, inspect_file
from tests.tagging.import_world import naive

TODAY = date(2026, 11, 23)
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=SHANGHAI)


@pytest.mark.parametrize(
    ("cell", "amount"),
    [
        ("1,234,567.89", 1234567.89),
        ("１２，０００", 12000.0),  # full-width digits and comma
        (" 50000 ", 50000.0),
        ("0.005", 0.01),  # to the fen
        (".5", 0.5),
        ("", None),
        (None, None),
        (1234.5, 1234.5),
        (42, 42.0),
        (Decimal("7.10"), 7.1),
    ],
)
def test_amounts(cell: object, amount: float | None) -> None:
    assert parse_aum(cell) == amount  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cell", "problem"),
    [
        ("12,34", "not an amount"),
        ("1,2345", "not an amount"),
        ("abc", "not an amount"),
        ("1e5", "not an amount"),
        ("NaN", "not an amount"),
        (float("inf"), "not an amount"),
        ("-5", "negative amount"),
        ("10000000000000", "out of range"),
        (True, "not an amount"),
    ],
)
def test_bad_amounts(cell: object, problem: str) -> None:
    with pytest.raises(FieldError, match=problem):
        parse_aum(cell)  # type: ignore[arg-type]


def test_flags_use_the_configured_spellings() -> None:
    yes, no = {"Y", "是", "1"}, {"N", "否", "0", ""}
    assert [parse_flag(v, yes, no) for v in ("Y", "是", "1", 1, True)] == [True] * 5
    assert [parse_flag(v, yes, no) for v in ("N", "否", "0", "", None, 0)] == [False] * 6
    assert parse_flag("", yes, {"N"}) is None  # empty is unknown unless configured as false
    with pytest.raises(FieldError, match="not a yes/no value: 'y'"):
        parse_flag("y", yes, no)


@pytest.mark.parametrize(
    "cell",
    ["2024-01-05", "2024/1/5", "2024.01.05", "20240105", "2024年1月5日", "2024-01-05 13:45:00",
     date(2024, 1, 5), naive(2024, 1, 5, 13, 45)],
)  # fmt: skip
def test_dates(cell: object) -> None:
    assert parse_date(cell, latest=TODAY) == date(2024, 1, 5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cell", "problem"),
    [
        ("2024-02-30", "not a date"),
        ("2024-13-01", "not a date"),
        ("05/01/2024", "not a date"),
        ("2026-11-24", "out of range"),
        ("1899-12-31", "out of range"),
    ],
)
def test_bad_dates(cell: str, problem: str) -> None:
    with pytest.raises(FieldError, match=problem):
        parse_date(cell, latest=TODAY)


def test_date_times_are_shanghai_unless_they_say_otherwise() -> None:
    def parse(cell: object) -> datetime | None:
        return parse_datetime(cell, tz=SHANGHAI, latest=NOW + timedelta(days=1))  # type: ignore[arg-type]

    expected = datetime(2026, 11, 20, 0, 15, tzinfo=UTC)
    for cell in (
        "2026-11-20 08:15",
        "2026/11/20 8:15:00",
        "2026-11-20T08:15:00.000",
        "2026-11-20T00:15:00Z",
        naive(2026, 11, 20, 8, 15),
    ):
        assert parse(cell) == expected, cell
    assert parse("2026-11-20T08:15:00+09:00") == datetime(
        2026, 11, 20, 8, 15, tzinfo=timezone(timedelta(hours=9))
    )
    assert parse("2026-11-20") == datetime(2026, 11, 19, 16, 0, tzinfo=UTC)
    assert parse("") is None
    with pytest.raises(FieldError, match="not a date-time"):
        parse("2026-11-20 25:00")
    with pytest.raises(FieldError, match="out of range"):
        parse("2026-11-25 00:00")


def test_age_on_counts_whole_years() -> None:
    assert age_on(date(1966, 11, 24), TODAY) == 59
    assert age_on(date(1966, 11, 23), TODAY) == 60
    assert age_on(date(2000, 2, 29), date(2026, 2, 28)) == 25
    assert age_on(date(2000, 2, 29), date(2026, 3, 1)) == 26


def test_ages() -> None:
    assert [parse_age(v) for v in ("45", "45.0", "45岁", 61, 61.0, "")] == [
        45,
        45,
        45,
        61,
        61,
        None,
    ]
    for bad in ("45.5", "abc", "151", "-1"):
        with pytest.raises(FieldError):
            parse_age(bad)


def test_products_are_a_sorted_set() -> None:
    assert parse_products(" 理财A | 基金B |理财A||", "|") == ["基金B", "理财A"]
    assert parse_products("", "|") == []
    assert parse_products("a;b", ";") == ["a", "b"]


def test_keys_and_text() -> None:
    assert parse_key(" C001 ") == "C001"
    assert parse_key(62220200000012.0) == "62220200000012"  # a numeric key from XLSX
    assert parse_key("") is None
    with pytest.raises(FieldError, match="longer than 64"):
        parse_key("k" * 65)
    assert parse_text("  静安寺 ") == "静安寺"
    with pytest.raises(FieldError, match="longer than 64"):
        parse_text("长" * 65)
    assert parse_text("长" * 500, limit=None) == "长" * 500
    with pytest.raises(FieldError, match="NUL"):
        parse_text("a\x00b")


@pytest.mark.parametrize(
    "cell",
    ["13900001111", "+86 139-0000-1111", "86 13900001111", "0086 139 0000 1111",
     "139 0000 1111", "１３９００００１１１１", 13900001111, 8613900001111.0],
)  # fmt: skip
def test_mobiles_normalise_to_eleven_digits(cell: object) -> None:
    assert normalise_mobile(cell) == "13900001111"  # type: ignore[arg-type]


def test_short_numbers_are_not_matched_on() -> None:
    assert normalise_mobile("123456") is None
    assert normalise_mobile("") is None


def test_masked_keys() -> None:
    assert mask_key("C0001") == "C0*01"
    assert mask_key("6222020000001234") == "62************34"
    assert mask_key("K1") == "**"


def test_encoding_is_detected_once_before_import(tmp_path: Path) -> None:
    text = "客户号,手机号\nC1,139\n"
    utf8 = tmp_path / "u.csv"
    utf8.write_bytes(text.encode("utf-8"))
    bom = tmp_path / "b.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    gbk = tmp_path / "g.csv"
    gbk.write_bytes(text.encode("gbk"))
    assert inspect_file(utf8, "auto").encoding == "utf-8"
    assert inspect_file(bom, "auto").encoding == "utf-8-sig"
    assert inspect_file(gbk, "auto").encoding == "gbk"
    assert inspect_file(gbk, "gbk").encoding == "gbk"
    with pytest.raises(ImportFileError, match="not GBK as configured"):
        inspect_file(_bad_gbk(tmp_path), "gbk")


def _bad_gbk(tmp_path: Path) -> Path:
    path = tmp_path / "bad.csv"
    path.write_bytes("客户号\n".encode("gbk") + b"\xff\n")
    return path


def test_a_multibyte_character_split_across_read_blocks_is_fine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.tagging import readers

    monkeypatch.setattr(readers, "READ_BLOCK", 7)  # blocks end mid-character everywhere
    body = ("客户号,手机号\n" + "C1,张三丰\n" * 20).encode("gbk")
    path = tmp_path / "big.csv"
    path.write_bytes(body)
    assert inspect_file(path, "auto").encoding == "gbk"
    path.write_bytes(body.replace(b"\xd5\xc5", b"\xd5\xff", 2))  # 张 broken on lines 2, 3
    with pytest.raises(ImportFileError, match=r"invalid gbk byte at offset 17 \(line 2\)"):
        inspect_file(path, "gbk")
    utf8 = ("客户号,手机号\n" + "C1,张三丰\n" * 20).encode("utf-8")
    path.write_bytes(utf8[:36] + b"\xff" + utf8[36:])
    with pytest.raises(ImportFileError, match=r"invalid utf-8 byte at offset 36 \(line 3\)"):
        inspect_file(path, "utf-8")
