"""A stand-in bot callback endpoint that checks what the sandbox sends with two crypto stacks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import xmltodict
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from wechatpy.work.crypto import WeChatCrypto

from bot.clock import FrozenClock
from bot.gateway.crypto import WeComCrypto
from bot.sandbox import SandboxWorld


@dataclass
class Receiver:
    """Decrypts every POST with wechatpy (the oracle) and with our crypto, and can misbehave."""

    world: SandboxWorld
    clock: FrozenClock
    fail_first: int = 0
    fail_status: int = 500
    raise_first: int = 0
    sleep_first: int = 0
    sleep_seconds: float = 6.0
    received: list[dict[str, Any]] = field(default_factory=list)
    bodies: list[str] = field(default_factory=list)
    plaintexts: list[str] = field(default_factory=list)
    hits: int = 0

    def __post_init__(self) -> None:
        w = self.world
        self.oracle = WeChatCrypto(w.token, w.encoding_aes_key, w.corp_id)
        self.ours = WeComCrypto(w.token, w.encoding_aes_key, w.corp_id)
        self.app = Starlette(
            routes=[Route("/wecom/callback", self.handle, methods=["GET", "POST"])]
        )

    async def handle(self, request: Request) -> Response:
        q = request.query_params
        if request.method == "GET":
            echo = self.oracle.check_signature(
                q["msg_signature"], q["timestamp"], q["nonce"], q["echostr"]
            )
            return PlainTextResponse(echo if isinstance(echo, str) else echo.decode())
        self.hits += 1
        body = (await request.body()).decode()
        self.bodies.append(body)
        plain = self.oracle.decrypt_message(body, q["msg_signature"], q["timestamp"], q["nonce"])
        envelope = xmltodict.parse(body)["xml"]
        ours = self.ours.open(q["msg_signature"], q["timestamp"], q["nonce"], envelope["Encrypt"])
        assert ours.decode() == plain
        self.plaintexts.append(plain)
        self.received.append(xmltodict.parse(plain)["xml"])
        if self.hits <= self.raise_first:
            raise RuntimeError("bot crashed")
        if self.hits <= self.sleep_first:
            await self.clock.sleep(self.sleep_seconds)
        if self.hits <= self.fail_first:
            return Response(status_code=self.fail_status)
        return Response(status_code=200)
