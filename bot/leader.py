"""One scheduler clock among several instances: a lease row in `leader_leases`.

Every instance tries to take or extend the lease every `scheduler.renew_seconds`; the one
holding it runs the leader-only jobs (calendar, retag, segments, housekeeping). A leader
that dies stops renewing, and another instance takes over once the lease has run out
(`scheduler.lease_seconds`). A leader shutting down cleanly gives the lease up at once.

Why a lease row and not a PostgreSQL advisory lock: it works the same on SQLite and
PostgreSQL; an advisory lock lives and dies with one pooled connection, so a recycled or
dropped connection ends leadership without the process noticing (and another can then
lock while this one still runs jobs), whereas a lease has an end time everyone can read.

Fencing. Before each leader-only job the instance re-checks in the database that it still
holds the lease (and extends it): a leader that stalled past its lease (a long GC or VM
pause) and wakes up after another took over finds `holder` changed and does not act. A job
already running when leadership moves is not interrupted; that is safe because what the
jobs write is keyed in the data (slot runs, outbox keys), the lease only keeps the work
from being done N times. `term` grows by one at each change of holder.

Times are the instances' clocks; they are assumed to agree within a few seconds (NTP).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.clock import Clock, as_utc
from bot.store.db import Database
from bot.store.inserts import insert_new
from bot.store.models import LeaderLease

log = logging.getLogger("bot.leader")

SCHEDULER_LEASE: Final = "scheduler"


def holder_id(worker: str) -> str:
    """A lease holder name: the worker id plus a random part, since two containers can
    share a host name and a pid (1) and must still be told apart."""
    return f"{worker[:100]}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class LeaseInfo:
    """A lease as stored: who holds it, until when, since when, in which term."""

    name: str
    holder: str
    lease_until: datetime
    term: int
    acquired_at: datetime
    renewed_at: datetime

    def held_at(self, now: datetime) -> bool:
        return now < self.lease_until


def read_lease(session: Session, name: str = SCHEDULER_LEASE) -> LeaseInfo | None:
    """The lease row, for `bot status` and /metrics in any process."""
    row = session.get(LeaderLease, name)
    if row is None:
        return None
    return LeaseInfo(
        name=row.name,
        holder=row.holder,
        lease_until=as_utc(row.lease_until),
        term=row.term,
        acquired_at=as_utc(row.acquired_at),
        renewed_at=as_utc(row.renewed_at),
    )


def hold(
    session: Session,
    *,
    name: str,
    holder: str,
    now: datetime,
    lease_seconds: float,
    take_over: bool = True,
) -> int | None:
    """Extend the lease if `holder` has it; with `take_over`, also take it when it is free
    or has run out. Returns the term held, or None.

    The row is read under a row lock on PostgreSQL (SQLite transactions are IMMEDIATE), so
    two instances can never both see an expired lease and both take it.
    """
    until = now + timedelta(seconds=lease_seconds)
    row = session.execute(
        select(LeaderLease).where(LeaderLease.name == name).with_for_update()
    ).scalar_one_or_none()
    if row is None:
        if not take_over:
            return None
        return session.execute(
            insert_new(session.get_bind().dialect.name, LeaderLease, ["name"])
            .values(
                name=name,
                holder=holder,
                lease_until=until,
                term=1,
                acquired_at=now,
                renewed_at=now,
            )
            .returning(LeaderLease.term)
        ).scalar_one_or_none()
    renewal = update(LeaderLease).where(LeaderLease.name == name)
    if row.holder == holder:
        # Ours, even if it ran out: nobody else has acted since, or the holder would differ.
        term = row.term
        renewal = renewal.values(lease_until=until, renewed_at=now)
    elif take_over and as_utc(row.lease_until) <= now:
        term = row.term + 1
        renewal = renewal.values(
            holder=holder, lease_until=until, renewed_at=now, acquired_at=now, term=term
        )
    else:
        return None
    session.execute(renewal.execution_options(synchronize_session=False))
    return term


def give_up(session: Session, *, name: str, holder: str, now: datetime) -> bool:
    """End `holder`'s lease now so another instance need not wait for it to run out."""
    result = session.execute(
        update(LeaderLease)
        .where(LeaderLease.name == name, LeaderLease.holder == holder)
        .values(lease_until=now, renewed_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


class LeaderElection:
    """This instance's side of one lease: `renew` on a timer, `confirm` before each
    leader-only job, `release` at shutdown; `is_leader` for metrics and status."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        holder: str,
        name: str = SCHEDULER_LEASE,
        lease_seconds: float = 30.0,
        renew_seconds: float = 10.0,
    ) -> None:
        if not 0 < renew_seconds < lease_seconds:
            raise ValueError("renew_seconds must be positive and shorter than lease_seconds")
        self.db = db
        self.clock = clock
        self.holder = holder
        self.name = name
        self.lease_seconds = lease_seconds
        self.renew_seconds = renew_seconds
        self._term: int | None = None
        self._until: datetime | None = None

    @property
    def is_leader(self) -> bool:
        """Whether this instance held the lease at its last contact and, by its own clock,
        the lease has not run out since. No database read."""
        return self._until is not None and self.clock.now() < self._until

    @property
    def term(self) -> int | None:
        """The term of the lease this instance holds, if it leads."""
        return self._term if self.is_leader else None

    async def renew(self) -> bool:
        """Take the lease if it is free or ran out, extend it if ours; True if we lead."""
        return await self._hold(take_over=True)

    async def confirm(self) -> bool:
        """Fencing check before a leader-only job: True only if the database still says
        this instance holds the lease (which is extended); never takes it over."""
        return await self._hold(take_over=False)

    def release(self) -> None:
        """Give the lease up (at shutdown). Runs on the calling thread; errors are logged."""
        if self._until is None:
            return
        now = self.clock.now()
        self._forget()
        try:
            self.db.call(lambda s: give_up(s, name=self.name, holder=self.holder, now=now))
        except Exception as exc:  # shutting down: the lease runs out by itself
            log.warning("could not give up the %s lease: %s", self.name, type(exc).__name__)
        else:
            log.info("gave up the %s lease", self.name)

    async def _hold(self, *, take_over: bool) -> bool:
        now = self.clock.now()
        try:
            term = await self.db.run(
                lambda s: hold(
                    s,
                    name=self.name,
                    holder=self.holder,
                    now=now,
                    lease_seconds=self.lease_seconds,
                    take_over=take_over,
                )
            )
        except Exception as exc:
            # The database is unreachable: keep what we know; it runs out on its own.
            log.warning("%s lease not renewed: %s", self.name, type(exc).__name__)
            return self.is_leader
        if term is None:
            if self._until is not None:
                log.warning("no longer leading %s (term %s)", self.name, self._term)
            self._forget()
            return False
        if term != self._term:
            log.info("leading %s (term %d) as %s", self.name, term, self.holder)
        self._term = term
        # Counted from before the round trip, so our view never outlasts the stored lease.
        self._until = now + timedelta(seconds=self.lease_seconds)
        return True

    def _forget(self) -> None:
        self._term = None
        self._until = None


__all__ = [
    "SCHEDULER_LEASE",
    "LeaderElection",
    "LeaseInfo",
    "give_up",
    "hold",
    "holder_id",
    "read_lease",
]
