"""The composition root: start-up refusal, /healthz, and serving over real HTTP."""

from __future__ import annotations

import asyncio
import socket
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import select, text

from bot.app import create_app
from bot.clock import SHANGHAI, FrozenClock, SystemClock
from bot.config import Settings, build_settings
from bot.sandbox.harness import Sandbox
from bot.store.db import Database, DatabaseNotMigrated
from bot.yamlsource import load_yaml

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "AppTestToken1"
AES_KEY = "AppTestEncodingAesKey0123456789abcdefghijkl"


def settings_for(db_url: str, **extra: str) -> Settings:
    doc = load_yaml(ROOT / "config.yaml")
    env = {
        "BOT_DATABASE__URL": db_url,
        "BOT_WECOM__API_BASE": "http://sandbox/cgi-bin",
        "BOT_WECOM__CORP_ID": "ww5a1b2c3d4e5f6a7b",
        "BOT_WECOM__AGENT_ID": "1000002",
        "BOT_WECOM__SECRET": "sandbox-secret-0123456789abcdefghijklmnopq",
        "BOT_WECOM__TOKEN": TOKEN,
        "BOT_WECOM__ENCODING_AES_KEY": AES_KEY,
        **extra,
    }
    return build_settings(doc.data, env, doc=doc, base_dir=ROOT)


def sandbox_for(clock, settings: Settings) -> Sandbox:
    return Sandbox.create(
        clock,
        token=TOKEN,
        encoding_aes_key=AES_KEY,
        corp_id=settings.wecom.corp_id,
        agent_id=settings.wecom.agent_id,
        secret=settings.wecom.secret.get_secret_value(),
    )


async def test_start_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    settings = settings_for(f"sqlite:///{tmp_path / 'fresh.db'}")
    bot = create_app(settings, clock=FrozenClock(datetime(2026, 11, 23, 9, tzinfo=SHANGHAI)))
    with pytest.raises(DatabaseNotMigrated, match="run `bot db upgrade`"):
        await bot.start()
    await bot.wecom.aclose()


async def test_healthz_reports_database_and_token(db: Database, clock: FrozenClock) -> None:
    settings = settings_for("sqlite://")
    sandbox = sandbox_for(clock, settings)
    bot = create_app(settings, clock=clock, transport=sandbox.api_transport(), db=db)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=bot.asgi), base_url="http://bot"
    ) as http:
        ok = await http.get("/healthz")
        assert ok.status_code == 200
        assert ok.json() == {"ok": True, "database": "ok", "wecom_token": "ok"}
    await bot.wecom.aclose()
    # Another instance whose configured secret the admin has since rotated.
    wrong = settings_for("sqlite://", BOT_WECOM__SECRET="rotated-away")
    await db.run(lambda s: s.execute(text("DELETE FROM token_cache")))
    other = create_app(wrong, clock=clock, transport=sandbox.api_transport(), db=db)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=other.asgi), base_url="http://bot"
    ) as http:
        bad = await http.get("/healthz")
        assert bad.status_code == 503
        assert bad.json()["wecom_token"] == "error: ConfigurationError"
        assert bad.json()["database"] == "ok"
    await other.wecom.aclose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_serve_over_real_http_stores_a_callback_and_welcomes(tmp_path: Path) -> None:
    """`bot serve`'s stack (uvicorn + lifespan + background workers) with real sockets."""
    from bot.store.migrate import upgrade

    clock = SystemClock(SHANGHAI)
    settings = settings_for(f"sqlite:///{tmp_path / 'serve.db'}")
    db = Database.from_url(settings.database.url)
    upgrade(db.engine)
    sandbox = sandbox_for(clock, settings)
    sandbox.world.add_member("zhangwei", "张伟（客户经理）")
    bot = create_app(settings, clock=clock, transport=sandbox.api_transport(), db=db)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(bot.asgi, host="127.0.0.1", port=port, log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    deliverer = None
    try:
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.01)  # waiting for a socket to open, not for time to pass
        assert server.started
        from bot.sandbox.callbacks import CallbackDeliverer

        deliverer = CallbackDeliverer(sandbox.world, f"http://127.0.0.1:{port}/wecom/callback")
        assert await deliverer.verify_url()
        added = sandbox.script.customer_adds_member(
            __import__("bot.sandbox.script", fromlist=["NewCustomer"]).NewCustomer(name="李娜"),
            "zhangwei",
            state="qr_lobby",
        )
        attempts = await deliverer.flush()
        assert [a.status_code for a in attempts] == [200]
        for _ in range(500):  # the background fast lane sends the welcome by itself
            code = sandbox.world.welcome_codes[added.welcome_code or ""]
            if code.used_at is not None:
                break
            await asyncio.sleep(0.01)
        assert code.used_at is not None
        assert code.used_at - code.issued_at <= 3
    finally:
        if deliverer is not None:
            await deliverer.aclose()
        server.should_exit = True
        await serving
        db.dispose()


async def test_a_gateway_instance_only_stores_callbacks_for_an_all_instance(
    db: Database, clock: FrozenClock
) -> None:
    from bot.sandbox.callbacks import CallbackDeliverer
    from bot.store.models import InboxEvent

    settings = settings_for("sqlite://", BOT_SERVER__ROLE="gateway")
    sandbox = sandbox_for(clock, settings)
    front = create_app(settings, clock=clock, transport=sandbox.api_transport(), db=db)
    await front.start()
    # Nothing runs beside the HTTP app: no dispatcher, sender or scheduler, and no parsed
    # callbacks kept for a dispatcher that is not there.
    assert front._tasks == []
    assert front.ticker._scheduler is None
    assert front.gateway.on_stored is None
    deliverer = CallbackDeliverer(
        sandbox.world,
        "http://bot/wecom/callback",
        transport=httpx.ASGITransport(app=front.asgi),
    )
    sandbox.script.admin_creates_tag("资产等级", ["资产50万+"])
    # A tag group and its tag: one callback each.
    assert [a.status_code for a in await deliverer.flush()] == [200, 200]
    await deliverer.aclose()
    await front.stop()

    def statuses() -> list[str]:
        return db.call(lambda s: list(s.scalars(select(InboxEvent.status))))

    assert statuses() == ["pending", "pending"]
    # An instance of role all on the same database processes what the gateway stored.
    worker = create_app(
        settings_for("sqlite://"), clock=clock, transport=sandbox.api_transport(), db=db
    )
    assert worker.gateway.on_stored is not None
    await worker.drain()
    await worker.wecom.aclose()
    assert statuses() == ["done", "done"]
