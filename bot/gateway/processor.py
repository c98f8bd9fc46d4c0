"""Background processing of the inbox: claim due rows under a lease, dispatch, record outcome."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from bot.clock import Clock
from bot.config import DispatcherConfig
from bot.dispatch import Registry, RetryLater
from bot.gateway.events import CallbackEvent, UnknownEvent
from bot.gateway.parse import parse_event
from bot.gateway.xmlsafe import XmlRejected
from bot.handlers.context import HandlerContext
from bot.logs import inbox_fields
from bot.store.db import Database
from bot.store.leases import claim_due
from bot.store.models import InboxEvent

log = logging.getLogger(__name__)

BACKOFF_CAP_SECONDS = 300
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

    def notify(self) -> None:
        """Wake the run loop (the gateway calls this after storing a new row)."""
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
        while True:
            batch = await self.db.run(self._claim)
            if not batch:
                return total
            # One batch, in id order, one row at a time: events about one entity (a group's
            # update then dismiss) are handled in the order they were stored. Outcomes are
            # written together, except that a row whose handler did real work is written
            # at once, so a long batch never outlives its lease with results unrecorded.
            outcomes: list[_Outcome] = []
            for row in batch:
                outcome = await self._process(row)
                outcomes.append(outcome)
                if outcome.handled:
                    await self._record(outcomes)
                    outcomes = []
            if outcomes:
                await self._record(outcomes)
            total += len(batch)
            if linger and len(batch) < self.batch_size:
                await asyncio.sleep(linger)

    def _claim(self, session: Session) -> list[Claimed]:
        # Attempts are counted at the claim, so a row that kills its worker every time
        # still runs out of attempts instead of being recovered forever.
        pairs = claim_due(
            session,
            InboxEvent,
            now=self.clock.now(),
            worker_id=self.worker_id,
            lease_seconds=self.config.lease_seconds,
            limit=self.batch_size,
            due_column=InboxEvent.next_attempt_at,
            ready_statuses=("pending",),
            leased_status="processing",
            extra_values={"attempts": InboxEvent.attempts + 1},
        )
        if not pairs:
            return []
        rows = session.execute(
            select(
                InboxEvent.id,
                InboxEvent.payload,
                InboxEvent.attempts,
                InboxEvent.next_attempt_at,
                InboxEvent.dedupe_key,
            )
            .where(InboxEvent.id.in_([row_id for row_id, _ in pairs]))
            .order_by(InboxEvent.id)
        ).all()
        return [
            Claimed(id=r[0], payload=r[1], attempts=r[2], next_attempt_at=r[3], dedupe_key=r[4])
            for r in rows
        ]

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
            event = parse_event(row.payload, max_bytes=max(len(row.payload), 1))
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
                    handled=True,
                )
            return self._failed_attempt(row, event, later)
        except Exception as exc:
            return self._failed_attempt(row, event, exc)
        self.counters.processed += 1
        log.info(
            "inbox row %d %s done", row.id, event.routing_key, extra=_fields(row, event, "done")
        )
        return self._outcome(row, status="done", handled=True)

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
            return self._outcome(row, status="failed", error=error, handled=True)
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
            handled=True,
        )

    def _outcome(
        self,
        row: Claimed,
        *,
        status: str,
        error: str | None = None,
        next_attempt_at: datetime | None = None,
        handled: bool = False,
    ) -> _Outcome:
        now = self.clock.now()
        if status == "pending":
            return _Outcome(row.id, status, next_attempt_at or now, None, error, handled)
        # A finished row keeps next_attempt_at as it was claimed: it is never due again.
        return _Outcome(row.id, status, row.next_attempt_at, now, error, handled)

    async def _record(self, outcomes: list[_Outcome]) -> None:
        """Write outcomes in one statement (executemany), each only where this worker still
        holds the lease: if it expired and another worker took the row over, theirs counts."""
        params = [
            {
                "row_id": o.row_id,
                "worker": self.worker_id,
                "new_status": o.status,
                "next_at": o.next_attempt_at,
                "done_at": o.processed_at,
                "error": o.error,
            }
            for o in outcomes
        ]

        def write(session: Session) -> list[_Outcome]:
            result = session.connection().execute(_RECORD, params)
            if int(getattr(result, "rowcount", -1)) == len(outcomes):
                return []
            # Some lease was lost (rare): find which rows another worker now holds.
            mine = set(
                session.scalars(
                    select(InboxEvent.id).where(
                        InboxEvent.id.in_([o.row_id for o in outcomes]),
                        InboxEvent.status.in_([o.status for o in outcomes]),
                        InboxEvent.leased_by.is_(None),
                    )
                )
            )
            return [o for o in outcomes if o.row_id not in mine]

        for outcome in await self.db.run(write):
            self.counters.lost_leases += 1
            log.warning(
                "inbox row %d: lease lost before recording %s", outcome.row_id, outcome.status
            )


_INBOX = InboxEvent.metadata.tables[InboxEvent.__tablename__]
# One compiled statement for every outcome: building a statement per row cost more CPU
# than the rest of the dispatch.
_RECORD = (
    update(_INBOX)
    .where(
        _INBOX.c.id == bindparam("row_id"),
        _INBOX.c.status == "processing",
        _INBOX.c.leased_by == bindparam("worker"),
    )
    .values(
        status=bindparam("new_status"),
        lease_until=None,
        leased_by=None,
        next_attempt_at=bindparam("next_at"),
        processed_at=bindparam("done_at"),
        last_error=bindparam("error"),
    )
)


@dataclass(frozen=True)
class _Outcome:
    """What processing a row came to, before it is written."""

    row_id: int
    status: str
    next_attempt_at: datetime
    processed_at: datetime | None
    error: str | None
    handled: bool


__all__ = ["Claimed", "InboxProcessor", "ProcessorCounters", "backoff_seconds"]
