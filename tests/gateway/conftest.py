"""Helpers for the gateway tests: fixture XML, a configured crypto, the app and a client."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from starlette.applications import Starlette

from bot.clock import FrozenClock
from bot.config import Settings
from bot.gateway.crypto import Envelope, WeComCrypto
from bot.gateway.endpoint import CallbackGateway
from bot.gateway.inbox import Callback, dedupe_key, store_events
from bot.gateway.parse import parse_event
from bot.handlers.context import HandlerContext
from bot.store.db import Database
from bot.store.models import InboxEvent

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "callbacks"

# The corp id used in every fixture's ToUserName; the token and key are made up.
CORP_ID = "ww7d1c2e3f4a5b6c7d"
TOKEN = "Tk9cRz2LqW7v"
AES_KEY = "kWq3Vd8sR1nB5yU0tC7xZ2eF9hJ4mL6pA3gD8rT1uY5"
RANDOM16 = b"0123456789abcdef"


def fixture_xml(name: str) -> bytes:
    return (FIXTURES / f"{name}.xml").read_bytes()


@pytest.fixture
def crypto() -> WeComCrypto:
    return WeComCrypto(TOKEN, AES_KEY, CORP_ID)


@pytest.fixture
def settings() -> Settings:
    return Settings()


class Sender:
    """Seals plaintext the way WeCom does and posts it to the gateway."""

    def __init__(self, client: httpx.AsyncClient, crypto: WeComCrypto, clock: FrozenClock):
        self.client = client
        self.crypto = crypto
        self.clock = clock
        self._nonce = 1372623149

    def seal(self, plaintext: bytes, *, timestamp: str | None = None) -> Envelope:
        self._nonce += 1
        ts = timestamp if timestamp is not None else str(int(self.clock.timestamp()))
        return self.crypto.seal(plaintext, timestamp=ts, nonce=str(self._nonce), random16=RANDOM16)

    async def post_envelope(self, envelope: Envelope, body: bytes | None = None) -> httpx.Response:
        content = body if body is not None else envelope.callback_xml(CORP_ID, "1000002").encode()
        return await self.client.post("/wecom/callback", params=envelope.query(), content=content)

    async def post(self, plaintext: bytes, **kw: str) -> httpx.Response:
        return await self.post_envelope(self.seal(plaintext, **kw))


@pytest.fixture
def stored_calls() -> list[int]:
    return []


@pytest.fixture
def gateway(
    settings: Settings, db: Database, clock: FrozenClock, crypto: WeComCrypto, stored_calls
) -> CallbackGateway:
    return CallbackGateway(
        settings, db, clock, crypto, on_stored=lambda key, fields: stored_calls.append(1)
    )


@pytest.fixture
async def client(gateway: CallbackGateway) -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(routes=gateway.routes())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bot.test") as http:
        yield http


@pytest.fixture
def sender(client: httpx.AsyncClient, crypto: WeComCrypto, clock: FrozenClock) -> Sender:
    return Sender(client, crypto, clock)


def callback_of(plaintext: bytes, now: datetime) -> Callback:
    """A decrypted callback as the gateway stores it."""
    return Callback(dedupe_key(plaintext), parse_event(plaintext).routing_key, plaintext, now)


def store_plaintext(db: Database, plaintext: bytes, now: datetime) -> bool:
    """Store one decrypted callback as the gateway does; True if it was new."""
    return db.call_core(lambda c: store_events(c, [callback_of(plaintext, now)]))[0]


def make_context(settings: Settings, db: Database, clock: FrozenClock) -> HandlerContext:
    # The processor only passes the context through; the collaborators it does not touch
    # are left out.
    return HandlerContext(
        settings=settings,
        db=db,
        clock=clock,
        wecom=None,  # type: ignore[arg-type]
        outbox=None,  # type: ignore[arg-type]
        templates=None,  # type: ignore[arg-type]
        log=logging.getLogger("tests.handlers"),
    )


@pytest.fixture
def handler_context(settings: Settings, db: Database, clock: FrozenClock) -> HandlerContext:
    return make_context(settings, db, clock)


def inbox_rows(db: Database) -> list[InboxEvent]:
    return list(db.call(lambda s: list(s.scalars(select(InboxEvent).order_by(InboxEvent.id)))))
