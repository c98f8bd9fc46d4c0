"""The export read and parsed in chunks: in this process, or in a second one for large files
so that parsing (most of an import's Python work) overlaps the database work.

Parsing includes the one check that needs the whole file: a key read on an earlier line
rejects the row (see import_seen).
"""

from __future__ import annotations

import multiprocessing
import queue
import resource
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.queues import Queue
from typing import Any
from zoneinfo import ZoneInfo

from bot.config import ImportConfig
from bot.tagging import stored_forms
from bot.tagging.fields import Cell
from bot.tagging.import_seen import SeenKeys
from bot.tagging.readers import FileFacts, ImportFileError, Table, open_table
from bot.tagging.rows import ColumnMap, ParsedRow, RowParser

# Below these sizes starting a process costs more than it saves.
PARALLEL_MIN_BYTES = {"csv": 16 << 20, "xlsx": 2 << 20}
# Chunks in flight between the processes: enough to keep both busy, few enough to keep
# memory bounded.
QUEUE_CHUNKS = 3
POLL_SECONDS = 1.0


@dataclass(frozen=True)
class Chunk:
    rows: list[ParsedRow]
    # Progress: bytes read for CSV, rows for XLSX.
    position: int


@dataclass(frozen=True)
class ParseJob:
    """Everything parsing needs, picklable for the second process."""

    facts: FileFacts
    columns: ColumnMap
    config: ImportConfig
    now: datetime
    timezone: str
    dialect: str
    chunk_size: int


@dataclass(frozen=True)
class _Packed:
    """A chunk on its way between the processes: rows as plain tuples, which pickle and
    unpickle several times faster than named ones."""

    rows: list[tuple[Any, ...]]
    position: int


@dataclass(frozen=True)
class _Done:
    peak_rss_kib: int


@dataclass(frozen=True)
class _Failed:
    message: str
    structural: bool


def should_fork(facts: FileFacts) -> bool:
    return facts.size >= PARALLEL_MIN_BYTES[facts.kind]


def parse_chunks(job: ParseJob, table: Table) -> Iterator[Chunk]:
    """The file's rows, read and parsed, in chunks."""
    parser = RowParser(
        job.columns,
        job.config,
        now=job.now,
        tz=ZoneInfo(job.timezone),
        strict_width=job.facts.kind == "csv",
        encoders=stored_forms.encoders(job.dialect, job.columns.attributes),
    )
    with SeenKeys() as seen:
        batch: list[ParsedRow] = []
        # Good rows are parsed without their cells; a repeated key's reject needs them.
        originals: list[Sequence[Cell]] = []
        for line, cells in table.rows:
            batch.append(parser.read(line, cells))
            originals.append(cells)
            if len(batch) >= job.chunk_size:
                yield Chunk(_reject_repeats(seen, batch, originals), table.position())
                batch, originals = [], []
        if batch:
            yield Chunk(_reject_repeats(seen, batch, originals), table.position())


def _reject_repeats(
    seen: SeenKeys, batch: list[ParsedRow], originals: list[Sequence[Cell]]
) -> list[ParsedRow]:
    """Reject each row whose key the file had on an earlier line, even if the row is bad
    in other ways too, so the message names the first line."""
    repeated = seen.repeated([row.key for row in batch], [row.line for row in batch])
    for position, first in repeated.items():
        error = f"duplicate customer key, first on line {first}"
        batch[position] = batch[position].rejected(error, originals[position])
    return batch


@contextmanager
def chunks(job: ParseJob, table: Table, *, fork: bool) -> Iterator[Iterator[Chunk]]:
    """The file's chunks, parsed here or (fork=True) in a second process."""
    if not fork:
        yield parse_chunks(job, table)
        return
    # spawn, not fork: the parent may hold database connections and a progress thread.
    context = multiprocessing.get_context("spawn")
    inbox: Queue[Any] = context.Queue(maxsize=QUEUE_CHUNKS)
    worker = context.Process(target=_work, args=(job, inbox), name="import-parser", daemon=True)
    worker.start()
    try:
        yield _receive(inbox, worker)
    finally:
        if worker.is_alive():
            worker.terminate()
        worker.join()
        inbox.close()


def _work(job: ParseJob, outbox: Queue[Any]) -> None:
    """The second process: parse the file, send chunks, then the outcome."""
    try:
        with open_table(job.facts) as table:
            for chunk in parse_chunks(job, table):
                outbox.put(_Packed([tuple(row) for row in chunk.rows], chunk.position))
        outbox.put(_Done(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
    except ImportFileError as exc:
        outbox.put(_Failed(str(exc), structural=True))
    except BaseException:
        outbox.put(_Failed(traceback.format_exc(), structural=False))


def _receive(inbox: Queue[Any], worker: Any) -> Iterator[Chunk]:
    while True:
        try:
            item = inbox.get(timeout=POLL_SECONDS)
        except queue.Empty:
            if not worker.is_alive():
                raise RuntimeError(
                    f"the parsing process died (exit code {worker.exitcode})"
                ) from None
            continue
        if isinstance(item, _Packed):
            yield Chunk([tuple.__new__(ParsedRow, row) for row in item.rows], item.position)
        elif isinstance(item, _Failed):
            if item.structural:
                raise ImportFileError(item.message)
            raise RuntimeError(f"the parsing process failed:\n{item.message}")
        else:
            return
