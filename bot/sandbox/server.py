"""The standalone sandbox: WeCom's API, the admin routes, and real-HTTP callback delivery."""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount

from bot.clock import SystemClock
from bot.config import Settings
from bot.sandbox.admin import AdminApi
from bot.sandbox.api import TimeoutMode, WeComApi
from bot.sandbox.bankfile import write_bank_file
from bot.sandbox.branch import build_branch
from bot.sandbox.callbacks import CallbackDeliverer
from bot.sandbox.script import Script
from bot.sandbox.world import SandboxWorld

log = logging.getLogger(__name__)

DEV_CREDENTIALS: dict[str, str | int] = {
    "corp_id": "wwsandbox0000000001",
    "agent_id": 1000002,
    "secret": "sandboxdevsecret",
    "token": "sandboxdevtoken",
    "encoding_aes_key": "SandboxDevEncodingAesKey0123456789abcdefghi",
}


def create_sandbox_app(
    world: SandboxWorld,
    *,
    deliver_to: str | None,
    deliverer: CallbackDeliverer | None = None,
    timeout_mode: TimeoutMode = "sleep",
) -> Starlette:
    """API under /cgi-bin/, admin under /sandbox/; admin actions deliver their callbacks to
    `deliver_to` (or through `deliverer`) before answering."""
    if deliverer is None and deliver_to is not None:
        deliverer = CallbackDeliverer(world, deliver_to)
    admin = AdminApi(world, Script(world), deliverer)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if deliverer is not None:
            await deliverer.aclose()

    app = Starlette(
        routes=[
            *WeComApi(world, timeout_mode=timeout_mode).routes(),
            Mount("/sandbox", routes=admin.routes()),
        ],
        lifespan=lifespan,
    )
    app.state.world = world
    app.state.admin = admin
    return app


@dataclass(frozen=True)
class Credentials:
    """What the sandbox and the bot must agree on."""

    corp_id: str
    agent_id: int
    secret: str
    token: str
    encoding_aes_key: str


def resolve_credentials(
    settings: Settings | None,
    *,
    corp_id: str | None = None,
    agent_id: int | None = None,
    secret: str | None = None,
    token: str | None = None,
    encoding_aes_key: str | None = None,
) -> Credentials:
    """Explicit values, else the bot's settings, else the sandbox's development defaults."""
    wecom = settings.wecom if settings is not None else None
    configured: dict[str, str | int] = {}
    if wecom is not None:
        configured = {
            "corp_id": wecom.corp_id,
            "agent_id": wecom.agent_id,
            "secret": wecom.secret.get_secret_value(),
            "token": wecom.token.get_secret_value(),
            "encoding_aes_key": wecom.encoding_aes_key.get_secret_value(),
        }
    explicit: dict[str, str | int | None] = {
        "corp_id": corp_id,
        "agent_id": agent_id,
        "secret": secret,
        "token": token,
        "encoding_aes_key": encoding_aes_key,
    }
    chosen: dict[str, str | int] = {}
    for name, default in DEV_CREDENTIALS.items():
        value = explicit[name] if explicit[name] is not None else configured.get(name)
        if not value:
            # Not secret: these are the sandbox's published development values.
            log.warning(
                "sandbox: %s not configured, using %r; give the bot BOT_WECOM__%s=%s",
                name,
                default,
                name.upper(),
                default,
            )
            value = default
        chosen[name] = value
    return Credentials(
        corp_id=str(chosen["corp_id"]),
        agent_id=int(chosen["agent_id"]),
        secret=str(chosen["secret"]),
        token=str(chosen["token"]),
        encoding_aes_key=str(chosen["encoding_aes_key"]),
    )


def run_sandbox(
    host: str,
    port: int,
    *,
    callback_url: str | None,
    token: str | None = None,
    encoding_aes_key: str | None = None,
    corp_id: str | None = None,
    agent_id: int | None = None,
    secret: str | None = None,
    settings: Settings | None = None,
    seed: int = 0,
    managers: int = 5,
    customers: int = 300,
    groups: int = 12,
    bank_file: Path | None = None,
) -> None:
    """Serve a freshly built branch on the system clock until interrupted (`bot sandbox`).

    Credentials come from the arguments, else from `settings`, else development defaults.
    With `bank_file`, the bank's export of the branch is written there first (for
    `bot import-customers`).
    """
    creds = resolve_credentials(
        settings,
        corp_id=corp_id,
        agent_id=agent_id,
        secret=secret,
        token=token,
        encoding_aes_key=encoding_aes_key,
    )
    world = SandboxWorld(
        SystemClock(),
        corp_id=creds.corp_id,
        agent_id=creds.agent_id,
        secret=creds.secret,
        rng=random.Random(seed),
        token=creds.token,
        encoding_aes_key=creds.encoding_aes_key,
    )
    build_branch(
        world,
        managers=managers,
        customers=customers,
        groups=groups,
        rng=random.Random(seed + 1),
    )
    if bank_file is not None:
        today = world.clock.now().date()
        write_bank_file(world, bank_file, today=today, rng=random.Random(seed + 2))
    app = create_sandbox_app(world, deliver_to=callback_url)
    uvicorn.run(app, host=host, port=port, log_level="info")
