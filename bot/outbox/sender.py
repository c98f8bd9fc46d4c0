"""The outbox sender: claims due rows under a lease, calls WeCom, records the outcome.

Retry policy by error class (performance-reliability §1.6): -1 and other transient errors
back off with full jitter (-1 at most `busy_max_retries` times); 45009 defers the row until
the API's bucket reopens instead of retrying at once; configuration and permission errcodes
are final and reported; everything gives up after `max_attempts` with the reason kept.
No database transaction is held while WeCom is being called.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from bot.clock import Clock
from bot.config import OutboxConfig, RetryConfig
from bot.outbox import queue
from bot.outbox.effects import Effect, EffectRegistry
from bot.outbox.queue import Claimed
from bot.privacy import hash_id
from bot.store.db import Database
from bot.wecom.errors import (
    ConfigurationError,
    OutcomeUnknown,
    QuotaWait,
    RateLimited,
    TokenInvalid,
    TransientError,
    WeComError,
)

if TYPE_CHECKING:
    from bot.wecom.client import WeComClient

log = logging.getLogger("bot.outbox")

BUSY = -1
# Row endings where the effect did not happen (and never will, from this row).
GIVEN_UP = frozenset({queue.FAILED, queue.DEAD, queue.EXPIRED})


def _fields(item: Claimed, status: str, errcode: int | None = None) -> dict[str, Any]:
    """Structured log fields of one row. The key is left out (a mark_tag key holds a
    customer's external id); the customer appears only hashed."""
    customer = item.payload.get("external_userid")
    return {
        "outbox_id": item.id,
        "kind": item.kind,
        "lane": item.lane,
        "attempts": item.attempts + 1,
        "status": status,
        "errcode": errcode,
        "customer": hash_id(customer) if isinstance(customer, str) and customer else None,
    }


@dataclass
class SenderStats:
    """Counters for /metrics and `bot status`."""

    sent: int = 0
    failed: int = 0
    dead: int = 0
    expired: int = 0
    retried: int = 0
    deferred: int = 0
    reconciled: int = 0
    by_errcode: dict[int, int] = field(default_factory=dict)


class Sender:
    """Works the outbox for one process; several processes may run one each."""

    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        client: WeComClient,
        effects: EffectRegistry,
        config: OutboxConfig,
        retry: RetryConfig,
        worker_id: str,
        outbox: queue.Outbox,
        rng: random.Random | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        # The sender owns retry timing, so the client must neither retry nor wait for quota.
        self.client = client.with_options(retries=False, wait_for_quota=False)
        self.effects = effects
        self.config = config
        self.retry = retry
        self.worker_id = worker_id
        self.outbox = outbox
        self.rng = rng or random.Random()
        self.stats = SenderStats()

    # -- loops -----------------------------------------------------------------------------

    async def run(self, lane: str, stop: asyncio.Event) -> None:
        """Work `lane` until `stop` is set; wake early when the lane is notified."""
        wake = self.outbox.wake_event(lane)
        while not stop.is_set():
            wake.clear()
            try:
                await self.drain(lane)
            except Exception:  # keep the loop alive; the row keeps its lease and recovers
                log.exception("outbox lane %s: pass failed", lane)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=self.config.poll_interval_seconds)

    async def drain(self, lane: str | None = None) -> int:
        """Process every row due now (in `lane`, or in all lanes); return how many."""
        lanes = [lane] if lane else list(queue.LANES)
        semaphore = asyncio.Semaphore(self.config.concurrency)

        async def guarded(item: Claimed) -> None:
            async with semaphore:
                await self.process(item)

        total = 0
        for name in lanes:
            while True:
                batch = await self.db.run(self._claimer(name))
                if not batch:
                    break
                await asyncio.gather(*(guarded(item) for item in batch))
                total += len(batch)
        return total

    def _claimer(self, lane: str) -> Any:
        now = self.clock.now()

        def work(session: Any) -> list[Claimed]:
            return queue.claim(
                session,
                lane=lane,
                now=now,
                worker_id=self.worker_id,
                lease_seconds=self.config.lease_seconds,
                limit=self.config.batch_size,
            )

        return work

    # -- one row ---------------------------------------------------------------------------

    async def process(self, item: Claimed) -> None:
        effect = self.effects.get(item.kind)
        if effect is None:
            await self._finish(item, queue.FAILED, error=f"no effect registered for {item.kind!r}")
            self.stats.failed += 1
            return
        now = self.clock.now()
        if item.expires_at is not None and now > item.expires_at:
            await self._finish(item, queue.EXPIRED, error="expired before it could be sent")
            self.stats.expired += 1
            log.warning(
                "outbox %s expired (kind %s)",
                item.id,
                item.kind,
                extra=_fields(item, queue.EXPIRED),
            )
            return
        if item.recovered and not effect.idempotent and await self._reconcile(item, effect):
            return
        try:
            result = await effect.execute(self.client, item.payload)
        except WeComError as exc:
            await self._on_error(item, effect, exc)
            return
        await self._finish(item, queue.SENT, result=result, effect=effect)
        self.stats.sent += 1
        log.info("outbox %s (%s) sent", item.id, item.kind, extra=_fields(item, queue.SENT))

    async def _reconcile(self, item: Claimed, effect: Effect) -> bool:
        """A non-idempotent call may have happened before a crash: look before repeating.
        Returns True when the row is settled (found, or given up on)."""
        if effect.reconcile is None:
            await self._finish(
                item,
                queue.FAILED,
                error="outcome unknown after a crash; not repeated (no reconcile)",
            )
            self.stats.failed += 1
            return True
        try:
            found = await effect.reconcile(self.client, item)
        except WeComError as exc:
            # Still unknown: the row stays in VERIFY, so the next claim looks again first.
            await self._reschedule(item, self._backoff(item.attempts), exc, queue.VERIFY, True)
            return True
        if found is not None:
            await self._finish(item, queue.SENT, result=found, effect=effect)
            self.stats.reconciled += 1
            log.info(
                "outbox %s (%s) found done at WeCom",
                item.id,
                item.kind,
                extra=_fields(item, queue.SENT),
            )
            return True
        return False

    async def _on_error(self, item: Claimed, effect: Effect, exc: WeComError) -> None:
        code = exc.errcode
        self.stats.by_errcode[code] = self.stats.by_errcode.get(code, 0) + 1
        attempts = item.attempts + 1
        if code in effect.done_errcodes:
            await self._finish(item, queue.SKIPPED, error=str(exc), errcode=code)
            return
        if isinstance(exc, RateLimited):
            # 45009 (or our own bucket): wait for the bucket, don't hammer it.
            delay = max(exc.retry_after, 1.0)
            local = isinstance(exc, QuotaWait)  # our own limiter said wait; nothing was sent
            if attempts > self.config.max_attempts and not local:
                await self._give_up(item, exc)
                return
            await self._reschedule(item, delay, exc, queue.PENDING, count=not local)
            self.stats.deferred += 1
            return
        if isinstance(exc, OutcomeUnknown) and not effect.idempotent:
            if effect.reconcile is None:
                await self._finish(
                    item, queue.FAILED, error=f"outcome unknown, not repeated: {exc}", errcode=code
                )
                self.stats.failed += 1
                return
            # Look again after a short pause: the task may exist on WeCom's side already.
            await self._reschedule(item, self._backoff(attempts), exc, queue.VERIFY, count=True)
            return
        retry_once = code in effect.retry_once_errcodes
        if retry_once:
            if attempts >= 2:
                await self._give_up(item, exc)
            else:
                await self._reschedule(item, self._backoff(attempts), exc, queue.PENDING, True)
                self.stats.retried += 1
            return
        # A token refused even after one refetch (TokenInvalid) is not final either: the
        # next attempt starts with a fresh token.
        if isinstance(exc, TransientError | TokenInvalid) and code not in effect.final_errcodes:
            limit = self.retry.busy_max_retries + 1 if code == BUSY else self.config.max_attempts
            if attempts >= limit:
                await self._give_up(item, exc)
                return
            await self._reschedule(item, self._backoff(attempts), exc, queue.PENDING, True)
            self.stats.retried += 1
            return
        # Final: configuration, permission, or a request WeCom will never accept.
        level = logging.ERROR if isinstance(exc, ConfigurationError) else logging.WARNING
        log.log(
            level,
            "outbox %s (%s) failed for good: errcode %s",
            item.id,
            item.kind,
            code,
            extra=_fields(item, queue.FAILED, code),
        )
        await self._finish(item, queue.FAILED, error=str(exc), errcode=code)
        self.stats.failed += 1

    def _backoff(self, attempts: int) -> float:
        ceiling = min(self.retry.backoff_cap_seconds, self.retry.backoff_base_seconds * 2**attempts)
        return self.rng.uniform(
            self.retry.backoff_base_seconds, max(ceiling, self.retry.backoff_base_seconds)
        )

    async def _give_up(self, item: Claimed, exc: WeComError) -> None:
        log.error(
            "outbox %s (%s) gave up after %d attempts",
            item.id,
            item.kind,
            item.attempts + 1,
            extra=_fields(item, queue.DEAD, exc.errcode),
        )
        await self._finish(item, queue.DEAD, error=f"gave up: {exc}", errcode=exc.errcode)
        self.stats.dead += 1

    async def _finish(
        self,
        item: Claimed,
        status: str,
        *,
        result: dict[str, Any] | None = None,
        error: str | None = None,
        errcode: int | None = None,
        effect: Effect | None = None,
    ) -> None:
        now = self.clock.now()

        def write(session: Session) -> None:
            recorded = queue.finish(
                session,
                item.id,
                status=status,
                now=now,
                worker_id=self.worker_id,
                result=result,
                error=error,
                errcode=errcode,
            )
            kind = effect or self.effects.get(item.kind)
            if not recorded or kind is None:
                return
            if status == queue.SENT and kind.on_success is not None:
                kind.on_success(session, item.payload, result or {}, now)
            elif status in GIVEN_UP and kind.on_give_up is not None:
                kind.on_give_up(session, item.payload, status, now)

        await self.db.run(write)

    async def _reschedule(
        self, item: Claimed, delay: float, exc: WeComError, status: str, count: bool
    ) -> None:
        now = self.clock.now()
        due = now + timedelta(seconds=delay)
        await self.db.run(
            lambda s: queue.reschedule(
                s,
                item.id,
                due_at=due,
                now=now,
                worker_id=self.worker_id,
                error=str(exc),
                errcode=exc.errcode,
                count_attempt=count,
                status=status,
            )
        )
