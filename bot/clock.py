"""The only place that reads the wall clock.

Everything else takes a `Clock` (or a `now` value) so tests can freeze and advance time
without sleeping.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Protocol
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")


class Clock(Protocol):
    """Source of time: an aware `now()`, epoch seconds, and an awaitable sleep."""

    @property
    def tz(self) -> tzinfo: ...

    def now(self) -> datetime: ...

    def timestamp(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock, in the configured zone (Asia/Shanghai by default)."""

    def __init__(self, tz: tzinfo = SHANGHAI) -> None:
        self._tz = tz

    @property
    def tz(self) -> tzinfo:
        return self._tz

    def now(self) -> datetime:
        return datetime.now(self._tz)

    def timestamp(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class FrozenClock:
    """A clock that moves only when told to; `sleep` advances it instantly.

    `sleep` still yields to the event loop once, so concurrent tasks interleave the way
    they would with a real clock.
    """

    def __init__(self, start: datetime, tz: tzinfo = SHANGHAI) -> None:
        if start.tzinfo is None:
            raise ValueError("FrozenClock needs an aware datetime")
        self._now = start.astimezone(tz)
        self._tz = tz
        self.slept: list[float] = []

    @property
    def tz(self) -> tzinfo:
        return self._tz

    def now(self) -> datetime:
        return self._now

    def timestamp(self) -> float:
        return self._now.timestamp()

    def advance(self, delta: timedelta | float) -> None:
        if not isinstance(delta, timedelta):
            delta = timedelta(seconds=delta)
        self._now = self._now + delta

    def set(self, when: datetime) -> None:
        self._now = when.astimezone(self._tz)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if seconds > 0:
            self.advance(seconds)
        await asyncio.sleep(0)


def utc_from_timestamp(ts: float) -> datetime:
    """Turn epoch seconds into an aware UTC datetime (pure conversion, no clock read)."""
    return datetime.fromtimestamp(ts, UTC)


def as_utc(value: datetime) -> datetime:
    """Normalise a datetime read back from a database that drops the zone (SQLite)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


__all__ = ["SHANGHAI", "Clock", "FrozenClock", "SystemClock", "as_utc", "utc_from_timestamp"]
