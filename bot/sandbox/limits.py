"""WeCom's configurable limits: API quota, per-member message cap, mass-send receive cap."""

from __future__ import annotations

import calendar
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Literal

CapPeriod = Literal["month", "week", "day"]

DAY = 86_400


@dataclass(frozen=True)
class ReceiveCap:
    """How many mass-sends one customer or group may receive per natural period.

    The current 92135 rule is one per day of the month, per month (`per_period=None` with
    period "month"); an admin may switch to 7 per week or 1 per day. Older docs said 4 a
    month, so the count is configurable too.
    """

    period: CapPeriod = "month"
    per_period: int | None = None

    @classmethod
    def days_of_month(cls) -> ReceiveCap:
        return cls("month", None)

    @classmethod
    def weekly(cls, per_week: int = 7) -> ReceiveCap:
        return cls("week", per_week)

    @classmethod
    def daily(cls, per_day: int = 1) -> ReceiveCap:
        return cls("day", per_day)

    def period_key(self, ts: float, tz: tzinfo) -> tuple[int, ...]:
        when = datetime.fromtimestamp(ts, tz)
        if self.period == "month":
            return (when.year, when.month)
        if self.period == "week":
            iso = when.isocalendar()
            return (iso.year, iso.week)
        return (when.year, when.month, when.day)

    def allowance(self, ts: float, tz: tzinfo) -> int:
        if self.per_period is not None:
            return self.per_period
        if self.period == "month":
            when = datetime.fromtimestamp(ts, tz)
            return calendar.monthrange(when.year, when.month)[1]
        return 7 if self.period == "week" else 1


@dataclass
class Limits:
    """Every limit the sandbox enforces; tests shrink them to reach the edges quickly."""

    api_per_minute: int = 10_000
    api_per_hour: int = 150_000
    # Per-path overrides of (per_minute, per_hour).
    api_path_limits: dict[str, tuple[int, int]] = field(default_factory=dict)
    member_messages_per_minute: int = 30
    member_messages_per_hour: int = 1000
    token_ttl: int = 7200
    # externalcontact/get and friends do not see a new follow relation for this long.
    contact_visibility_lag: float = 1.0
    follow_user_page_size: int = 500
    welcome_code_ttl: int = 20
    response_code_ttl: int = 72 * 3600
    media_ttl: int = 3 * DAY
    reminders_per_day: int = 3
    # Undocumented: WeCom gives no errcode for a fourth reminder, so this one is a guess.
    remind_limit_errcode: int = 45009
    receive_cap: ReceiveCap = field(default_factory=ReceiveCap.days_of_month)
    # How many members the app can see for the 81017 rule; None counts the visible members.
    visible_member_count: int | None = None
    text_message_bytes: int = 2048
    mass_text_bytes: int = 4000
    mass_attachments: int = 9
    mass_external_userids: int = 10_000
    mass_chat_ids: int = 2000

    def path_quota(self, path: str) -> tuple[int, int]:
        return self.api_path_limits.get(path, (self.api_per_minute, self.api_per_hour))


class SlidingWindow:
    """Counts events within the last `seconds`; old ones fall out as time moves."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._events: deque[float] = deque()

    def count(self, now: float) -> int:
        self._trim(now)
        return len(self._events)

    def add(self, now: float) -> None:
        self._trim(now)
        self._events.append(now)

    def _trim(self, now: float) -> None:
        while self._events and self._events[0] <= now - self.seconds:
            self._events.popleft()


class PathQuota:
    """WeCom's per-API minute and hour quota, with its penalty block after a breach."""

    def __init__(self) -> None:
        self.minute = SlidingWindow(60)
        self.hour = SlidingWindow(3600)
        self.blocked_until = 0.0

    def admit(self, now: float, per_minute: int, per_hour: int) -> str | None:
        """None when the call may proceed; else which window refused it."""
        if now < self.blocked_until:
            return "penalty"
        if self.hour.count(now) >= per_hour:
            # An hour breach blocks for 60 minutes, a minute breach for 60 s (90454).
            self.blocked_until = now + 3600
            return "hour"
        if self.minute.count(now) >= per_minute:
            self.blocked_until = now + 60
            return "minute"
        self.minute.add(now)
        self.hour.add(now)
        return None


class MemberMessageCap:
    """The per-app, per-member 30/min and 1000/h cap on app messages."""

    def __init__(self) -> None:
        self.minute = SlidingWindow(60)
        self.hour = SlidingWindow(3600)

    def take(self, now: float, per_minute: int, per_hour: int) -> bool:
        if self.minute.count(now) >= per_minute or self.hour.count(now) >= per_hour:
            return False
        self.minute.add(now)
        self.hour.add(now)
        return True
