"""The in-memory limiter: per-API budget windows and the per-member app-message cap."""

from __future__ import annotations

from datetime import datetime

import pytest

from bot.clock import SHANGHAI, FrozenClock
from bot.config import MemberMessageLimit, QuotaConfig
from bot.wecom.ratelimit import MEMBER_WINDOW_MARGIN_SECONDS, MemoryRateLimiter, SlidingWindow

SEND = "message/send"


@pytest.fixture
def clock() -> FrozenClock:
    # Mid-minute, so fixed-window arithmetic would give different answers than sliding.
    return FrozenClock(datetime(2026, 11, 23, 9, 0, 30, tzinfo=SHANGHAI))


def limiter(clock: FrozenClock, **quota: float) -> MemoryRateLimiter:
    return MemoryRateLimiter(QuotaConfig(**quota), MemberMessageLimit(), clock)


def test_default_budget_is_eighty_percent_of_quota(clock):
    default = limiter(clock)

    assert (default.per_minute, default.per_hour) == (8_000, 120_000)


def test_thirty_messages_to_a_member_pass_and_the_31st_waits(clock):
    rl = limiter(clock)

    assert [rl.reserve(SEND, "zhangsan") for _ in range(30)] == [0.0] * 30
    wait = rl.reserve(SEND, "zhangsan")

    assert wait == pytest.approx(60 + MEMBER_WINDOW_MARGIN_SECONDS)
    assert rl.reserve(SEND, "lisi") == 0.0  # another member is unaffected
    clock.advance(wait - 0.5)
    assert rl.reserve(SEND, "zhangsan") > 0  # still inside the window
    clock.advance(0.5)
    assert rl.reserve(SEND, "zhangsan") == 0.0


def test_a_refused_reserve_takes_nothing(clock):
    rl = limiter(clock, per_minute=40, budget_ratio=1.0)
    for _ in range(30):
        rl.reserve(SEND, "zhangsan")

    for _ in range(100):
        assert rl.reserve(SEND, "zhangsan") > 0  # refused calls do not use path quota

    assert [rl.reserve(SEND, "lisi") for _ in range(10)] == [0.0] * 10
    assert rl.reserve(SEND, "wangwu") > 0  # now the path's 40 are used


def test_member_window_slides(clock):
    rl = limiter(clock)
    for _ in range(15):
        assert rl.reserve(SEND, "zhangsan") == 0.0
    clock.advance(30)
    for _ in range(15):
        assert rl.reserve(SEND, "zhangsan") == 0.0
    clock.advance(31)  # the first 15 have left the window; the last 15 have not

    assert [rl.reserve(SEND, "zhangsan") for _ in range(15)] == [0.0] * 15
    assert rl.reserve(SEND, "zhangsan") == pytest.approx(30.0)


def test_hourly_cap_of_1000_per_member(clock):
    rl = limiter(clock)
    start = clock.timestamp()
    granted: list[float] = []
    while len(granted) < 1000:
        wait = rl.reserve(SEND, "zhangsan")
        if wait:
            clock.advance(wait)
        else:
            granted.append(clock.timestamp())

    wait = rl.reserve(SEND, "zhangsan")

    assert granted[-1] - start < 3600  # 1000 fit in the hour at 30 a minute...
    assert wait > 60  # ...and the 1001st waits for the hour window, not the minute one
    assert clock.timestamp() + wait >= start + 3600 + MEMBER_WINDOW_MARGIN_SECONDS
    for earlier in range(len(granted) - 30):
        assert granted[earlier + 30] - granted[earlier] >= 60  # never 31 in a minute


def test_member_cap_only_for_message_send(clock):
    rl = limiter(clock)

    assert [rl.reserve("externalcontact/get", "zhangsan") for _ in range(50)] == [0.0] * 50


def test_per_minute_budget(clock):
    rl = limiter(clock, per_minute=100, per_hour=100_000, budget_ratio=0.8)

    assert [rl.reserve("externalcontact/mark_tag") for _ in range(80)] == [0.0] * 80
    assert rl.reserve("externalcontact/mark_tag") > 0
    assert rl.reserve("externalcontact/remark") == 0.0  # each API path has its own budget


def test_per_hour_budget(clock):
    rl = limiter(clock, per_minute=10_000, per_hour=100, budget_ratio=0.8)
    for _ in range(80):
        assert rl.reserve("externalcontact/get") == 0.0

    wait = rl.reserve("externalcontact/get")

    assert 3600 <= wait <= 3660


def test_pause_blocks_the_path_only(clock):
    rl = limiter(clock)

    rl.pause("externalcontact/get", 60)

    assert rl.reserve("externalcontact/get") == pytest.approx(60)
    assert rl.reserve("externalcontact/list") == 0.0
    clock.advance(60)
    assert rl.reserve("externalcontact/get") == 0.0


def test_a_shorter_pause_does_not_shorten_a_longer_one(clock):
    rl = limiter(clock)
    rl.pause("externalcontact/get", 3600)

    rl.pause("externalcontact/get", 60)

    assert rl.reserve("externalcontact/get") == pytest.approx(3600)


async def test_acquire_waits_on_the_clock(clock):
    rl = limiter(clock)
    for _ in range(30):
        await rl.acquire(SEND, "zhangsan")
    assert clock.slept == []

    await rl.acquire(SEND, "zhangsan")

    assert clock.slept == [pytest.approx(60 + MEMBER_WINDOW_MARGIN_SECONDS)]


def test_idle_members_are_forgotten(clock):
    rl = limiter(clock)
    for n in range(2000):
        rl.reserve(SEND, f"member-{n}")
    clock.advance(3700)

    for _ in range(1100):
        rl.reserve("externalcontact/get")

    assert len(rl._members) == 0


def test_sliding_window_counts_slots_conservatively():
    window = SlidingWindow(limit=2, span=60, resolution=1.0)
    window.add(10.9)
    window.add(11.0)

    # The first event may have happened as late as 11.0: it leaves at 71.0.
    assert window.wait(12.0) == pytest.approx(59.0)
    assert window.wait(71.0) == 0.0


def test_sliding_window_rejects_nonsense():
    with pytest.raises(ValueError, match="limit"):
        SlidingWindow(limit=0, span=60)
