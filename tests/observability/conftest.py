"""The bot against the in-process WeCom sandbox (the integration tests' world), with an admin
token configured, plus a client for the bot's own HTTP surface and a JSON log capture."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from io import StringIO

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from bot.gateway.inbox import dedupe_key, store_events
from bot.logs import setup_logging
from bot.outbox.queue import enqueue
from bot.store.db import Database
from bot.store.models import InboxEvent, MassTask, OutboxItem, SlotRun, TokenCache
from tests.gateway.conftest import callback_of, fixture_xml
from tests.integration import conftest as integration

# The integration tests' world, reused as is: the sandbox, the bot and a callback deliverer.
world = integration.world
limits = integration.limits
wrap_transport = integration.wrap_transport
World = integration.World

ADMIN_TOKEN = "observability-admin-token-7f3c9a"


@pytest.fixture
def setting_overrides() -> dict[str, str]:
    return {"BOT_TAG_SYNC__ENABLED": "false", "BOT_SERVER__ADMIN_TOKEN": ADMIN_TOKEN}


@pytest.fixture
async def http(world: World) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the bot's ASGI app (callback, /healthz, /metrics)."""
    transport = httpx.ASGITransport(app=world.bot.asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://bot") as client:
        yield client


@contextlib.contextmanager
def preserved_logging() -> Iterator[None]:
    """Put the root logger and the quietened libraries back as they were afterwards
    (`setup_logging`, which every `bot` command calls, replaces the root's handlers)."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    quiet = ("httpx", "httpcore", "apscheduler", "uvicorn.access", "alembic")
    saved_quiet = {name: logging.getLogger(name).level for name in quiet}
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved_handlers:
            root.addHandler(handler)
        root.setLevel(saved_level)
        for name, level in saved_quiet.items():
            logging.getLogger(name).setLevel(level)


@pytest.fixture
def json_log() -> Iterator[StringIO]:
    """Logging as `bot serve` sets it up with `log_format: json`, at DEBUG, into a buffer."""
    buffer = StringIO()
    with preserved_logging():
        setup_logging("DEBUG", fmt="json", stream=buffer)
        yield buffer


def seed_operations(db: Database, now: datetime) -> SeedIds:
    """Rows an operator would see on a working morning, timed relative to `now`:
    inbox: 2 pending (oldest 5 min), 1 done, 1 failed; outbox: 2 open mark_tag rows (oldest
    90 s), 1 open welcome_msg (30 s), 1 sent; 2 slot runs today (planned, expired) and one
    yesterday; 3 mass tasks created today (1 confirmed today) and 1 yesterday (confirmed
    yesterday); a cached token expiring in 1 h 30 min."""
    ext = "wmSeededCustomer0001"

    def write(session: Session) -> SeedIds:
        inbox = [  # in the order they arrived
            ("transfer_fail", timedelta(minutes=30), "failed"),
            ("external_chat_update", timedelta(minutes=20), "done"),
            ("add_external_contact", timedelta(minutes=5), "pending"),
            ("edit_external_contact", timedelta(minutes=1), "pending"),
        ]
        for name, ago, status in inbox:
            plaintext = fixture_xml(name)
            store_events(session.connection(), [callback_of(plaintext, now - ago)])
            session.execute(
                update(InboxEvent)
                .where(InboxEvent.dedupe_key == dedupe_key(plaintext))
                .values(status=status)
            )
        later = now + timedelta(hours=1)
        for key, kind, age in (
            (f"mark_tag:ZhangLi:{ext}:a", "mark_tag", 90),
            (f"mark_tag:ZhangLi:{ext}:b", "mark_tag", 10),
            ("welcome:code-1", "welcome_msg", 30),
            ("welcome:code-0", "welcome_msg", 600),
        ):
            payload = {"userid": "ZhangLi", "external_userid": ext}
            enqueue(
                session,
                key=key,
                kind=kind,
                payload=payload,
                now=now - timedelta(seconds=age),
                due_at=later,
            )
        session.execute(
            update(OutboxItem)
            .where(OutboxItem.idempotency_key == "welcome:code-0")
            .values(status="sent")
        )
        runs = []
        for slot, day, status in (
            ("mon-0900", now.date(), "planned"),
            ("mon-1200", now.date(), "expired"),
            ("sun-0900", now.date() - timedelta(days=1), "planned"),
        ):
            run = SlotRun(
                slot_id=slot,
                day=day,
                part="main",
                channel="single",
                theme="理财早知道",
                template="mon.md",
                fire_at=now,
                status=status,
                stats={},
            )
            session.add(run)
            runs.append(run)
        session.flush()
        for i, (created, confirmed, status) in enumerate(
            (
                (now - timedelta(hours=1), now - timedelta(minutes=30), "confirmed"),
                (now - timedelta(minutes=50), None, "created"),
                (now - timedelta(minutes=40), None, "created"),
                (now - timedelta(days=1), now - timedelta(hours=20), "final"),
            )
        ):
            session.add(
                MassTask(
                    run_id=runs[0].id if i < 3 else runs[2].id,
                    outbox_key=f"cal:{i}",
                    chat_type="single",
                    sender="ZhangLi",
                    targets=3,
                    status=status,
                    created_at=created,
                    confirmed_at=confirmed,
                    reminded_at=[],
                )
            )
        session.add(
            TokenCache(
                key="ww5a1b2c3d4e5f6a7b:1000002",
                access_token="SECRET-ACCESS-TOKEN-VALUE",
                expires_at=now + timedelta(minutes=90),
                updated_at=now,
            )
        )
        return SeedIds(external_userid=ext, token="SECRET-ACCESS-TOKEN-VALUE")

    return db.call(write)


@dataclass(frozen=True)
class SeedIds:
    """Values seeded that must never be shown."""

    external_userid: str
    token: str
