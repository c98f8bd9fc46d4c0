"""Rate limits shared through the database: two instances (two engines on one database)
together stay within every window, a member's cap holds across them, unused reservations
are given back, and a 45009 pause reaches both."""

from __future__ import annotations

import asyncio
import math
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.app import make_limiter
from bot.clock import SHANGHAI, Clock, FrozenClock
from bot.config import MemberMessageLimit, QuotaConfig, build_settings
from bot.store.db import Database
from bot.store.models import RateSlice
from bot.wecom.ratelimit import MemoryRateLimiter
from bot.wecom.ratelimit_db import PATH_PREFIX, DatabaseRateLimiter
from tests.multiinstance.stepped import SteppedClock

QUOTA = QuotaConfig(per_minute=50, per_hour=250, budget_ratio=0.8)  # 40 a minute, 200 an hour
MEMBERS = MemberMessageLimit(per_minute=5, per_hour=12)
PATH = "externalcontact/get"
SEND = "message/send"


def limiter(db: Database, clock: Clock, quota: QuotaConfig = QUOTA) -> DatabaseRateLimiter:
    return DatabaseRateLimiter(quota, MEMBERS, clock, db)


def most_in_any_window(times: list[float], span: float) -> int:
    """The most calls in any closed window [t - span, t]."""
    ordered = sorted(times)
    best = lo = 0
    for hi, t in enumerate(ordered):
        while ordered[lo] < t - span:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def hammer(
    limiters: list[DatabaseRateLimiter],
    clock: FrozenClock,
    *,
    path: str,
    member: str | None = None,
    seconds: float,
    step: float = 0.25,
    threads_per_instance: int = 2,
    tries: int = 3,
) -> list[list[float]]:
    """Every `step` of simulated time, threads on each instance try `tries` calls at once;
    returns the times of the calls granted, per instance."""
    granted: list[list[float]] = [[] for _ in limiters]
    start = threading.Barrier(len(limiters) * threads_per_instance)

    def work(limiter: DatabaseRateLimiter) -> int:
        start.wait()  # all threads reserve at the same moment
        return sum(1 for _ in range(tries) if limiter.reserve(path, member) == 0.0)

    end = clock.timestamp() + seconds
    with ThreadPoolExecutor(len(limiters) * threads_per_instance) as pool:
        while clock.timestamp() < end:
            now = clock.timestamp()
            futures = [
                (index, pool.submit(work, lim))
                for index, lim in enumerate(limiters)
                for _ in range(threads_per_instance)
            ]
            for index, future in futures:
                granted[index].extend([now] * future.result())
            clock.advance(step)
    return granted


def test_two_instances_together_stay_within_the_minute_and_hour_budget(
    db: Database, twin: Database, clock: FrozenClock
) -> None:
    a, b = limiter(db, clock), limiter(twin, clock)
    per_instance = hammer([a, b], clock, path=PATH, seconds=8 * 60)
    granted = per_instance[0] + per_instance[1]
    assert most_in_any_window(granted, 60) <= a.per_minute == 40
    assert most_in_any_window(granted, 3600) <= a.per_hour == 200
    # Not by refusing everything: both got calls, the hour's budget was reached within the
    # eight minutes, and the busiest minute used most of its budget.
    assert all(per_instance)
    assert len(granted) >= 196
    assert most_in_any_window(granted, 60) >= 36
    assert a.stats.local + b.stats.local > 0  # some calls never needed a round trip


def test_a_members_cap_holds_across_instances(
    db: Database, twin: Database, clock: FrozenClock
) -> None:
    a, b = limiter(db, clock), limiter(twin, clock)
    for member in ("zhangli", "wangjianhua"):
        per_instance = hammer([a, b], clock, path=SEND, member=member, seconds=6 * 60)
        granted = per_instance[0] + per_instance[1]
        # WeCom counts 30/min and 1000/h; here 5 and 12, each window 1 s longer for safety.
        assert most_in_any_window(granted, 61) <= 5
        assert most_in_any_window(granted, 3601) <= 12
        assert len(granted) == 12
        assert most_in_any_window(granted, 61) == 5


@pytest.fixture
def stepped() -> SteppedClock:
    return SteppedClock(datetime(2026, 11, 23, 9, 0, 0, tzinfo=SHANGHAI))


async def test_waiting_tasks_on_two_instances_share_the_budget(
    db: Database, twin: Database, stepped: SteppedClock
) -> None:
    """Three tasks per instance call `acquire` 40 times each (240 > the hour's 200): they
    wait for the windows, and no window ever holds more than its budget."""
    a, b = limiter(db, stepped), limiter(twin, stepped)
    start = stepped.timestamp()
    granted: list[float] = []

    async def worker(lim: DatabaseRateLimiter, rng: random.Random) -> None:
        for _ in range(40):
            await lim.acquire(PATH)
            granted.append(stepped.timestamp())
            await stepped.sleep(rng.uniform(0.0, 0.5))

    tasks = [
        asyncio.create_task(worker(lim, random.Random(i)))
        for i, lim in enumerate([a, a, a, b, b, b])
    ]
    await stepped.drive(tasks)
    assert len(granted) == 240
    assert most_in_any_window(granted, 60) <= 40
    assert most_in_any_window(granted, 3600) <= 200
    # The first 200 went out at about the minute budget (five minutes), the rest once the
    # first calls had left the hour window.
    ordered = sorted(granted)
    assert ordered[199] - start < 6 * 60
    assert ordered[200] - start > 3600


def test_unused_reservations_are_given_back(
    db: Database, twin: Database, clock: FrozenClock
) -> None:
    a = limiter(db, clock)
    first = math.floor(clock.timestamp())
    for _ in range(5):
        assert a.reserve(PATH) == 0.0

    def reserved_in(second: int) -> int:
        query = select(RateSlice.used).where(
            RateSlice.bucket == PATH_PREFIX + PATH,
            RateSlice.resolution == 1,
            RateSlice.start == second,
        )
        return int(twin.call(lambda s: s.scalar(query)) or 0)

    # The block grew with the demand: more was reserved than used, and all of it counts.
    assert reserved_in(first) > 5
    assert limiter(twin, clock).usage()[PATH].minute == reserved_in(first)
    clock.advance(1)
    assert a.reserve(PATH) == 0.0  # the next round trip hands back what was not used
    assert reserved_in(first) == 5


def test_a_45009_pause_reaches_the_other_instance(
    db: Database, twin: Database, clock: FrozenClock
) -> None:
    a, b = limiter(db, clock), limiter(twin, clock)
    assert a.reserve(PATH) == 0.0
    assert b.reserve(PATH) == 0.0
    b.pause(PATH, 60)
    assert b.reserve(PATH) == pytest.approx(60)
    # A block `a` reserved earlier in this second may still be spent in it; from the next
    # slice on, `a` asks the database and finds the pause.
    clock.advance(1)
    assert a.reserve(PATH) == pytest.approx(59)
    assert limiter(twin, clock).reserve(PATH) == pytest.approx(59)  # a third instance too
    # A shorter pause never shortens a longer one; other paths are not paused.
    a.pause(PATH, 5)
    assert limiter(db, clock).reserve(PATH) == pytest.approx(59)
    assert a.reserve("externalcontact/list") == 0.0
    assert b.usage()[PATH].paused_seconds == pytest.approx(59)
    clock.advance(59)
    assert a.reserve(PATH) == 0.0
    assert b.reserve(PATH) == 0.0


async def test_acquire_sleeps_through_a_pause_set_elsewhere(
    db: Database, twin: Database, clock: FrozenClock
) -> None:
    a, b = limiter(db, clock), limiter(twin, clock)
    a.pause(PATH, 60)
    before = clock.timestamp()
    await b.acquire(PATH)
    assert clock.timestamp() - before == pytest.approx(60)
    assert b.usage()[PATH].minute == 1


def test_usage_counts_every_instance(db: Database, twin: Database, clock: FrozenClock) -> None:
    a, b = limiter(db, clock), limiter(twin, clock)
    for lim in (a, b):
        clock.advance(2)  # one call a second or less: one unit per round trip, none idle
        assert lim.reserve(PATH) == 0.0
    usage = a.usage()
    assert (usage[PATH].minute, usage[PATH].hour) == (2, 2)
    assert (usage[PATH].minute_limit, usage[PATH].hour_limit) == (40, 200)
    clock.advance(62)
    assert a.usage()[PATH].minute == 0
    assert b.usage()[PATH].hour == 2


class _Unreachable:
    """A database that fails every round trip."""

    def call(self, fn: object) -> object:
        raise ConnectionError("database unreachable")


def test_a_failed_round_trip_takes_nothing(
    db: Database, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = limiter(db, clock)
    for _ in range(3):  # the path's block grows; each member call needs its own round trip
        assert a.reserve(SEND, "zhangli") == 0.0
    trips = a.stats.round_trips
    monkeypatch.setattr(a, "_db", _Unreachable())
    with pytest.raises(ConnectionError):
        a.reserve(SEND, "zhangli")
    monkeypatch.undo()
    # The unit the failed call had taken from the path's block is back in it.
    assert a.reserve(SEND) == 0.0
    assert a.stats.round_trips == trips


def test_create_app_picks_the_limiter_by_engine_and_switch(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    def pick(mode: str) -> type:
        settings = build_settings({"wecom": {"shared_rate_limits": mode}}, {}, base_dir=tmp_path)
        return type(make_limiter(settings, clock, db))

    assert pick("auto") is (DatabaseRateLimiter if db.is_postgres else MemoryRateLimiter)
    assert pick("on") is DatabaseRateLimiter
    assert pick("off") is MemoryRateLimiter
    # YAML reads a bare on/off as a boolean.
    settings = build_settings({"wecom": {"shared_rate_limits": True}}, {}, base_dir=tmp_path)
    assert settings.wecom.shared_rate_limits == "on"


async def test_reserve_async_shares_the_budget_with_the_other_instance(
    db: Database, twin: Database, clock: FrozenClock
) -> None:
    # The event-loop path (round trips on a worker thread) counts like `reserve`: two
    # instances, one using each, never exceed the minute's 40 together.
    a, b = limiter(db, clock), limiter(twin, clock)
    granted = 0
    for _ in range(60):
        granted += await a.reserve_async(PATH) == 0.0
        granted += b.reserve(PATH) == 0.0
    assert granted == 40
    assert await a.reserve_async(PATH) > 0
