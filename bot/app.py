"""Composition root: builds every collaborator once and wires them together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.calendar.service import CalendarService
from bot.clock import Clock, SystemClock
from bot.config import ServerRole, Settings
from bot.dispatch import Registry
from bot.gateway.crypto import WeComCrypto
from bot.gateway.endpoint import CallbackGateway
from bot.gateway.processor import InboxProcessor
from bot.handlers.context import HandlerContext
from bot.handlers.registry import build_registry
from bot.leader import LeaderElection, holder_id
from bot.observability.metrics import metrics_route
from bot.outbox.kinds import default_effects
from bot.outbox.queue import BULK, FAST, NORMAL, Outbox
from bot.outbox.sender import Sender
from bot.scheduler import Ticker
from bot.store.db import Database
from bot.templates import Templates
from bot.wecom.client import WeComClient
from bot.wecom.errors import WeComError
from bot.wecom.ratelimit import MemoryRateLimiter, RateLimiter
from bot.wecom.ratelimit_db import DatabaseRateLimiter

log = logging.getLogger("bot")


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def make_crypto(settings: Settings) -> WeComCrypto | None:
    """None until the callback token, EncodingAESKey and CorpID are all configured."""
    token = settings.wecom.token.get_secret_value()
    key = settings.wecom.encoding_aes_key.get_secret_value()
    if not (token and key and settings.wecom.corp_id):
        return None
    return WeComCrypto(token, key, settings.wecom.corp_id)


def make_limiter(settings: Settings, clock: Clock, db: Database) -> RateLimiter:
    """Buckets in the database, shared by every instance, on PostgreSQL (where several
    instances run) or when `wecom.shared_rate_limits` is on; in memory otherwise."""
    mode = settings.wecom.shared_rate_limits
    quota, members = settings.wecom.quota, settings.wecom.member_messages
    if mode == "on" or (mode == "auto" and db.is_postgres):
        return DatabaseRateLimiter(quota, members, clock, db)
    return MemoryRateLimiter(quota, members, clock)


@dataclass
class BotApp:
    """The running bot: ASGI app plus its background workers."""

    settings: Settings
    clock: Clock
    db: Database
    wecom: WeComClient
    outbox: Outbox
    registry: Registry
    gateway: CallbackGateway
    processor: InboxProcessor
    sender: Sender
    ticker: Ticker
    templates: Templates
    calendar: CalendarService
    asgi: Starlette = field(init=False)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.asgi = Starlette(
            routes=[
                *self.gateway.routes(),
                Route("/healthz", self.healthz, methods=["GET"]),
                metrics_route(self),
            ],
            lifespan=self._lifespan,
        )

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    async def start(self) -> None:
        """Refuse an unmigrated database, then start the dispatcher, sender and ticker (on
        the gateway role, none of them: this instance only stores callbacks)."""
        self.db.check_migrated()
        self._stop = asyncio.Event()
        if self.settings.server.role is ServerRole.GATEWAY:
            log.info("role gateway: stored callbacks are processed by the instances of role all")
            return
        self._tasks = [
            asyncio.create_task(self.processor.run(self._stop), name="inbox"),
            asyncio.create_task(self.sender.run(FAST, self._stop), name="outbox-fast"),
            asyncio.create_task(self.sender.run(NORMAL, self._stop), name="outbox-normal"),
            asyncio.create_task(self.sender.run(BULK, self._stop), name="outbox-bulk"),
        ]
        self.ticker.start()

    async def stop(self) -> None:
        self._stop.set()
        self.ticker.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.wecom.aclose()

    async def drain(self, rounds: int = 20) -> int:
        """Process stored callbacks and due outbox rows until both are idle (tests, `bot
        tick`, the demo). The fast lane is pumped while callbacks are handled, as in `serve`,
        so a welcome goes out while its handler is still fetching the customer."""
        total = 0
        for _ in range(rounds):
            stop = asyncio.Event()
            pump = asyncio.create_task(self._pump_fast_lane(stop))
            try:
                done = await self.processor.drain()
            finally:
                stop.set()
                done += await pump
            done += await self.sender.drain()
            total += done
            if not done:
                break
        return total

    async def _pump_fast_lane(self, stop: asyncio.Event) -> int:
        wake = self.outbox.wake_event(FAST)
        sent = 0
        while True:
            stopping = asyncio.create_task(stop.wait())
            woken = asyncio.create_task(wake.wait())
            await asyncio.wait({stopping, woken}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            woken.cancel()
            wake.clear()
            sent += await self.sender.drain(FAST)
            if stop.is_set():
                return sent

    async def healthz(self, _request: Request) -> Response:
        """Whether the database answers and a WeCom access token can be had."""
        checks: dict[str, str] = {}
        try:
            await self.db.run(lambda s: s.execute(text("SELECT 1")))
            checks["database"] = "ok"
        except Exception as exc:  # any driver error means unhealthy
            checks["database"] = f"error: {type(exc).__name__}"
        try:
            await self.wecom.ensure_token()
            checks["wecom_token"] = "ok"
        except (WeComError, httpx.HTTPError) as exc:
            checks["wecom_token"] = f"error: {type(exc).__name__}"
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"ok": ok, **checks}, status_code=200 if ok else 503)


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    db: Database | None = None,
    worker_id: str | None = None,
) -> BotApp:
    """Wire the bot. Tests pass a FrozenClock, the sandbox's transport and their database."""
    clock = clock or SystemClock(ZoneInfo(settings.timezone))
    db = db or Database.from_url(
        settings.database.url,
        busy_timeout_ms=settings.database.busy_timeout_ms,
        echo=settings.database.echo,
    )
    worker = worker_id or default_worker_id()
    limiter = make_limiter(settings, clock, db)
    wecom = WeComClient(settings.wecom, db=db, clock=clock, transport=transport, limiter=limiter)
    outbox = Outbox()
    templates = Templates(Path(settings.content_dir()))
    registry = build_registry()
    ctx = HandlerContext(
        settings=settings,
        db=db,
        clock=clock,
        wecom=wecom,
        outbox=outbox,
        templates=templates,
        log=logging.getLogger("bot.handlers"),
    )
    processor = InboxProcessor(db, clock, registry, ctx, settings.dispatcher, worker)
    # The hand-over of parsed callbacks only helps a process whose dispatcher runs.
    on_stored = processor.accept if settings.server.role is ServerRole.ALL else None
    gateway = CallbackGateway(settings, db, clock, make_crypto(settings), on_stored)
    sender = Sender(
        db=db,
        clock=clock,
        client=wecom,
        effects=default_effects(),
        config=settings.outbox,
        retry=settings.wecom.retry,
        worker_id=worker,
        outbox=outbox,
    )
    calendar = CalendarService(settings=settings, db=db, clock=clock, wecom=wecom)
    ticker = Ticker(
        settings=settings,
        db=db,
        clock=clock,
        wecom=wecom,
        wake=[processor.notify, outbox.notify],
        calendar=calendar,
        leader=LeaderElection(
            db,
            clock,
            holder=holder_id(worker),
            lease_seconds=settings.scheduler.lease_seconds,
            renew_seconds=settings.scheduler.renew_seconds,
        ),
    )
    return BotApp(
        settings=settings,
        clock=clock,
        db=db,
        wecom=wecom,
        outbox=outbox,
        registry=registry,
        gateway=gateway,
        processor=processor,
        sender=sender,
        ticker=ticker,
        templates=templates,
        calendar=calendar,
    )
