"""The bank import under fuzzing: random bytes, random encodings, and sample exports with
bad numbers, dates, flags, duplicate and missing keys, missing and repeated columns, ragged
rows and hostile cells; and the property that a failed import writes nothing at all."""

from __future__ import annotations

import codecs
import csv
import io
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from hypothesis import strategies as st

from bot.store.db import Database
from bot.tagging.importer import ImportFileError, ImportReport, import_customers
from tests.fuzz.bounds import bounded
from tests.tagging.import_world import HEADER, add_world, sample_rows, settings, snapshot

# An import of a few dozen rows takes tens of milliseconds.
IMPORT_SECONDS = 30.0

# Cells per column: good values, and the bad ones the parsers must turn into rejects.
_CELLS: dict[str, list[str]] = {
    "客户号": ["C0001", "C0002", "C0003", "K1", "K2", "", " ", "C0001 ", "客户1", "x" * 300],
    "企业微信客户ID": ["", "wm_alice", "wm_bob", "wm_nobody", "wm_gina", "wm_" + "z" * 200],
    "手机号": ["", "13800000000", "+86 139-0000-1111", "139 0000 2222", "1390000", "abc",
               "+8613900004444", "13900003333" * 3],
    "AUM": ["", "0", "1,234,567.89", "50000", "-5", "12,34", "abc", "1e400", "NaN", "inf",
            "9" * 40, "1.5万", "0x10", "１２３"],
    "代发标志": ["", "Y", "N", "是", "否", "1", "0", "maybe", "TRUE", "yes"],
    "出生日期": ["", "1960-03-15", "1949年10月1日", "2024-02-30", "2030-01-01", "1899-12-31",
             "9999-99-99", "19600315", "0000-00-00", "1960/3/15"],
    "年龄": ["", "45", "200", "-1", "4.5", "abc", "9" * 30],
    "持有产品": ["", "理财A|基金B", "|||", "理财A|理财A", "x" * 1000],
    "网点": ["", "南京西路支行", "陆家嘴支行", "\t", "=cmd|' /C calc'!A0"],
    "职业": ["", "教师", "退休", "个体"],
    "兴趣爱好": ["", "书法, 太极", "第一行\n第二行", '"quoted"', "x" * 5000],
    "商圈": ["", "静安寺", "五角场"],
    "最近手机银行登录": ["", "2026-11-20 08:15:00", "2026/11/1", "20261122", "yesterday",
                 "2026-11-20T25:61:00", "2100-01-01 00:00:00", "1970-01-01 00:00:00"],
    "开户日期": ["", "2010-05-01", "2024/1/5", "19980303", "2024-02-30", "3000-01-01"],
}  # fmt: skip
_JUNK = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["\x00", "\r", "\n", '"', '""', ",", "\ufeff", "\u2028", "\ud7ff"]),
)


@dataclass(frozen=True)
class ImportCase:
    """A file's bytes and how the import is run on it."""

    data: bytes
    suffix: str
    dry_run: bool
    max_reject_ratio: float
    chunk_size: int


@st.composite
def _rows(draw: st.DrawFn) -> list[list[str]]:
    """A header (perhaps missing, reordering or repeating columns) and rows built from
    the sample's rows and the cell pools above."""
    header = list(HEADER)
    how = draw(st.sampled_from(["as-is", "as-is", "shuffle", "drop", "repeat", "extra"]))
    if how == "shuffle":
        header = draw(st.permutations(header))
    elif how == "drop":
        header.remove(draw(st.sampled_from(header)))
    elif how == "repeat":
        header.insert(draw(st.integers(0, len(header))), draw(st.sampled_from(header)))
    elif how == "extra":
        header.append(draw(st.sampled_from(["备注", "", " 客户号 ", "AUM"])))
    samples = [dict(zip(HEADER, r, strict=True)) for r in sample_rows()[1:]]
    rows = [header]
    for n in range(draw(st.integers(0, 12))):
        base = dict(draw(st.sampled_from(samples)))
        # Mostly new keys, now and then one of the stored customers' (or a repeat).
        base["客户号"] = draw(st.sampled_from([f"F{n}", f"F{n}", f"F{n}", base["客户号"], "F0"]))
        row = [base.get(title, "") for title in header]
        for _ in range(draw(st.integers(0, 3))):
            at = draw(st.integers(0, len(row) - 1))
            pool = _CELLS.get(header[at])
            cell = draw(st.sampled_from(pool)) if pool and draw(st.booleans()) else draw(_JUNK)
            row[at] = cell
        shape = draw(st.sampled_from(["ok", "ok", "ok", "short", "long", "empty"]))
        if shape == "short":
            row = row[: draw(st.integers(0, len(row) - 1))]
        elif shape == "long":
            row += ["extra"] * draw(st.integers(1, 3))
        elif shape == "empty":
            row = [""] * len(row)
        rows.append(row)
    return rows


def _csv(rows: list[list[str]], terminator: str = "\n") -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator=terminator).writerows(rows)
    return out.getvalue()


@st.composite
def _encoded(draw: st.DrawFn, text: str) -> bytes:
    how = draw(st.sampled_from(["utf-8"] * 4 + ["utf-8-sig", "gbk", "broken", "truncated"]))
    if how == "utf-8-sig":
        return codecs.BOM_UTF8 + text.encode("utf-8", "surrogatepass")
    if how == "gbk":
        return text.encode("gbk", "replace")
    data = text.encode("utf-8", "surrogatepass")
    if how == "broken":
        at = draw(st.integers(0, len(data)))
        junk = draw(st.sampled_from([b"\xff", b"\xc3", b"\x81\x30", b"\xe4\xb8", b"\x00"]))
        return data[:at] + junk + data[at:]
    if how == "truncated" and data:
        return data[: draw(st.integers(0, len(data) - 1))]
    return data


@st.composite
def import_cases(draw: st.DrawFn) -> ImportCase:
    kind = draw(st.sampled_from(["rows"] * 6 + ["bytes", "xlsx-bytes"]))
    if kind == "rows":
        # Windows exports end their lines with CRLF.
        text = _csv(draw(_rows()), draw(st.sampled_from(["\n", "\r\n"])))
        data = draw(_encoded(text))
    else:
        data = draw(st.binary(max_size=2000))
        if kind == "xlsx-bytes" and draw(st.booleans()):
            data = b"PK\x03\x04" + data  # a zip's signature, then junk
    return ImportCase(
        data=data,
        suffix=".xlsx" if kind == "xlsx-bytes" else draw(st.sampled_from([".csv", ".CSV", ".txt"])),
        dry_run=draw(st.integers(0, 4)) == 0,
        max_reject_ratio=draw(st.sampled_from([0.0, 0.01, 0.5, 1.0])),
        chunk_size=draw(st.sampled_from([1, 3, 10_000])),
    )


class ImportHarness:
    """One store with the import tests' world in it (and the sample imported once), and a
    scratch folder for the files. Use as a context manager."""

    def __init__(self, db: Database, now: datetime) -> None:
        self.db = db
        self.now = now
        self.settings = settings()
        self.folder = Path(tempfile.mkdtemp(prefix="import-fuzz-"))
        add_world(db, now)
        first = self.folder / "first.csv"
        first.write_bytes(_csv(sample_rows()).encode("utf-8"))
        import_customers(db, first, settings=self.settings, now=now)

    def __enter__(self) -> ImportHarness:
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def check(self, case: ImportCase) -> str:
        """A report or an ImportFileError; whenever nothing may be written (a structural
        error, a refusal, a dry run), the store is exactly as it was."""
        path = self.folder / f"bank{case.suffix}"
        path.write_bytes(case.data)
        before = snapshot(self.db)
        message: str | None
        with bounded(IMPORT_SECONDS, "one import"):
            try:
                report = import_customers(
                    self.db,
                    path,
                    settings=self.settings,
                    now=self.now,
                    dry_run=case.dry_run,
                    max_reject_ratio=case.max_reject_ratio,
                    chunk_size=case.chunk_size,
                )
            except ImportFileError as exc:
                message = str(exc)
            else:
                message = None
        if message is not None:
            assert str(path) in message, message
            assert snapshot(self.db) == before, "a failed import wrote"
            return "file-error"
        assert isinstance(report, ImportReport)
        assert report.rows == report.valid + report.rejected
        assert report.rejected <= report.rows
        if report.refused or report.dry_run:
            assert snapshot(self.db) == before, f"a {report.status} import wrote"
            assert report.import_id is None
        else:
            assert report.import_id is not None
            assert report.rejected <= case.max_reject_ratio * report.rows
        return report.status
