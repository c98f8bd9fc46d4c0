"""Delivers the world's owed callbacks to the bot, encrypted and signed as WeCom does."""

# WeCom gives the bot 5 s to answer and tries 3 times in total. Here an attempt fails when
# it raises, answers after the deadline (measured on the world's clock, so a bot that sleeps
# on a frozen clock "times out" without real waiting) or, optionally, answers non-2xx.

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx

from bot.gateway.crypto import Envelope, WeComCrypto
from bot.sandbox.models import PendingCallback
from bot.sandbox.world import ALNUM, SandboxWorld


@dataclass(frozen=True)
class DeliveryAttempt:
    """One POST of one callback."""

    seq: int
    event: str
    change_type: str
    attempt: int
    at: float
    status_code: int | None
    latency: float
    error: str | None
    ok: bool
    duplicate: bool = False


class CallbackDeliverer:
    """A queue-draining pusher: `await flush()` delivers everything pending, in order."""

    def __init__(
        self,
        world: SandboxWorld,
        url: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        max_attempts: int = 3,
        retry_on_status: bool = True,
        deadline_seconds: float = 5.0,
        retry_interval: float = 0.0,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.world = world
        self.url = url
        self.max_attempts = max_attempts
        self.retry_on_status = retry_on_status
        self.deadline_seconds = deadline_seconds
        self.retry_interval = retry_interval
        self.crypto = WeComCrypto(world.token, world.encoding_aes_key, world.corp_id)
        self.client = httpx.AsyncClient(transport=transport, timeout=deadline_seconds)
        self.attempts: list[DeliveryAttempt] = []
        self.delivered: list[PendingCallback] = []
        self.undelivered: list[PendingCallback] = []
        self.duplicate_rate = 0.0
        self._duplicates = 0
        self._lock = asyncio.Lock()

    def duplicate_next(self, times: int = 1) -> None:
        """Deliver each of the next `times` callbacks twice, as WeCom sometimes does."""
        self._duplicates += times

    @property
    def pending(self) -> int:
        return len(self.world.ledger.pending_callbacks)

    async def flush(self) -> list[DeliveryAttempt]:
        """Deliver every pending callback (retrying as WeCom would); returns the attempts."""
        async with self._lock:
            start = len(self.attempts)
            queue = self.world.ledger.pending_callbacks
            while queue:
                callback = queue.popleft()
                ok = await self._deliver(callback, duplicate=False)
                (self.delivered if ok else self.undelivered).append(callback)
                if self._take_duplicate():
                    await self._deliver(callback, duplicate=True)
            return self.attempts[start:]

    def _take_duplicate(self) -> bool:
        if self._duplicates > 0:
            self._duplicates -= 1
            return True
        return bool(self.duplicate_rate) and self.world.rng.random() < self.duplicate_rate

    async def _deliver(self, callback: PendingCallback, *, duplicate: bool) -> bool:
        for attempt in range(1, self.max_attempts + 1):
            if attempt > 1 and self.retry_interval:
                await self.world.clock.sleep(self.retry_interval)
            result = await self._attempt(callback, attempt, duplicate)
            self.attempts.append(result)
            if result.ok:
                return True
            answered_in_time = result.status_code is not None and result.error is None
            if answered_in_time and not self.retry_on_status:
                return False
        return False

    def seal(self, plaintext: str) -> Envelope:
        world = self.world
        return self.crypto.seal(
            plaintext,
            timestamp=str(world.now()),
            nonce=str(world.rng.randrange(10**9, 10**10)),
            random16=world.rng.randbytes(16),
        )

    async def _attempt(
        self, callback: PendingCallback, attempt: int, duplicate: bool
    ) -> DeliveryAttempt:
        clock = self.world.clock
        envelope = self.seal(callback.xml)
        body = envelope.callback_xml(self.world.corp_id, callback.agent_id)
        started = clock.timestamp()
        status: int | None = None
        error: str | None = None
        try:
            response = await self.client.post(
                self.url,
                params=envelope.query(),
                content=body.encode("utf-8"),
                headers={"Content-Type": "text/xml; charset=utf-8"},
            )
            status = response.status_code
        # Anything the bot raises (in-process) is, to WeCom, a connection that broke.
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        latency = clock.timestamp() - started
        if latency > self.deadline_seconds and error is None:
            error = f"no answer within {self.deadline_seconds:g} s"
        ok = error is None and status is not None and 200 <= status < 300
        return DeliveryAttempt(
            callback.seq,
            callback.event,
            callback.change_type,
            attempt,
            started,
            status,
            latency,
            error,
            ok,
            duplicate,
        )

    async def verify_url(self) -> bool:
        """The GET handshake WeCom does when the URL is saved: decrypt echostr, echo it."""
        echo = self.world.random_string(16, ALNUM)
        envelope = self.seal(echo)
        params = {**envelope.query(), "echostr": envelope.encrypt}
        try:
            response = await self.client.get(self.url, params=params)
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and response.text == echo

    async def aclose(self) -> None:
        await self.client.aclose()
