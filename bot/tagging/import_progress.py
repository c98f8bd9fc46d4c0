"""The import's progress bar: rich, on stderr, for files large enough to wait for."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from bot.tagging.readers import Table

PROGRESS_MIN_BYTES = 1 << 20


@contextmanager
def progress_bar(table: Table, *, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr for large files: bytes read for CSV, rows for XLSX."""
    small = table.facts.kind == "csv" and table.facts.size < PROGRESS_MIN_BYTES
    if not enabled or small:
        yield lambda _done: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    amount = DownloadColumn() if table.facts.kind == "csv" else MofNCompleteColumn()
    bar = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        amount,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    with bar:
        task = bar.add_task(f"importing {table.facts.path.name}", total=table.progress_total)
        yield lambda done: bar.update(task, completed=done)
