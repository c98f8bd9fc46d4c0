"""Fixtures for the WeCom client tests: config, the fake WeCom, and client factories."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from pydantic import SecretStr

from bot.clock import FrozenClock
from bot.config import RetryConfig, WeComConfig
from bot.store.db import Database
from bot.wecom.client import WeComClient
from tests.wecom.fake import FakeWeCom

SECRET = "S3cr3t-value-never-shown-0123456789"
CORP_ID = "wwcorp"
AGENT_ID = 1000002


@pytest.fixture
def config() -> WeComConfig:
    return WeComConfig(
        corp_id=CORP_ID,
        agent_id=AGENT_ID,
        secret=SecretStr(SECRET),
        api_base="https://qyapi.weixin.qq.com/cgi-bin",
        retry=RetryConfig(busy_max_retries=3, backoff_base_seconds=0.5, backoff_cap_seconds=30),
    )


@pytest.fixture
def fake() -> FakeWeCom:
    return FakeWeCom(corp_id=CORP_ID, secret=SECRET)


MakeClient = Callable[..., WeComClient]


@pytest.fixture
async def make_client(
    config: WeComConfig, fake: FakeWeCom, clock: FrozenClock
) -> AsyncIterator[MakeClient]:
    """Build clients on the fake; all are closed at the end of the test."""
    made: list[WeComClient] = []

    def make(db: Database, **overrides: Any) -> WeComClient:
        client_config = overrides.pop("config", config)
        kwargs: dict[str, Any] = {
            "db": db,
            "clock": clock,
            "transport": fake.transport,
            "rng": random.Random(7),
        }
        kwargs.update(overrides)
        client = WeComClient(client_config, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


@pytest.fixture
async def client(make_client: MakeClient, db: Database) -> WeComClient:
    """A client on the fake, on SQLite and on PostgreSQL."""
    return make_client(db)


@pytest.fixture
async def lite_client(make_client: MakeClient, sqlite_db: Database) -> WeComClient:
    """A client on the fake, on SQLite only (tests whose subject is not the engine)."""
    return make_client(sqlite_db)
