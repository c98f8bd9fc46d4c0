"""The reject file: rejected rows as they were, plus `line` and `error`, in UTF-8 with a BOM."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING

from bot.tagging.fields import Cell, cell_text

if TYPE_CHECKING:
    from _csv import Writer


def default_reject_path(path: Path) -> Path:
    """FILE.rejects.csv next to the input."""
    return path.with_name(path.name + ".rejects.csv")


class RejectFile:
    """Written to a temporary name and moved into place at the end, so a failed run never
    leaves half a reject file; a run without rejects removes an older one at the same path."""

    def __init__(self, path: Path, header: Sequence[str]) -> None:
        self.path = path
        self._header = list(header)
        self._temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        self._handle: IO[str] | None = None
        self._writer: Writer | None = None
        self.count = 0

    def __enter__(self) -> RejectFile:
        return self

    def write(self, rows: Sequence[tuple[int, Sequence[Cell], str]]) -> None:
        """Append (line, original cells, error) rows."""
        if not rows:
            return
        if self._writer is None:
            # The rows hold the customers' own data: readable by the operator only.
            fd = os.open(self._temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            # Excel opens a CSV as UTF-8 only when it starts with a BOM.
            self._handle = open(fd, "w", encoding="utf-8-sig", newline="")  # noqa: SIM115
            self._writer = csv.writer(self._handle)
            self._writer.writerow([*self._header, "line", "error"])
        for line, cells, error in rows:
            original = [cell if isinstance(cell, str) else cell_text(cell) for cell in cells]
            self._writer.writerow([*original, line, error])
        self.count += len(rows)

    def finish(self) -> Path | None:
        """Put the file in place; None when nothing was rejected."""
        if self._handle is None:
            self.path.unlink(missing_ok=True)
            return None
        self._handle.close()
        self._handle = None
        os.replace(self._temp, self.path)
        return self.path

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.close()
            self._temp.unlink(missing_ok=True)
