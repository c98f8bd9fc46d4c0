"""`bot import-customers`: the bank's daily export (CSV or XLSX) into customer profiles.

Policy, in one transaction per import:

- A structural problem (the file is unreadable, neither UTF-8 nor GBK, not an XLSX
  workbook, or lacks the customer-key column or both match columns) is an `ImportFileError`
  raised before anything is written.
- Every other problem is a row's: a bad number or date, a missing key, a key already seen on
  an earlier line, a wrong number of fields. Such rows go to the reject file (the original
  columns plus `line` and `error`; UTF-8 with a BOM so Excel opens it; FILE.rejects.csv by
  default). When the rejected share of data rows is at most `max_reject_ratio` (1 % by
  default) the good rows are committed; above it the transaction is rolled back, nothing is
  written (no import_runs row either) and the report says why. A dry run does all the work,
  reject file included, and always rolls back.

Rows are matched to WeCom customers by external_userid when that customer is in the mirror,
else by the mobile against the remark mobiles on active follow relations (digits only,
without +86); a mobile naming several customers is ambiguous and not guessed, and a customer
already linked to another bank key is a conflict. A row that matches nothing keeps its
earlier link; unlinked rows are stored all the same and counted. Mobiles serve matching only
and are never stored.

A row that names a customer `bot forget` erased (customers.forgotten_at), by its
external_userid, its mobile or the link its key already has, stores nothing: no attribute,
no history, no new link or profile. It is counted as forgotten, never as rejected or
unmatched, and goes to no reject file or sample, even when it is bad.

Only columns present in the file are written; an empty cell clears its attribute. A new
profile's first values are the row itself (`imported_at` is when it was first imported);
afterwards each real change is one attribute_history row (old → new, the run's id), so
re-importing a file changes nothing. Raw AUM amounts stay in the history only as long as
the AUM trend reads them (`rules.AUM_TREND_DAYS`): each import deletes older ones. The tier
timeline is the engine's `asset_tier` history, tier codes only.

The file is streamed and worked in chunks: one query loads the chunk's stored profiles,
changes are computed in Python and written in batches, and the keys already read sit in a
temporary SQLite file next to the parser (import_seen), so memory does not grow with the
file. Large files are parsed in a second process while this one does the database work.

On SQLite the transaction holds the write lock until the import ends, so other writers
(callback ingest) wait up to busy_timeout meanwhile: import large files while the bot is
quiet, or use PostgreSQL, where only the profiles being written are locked (but for an
import into an empty table, which has the table to itself: see import_store).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from bot.config import Settings
from bot.privacy import scrub
from bot.store.db import Database
from bot.tagging import stored_forms
from bot.tagging.import_progress import progress_bar
from bot.tagging.import_report import SAMPLE_LIMIT, ImportReport
from bot.tagging.import_store import (
    ATTRIBUTES_FROM,
    HistoryRow,
    InsertRow,
    ProfileUpdate,
    expire_history,
    finish_run,
    forgotten_customers,
    open_store,
    start_run,
)
from bot.tagging.matching import MobileIndex, Outcome, candidates
from bot.tagging.parsing import Chunk, ParseJob, chunks, should_fork
from bot.tagging.readers import ImportFileError, inspect_file, open_table
from bot.tagging.rejects import RejectFile, default_reject_path
from bot.tagging.rows import ColumnMap, ParsedRow, resolve_columns
from bot.tagging.rules import AUM_TREND_DAYS

__all__ = ["ImportFileError", "ImportReport", "import_customers"]

log = logging.getLogger(__name__)

CHUNK_ROWS = 10_000
# A rejected row and why.
Rejected = tuple[ParsedRow, str]


def import_customers(
    db: Database,
    path: Path,
    *,
    settings: Settings,
    now: datetime,
    reject_path: Path | None = None,
    dry_run: bool = False,
    max_reject_ratio: float = 0.01,
    progress: bool = False,
    chunk_size: int = CHUNK_ROWS,
    parallel: bool | None = None,
) -> ImportReport:
    """Import one export file under the policy in this module's docstring.

    `now` is the import's time: ages are computed on its date, history rows carry it.
    Raises ImportFileError for structural problems; a refused import returns a report whose
    `refused_reason` is set. `parallel` parses in a second process (default: for files of
    16 MB and more); the outcome is the same either way.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if not 0.0 <= max_reject_ratio <= 1.0:
        raise ValueError("max_reject_ratio must be between 0 and 1")
    path = Path(path)
    config = settings.import_
    tz = ZoneInfo(settings.timezone)
    facts = inspect_file(path, config.encoding)
    with open_table(facts) as table:
        columns = resolve_columns(path, table.header, config.columns)
        report = ImportReport(
            file=path,
            sha256=facts.sha256,
            kind=facts.kind,
            encoding=facts.encoding,
            dry_run=dry_run,
            max_reject_ratio=max_reject_ratio,
            columns_not_in_file=columns.not_in_file,
            ignored_columns=columns.ignored,
        )
        job = ParseJob(
            facts=facts,
            columns=columns,
            config=config,
            now=now,
            timezone=settings.timezone,
            dialect=db.dialect,
            chunk_size=chunk_size,
        )
        fork = should_fork(facts) if parallel is None else parallel
        rejects = RejectFile(reject_path or default_reject_path(path), table.header)
        with (
            rejects,
            progress_bar(table, enabled=progress) as tick,
            chunks(job, table, fork=fork) as stream,
            db.engine.connect() as conn,
        ):
            transaction = conn.begin()
            run = None
            try:
                run = _Run(conn, report, columns, rejects, now=now, tz=tz)
                run.read(stream, tick=tick)
                _decide(report)
                if report.refused or dry_run:
                    transaction.rollback()
                else:
                    run.finish()
                    transaction.commit()
                    report.import_id = run.import_id
            except BaseException:
                transaction.rollback()
                raise
            finally:
                if run is not None:
                    run.reset()
            report.reject_path = rejects.finish()
    (log.warning if report.refused else log.info)("import %s", report.summary())
    return report


def _decide(report: ImportReport) -> None:
    if report.rejected and report.reject_ratio > report.max_reject_ratio:
        report.refused_reason = (
            f"{report.rejected} of {report.rows} rows ({report.reject_ratio:.2%}) were "
            f"rejected, more than the {report.max_reject_ratio:.2%} allowed "
            "(--max-reject-ratio); nothing was written"
        )


class _Run:
    """One import inside its transaction: chunks of rows in, batched writes out."""

    def __init__(
        self,
        conn: Connection,
        report: ImportReport,
        columns: ColumnMap,
        rejects: RejectFile,
        *,
        now: datetime,
        tz: tzinfo,
    ) -> None:
        self._conn = conn
        self._report = report
        self._columns = columns
        self._rejects = rejects
        self._now = now
        self._tz = tz
        self._store = open_store(conn, columns.attributes)
        self._dialect = conn.dialect.name
        self._stamp = stored_forms.stamp(self._dialect, now)
        self._mobiles: MobileIndex | None = None
        self._forgotten: frozenset[str] = frozenset()
        self.import_id = start_run(conn, file_name=report.file.name, sha256=report.sha256, now=now)

    def read(self, stream: Iterator[Chunk], *, tick: Callable[[int], None]) -> None:
        if "mobile" in self._columns.positions:
            self._mobiles = MobileIndex.load(self._conn)
        # Few (one per erasure request), so read once rather than per chunk.
        self._forgotten = forgotten_customers(self._conn)
        for chunk in stream:
            self._chunk(chunk.rows)
            tick(chunk.position)

    def reset(self) -> None:
        self._store.reset()

    def finish(self) -> None:
        report = self._report
        self._store.close()
        # The AUM trend reads raw amounts this far back and no further; older ones go.
        report.aum_history_expired = expire_history(
            self._conn, "aum", until=self._now - timedelta(days=AUM_TREND_DAYS)
        )
        finish_run(
            self._conn,
            self.import_id,
            {
                "finished_at": self._now,
                "status": "partial" if report.rejected else "imported",
                "rows": report.rows,
                "matched": report.linked,
                "unmatched": report.valid - report.linked - report.forgotten,
                "rejected": report.rejected,
                "changed": report.changed,
                "message": report.summary(),
            },
        )

    # -- one chunk ---------------------------------------------------------------------------

    def _chunk(self, rows: list[ParsedRow]) -> None:
        self._report.rows += len(rows)
        good = [p for p in rows if p.error is None]
        rejected = [(p, p.error) for p in rows if p.error is not None]
        if rejected and self._forgotten:
            rejected = self._without_forgotten(rejected)
        if rejected:
            self._rejects.write([(p.line, p.cells, error) for p, error in rejected])
            self._report.rejected += len(rejected)
            room = SAMPLE_LIMIT - len(self._report.reject_samples)
            # Errors quote bad values; a mobile in the wrong column must not reach a screen.
            samples = ((p.line, scrub(error)) for p, error in rejected[:room])
            self._report.reject_samples.extend(samples)
        if good:
            self._store_rows(good)

    def _without_forgotten(self, rejected: list[Rejected]) -> list[Rejected]:
        """The rejected rows that are not a forgotten customer's: theirs are counted as
        forgotten and go nowhere, not even to the reject file."""
        links = self._store.links([p.key for p, _ in rejected if p.key])
        kept: list[Rejected] = []
        for parsed, error in rejected:
            if self._is_forgotten(parsed, links.get(parsed.key)):
                self._report.forgotten += 1
            else:
                kept.append((parsed, error))
        return kept

    def _is_forgotten(self, row: ParsedRow, stored_link: str | None) -> bool:
        """Whether the row names a forgotten customer: by its external_userid, its mobile
        or the link its key already has."""
        forgotten = self._forgotten
        if stored_link in forgotten or row.external_userid in forgotten:
            return True
        if row.mobile is None or self._mobiles is None:
            return False
        return any(target in forgotten for target in self._mobiles.lookup(row.mobile))

    def _store_rows(self, rows: list[ParsedRow]) -> None:
        store = self._store
        ids = list({row.external_userid for row in rows if row.external_userid is not None})
        known = store.known_customers(ids)
        matches = candidates(
            ((row.external_userid, row.mobile) for row in rows), known, self._mobiles
        )
        stored = store.stored([row.key for row in rows])
        holders = store.holders(list({target for _, target in matches if target is not None}))
        # Links given out in this chunk; the stored ones come from `holders`. A link a row
        # gives up stays taken until the next chunk, so no statement ever breaks uniqueness.
        claimed: dict[str, str] = {}
        inserts: list[InsertRow] = []
        updates: list[ProfileUpdate] = []
        history: list[HistoryRow] = []
        forgotten = self._forgotten
        for row, (outcome, target) in zip(rows, matches, strict=True):
            old = stored.get(row.key)
            if forgotten and (target in forgotten or (old is not None and old[0] in forgotten)):
                # `bot forget` erased this customer: the row refills nothing, link included.
                self._report.forgotten += 1
                continue
            if target is not None:
                holder = claimed.get(target, holders.get(target))
                if holder is not None and holder != row.key:
                    outcome, target = "conflict", None
            link, method = self._link(row, old, outcome, target)
            if link is not None:
                claimed[link] = row.key
            if old is None:
                inserts.append((row.key, link, method, *row.values, self._stamp, self._stamp))
                if link is not None:
                    self._report.changed_external_userids.add(link)
            elif (new := (link, method, *row.values)) != old:
                pairs = enumerate(zip(old, new, strict=True))
                changed = tuple(i for i, (before, after) in pairs if before != after)
                updates.append(ProfileUpdate(row.key, new, changed))
                history.extend(self._changes(row.key, old, new, changed))
            else:
                self._report.unchanged += 1
        store.insert(inserts)
        store.update(updates, self._stamp)
        store.history(history)
        self._report.inserted += len(inserts)
        self._report.updated += len(updates)
        self._report.history_rows += len(history)

    def _link(
        self,
        row: ParsedRow,
        old: tuple[Any, ...] | None,
        outcome: Outcome,
        target: str | None,
    ) -> tuple[str | None, str | None]:
        """Count the row's outcome; return the link and match method to store."""
        report = self._report
        old_link = old[0] if old is not None else None
        if outcome == "id":
            report.matched_by_id += 1
        elif outcome == "mobile":
            report.matched_by_mobile += 1
        elif outcome == "ambiguous":
            report.ambiguous += 1
            report.sample(row.line, row.key, row.mobile, "mobile matches several customers")
        elif outcome == "conflict":
            report.conflicts += 1
            report.sample(row.line, row.key, row.mobile, "customer linked to another key")
        elif old_link is not None:
            report.kept_match += 1
        else:
            report.unmatched += 1
            report.sample(row.line, row.key, row.mobile, "no WeCom customer found")
        link: str | None = None
        method: str | None = None
        if target is not None:
            link, method = target, outcome
        elif old is not None:
            # Matching is kept stable: a row that finds nobody today keeps yesterday's link.
            link, method = old_link, old[1]
        if link is not None:
            report.linked += 1
        return link, method

    def _changes(
        self, key: str, old: tuple[Any, ...], new: tuple[Any, ...], changed: tuple[int, ...]
    ) -> list[HistoryRow]:
        """History rows for what really changed (positions `changed` of the store's
        columns), and who must be re-tagged for it."""
        names = self._store.columns
        dialect = self._dialect
        decode = stored_forms.decode
        # Attributes first, then the link; the match method alone is no history.
        changes = [
            (names[i], decode(dialect, names[i], old[i]), decode(dialect, names[i], new[i]))
            for i in changed
            if i >= ATTRIBUTES_FROM
        ]
        old_link, link = old[0], new[0]
        if link != old_link:
            changes.append(("external_userid", old_link, link))
        changed_ids = self._report.changed_external_userids
        if link is not None:
            changed_ids.add(link)
        if old_link is not None and old_link != link:
            changed_ids.add(old_link)  # its tags from this bank data must go
        return [
            (
                key,
                name,
                stored_forms.history_text(name, before, self._tz),
                stored_forms.history_text(name, after, self._tz),
                self._stamp,
                self.import_id,
            )
            for name, before, after in changes
        ]
