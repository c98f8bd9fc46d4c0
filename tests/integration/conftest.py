"""The bot wired to an in-process WeCom sandbox, on a frozen clock, on both database engines."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from bot.app import BotApp, create_app
from bot.clock import FrozenClock
from bot.config import Settings, build_settings
from bot.sandbox.callbacks import CallbackDeliverer
from bot.sandbox.faults import FaultInjector
from bot.sandbox.harness import Sandbox
from bot.sandbox.limits import Limits
from bot.sandbox.models import CallRecord
from bot.sandbox.script import Script
from bot.sandbox.world import SandboxWorld
from bot.store.db import Database
from bot.store.models import Base, InboxEvent, OutboxItem
from bot.yamlsource import load_yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN = "IntegToken2026"
AES_KEY = "IntegEncodingAesKey0123456789abcdefghijklmn"
CORP_ID = "ww5a1b2c3d4e5f6a7b"
AGENT_ID = 1000002
SECRET = "sandbox-secret-0123456789abcdefghijklmnopq"

# Members of the simulated corp the tests act with.
ZHANG = "ZhangLi"
WANG = "WangJianhua"

T = TypeVar("T")


def integration_settings(db_url: str, **overrides: str) -> Settings:
    """The product's config.yaml, pointed at the sandbox, plus `BOT_…` overrides."""
    doc = load_yaml(REPO_ROOT / "config.yaml")
    environ = {
        "BOT_DATABASE__URL": db_url,
        "BOT_WECOM__API_BASE": "http://sandbox/cgi-bin",
        "BOT_WECOM__CORP_ID": CORP_ID,
        "BOT_WECOM__AGENT_ID": str(AGENT_ID),
        "BOT_WECOM__SECRET": SECRET,
        "BOT_WECOM__TOKEN": TOKEN,
        "BOT_WECOM__ENCODING_AES_KEY": AES_KEY,
        **overrides,
    }
    return build_settings(doc.data, environ, doc=doc, base_dir=REPO_ROOT)


@dataclass
class World:
    """Everything a test touches: the sandbox's truth, the bot, and the pipe between them."""

    clock: FrozenClock
    sandbox: Sandbox
    db: Database
    settings: Settings
    bot: BotApp
    deliverer: CallbackDeliverer

    @property
    def wecom(self) -> SandboxWorld:
        return self.sandbox.world

    @property
    def script(self) -> Script:
        return self.sandbox.script

    @property
    def faults(self) -> FaultInjector:
        return self.sandbox.world.faults

    async def settle(self, *, horizon: float = 15.0) -> int:
        """Deliver every owed callback, then let the bot handle them and send what is due.

        Callbacks the bot put off because WeCom lagged (RetryLater) come due within a few
        seconds; simulated time runs on to them, up to `horizon` seconds.
        """
        await self.deliverer.flush()
        done = await self.bot.drain()
        limit = self.clock.now() + timedelta(seconds=horizon)
        while True:
            due = self.db.call(
                lambda s: s.scalar(
                    select(func.min(InboxEvent.next_attempt_at)).where(
                        InboxEvent.status == "pending"
                    )
                )
            )
            if due is None or due > limit:
                return done
            if due > self.clock.now():
                self.clock.advance(due - self.clock.now())
            done += await self.bot.drain()

    async def step(self) -> int:
        """Deliver owed callbacks and work what is due now, without letting time pass."""
        await self.deliverer.flush()
        return await self.bot.drain()

    async def later(self, seconds: float) -> int:
        """Let simulated time pass, then work whatever has come due."""
        self.clock.advance(seconds)
        return await self.bot.drain()

    def calls(self, path: str) -> list[CallRecord]:
        return self.wecom.calls(path)

    def q(self, fn: Callable[[Session], T]) -> T:
        return self.db.call(fn)

    def rows(self, model: type[Any], *where: Any) -> list[Any]:
        return list(self.db.call(lambda s: s.scalars(select(model).where(*where)).all()))

    def count(self, model: type[Base], *where: Any) -> int:
        return int(
            self.db.call(lambda s: s.scalar(select(func.count()).select_from(model).where(*where)))
            or 0
        )

    def outbox(self, kind: str | None = None) -> list[OutboxItem]:
        where = [OutboxItem.kind == kind] if kind else []
        return self.rows(OutboxItem, *where)


def fast_commits(db: Database) -> None:
    """Commits that skip the fsync: these tests are about the mirror, not power loss."""

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        if db.is_postgres:
            cursor.execute("SET synchronous_commit = off")
        else:
            cursor.execute("PRAGMA synchronous = OFF")
        cursor.close()
        if db.is_postgres:
            dbapi_conn.commit()

    event.listen(db.engine, "connect", on_connect)


@pytest.fixture
def limits() -> Limits:
    return Limits()


@pytest.fixture
def setting_overrides() -> dict[str, str]:
    """Extra `BOT_…` variables for one test module (override the fixture).

    These tests are about the mirror, so the rule tags a callback leads to are not pushed
    to WeCom here (it would add tags and mark_tag calls to what they check); the tagging
    tests turn tag sync back on.
    """
    return {"BOT_TAG_SYNC__ENABLED": "false"}


@pytest.fixture
def wrap_transport() -> Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport]:
    """What the bot's WeCom transport goes through on its way to the sandbox."""
    return lambda transport: transport


@pytest.fixture
async def world(
    clock: FrozenClock,
    db: Database,
    limits: Limits,
    setting_overrides: dict[str, str],
    wrap_transport: Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport],
) -> AsyncIterator[World]:
    sandbox = Sandbox.create(
        clock,
        seed=11,
        token=TOKEN,
        encoding_aes_key=AES_KEY,
        corp_id=CORP_ID,
        agent_id=AGENT_ID,
        secret=SECRET,
        limits=limits,
    )
    sandbox.world.add_member(ZHANG, "张丽（客户经理）")
    sandbox.world.add_member(WANG, "王建华（客户经理）")
    settings = integration_settings(
        db.engine.url.render_as_string(hide_password=False), **setting_overrides
    )
    fast_commits(db)
    bot = create_app(
        settings, clock=clock, transport=wrap_transport(sandbox.api_transport()), db=db
    )
    bot.db.check_migrated()
    deliverer = sandbox.deliverer_to(bot.asgi)
    try:
        yield World(clock, sandbox, db, settings, bot, deliverer)
    finally:
        await deliverer.aclose()
        await bot.wecom.aclose()
        sandbox.world.assert_no_unknown_calls()
