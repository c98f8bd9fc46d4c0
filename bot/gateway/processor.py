"""Background processing of the inbox: claim due rows under a lease, dispatch, record outcome."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Connection, Integer, Update, bindparam, select, update

from bot.clock import Clock
from bot.config import DispatcherConfig
from bot.dispatch import Registry, RetryLater
from bot.gateway.events import CallbackEvent, UnknownEvent
from bot.gateway.parse import event_from_fields
from bot.gateway.xmlsafe import XmlRejected, parse_xml
from bot.handlers.context import HandlerContext
from bot.logs import inbox_fields
from bot.store.db import Database
from bot.store.models import InboxEvent

log = logging.getLogger(__name__)

BACKOFF_CAP_SECONDS = 300
# Parsed fields handed over by this process's gateway, kept for rows not yet claimed.
PARSED_CACHE_SIZE = 4096
# How long handled outcomes may wait to be written with the rest of their batch.
RECORD_EVERY_SECONDS = 1.0
ERROR_TEXT_LIMIT = 2000


@dataclass
class ProcessorCounters:
    """Outcomes since start, for metrics."""

    processed: int = 0
    unhandled: int = 0
    retried: int = 0
    failed: int = 0
    observer_errors: int = 0
    lost_leases: int = 0


@dataclass(frozen=True)
class Claimed:
    """A row this worker holds the lease on."""

    id: int
    payload: bytes
    attempts: int
    next_attempt_at: datetime
    dedupe_key: str = ""


def backoff_seconds(attempts: int) -> float:
    """Delay before the next try after `attempts` tries: 2, 4, 8, … capped at 300 s."""
    return float(min(BACKOFF_CAP_SECONDS, 2 ** min(attempts, 16)))


def _fields(row: Claimed, event: CallbackEvent | None, outcome: str) -> dict[str, Any]:
    """Structured log fields of one handled row; the customer only as a hash."""
    if event is None:
        return {"inbox_row": row.id, "inbox_key": row.dedupe_key[:12], "outcome": outcome}
    routing = event.routing_key
    customer = getattr(event, "external_user_id", None)
    return {
        "inbox_row": row.id,
        **inbox_fields(
            row.dedupe_key, routing.msg_type, routing.event, routing.change_type, customer
        ),
        "outcome": outcome,
    }


def _error_text(exc: BaseException) -> str:
    # Class and message only: tracebacks go to the log, and the payload never leaves the row.
    return f"{type(exc).__name__}: {exc}"[:ERROR_TEXT_LIMIT]


class InboxProcessor:
    """Works through due inbox rows; several processes may run one each (leases, SKIP LOCKED).

    A claim increments `attempts`, so a row whose handler kills the process every time still
    reaches `failed` instead of being recovered forever.
    """

    def __init__(
        self,
        db: Database,
        clock: Clock,
        registry: Registry,
        ctx: HandlerContext,
        config: DispatcherConfig,
        worker_id: str,
        *,
        batch_size: int = 20,
    ) -> None:
        self.db = db
        self.clock = clock
        self.registry = registry
        self.ctx = ctx
        self.config = config
        self.worker_id = worker_id
        self.batch_size = batch_size
        self.counters = ProcessorCounters()
        self._wake = asyncio.Event()
        self._parsed: dict[str, dict[str, Any]] = {}

    def notify(self) -> None:
        """Wake the run loop (the gateway calls this after storing a new row)."""
        self._wake.set()

    def accept(self, key: str, fields: dict[str, Any]) -> None:
        """The gateway stored a new row: keep its parsed fields, so this process need not
        parse the payload again when it claims the row, and wake the run loop.

        Only a shortcut: rows stored by another instance, or evicted from this bounded
        cache while the backlog is long, are parsed from their payload as before.
        """
        parsed = self._parsed
        if len(parsed) >= PARSED_CACHE_SIZE:
            del parsed[next(iter(parsed))]  # the oldest
        parsed[key] = fields
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Drain, then wait for a notify, `stop` or the poll interval; until `stop` is set."""
        linger = self.config.linger_ms / 1000
        while not stop.is_set():
            # Cleared before draining, so a notify that arrives mid-drain loops straight back.
            self._wake.clear()
            try:
                await self.drain(linger=linger)
            except Exception:
                log.exception("inbox drain failed; retrying after the poll interval")
            await self._wait(stop)

    async def _wait(self, stop: asyncio.Event) -> None:
        waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(
                waiters,
                timeout=self.config.poll_interval_seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def drain(self, *, linger: float = 0.0) -> int:
        """Process due rows until none remain; returns how many rows were processed.

        With `linger`, a claim that came back short is followed by a pause before the next
        one: under a steady stream rows arrive one by one, and waiting a moment lets one
        claim and one outcome write cover many of them instead of a transaction pair each.
        """
        total = 0
        unrecorded: list[_Outcome] = []
        while True:
            # The previous batch's outcomes and the next claim share one transaction: one
            # commit per batch instead of two.
            batch = await self._record_then_claim(unrecorded)
            unrecorded = []
            if not batch:
                return total
            # One batch, in id order, one row at a time: events about one entity (a group's
            # update then dismiss) are handled in the order they were stored. Outcomes are
            # written together after the batch, and sooner once handlers have taken
            # RECORD_EVERY_SECONDS, so a slow batch never outlives its lease with results
            # unrecorded. Handlers are idempotent: a crash before the write only means those
            # rows run again.
            since = self.clock.timestamp()
            try:
                for row in batch:
                    unrecorded.append(await self._process(row))
                    if self.clock.timestamp() - since >= RECORD_EVERY_SECONDS:
                        await self._record(unrecorded)
                        unrecorded = []
                        since = self.clock.timestamp()
            except asyncio.CancelledError:
                # Shutting down mid-batch: what was handled is written, so those rows do
                # not wait out their lease to run again after a restart.
                if unrecorded:
                    await self._record(unrecorded)
                raise
            total += len(batch)
            if linger and len(batch) < self.batch_size:
                # Not held unwritten through the pause.
                if unrecorded:
                    await self._record(unrecorded)
                    unrecorded = []
                await asyncio.sleep(linger)

    def _claim(self, connection: Connection) -> list[Claimed]:
        """Lease up to batch_size due rows: first those whose worker's lease ran out, then
        pending rows in due order. Attempts are counted at the claim, so a row that kills
        its worker every time still runs out of attempts instead of being recovered forever.

        Two UPDATE … WHERE id IN (SELECT … LIMIT n [FOR UPDATE SKIP LOCKED]) RETURNING
        statements, built once: the generic claim (bot/store/leases.py) builds four ORM
        statements per claim, which cost more CPU than the rows it claimed.
        """
        statements = _claim_statements(connection.dialect.name)
        now = self.clock.now()
        params = {
            "now": now,
            "until": now + timedelta(seconds=self.config.lease_seconds),
            "worker": self.worker_id,
            "limit": self.batch_size,
        }
        rows = list(connection.execute(statements.expired, params))
        if len(rows) < self.batch_size:
            params["limit"] = self.batch_size - len(rows)
            rows.extend(connection.execute(statements.pending, params))
        return sorted(
            (
                Claimed(id=r[0], payload=r[1], attempts=r[2], next_attempt_at=r[3], dedupe_key=r[4])
                for r in rows
            ),
            key=lambda claimed: claimed.id,
        )

    async def _record_then_claim(self, outcomes: list[_Outcome]) -> list[Claimed]:
        def work(connection: Connection) -> tuple[list[_Outcome], list[Claimed]]:
            lost = self._write_outcomes(connection, outcomes) if outcomes else []
            return lost, self._claim(connection)

        # Outcomes may be lost to a power cut: the rows then run again (see `call_core`).
        lost, batch = await self.db.run_core(work, durable=False)
        self._report_lost(lost)
        return batch

    async def _process(self, row: Claimed) -> _Outcome:
        if row.attempts > self.config.max_attempts:
            # The previous try was the last one allowed and its worker never reported back.
            self.counters.failed += 1
            log.error(
                "inbox row %d abandoned after %d attempts",
                row.id,
                row.attempts - 1,
                extra=_fields(row, None, "failed"),
            )
            return self._outcome(
                row,
                status="failed",
                error=f"abandoned: lease expired after {row.attempts - 1} attempts",
            )
        try:
            fields = self._parsed.pop(row.dedupe_key, None)
            if fields is None:
                fields = parse_xml(row.payload, max_bytes=max(len(row.payload), 1))
        except XmlRejected as exc:
            # The gateway parsed it once; retrying cannot make it parse.
            log.error(
                "inbox row %d no longer parses: %s",
                row.id,
                exc.reason,
                extra=_fields(row, None, "failed"),
            )
            self.counters.failed += 1
            return self._outcome(row, status="failed", error=_error_text(exc))
        event = event_from_fields(fields)
        await self._observe(event, row)
        handler = self.registry.resolve(event)
        if handler is None:
            self._log_unhandled(event, row)
            self.counters.unhandled += 1
            return self._outcome(row, status="unhandled")
        try:
            await handler(event, self.ctx)
        except RetryLater as later:
            if row.attempts < self.config.max_attempts:
                self.counters.retried += 1
                log.info(
                    "inbox row %d %s not ready (%s); again in %.1f s",
                    row.id,
                    event.routing_key,
                    later.reason,
                    later.seconds * row.attempts,
                    extra=_fields(row, event, "retry"),
                )
                return self._outcome(
                    row,
                    status="pending",
                    error=f"retry later: {later.reason}",
                    next_attempt_at=self.clock.now()
                    + timedelta(seconds=later.seconds * row.attempts),
                )
            return self._failed_attempt(row, event, later)
        except Exception as exc:
            return self._failed_attempt(row, event, exc)
        self.counters.processed += 1
        if log.isEnabledFor(logging.INFO):  # the fields hash the customer id: not for nothing
            log.info(
                "inbox row %d %s done", row.id, event.routing_key, extra=_fields(row, event, "done")
            )
        return self._outcome(row, status="done")

    async def _observe(self, event: CallbackEvent, row: Claimed) -> None:
        # Observers are for audit and metrics: one failing must not block or retry the
        # handler, so its error is logged and counted, not propagated.
        for observer in self.registry.observers:
            try:
                await observer(event, self.ctx)
            except Exception:
                self.counters.observer_errors += 1
                log.exception("observer %r failed on inbox row %d", observer, row.id)

    def _log_unhandled(self, event: CallbackEvent, row: Claimed) -> None:
        if isinstance(event, UnknownEvent) and event.error:
            log.warning(
                "inbox row %d %s kept unhandled: %s",
                row.id,
                event.routing_key,
                event.error,
                extra=_fields(row, event, "unhandled"),
            )
        else:
            log.info(
                "inbox row %d %s has no handler",
                row.id,
                event.routing_key,
                extra=_fields(row, event, "unhandled"),
            )

    def _failed_attempt(self, row: Claimed, event: CallbackEvent, exc: Exception) -> _Outcome:
        error = _error_text(exc)
        if row.attempts >= self.config.max_attempts:
            log.error(
                "inbox row %d %s failed for good after %d attempts: %s",
                row.id,
                event.routing_key,
                row.attempts,
                error,
                exc_info=exc,
                extra=_fields(row, event, "failed"),
            )
            self.counters.failed += 1
            return self._outcome(row, status="failed", error=error)
        delay = backoff_seconds(row.attempts)
        log.warning(
            "inbox row %d %s attempt %d failed, retrying in %.0f s: %s",
            row.id,
            event.routing_key,
            row.attempts,
            delay,
            error,
            exc_info=exc,
            extra=_fields(row, event, "retry"),
        )
        self.counters.retried += 1
        return self._outcome(
            row,
            status="pending",
            error=error,
            next_attempt_at=self.clock.now() + timedelta(seconds=delay),
        )

    def _outcome(
        self,
        row: Claimed,
        *,
        status: str,
        error: str | None = None,
        next_attempt_at: datetime | None = None,
    ) -> _Outcome:
        now = self.clock.now()
        if status == "pending":
            return _Outcome(row.id, status, next_attempt_at or now, None, error)
        # A finished row keeps next_attempt_at as it was claimed: it is never due again.
        return _Outcome(row.id, status, row.next_attempt_at, now, error)

    async def _record(self, outcomes: list[_Outcome]) -> None:
        lost = await self.db.run_core(lambda c: self._write_outcomes(c, outcomes), durable=False)
        self._report_lost(lost)

    def _write_outcomes(self, connection: Connection, outcomes: list[_Outcome]) -> list[_Outcome]:
        """Write outcomes, each only where this worker still holds the lease: if it expired
        and another worker took the row over, theirs counts. Returns the outcomes whose lease
        was lost.

        Rows finished without an error (the usual case) are written by status, one UPDATE
        … WHERE id IN (…) each, stamped with the last of their handling times; the rest in
        one executemany. Per-row parameters cost more than the rest of the write.
        """
        plain: dict[str, list[_Outcome]] = {}
        detailed: list[_Outcome] = []
        for outcome in outcomes:
            if outcome.processed_at is not None and outcome.error is None:
                plain.setdefault(outcome.status, []).append(outcome)
            else:
                detailed.append(outcome)
        written = 0
        for status, group in plain.items():
            result = connection.execute(
                _FINISH,
                {
                    "ids": [o.row_id for o in group],
                    "worker": self.worker_id,
                    "new_status": status,
                    "done_at": max(o.processed_at for o in group if o.processed_at),
                },
            )
            written += int(getattr(result, "rowcount", 0))
        if detailed:
            params = [
                {
                    "row_id": o.row_id,
                    "worker": self.worker_id,
                    "new_status": o.status,
                    "next_at": o.next_attempt_at,
                    "done_at": o.processed_at,
                    "error": o.error,
                }
                for o in detailed
            ]
            written += int(getattr(connection.execute(_RECORD, params), "rowcount", 0))
        if written == len(outcomes):
            return []
        # Some lease was lost (rare): find which rows another worker now holds.
        mine = set(
            connection.scalars(
                select(_INBOX.c.id).where(
                    _INBOX.c.id.in_([o.row_id for o in outcomes]),
                    _INBOX.c.status.in_([o.status for o in outcomes]),
                    _INBOX.c.leased_by.is_(None),
                )
            )
        )
        return [o for o in outcomes if o.row_id not in mine]

    def _report_lost(self, lost: list[_Outcome]) -> None:
        for outcome in lost:
            self.counters.lost_leases += 1
            log.warning(
                "inbox row %d: lease lost before recording %s", outcome.row_id, outcome.status
            )


_INBOX = InboxEvent.metadata.tables[InboxEvent.__tablename__]


def _release(rows: ColumnElement[bool], **values: Any) -> Update:
    """Write an outcome where this worker still holds the lease, and release it."""
    return (
        update(_INBOX)
        .where(rows, _INBOX.c.status == "processing", _INBOX.c.leased_by == bindparam("worker"))
        .values(status=bindparam("new_status"), lease_until=None, leased_by=None, **values)
    )


# Compiled once: building a statement per row cost more CPU than the rest of the dispatch.
# Any outcome, one row per parameter set (executemany).
_RECORD = _release(
    _INBOX.c.id == bindparam("row_id"),
    next_attempt_at=bindparam("next_at"),
    processed_at=bindparam("done_at"),
    last_error=bindparam("error"),
)
# Rows finished without an error, by status: next_attempt_at stays as claimed (never due
# again).
_FINISH = _release(
    _INBOX.c.id.in_(bindparam("ids", expanding=True)),
    processed_at=bindparam("done_at"),
    last_error=None,
)


class _ClaimStatements(NamedTuple):
    expired: Update
    pending: Update


@lru_cache(maxsize=4)
def _claim_statements(dialect: str) -> _ClaimStatements:
    """The inbox claims for one dialect: leases run out, then pending rows due by `now`."""

    def claim(status: str, due: ColumnElement[bool]) -> Update:
        chosen = (
            select(_INBOX.c.id)
            .where(_INBOX.c.status == status, due)
            # Ordered by the (status, next_attempt_at) index alone, so the scan stops at
            # the limit instead of sorting the whole backlog.
            .order_by(_INBOX.c.next_attempt_at)
            .limit(bindparam("limit", type_=Integer))
        )
        if dialect == "postgresql":
            chosen = chosen.with_for_update(skip_locked=True)
        return (
            update(_INBOX)
            .where(_INBOX.c.id.in_(chosen))
            .values(
                status="processing",
                lease_until=bindparam("until"),
                leased_by=bindparam("worker"),
                attempts=_INBOX.c.attempts + 1,
            )
            .returning(
                _INBOX.c.id,
                _INBOX.c.payload,
                _INBOX.c.attempts,
                _INBOX.c.next_attempt_at,
                _INBOX.c.dedupe_key,
            )
        )

    return _ClaimStatements(
        expired=claim("processing", _INBOX.c.lease_until < bindparam("now")),
        pending=claim("pending", _INBOX.c.next_attempt_at <= bindparam("now")),
    )


@dataclass(frozen=True)
class _Outcome:
    """What processing a row came to, before it is written."""

    row_id: int
    status: str
    next_attempt_at: datetime
    processed_at: datetime | None
    error: str | None


__all__ = ["Claimed", "InboxProcessor", "ProcessorCounters", "backoff_seconds"]
