"""Client-side rate limits: WeCom's per-API quota and the per-member app-message cap."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Final, Protocol

from bot.clock import Clock
from bot.config import MemberMessageLimit, QuotaConfig

MESSAGE_SEND: Final = "message/send"
MEMBER_LIMITED_PATHS: Final = frozenset({MESSAGE_SEND})
"""Paths whose calls also count against the recipient member's own cap."""

# WeCom drops app messages over a member's cap *silently*, so the bot must never cross
# it; one extra second per window absorbs latency jitter between our clock and theirs.
MEMBER_WINDOW_MARGIN_SECONDS: Final = 1.0

_SWEEP_EVERY: Final = 1024


@dataclass(frozen=True)
class BucketUsage:
    """One API path's calls in its current minute and hour windows, against the limits."""

    minute: int
    minute_limit: int
    hour: int
    hour_limit: int
    paused_seconds: float


class RateLimiter(Protocol):
    """What the client needs from a limiter; a database-backed one can share it across
    processes (the client itself only calls `acquire` and `pause`)."""

    async def acquire(self, path: str, member: str | None = None) -> None:
        """Wait (with the clock's sleep) until a call to `path` is allowed, then take it."""
        ...

    def reserve(self, path: str, member: str | None = None) -> float:
        """0.0 and the call taken if allowed now; else seconds to wait, nothing taken."""
        ...

    async def reserve_async(self, path: str, member: str | None = None) -> float:
        """`reserve` for the event loop: a limiter that may need I/O does it off the loop."""
        ...

    def pause(self, path: str, seconds: float) -> None:
        """Allow no call to `path` for `seconds` (WeCom answered 45009)."""
        ...

    def usage(self) -> dict[str, BucketUsage]:
        """Quota used now per API path (for metrics)."""
        ...


class SlidingWindow:
    """At most `limit` events in any `span` seconds, counted in slots of `resolution` s
    (0 keeps exact timestamps)."""

    __slots__ = ("_slots", "_total", "limit", "resolution", "span")

    def __init__(self, limit: int, span: float, resolution: float = 0.0) -> None:
        if limit < 1 or span <= 0 or resolution < 0:
            raise ValueError("a window needs limit >= 1, span > 0 and resolution >= 0")
        self.limit = limit
        self.span = span
        self.resolution = resolution
        # [slot start, count], oldest first.
        self._slots: deque[list[float]] = deque()
        self._total = 0

    def _expiry(self, start: float) -> float:
        return start + self.resolution + self.span

    def _expire(self, now: float) -> None:
        while self._slots and self._expiry(self._slots[0][0]) <= now:
            self._total -= int(self._slots.popleft()[1])

    def wait(self, now: float) -> float:
        """Seconds until one more event is allowed (0.0 if allowed now)."""
        self._expire(now)
        if self._total < self.limit:
            return 0.0
        to_free = self._total - self.limit + 1
        for start, count in self._slots:
            to_free -= int(count)
            if to_free <= 0:
                return max(self._expiry(start) - now, 0.0)
        raise AssertionError("unreachable: the slots hold the whole total")

    def add(self, now: float) -> None:
        start = math.floor(now / self.resolution) * self.resolution if self.resolution else now
        if self._slots and self._slots[-1][0] == start:
            self._slots[-1][1] += 1
        else:
            self._slots.append([start, 1])
        self._total += 1

    def used(self, now: float) -> int:
        """Events still inside the window at `now`."""
        self._expire(now)
        return self._total

    def __len__(self) -> int:
        return self._total


class MemoryRateLimiter:
    """Per-process limiter: per-API minute and hour windows at `budget_ratio` of WeCom's
    quota, and per-member minute and hour windows for `message/send`.

    Windows are *sliding*: a call is allowed only if the calls already made in the last
    `span` seconds number fewer than the limit. Sliding windows are at least as strict as
    the fixed (natural minute/hour) windows WeCom may count in, so staying under ours keeps
    us under theirs whichever it uses. Per-API windows count in one-second (minute window)
    and one-minute (hour window) slots to keep memory flat at 8,000 calls a minute; a slot
    is forgotten only once its *last* possible instant has left the window, which errs on
    the safe side. Per-member windows keep exact timestamps (at most 1,000 per member).

    Enough for one process (the SQLite deployment, or one dispatcher that owns all
    outbound calls). Not thread-safe: use it from one event loop.
    """

    def __init__(self, quota: QuotaConfig, member_limit: MemberMessageLimit, clock: Clock) -> None:
        self._clock = clock
        self.per_minute = max(1, math.floor(quota.per_minute * quota.budget_ratio))
        self.per_hour = max(1, math.floor(quota.per_hour * quota.budget_ratio))
        self._member_limit = member_limit
        self._paths: dict[str, tuple[SlidingWindow, SlidingWindow]] = {}
        self._members: dict[tuple[str, str], tuple[SlidingWindow, SlidingWindow]] = {}
        self._paused_until: dict[str, float] = {}
        self._since_sweep = 0

    def _path_windows(self, path: str) -> tuple[SlidingWindow, SlidingWindow]:
        windows = self._paths.get(path)
        if windows is None:
            windows = (
                SlidingWindow(self.per_minute, 60.0, resolution=1.0),
                SlidingWindow(self.per_hour, 3600.0, resolution=60.0),
            )
            self._paths[path] = windows
        return windows

    def _member_windows(self, path: str, member: str) -> tuple[SlidingWindow, SlidingWindow]:
        key = (path, member)
        windows = self._members.get(key)
        if windows is None:
            windows = (
                SlidingWindow(self._member_limit.per_minute, 60.0 + MEMBER_WINDOW_MARGIN_SECONDS),
                SlidingWindow(self._member_limit.per_hour, 3600.0 + MEMBER_WINDOW_MARGIN_SECONDS),
            )
            self._members[key] = windows
        return windows

    def _windows(self, path: str, member: str | None) -> list[SlidingWindow]:
        windows = list(self._path_windows(path))
        if member is not None and path in MEMBER_LIMITED_PATHS:
            windows.extend(self._member_windows(path, member))
        return windows

    async def reserve_async(self, path: str, member: str | None = None) -> float:
        return self.reserve(path, member)  # in memory: nothing to wait for

    def reserve(self, path: str, member: str | None = None) -> float:
        """0.0 and the call taken if allowed now; else seconds to wait, nothing taken."""
        now = self._clock.timestamp()
        self._maybe_sweep(now)
        windows = self._windows(path, member)
        wait = max(self._paused_until.get(path, 0.0) - now, 0.0)
        for window in windows:
            wait = max(wait, window.wait(now))
        if wait > 0:
            return wait
        for window in windows:
            window.add(now)
        return 0.0

    async def acquire(self, path: str, member: str | None = None) -> None:
        """Wait (with the clock's sleep) until a call to `path` is allowed, then take it."""
        while (wait := self.reserve(path, member)) > 0:
            await self._clock.sleep(wait)

    def pause(self, path: str, seconds: float) -> None:
        """Allow no call to `path` for `seconds` (WeCom answered 45009)."""
        until = self._clock.timestamp() + seconds
        self._paused_until[path] = max(self._paused_until.get(path, 0.0), until)

    def usage(self) -> dict[str, BucketUsage]:
        """Quota used now per API path: per-API buckets only (per-member windows are many
        and short-lived, and their paths' own buckets already count every call)."""
        now = self._clock.timestamp()
        return {
            path: BucketUsage(
                minute=minute.used(now),
                minute_limit=minute.limit,
                hour=hour.used(now),
                hour_limit=hour.limit,
                paused_seconds=max(self._paused_until.get(path, 0.0) - now, 0.0),
            )
            for path, (minute, hour) in sorted(self._paths.items())
        }

    def _maybe_sweep(self, now: float) -> None:
        # Members come and go; forget the ones with nothing left in their windows so the
        # map does not grow with every member the bot ever messaged.
        self._since_sweep += 1
        if self._since_sweep < _SWEEP_EVERY:
            return
        self._since_sweep = 0
        idle = [
            key
            for key, windows in self._members.items()
            if all(window.wait(now) == 0.0 and len(window) == 0 for window in windows)
        ]
        for key in idle:
            del self._members[key]
        for path in [p for p, until in self._paused_until.items() if until <= now]:
            del self._paused_until[path]


__all__ = [
    "MEMBER_LIMITED_PATHS",
    "MEMBER_WINDOW_MARGIN_SECONDS",
    "MESSAGE_SEND",
    "BucketUsage",
    "MemoryRateLimiter",
    "RateLimiter",
    "SlidingWindow",
]
