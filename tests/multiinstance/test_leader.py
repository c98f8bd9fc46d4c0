"""The scheduler's leader lease: one instance leads, another takes over once the lease runs
out, a stale leader does not act, and only the leader's Ticker runs leader-only jobs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import pytest

from bot.calendar.service import CalendarService
from bot.clock import FrozenClock
from bot.config import ConfigError, Settings, build_settings
from bot.leader import LeaderElection, read_lease
from bot.scheduler import Ticker
from bot.store.db import Database
from bot.wecom.client import WeComClient


def election(db: Database, clock: FrozenClock, holder: str) -> LeaderElection:
    return LeaderElection(db, clock, holder=holder, lease_seconds=30, renew_seconds=10)


async def test_exactly_one_of_two_instances_leads(
    db: Database, twin: Database, clock: FrozenClock
) -> None:
    a, b = election(db, clock, "host-a:1:aa"), election(twin, clock, "host-b:1:bb")
    results = await asyncio.gather(a.renew(), b.renew())
    assert sorted(results) == [False, True]
    assert a.is_leader != b.is_leader
    leader, follower = (a, b) if a.is_leader else (b, a)
    # Renewing every 10 s keeps the lease; the other keeps trying and never gets it.
    for _ in range(12):
        clock.advance(10)
        assert list(await asyncio.gather(follower.renew(), leader.renew())) == [False, True]
    lease = db.call(read_lease)
    assert lease is not None
    assert (lease.holder, lease.term) == (leader.holder, 1)
    assert leader.term == 1
    assert follower.term is None


async def test_another_takes_over_after_the_leader_stops_renewing(
    db: Database, twin: Database, clock: FrozenClock
) -> None:
    a, b = election(db, clock, "host-a:1:aa"), election(twin, clock, "host-b:1:bb")
    assert await a.renew()
    # `a` dies: no more renewals. Until its lease has run out, nobody else may lead.
    clock.advance(29)
    assert not await b.renew()
    assert a.is_leader
    clock.advance(1)
    assert not a.is_leader  # by its own clock too, without asking the database
    assert await b.renew()
    assert b.term == 2
    # `a` comes back: the lease is b's now, and a cannot take it.
    assert not await a.renew()
    assert not await a.confirm()
    lease = db.call(read_lease)
    assert lease is not None
    assert lease.holder == b.holder


async def test_a_stale_leader_is_fenced_off_by_the_database(
    db: Database, twin: Database, clock: FrozenClock
) -> None:
    """`a` stalled past its lease (a long pause) and its clock lags: by its own reckoning it
    still leads, but the check before each job asks the database, which says otherwise."""
    lagging = FrozenClock(clock.now())
    a, b = election(db, lagging, "host-a:1:aa"), election(twin, clock, "host-b:1:bb")
    assert await a.renew()
    clock.advance(31)
    lagging.advance(20)
    assert await b.renew()
    assert a.is_leader  # its local view is stale...
    assert not await a.confirm()  # ...the fencing check is not
    assert not a.is_leader
    assert await b.confirm()


async def test_a_clean_shutdown_hands_over_at_once(
    db: Database, twin: Database, clock: FrozenClock
) -> None:
    a, b = election(db, clock, "host-a:1:aa"), election(twin, clock, "host-b:1:bb")
    assert await a.renew()
    assert not await b.renew()
    a.release()
    assert not a.is_leader
    assert await b.renew()  # no need to wait out the 30 s


def ticker_for(db: Database, clock: FrozenClock, holder: str, tmp_path: Path) -> Ticker:
    settings: Settings = build_settings({}, {}, base_dir=tmp_path)
    wecom = WeComClient(settings.wecom, db=db, clock=clock)
    return Ticker(
        settings=settings,
        db=db,
        clock=clock,
        wecom=wecom,
        wake=[],
        calendar=CalendarService(settings=settings, db=db, clock=clock, wecom=wecom),
        leader=election(db, clock, holder),
    )


async def test_only_the_leaders_ticker_runs_leader_only_jobs(
    db: Database, twin: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    a = ticker_for(db, clock, "host-a:1:aa", tmp_path)
    b = ticker_for(twin, clock, "host-b:1:bb", tmp_path)
    ran: list[str] = []

    def job(name: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            ran.append(name)

        return run

    assert a.leader is not None
    assert b.leader is not None
    assert await a.leader.renew()
    assert not await b.leader.renew()
    assert (a.is_leader, b.is_leader) == (True, False)
    assert await a.as_leader(job("a"))
    assert not await b.as_leader(job("b"))
    assert ran == ["a"]
    # `a` stops renewing and `b` takes over; `a`'s next job finds it no longer leads.
    clock.advance(timedelta(seconds=45))
    assert await b.leader.renew()
    assert not await a.as_leader(job("a"))
    assert await b.as_leader(job("b"))
    assert ran == ["a", "b"]
    for ticker in (a, b):
        await ticker.wecom.aclose()


async def test_a_ticker_without_a_lease_runs_every_job(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    ticker = ticker_for(db, clock, "solo", tmp_path)
    ticker.leader = None
    ran: list[int] = []

    async def job() -> None:
        ran.append(1)

    assert ticker.is_leader
    assert await ticker.as_leader(job)
    assert ran == [1]
    await ticker.wecom.aclose()


def test_renewal_must_fit_in_the_lease(db: Database, clock: FrozenClock) -> None:
    with pytest.raises(ValueError, match="shorter than lease_seconds"):
        LeaderElection(db, clock, holder="x", lease_seconds=10, renew_seconds=10)


def test_the_lease_settings_are_checked() -> None:
    assert build_settings({}, {}).scheduler.lease_seconds == 30
    with pytest.raises(ConfigError, match=r"scheduler: .*at most half of lease_seconds"):
        build_settings({"scheduler": {"lease_seconds": 30, "renew_seconds": 20}}, {})
