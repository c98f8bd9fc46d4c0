"""Fixtures: a sandbox on the frozen clock, a WeCom API client with a token, a callback sink."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from bot.clock import FrozenClock
from bot.sandbox import CallbackDeliverer, Limits, Sandbox
from tests.sandbox.receiver import Receiver


class WeCom:
    """A thin test client: adds the token, returns the JSON answer."""

    def __init__(self, client: httpx.AsyncClient, sandbox: Sandbox) -> None:
        self.client = client
        self.sandbox = sandbox
        self.token = ""

    async def login(self) -> str:
        world = self.sandbox.world
        answer = await self.get(
            "gettoken", corpid=world.corp_id, corpsecret=world.secret, token=False
        )
        assert answer["errcode"] == 0, answer
        self.token = answer["access_token"]
        return self.token

    async def get(self, path: str, *, token: bool = True, **params: Any) -> dict[str, Any]:
        if token:
            params["access_token"] = self.token
        response = await self.client.get(f"/cgi-bin/{path}", params=params)
        return dict(response.json())

    async def post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = await self.client.post(
            f"/cgi-bin/{path}", params={"access_token": self.token}, json=body or {}
        )
        return dict(response.json())


def make_sandbox(clock: FrozenClock, limits: Limits | None = None) -> Sandbox:
    sandbox = Sandbox.create(clock, seed=7, limits=limits)
    world = sandbox.world
    world.add_member("ZhangLi", "张丽")
    world.add_member("WangJianhua", "王建华")
    world.add_member("LiuYang", "刘洋", follow_enabled=False)
    return sandbox


@pytest.fixture
def limits() -> Limits:
    return Limits()


@pytest.fixture
def sandbox(clock: FrozenClock, limits: Limits) -> Sandbox:
    return make_sandbox(clock, limits)


@pytest.fixture
async def wecom(sandbox: Sandbox) -> AsyncIterator[WeCom]:
    async with sandbox.api_client() as client:
        api = WeCom(client, sandbox)
        await api.login()
        yield api


@pytest.fixture
def receiver(sandbox: Sandbox, clock: FrozenClock) -> Receiver:
    return Receiver(sandbox.world, clock)


@pytest.fixture
async def deliverer(sandbox: Sandbox, receiver: Receiver) -> AsyncIterator[CallbackDeliverer]:
    deliverer = sandbox.deliverer_to(receiver.app)
    yield deliverer
    await deliverer.aclose()
