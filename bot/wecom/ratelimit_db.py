"""WeCom rate limits shared through the database, for several `bot serve` instances.

The same windows as `MemoryRateLimiter`: per API path a minute and an hour window at
`budget_ratio` of WeCom's quota, and per member a minute and an hour window (each 1 s longer)
for `message/send`; plus the 45009 pause. What changes is where the count lives.

Counting. Time is cut into fixed slices, 1 s for the minute windows and 60 s for the hour
windows; a `rate_slices` row holds the calls reserved against one bucket in one slice. A
slice is counted until its *last* instant has left the window (as in `SlidingWindow`), so a
call made anywhere inside the slice is counted for at least the full window after it.

Reserving. One short transaction: lock the bucket rows (an upsert on `rate_buckets`, in key
order, so two reservations never wait on each other in a cycle), sum the slices still inside
each window, and only if every window has room add the grant to the current slices. The
row lock serialises reservations per bucket on PostgreSQL (READ COMMITTED: the sums are read
after the lock, so they include every reservation committed before it); SQLite transactions
begin IMMEDIATE (bot/store/db.py), so they are serialised anyway. The transaction ends
before the WeCom call is made; nothing is held across it.

The in-process cache, and its trade-off. A reservation may take a *block* of up to
`max_block` calls, sized from this process's rate in the last second it called, and never
more than a quarter of the room left in the tightest window (others need some too). Calls
are then taken from the block without a round trip, but only within the 1 s slice the block
was counted in: every call is therefore counted in the slice it is made in, and the shared
count is never below the calls actually made, whatever the number of instances (the
`budget_ratio` headroom is not needed for this). The price is capacity, not safety: units
reserved and not used in their second stay counted until this process gives them back at
its next reservation (or, if it dies, until their slices leave the windows), so near the
limit another instance may be told to wait while a few units sit idle; and near the limit
blocks shrink to one call, i.e. one round trip per call. A quiet process (under one call a
second on a path) makes one round trip per call.

What lags. A 45009 pause recorded by one instance reaches the others at their next
reservation, at most one slice (1 s) later: calls from a block already reserved may go out
in that second. Slices are cut by each instance's own clock: keep the hosts on NTP; a skew
of `d` seconds can let about d/60 of a minute's budget through twice, which the default
20 % headroom (`budget_ratio` 0.8) absorbs for a skew of several seconds.

Blocking. `reserve` (the client's synchronous interface, used by the outbox sender) makes
its round trip on the calling thread, i.e. on the event loop, when the cache cannot answer;
`acquire` makes it on a worker thread. `pause` writes and `usage` (a metrics scrape) reads
on the calling thread; both are rare. On SQLite a write waits for the one writer lock, so
`create_app` picks this limiter for PostgreSQL only unless told otherwise
(`wecom.shared_rate_limits`).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from sqlalchemy import and_, case, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bot.clock import Clock
from bot.config import MemberMessageLimit, QuotaConfig
from bot.store.db import Database
from bot.store.models import RateBucket, RateSlice
from bot.wecom.ratelimit import MEMBER_LIMITED_PATHS, MEMBER_WINDOW_MARGIN_SECONDS, BucketUsage

log = logging.getLogger(__name__)

MINUTE_SLICE: Final = 1
HOUR_SLICE: Final = 60
SLICES: Final = (MINUTE_SLICE, HOUR_SLICE)
MAX_BLOCK: Final = 16
ROOM_SHARE: Final = 4
"""A grant takes at most 1/ROOM_SHARE of the room left in the tightest window."""
KEEP_SECONDS: Final = 2 * 3600
"""Slices older than this are outside every window and are deleted."""
PATH_PREFIX: Final = "path:"
MEMBER_PREFIX: Final = "member:"
_DB_SWEEP_EVERY: Final = 512
_LOCAL_SWEEP_EVERY: Final = 1024


@dataclass(frozen=True)
class Window:
    """At most `limit` calls in any `span` seconds, counted in slices of `resolution` s."""

    limit: int
    span: float
    resolution: int

    def oldest_counted(self, now: float) -> int:
        """The earliest slice start still counted at `now`: a slice counts until its last
        instant has left the window (start + resolution + span > now)."""
        return math.floor(now - self.resolution - self.span) + 1

    def frees_at(self, start: int) -> float:
        """When the slice starting at `start` stops being counted."""
        return start + self.resolution + self.span


@dataclass(frozen=True)
class Bucket:
    """A counted thing (an API path, or one member's app messages) and its windows."""

    key: str
    windows: tuple[Window, ...]


@dataclass(frozen=True)
class Ask:
    """Reserve `want` calls (at least one) against `bucket`."""

    bucket: Bucket
    want: int


@dataclass(frozen=True)
class GiveBack:
    """Calls reserved in the slices of `second` and never made."""

    key: str
    second: int
    units: int


@dataclass(frozen=True)
class Verdict:
    """What a reservation found: units granted per key (all asks or none), and otherwise
    the seconds to wait per key; the pause each bucket row carries."""

    granted: dict[str, int]
    waits: dict[str, float]
    paused_until: dict[str, float]

    @property
    def wait(self) -> float:
        return max(self.waits.values(), default=0.0)


@dataclass
class LimiterStats:
    """How calls were decided: from the in-process block, or by a database round trip."""

    local: int = 0
    round_trips: int = 0
    refused: int = 0


@dataclass
class _Block:
    second: int
    remaining: int
    taken: int = 0


def _whole_ms(wait: float) -> float:
    """A wait rounded up to the millisecond: a sleep always moves a clock that counts
    in microseconds (a FrozenClock), so `acquire` cannot spin on a sliver of a second."""
    return math.ceil(wait * 1000) / 1000


def slice_start(now: float, resolution: int) -> int:
    return math.floor(now / resolution) * resolution


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def lock_buckets(session: Session, keys: Sequence[str]) -> dict[str, float]:
    """Create the bucket rows that are missing and lock them all, in key order; returns
    each bucket's `paused_until`. The no-op DO UPDATE is what takes the row lock."""
    if not keys:
        return {}
    insert = postgresql.insert if _is_postgres(session) else sqlite.insert
    statement = (
        insert(RateBucket)
        .on_conflict_do_update(
            index_elements=[RateBucket.key], set_={"paused_until": RateBucket.paused_until}
        )
        .returning(RateBucket.key, RateBucket.paused_until)
    )
    # Parameters apart from the statement keep it in SQLAlchemy's compiled cache (a
    # multi-row .values() is compiled anew each time); sent as one multi-row INSERT, in
    # key order.
    rows = session.connection().execute(
        statement, [{"key": key, "paused_until": 0.0} for key in sorted(keys)]
    )
    return {key: float(until) for key, until in rows.all()}


def give_back(session: Session, back: GiveBack) -> None:
    for resolution in SLICES:
        session.execute(
            update(RateSlice)
            .where(
                RateSlice.bucket == back.key,
                RateSlice.resolution == resolution,
                RateSlice.start == slice_start(back.second, resolution),
                RateSlice.used >= back.units,
            )
            .values(used=RateSlice.used - back.units)
        )


def window_sums(
    session: Session, buckets: Sequence[Bucket], now: float
) -> dict[tuple[str, int], tuple[int, int]]:
    """(bucket key, resolution) → (calls counted at `now`, oldest counted slice start)."""
    counted = [
        and_(
            RateSlice.bucket == bucket.key,
            RateSlice.resolution == window.resolution,
            RateSlice.start >= window.oldest_counted(now),
        )
        for bucket in buckets
        for window in bucket.windows
    ]
    if not counted:
        return {}
    rows = session.execute(
        select(
            RateSlice.bucket,
            RateSlice.resolution,
            func.sum(RateSlice.used),
            func.min(RateSlice.start),
        )
        .where(or_(*counted), RateSlice.used > 0)
        .group_by(RateSlice.bucket, RateSlice.resolution)
    ).all()
    return {(key, int(res)): (int(used), int(oldest)) for key, res, used, oldest in rows}


def add_to_slices(session: Session, grants: dict[str, int], now: float) -> None:
    rows = [
        {"bucket": key, "resolution": res, "start": slice_start(now, res), "used": units}
        for key, units in sorted(grants.items())
        for res in SLICES
    ]
    insert = postgresql.insert if _is_postgres(session) else sqlite.insert
    statement = insert(RateSlice)
    upsert = statement.on_conflict_do_update(
        index_elements=[RateSlice.bucket, RateSlice.resolution, RateSlice.start],
        set_={"used": RateSlice.used + statement.excluded.used},
    )
    session.connection().execute(upsert, rows)


def reserve_in_db(
    session: Session,
    *,
    now: float,
    asks: Sequence[Ask],
    give_backs: Sequence[GiveBack] = (),
    sweep: bool = False,
) -> Verdict:
    """One reservation: every ask granted (at least one unit each) or none."""
    keys = sorted({ask.bucket.key for ask in asks} | {back.key for back in give_backs})
    paused = lock_buckets(session, keys)
    for back in give_backs:
        give_back(session, back)
    if sweep:
        # Only the buckets locked here: rows of other buckets are left to transactions
        # that hold their locks, so two reservations never wait on each other's rows.
        session.execute(
            delete(RateSlice).where(
                RateSlice.bucket.in_(keys), RateSlice.start < math.floor(now) - KEEP_SECONDS
            )
        )
    sums = window_sums(session, [ask.bucket for ask in asks], now)
    grants: dict[str, int] = {}
    waits: dict[str, float] = {}
    for ask in asks:
        key = ask.bucket.key
        wait = max(paused.get(key, 0.0) - now, 0.0)
        room = ask.want * ROOM_SHARE
        for window in ask.bucket.windows:
            used, oldest = sums.get((key, window.resolution), (0, 0))
            left = window.limit - used
            if left < 1:
                # The oldest counted slice holds at least one call: once it leaves the
                # window there is room for one more (unless someone else takes it first).
                wait = max(wait, window.frees_at(oldest) - now)
            room = min(room, left)
        if wait > 0:
            waits[key] = wait
        else:
            grants[key] = min(ask.want, max(1, room // ROOM_SHARE))
    if waits:
        return Verdict({}, waits, paused)
    add_to_slices(session, grants, now)
    return Verdict(grants, {}, paused)


def pause_in_db(session: Session, key: str, until: float) -> None:
    """Pause `key` until `until` (epoch seconds); a longer pause already there stays."""
    insert = postgresql.insert if _is_postgres(session) else sqlite.insert
    statement = insert(RateBucket).values(key=key, paused_until=until)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[RateBucket.key],
            set_={
                "paused_until": case(
                    (RateBucket.paused_until < statement.excluded.paused_until, until),
                    else_=RateBucket.paused_until,
                )
            },
        )
    )


def read_usage(
    session: Session, now: float, minute: Window, hour: Window
) -> dict[str, BucketUsage]:
    """Calls counted now in every API path's windows, across all instances."""
    counted = or_(
        *[
            and_(RateSlice.resolution == w.resolution, RateSlice.start >= w.oldest_counted(now))
            for w in (minute, hour)
        ]
    )
    sums: dict[tuple[str, int], int] = {
        (key, int(res)): int(used)
        for key, res, used in session.execute(
            select(RateSlice.bucket, RateSlice.resolution, func.sum(RateSlice.used))
            .where(RateSlice.bucket.startswith(PATH_PREFIX, autoescape=True), counted)
            .group_by(RateSlice.bucket, RateSlice.resolution)
        ).all()
    }
    paused: dict[str, float] = {
        key: float(until)
        for key, until in session.execute(
            select(RateBucket.key, RateBucket.paused_until).where(
                RateBucket.key.startswith(PATH_PREFIX, autoescape=True)
            )
        ).all()
    }
    keys = sorted({key for key, _ in sums} | set(paused))
    return {
        key.removeprefix(PATH_PREFIX): BucketUsage(
            minute=sums.get((key, minute.resolution), 0),
            minute_limit=minute.limit,
            hour=sums.get((key, hour.resolution), 0),
            hour_limit=hour.limit,
            paused_seconds=max(paused.get(key, 0.0) - now, 0.0),
        )
        for key in keys
    }


@dataclass
class _Plan:
    """A reservation to make in the database, prepared under the local lock."""

    asks: list[Ask]
    # Units taken from live blocks for this call, put back if the database refuses.
    held: list[tuple[str, _Block]]
    give_backs: list[GiveBack]
    sweep: bool
    now: float

    def run(self, session: Session) -> Verdict:
        return reserve_in_db(
            session, now=self.now, asks=self.asks, give_backs=self.give_backs, sweep=self.sweep
        )


@dataclass
class _Local:
    """This process's cache: blocks, known pauses and refusals, calls to give back."""

    blocks: dict[str, _Block] = field(default_factory=dict)
    last_taken: dict[str, int] = field(default_factory=dict)
    paused_until: dict[str, float] = field(default_factory=dict)
    refused_until: dict[str, float] = field(default_factory=dict)
    give_backs: list[GiveBack] = field(default_factory=list)


class DatabaseRateLimiter:
    """`RateLimiter` whose buckets live in the database, shared by every process using it.
    Thread-safe; see the module docstring for how it counts and what it caches."""

    def __init__(
        self,
        quota: QuotaConfig,
        member_limit: MemberMessageLimit,
        clock: Clock,
        db: Database,
        *,
        max_block: int = MAX_BLOCK,
    ) -> None:
        if max_block < 1:
            raise ValueError("max_block must be at least 1")
        self._clock = clock
        self._db = db
        self.per_minute = max(1, math.floor(quota.per_minute * quota.budget_ratio))
        self.per_hour = max(1, math.floor(quota.per_hour * quota.budget_ratio))
        self._path_windows = (
            Window(self.per_minute, 60.0, MINUTE_SLICE),
            Window(self.per_hour, 3600.0, HOUR_SLICE),
        )
        margin = MEMBER_WINDOW_MARGIN_SECONDS
        self._member_windows = (
            Window(member_limit.per_minute, 60.0 + margin, MINUTE_SLICE),
            Window(member_limit.per_hour, 3600.0 + margin, HOUR_SLICE),
        )
        self._max_block = max_block
        self._lock = threading.Lock()
        self._local = _Local()
        self._reservations = 0
        self._since_sweep = 0
        self.stats = LimiterStats()

    def buckets(self, path: str, member: str | None = None) -> list[Bucket]:
        """What a call to `path` (for `member`) counts against."""
        found = [Bucket(PATH_PREFIX + path, self._path_windows)]
        if member is not None and path in MEMBER_LIMITED_PATHS:
            found.append(Bucket(f"{MEMBER_PREFIX}{path}:{member}", self._member_windows))
        return found

    def reserve(self, path: str, member: str | None = None) -> float:
        """0.0 and the call taken if allowed now; else seconds to wait, nothing taken."""
        decided, plan = self._local_or_plan(path, member)
        if plan is None:
            return decided
        try:
            verdict = self._db.call(plan.run)
        except BaseException:
            self._abandon(plan)
            raise
        return self._apply(plan, verdict)

    async def reserve_async(self, path: str, member: str | None = None) -> float:
        """`reserve` without blocking the event loop: the database round trip, when the
        in-process block cannot answer, runs on a worker thread (callback acknowledgements
        share the loop)."""
        decided, plan = self._local_or_plan(path, member)
        if plan is None:
            return decided
        try:
            verdict = await self._db.run(plan.run)
        except BaseException:  # cancelled too: the call will not be made
            self._abandon(plan)
            raise
        return self._apply(plan, verdict)

    async def acquire(self, path: str, member: str | None = None) -> None:
        """Wait (with the clock's sleep) until a call to `path` is allowed, then take it."""
        while True:
            wait, plan = self._local_or_plan(path, member)
            if plan is not None:
                try:
                    verdict = await self._db.run(plan.run)
                except BaseException:  # cancelled too: the call will not be made
                    self._abandon(plan)
                    raise
                wait = self._apply(plan, verdict)
            if wait <= 0:
                return
            await self._clock.sleep(wait)

    def pause(self, path: str, seconds: float) -> None:
        """Allow no call to `path` for `seconds` (WeCom answered 45009), in every process."""
        until = self._clock.timestamp() + seconds
        key = PATH_PREFIX + path
        with self._lock:
            local = self._local
            local.paused_until[key] = max(local.paused_until.get(key, 0.0), until)
            block = local.blocks.pop(key, None)
            if block is not None:
                self._retire(key, block)
        try:
            self._db.call(lambda session: pause_in_db(session, key, until))
        except Exception as exc:
            # The caller is raising RateLimited; a database error must not replace it.
            # This process honours the pause either way.
            log.warning("45009 pause of %s not shared: %s", path, type(exc).__name__)

    def usage(self) -> dict[str, BucketUsage]:
        """Calls counted now per API path across every instance (one database read)."""
        now = self._clock.timestamp()
        minute, hour = self._path_windows
        try:
            return self._db.call(lambda session: read_usage(session, now, minute, hour))
        except Exception as exc:  # a metrics scrape must still answer
            log.warning("rate-limit usage not read: %s", type(exc).__name__)
            return {}

    # -- local decisions (under the lock) ----------------------------------------------

    def _local_or_plan(self, path: str, member: str | None) -> tuple[float, _Plan | None]:
        """Decide from the cache if it can (0.0 taken, or a known wait); else what to ask."""
        now = self._clock.timestamp()
        buckets = self.buckets(path, member)
        second = math.floor(now)
        with self._lock:
            self._maybe_sweep_local(second)
            local = self._local
            wait = 0.0
            for bucket in buckets:
                wait = max(
                    wait,
                    local.paused_until.get(bucket.key, 0.0) - now,
                    local.refused_until.get(bucket.key, 0.0) - now,
                )
            if wait > 0:
                self.stats.refused += 1
                return _whole_ms(wait), None
            held: list[tuple[str, _Block]] = []
            asks: list[Ask] = []
            for bucket in buckets:
                block = self._live_block(bucket.key, second)
                if block is not None and block.remaining > 0:
                    block.remaining -= 1
                    block.taken += 1
                    held.append((bucket.key, block))
                else:
                    asks.append(Ask(bucket, self._want(bucket.key, block)))
            if not asks:
                self.stats.local += 1
                return 0.0, None
            # A give-back to a slice already outside every window changes nothing.
            oldest = second - KEEP_SECONDS
            give_backs = [back for back in local.give_backs if back.second > oldest]
            local.give_backs = []
            self._reservations += 1
            sweep = self._reservations % _DB_SWEEP_EVERY == 0
            return 0.0, _Plan(asks, held, give_backs, sweep, now)

    def _apply(self, plan: _Plan, verdict: Verdict) -> float:
        """Record what the database said; take this call from the granted blocks."""
        now = plan.now
        with self._lock:
            local = self._local
            self.stats.round_trips += 1
            for key, until in verdict.paused_until.items():
                if until > now:
                    local.paused_until[key] = max(local.paused_until.get(key, 0.0), until)
            if not verdict.granted:
                for key, wait in verdict.waits.items():
                    local.refused_until[key] = max(local.refused_until.get(key, 0.0), now + wait)
                self._put_back(plan)
                self.stats.refused += 1
                return _whole_ms(verdict.wait)
            second = math.floor(now)
            for key, units in verdict.granted.items():
                block = local.blocks.get(key)
                if block is None or block.second != second:
                    if block is not None:
                        self._retire(key, block)
                    block = local.blocks[key] = _Block(second, 0)
                # This call's unit is taken from the grant, which was counted in `second`.
                block.remaining += units - 1
                block.taken += 1
            return 0.0

    def _abandon(self, plan: _Plan) -> None:
        """The round trip failed: this call is not made. Its give-backs are not listed
        again, since the transaction may have committed them (a lost give-back only
        wastes capacity; one applied twice would undercount)."""
        with self._lock:
            self._put_back(plan)

    def _put_back(self, plan: _Plan) -> None:
        """Return the units this call took from live blocks (under the lock)."""
        for key, held in plan.held:
            if self._local.blocks.get(key) is held:
                held.remaining += 1
                held.taken -= 1
            else:  # retired meanwhile, its leftovers already listed to give back
                self._local.give_backs.append(GiveBack(key, held.second, 1))

    def _live_block(self, key: str, second: int) -> _Block | None:
        """The block for `key` usable in `second`; an older one is retired."""
        block = self._local.blocks.get(key)
        if block is None or block.second == second:
            return block
        del self._local.blocks[key]
        self._retire(key, block)
        return None

    def _retire(self, key: str, block: _Block) -> None:
        """A block leaves use: remember the demand it saw, give back what it did not use."""
        self._local.last_taken[key] = block.taken
        if block.remaining > 0:
            self._local.give_backs.append(GiveBack(key, block.second, block.remaining))
        block.remaining = 0

    def _want(self, key: str, block: _Block | None) -> int:
        """Block size: twice this second's calls so far, or last second's rate if higher."""
        this_second = block.taken if block is not None else 0
        want = max(2 * this_second + 1, self._local.last_taken.get(key, 0))
        return min(self._max_block, want)

    def _maybe_sweep_local(self, second: int) -> None:
        # Members come and go: forget blocks, refusals and pauses that are over, so the
        # maps do not grow with every member ever messaged.
        self._since_sweep += 1
        if self._since_sweep < _LOCAL_SWEEP_EVERY:
            return
        self._since_sweep = 0
        local = self._local
        # Demand hints of buckets with no block since the last sweep are stale by now.
        local.last_taken = {k: n for k, n in local.last_taken.items() if k in local.blocks}
        for key in [k for k, block in local.blocks.items() if block.second != second]:
            self._retire(key, local.blocks.pop(key))
        local.refused_until = {k: t for k, t in local.refused_until.items() if t > second}
        local.paused_until = {k: t for k, t in local.paused_until.items() if t > second}


__all__ = [
    "MAX_BLOCK",
    "Ask",
    "Bucket",
    "DatabaseRateLimiter",
    "GiveBack",
    "LimiterStats",
    "Verdict",
    "Window",
    "pause_in_db",
    "read_usage",
    "reserve_in_db",
]
