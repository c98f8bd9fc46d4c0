"""Streaming the bank's export: CSV (UTF-8 with or without BOM, or GBK) and XLSX, row by row."""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from bot.tagging.fields import Cell, cell_text

if TYPE_CHECKING:
    from _csv import Reader

READ_BLOCK = 1 << 20
XLSX_SUFFIXES = (".xlsx", ".xlsm")


class ImportFileError(Exception):
    """The file as a whole cannot be imported (unreadable, wrong encoding, missing columns);
    nothing is written."""


@dataclass(frozen=True)
class FileFacts:
    """What the import knows about the file before reading its rows."""

    path: Path
    kind: Literal["csv", "xlsx"]
    encoding: str | None
    sha256: str
    size: int


@dataclass
class Table:
    """An open export: its header and a stream of (line number, cells); header = line 1."""

    facts: FileFacts
    header: list[str]
    rows: Iterator[tuple[int, Sequence[Cell]]]
    # Progress in the unit the reader can measure: bytes for CSV, rows for XLSX.
    progress_total: int | None
    position: Callable[[], int] = field(repr=False)


def inspect_file(path: Path, encoding: Literal["auto", "utf-8", "gbk"]) -> FileFacts:
    """Hash the file and settle its encoding, reading it once before anything is written."""
    if not path.is_file():
        raise ImportFileError(f"{path}: no such file")
    kind: Literal["csv", "xlsx"] = "xlsx" if path.suffix.lower() in XLSX_SUFFIXES else "csv"
    if path.suffix.lower() == ".xls":
        raise ImportFileError(
            f"{path}: old Excel .xls files are not supported; save as .xlsx or CSV"
        )
    try:
        if kind == "xlsx":
            digest, size = _hash(path)
            return FileFacts(path, kind, None, digest, size)
        return _inspect_csv(path, encoding)
    except OSError as exc:
        raise ImportFileError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _hash(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while block := handle.read(READ_BLOCK):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


@dataclass
class _Validator:
    """Incremental decoding of the whole file in one codec, remembering the first bad byte."""

    codec: str
    decoder: codecs.IncrementalDecoder
    failed_at: int | None = None
    failed_line: int | None = None

    @classmethod
    def of(cls, codec: str) -> _Validator:
        return cls(codec, codecs.getincrementaldecoder(codec)())

    def feed(self, block: bytes, offset: int, lines_before: int, *, final: bool = False) -> None:
        if self.failed_at is not None:
            return
        pending = len(self.decoder.getstate()[0])
        try:
            self.decoder.decode(block, final)
        except UnicodeDecodeError as exc:
            # The decoder reports positions within its pending bytes plus this block.
            position = exc.start - pending
            self.failed_at = offset + position
            self.failed_line = lines_before + block[: max(position, 0)].count(b"\n") + 1

    def describe(self) -> str:
        return f"invalid {self.codec} byte at offset {self.failed_at} (line {self.failed_line})"


def _inspect_csv(path: Path, encoding: Literal["auto", "utf-8", "gbk"]) -> FileFacts:
    digest = hashlib.sha256()
    # In auto mode both codecs run in the same pass: GBK gives up within the first Chinese
    # character of a UTF-8 file, and a GBK file is then not read a second time.
    utf8 = _Validator.of("utf-8") if encoding in ("auto", "utf-8") else None
    gbk = _Validator.of("gbk") if encoding in ("auto", "gbk") else None
    validators = [v for v in (utf8, gbk) if v is not None]
    size = 0
    lines = 0
    with path.open("rb") as handle:
        head = handle.read(3)
        handle.seek(0)
        while block := handle.read(READ_BLOCK):
            digest.update(block)
            for validator in validators:
                validator.feed(block, size, lines)
            size += len(block)
            lines += block.count(b"\n")
    for validator in validators:
        validator.feed(b"", size, lines, final=True)
    if utf8 is not None and utf8.failed_at is None:
        chosen = "utf-8-sig" if head == codecs.BOM_UTF8 else "utf-8"
    elif gbk is not None and gbk.failed_at is None:
        chosen = "gbk"
    elif utf8 is not None and gbk is not None:
        raise ImportFileError(
            f"{path}: neither UTF-8 ({utf8.describe()}) nor GBK ({gbk.describe()}); "
            "save the export as UTF-8 or GBK"
        )
    else:
        raise ImportFileError(
            f"{path}: not {encoding.upper()} as configured in import.encoding: "
            f"{validators[0].describe()}"
        )
    return FileFacts(path, "csv", chosen, digest.hexdigest(), size)


@contextmanager
def open_table(facts: FileFacts) -> Iterator[Table]:
    """Open the export for streaming; the header row is read and trimmed."""
    if facts.kind == "xlsx":
        with _open_xlsx(facts) as table:
            yield table
    else:
        with _open_csv(facts) as table:
            yield table


@contextmanager
def _open_csv(facts: FileFacts) -> Iterator[Table]:
    assert facts.encoding is not None
    binary = facts.path.open("rb")
    with io.TextIOWrapper(binary, encoding=facts.encoding, newline="") as text:
        reader = csv.reader(text)
        try:
            first = next(reader, None)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise ImportFileError(f"{facts.path}: line 1: {exc}") from None
        if first is None:
            raise ImportFileError(f"{facts.path}: empty file, no header line")
        header = [name.strip().lstrip("\ufeff").strip() for name in first]
        yield Table(
            facts=facts,
            header=header,
            rows=_csv_rows(facts.path, reader),
            progress_total=facts.size,
            position=binary.tell,
        )


def _csv_rows(path: Path, reader: Reader) -> Iterator[tuple[int, Sequence[Cell]]]:
    end = reader.line_num
    while True:
        start = end + 1
        try:
            cells = next(reader, None)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise ImportFileError(f"{path}: line {start}: {exc}") from None
        if cells is None:
            return
        # A record with quoted newlines spans lines; it is reported by its first line.
        end = reader.line_num
        if cells and any(cells):
            yield start, cells


@contextmanager
def _open_xlsx(facts: FileFacts) -> Iterator[Table]:
    from zipfile import BadZipFile

    from openpyxl import load_workbook

    try:
        book = load_workbook(facts.path, read_only=True, data_only=True)
    except (BadZipFile, KeyError, ValueError, OSError) as exc:
        raise ImportFileError(f"{facts.path}: not a readable XLSX workbook: {exc}") from None
    try:
        sheet = book.worksheets[0] if book.worksheets else None
        if sheet is None:
            raise ImportFileError(f"{facts.path}: the workbook has no sheet")
        rows: Iterator[tuple[Cell, ...]] = sheet.iter_rows(values_only=True)
        first = next(rows, None)
        if first is None:
            raise ImportFileError(f"{facts.path}: empty sheet, no header row")
        header = [cell_text(name) for name in first]
        counter = _Counter()
        yield Table(
            facts=facts,
            header=header,
            rows=_xlsx_rows(facts.path, rows, counter),
            progress_total=sheet.max_row,
            position=counter.get,
        )
    finally:
        book.close()


class _Counter:
    def __init__(self) -> None:
        self.value = 0

    def get(self) -> int:
        return self.value


def _xlsx_rows(
    path: Path, rows: Iterator[tuple[Cell, ...]], counter: _Counter
) -> Iterator[tuple[int, Sequence[Cell]]]:
    line = 1
    while True:
        try:
            cells = next(rows, None)
        except Exception as exc:  # openpyxl raises many kinds on a damaged sheet
            raise ImportFileError(f"{path}: row {line + 1}: cannot read: {exc}") from None
        if cells is None:
            return
        line += 1
        counter.value = line
        if any(cell is not None and cell != "" for cell in cells):
            yield line, cells
