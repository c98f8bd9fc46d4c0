"""One object bundling a world, its script, its API app and transports, for tests and demo."""

from __future__ import annotations

import random
from dataclasses import dataclass

import httpx
from starlette.applications import Starlette
from starlette.types import ASGIApp

from bot.clock import Clock
from bot.sandbox.api import create_api_app
from bot.sandbox.callbacks import CallbackDeliverer
from bot.sandbox.limits import Limits
from bot.sandbox.script import Script
from bot.sandbox.world import SandboxWorld

DEFAULT_CORP_ID = "ww5a1b2c3d4e5f6a7b"
DEFAULT_AGENT_ID = 1000002
DEFAULT_SECRET = "sandbox-secret-0123456789abcdefghijklmnopq"


@dataclass
class Sandbox:
    """A simulated WeCom: `api_transport()` for the bot's client, `deliverer_to()` for
    callbacks into the bot, `script` for what people do."""

    world: SandboxWorld
    script: Script
    app: Starlette

    @classmethod
    def create(
        cls,
        clock: Clock,
        *,
        corp_id: str = DEFAULT_CORP_ID,
        agent_id: int = DEFAULT_AGENT_ID,
        secret: str = DEFAULT_SECRET,
        seed: int = 0,
        token: str | None = None,
        encoding_aes_key: str | None = None,
        limits: Limits | None = None,
    ) -> Sandbox:
        world = SandboxWorld(
            clock,
            corp_id=corp_id,
            agent_id=agent_id,
            secret=secret,
            rng=random.Random(seed),
            token=token,
            encoding_aes_key=encoding_aes_key,
            limits=limits,
        )
        return cls(world, Script(world), create_api_app(world))

    def api_transport(self) -> httpx.ASGITransport:
        return httpx.ASGITransport(app=self.app)

    def api_client(self, base_url: str = "http://sandbox") -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=self.api_transport(), base_url=base_url)

    def deliverer_to(
        self,
        bot_app: ASGIApp,
        url: str = "http://bot/wecom/callback",
        *,
        max_attempts: int = 3,
        retry_on_status: bool = True,
        deadline_seconds: float = 5.0,
    ) -> CallbackDeliverer:
        """Callbacks into an in-process bot app."""
        return CallbackDeliverer(
            self.world,
            url,
            transport=httpx.ASGITransport(app=bot_app),
            max_attempts=max_attempts,
            retry_on_status=retry_on_status,
            deadline_seconds=deadline_seconds,
        )
