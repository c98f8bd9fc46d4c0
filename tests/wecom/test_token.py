"""The access token: cached in the database, reused, refreshed single-flight, retried once."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from bot.clock import FrozenClock
from bot.config import WeComConfig
from bot.store.db import Database
from bot.store.models import TokenCache
from bot.wecom import ConfigurationError, TokenInvalid, WeComUnavailable
from bot.wecom.auth import REFRESH_MARGIN
from tests.wecom.conftest import AGENT_ID, CORP_ID, SECRET, MakeClient
from tests.wecom.fake import FakeWeCom, err, ok

PATH = "externalcontact/get_follow_user_list"
KEY = f"{CORP_ID}:{AGENT_ID}"


def stored(db: Database) -> TokenCache | None:
    with db.session() as session:
        return session.execute(select(TokenCache).where(TokenCache.key == KEY)).scalar_one_or_none()


async def spin_until(condition, rounds: int = 100_000) -> None:
    """Yield to the loop until `condition()` holds (no wall-clock sleeping)."""
    for _ in range(rounds):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def test_token_fetched_once_and_reused(client, fake: FakeWeCom, db, clock: FrozenClock):
    fake.always(PATH, ok(follow_user=["zhangsan"]))

    first = await client.externalcontact.get_follow_user_list()
    second = await client.externalcontact.get_follow_user_list()

    assert first.follow_user == second.follow_user == ["zhangsan"]
    assert len(fake.calls("gettoken")) == 1
    gettoken = fake.calls("gettoken")[0]
    assert gettoken.method == "GET"
    assert gettoken.params == {"corpid": CORP_ID, "corpsecret": SECRET}
    assert "access_token" not in gettoken.params
    tokens = {r.token for r in fake.calls(PATH)}
    assert tokens == {"TOKEN-1-" + "x" * 20}
    row = stored(db)
    assert row is not None
    assert row.access_token == "TOKEN-1-" + "x" * 20
    assert row.expires_at == clock.now() + timedelta(seconds=7200)
    assert row.refresh_lease_until is None
    assert row.refresh_owner is None


async def test_two_clients_sharing_a_database_fetch_once(make_client: MakeClient, fake, db):
    fake.always(PATH, ok(follow_user=[]))
    one, two = make_client(db), make_client(db)

    await one.externalcontact.get_follow_user_list()
    await two.externalcontact.get_follow_user_list()

    assert len(fake.calls("gettoken")) == 1
    assert one.token_fetches == 1
    assert two.token_fetches == 0
    assert fake.calls(PATH)[0].token == fake.calls(PATH)[1].token


async def test_refreshed_within_five_minutes_of_expiry(client, fake, clock: FrozenClock):
    fake.always(PATH, ok(follow_user=[]))
    await client.externalcontact.get_follow_user_list()

    clock.advance(timedelta(seconds=7200) - REFRESH_MARGIN - timedelta(seconds=1))
    await client.externalcontact.get_follow_user_list()
    assert len(fake.calls("gettoken")) == 1

    clock.advance(timedelta(seconds=2))
    await client.externalcontact.get_follow_user_list()
    assert len(fake.calls("gettoken")) == 2
    assert fake.calls(PATH)[-1].token.startswith("TOKEN-2-")


@pytest.mark.parametrize("errcode", [40014, 42001])
async def test_token_refused_refetch_and_retry_once(client, fake, errcode: int):
    fake.reply(PATH, err(errcode, "access_token expired"), ok(follow_user=["lisi"]))

    result = await client.externalcontact.get_follow_user_list()

    assert result.follow_user == ["lisi"]
    assert len(fake.calls("gettoken")) == 2
    calls = fake.calls(PATH)
    assert [c.token[:8] for c in calls] == ["TOKEN-1-", "TOKEN-2-"]
    assert client.stats.token_refused == 1
    assert client.stats.errors[(PATH, errcode)] == 1


async def test_revoked_token_is_replaced(client, fake):
    fake.always(PATH, ok(follow_user=[]))
    await client.externalcontact.get_follow_user_list()
    fake.revoke_tokens()  # WeCom invalidates early: the fake answers 40014

    await client.externalcontact.get_follow_user_list()

    assert len(fake.calls("gettoken")) == 2
    assert len(fake.calls(PATH)) == 3


@pytest.mark.parametrize("errcode", [40014, 42001])
async def test_second_token_failure_raises(client, fake, errcode: int):
    fake.reply(PATH, err(errcode), err(errcode))

    with pytest.raises(TokenInvalid) as caught:
        await client.externalcontact.get_follow_user_list()

    assert caught.value.errcode == errcode
    assert len(fake.calls("gettoken")) == 2  # the first fetch and exactly one refetch
    assert len(fake.calls(PATH)) == 2  # and no retry beyond the one resend


async def test_missing_token_code_is_not_retried(client, fake):
    fake.reply(PATH, err(41001, "access_token missing"))

    with pytest.raises(TokenInvalid):
        await client.externalcontact.get_follow_user_list()

    assert len(fake.calls(PATH)) == 1
    assert len(fake.calls("gettoken")) == 1


async def test_invalidate_only_if_still_the_stored_token(make_client: MakeClient, fake, db):
    fake.always(PATH, ok(follow_user=[]))
    one, two = make_client(db), make_client(db)
    await one.externalcontact.get_follow_user_list()
    await two.externalcontact.get_follow_user_list()
    fake.revoke_tokens()

    await one.externalcontact.get_follow_user_list()  # refuses TOKEN-1, stores TOKEN-2
    # `two` still holds TOKEN-1; its refusal must not wipe TOKEN-2 but pick it up.
    await two.externalcontact.get_follow_user_list()

    assert len(fake.calls("gettoken")) == 2
    row = stored(db)
    assert row is not None
    assert row.access_token is not None
    assert row.access_token.startswith("TOKEN-2-")
    assert fake.calls(PATH)[-1].token.startswith("TOKEN-2-")


async def test_concurrent_calls_with_empty_cache_fetch_once(client, fake):
    fake.always(PATH, ok(follow_user=[]))

    await asyncio.gather(*(client.externalcontact.get_follow_user_list() for _ in range(10)))

    assert len(fake.calls("gettoken")) == 1
    assert len(fake.calls(PATH)) == 10


async def test_concurrent_refresh_across_processes_waits_for_the_lease(
    make_client: MakeClient, fake, db, clock: FrozenClock
):
    fake.always(PATH, ok(follow_user=[]))
    one, two = make_client(db), make_client(db)
    fake.gettoken_gate = asyncio.Event()

    first = asyncio.create_task(one.externalcontact.get_follow_user_list())
    await spin_until(lambda: len(fake.calls("gettoken")) == 1)  # `one` holds the lease
    second = asyncio.create_task(two.externalcontact.get_follow_user_list())
    await spin_until(lambda: len(clock.slept) > 0)  # `two` is polling the row
    fake.gettoken_gate.set()
    await asyncio.gather(first, second)

    assert len(fake.calls("gettoken")) == 1
    assert two.token_fetches == 0
    assert {c.token for c in fake.calls(PATH)} == {"TOKEN-1-" + "x" * 20}


async def test_lease_of_a_dead_process_is_taken_over(client, fake, db, clock: FrozenClock):
    fake.always(PATH, ok(follow_user=[]))
    with db.session() as session:
        session.add(
            TokenCache(
                key=KEY,
                refresh_lease_until=clock.now() + timedelta(seconds=5),
                refresh_owner="crashed-host:1:dead",
                updated_at=clock.now(),
            )
        )

    await client.externalcontact.get_follow_user_list()

    assert len(fake.calls("gettoken")) == 1
    assert sum(clock.slept) >= 5
    row = stored(db)
    assert row is not None
    assert row.refresh_owner is None
    assert row.access_token


async def test_waiting_for_another_refresh_is_bounded(client, fake, db, clock: FrozenClock):
    with db.session() as session:
        session.add(
            TokenCache(
                key=KEY,
                refresh_lease_until=clock.now() + timedelta(hours=1),
                refresh_owner="stuck",
                updated_at=clock.now(),
            )
        )
    start = clock.timestamp()

    with pytest.raises(WeComUnavailable):
        await client.with_options(retries=False).externalcontact.get_follow_user_list()

    assert fake.calls("gettoken") == []
    assert fake.calls(PATH) == []
    assert 30 <= clock.timestamp() - start <= 60  # lease (25 s) + one timeout, not an hour


async def test_valid_token_is_used_while_another_process_refreshes(
    client, fake, db, clock: FrozenClock
):
    fake.always(PATH, ok(follow_user=[]))
    await client.externalcontact.get_follow_user_list()
    clock.advance(timedelta(seconds=7200) - REFRESH_MARGIN + timedelta(seconds=10))
    with db.session() as session:
        row = session.get(TokenCache, KEY)
        row.refresh_lease_until = clock.now() + timedelta(seconds=30)
        row.refresh_owner = "other"

    await client.externalcontact.get_follow_user_list()

    assert len(fake.calls("gettoken")) == 1  # no wait, no second fetch
    assert clock.slept == []


async def test_failed_refresh_keeps_a_still_valid_token(client, fake, clock: FrozenClock):
    fake.always(PATH, ok(follow_user=[]))
    await client.externalcontact.get_follow_user_list()
    clock.advance(timedelta(seconds=7200) - REFRESH_MARGIN + timedelta(seconds=10))
    fake.reply("gettoken", err(-1, "system busy"))

    await client.with_options(retries=False).externalcontact.get_follow_user_list()

    assert len(fake.calls("gettoken")) == 2
    assert fake.calls(PATH)[-1].token.startswith("TOKEN-1-")


async def test_wrong_secret_is_a_configuration_error_without_retry(
    make_client: MakeClient, fake, db, config: WeComConfig
):
    wrong = "wrong-secret-value-abcdefghijklmnop"
    bad = make_client(db, config=config.model_copy(update={"secret": SecretStr(wrong)}))

    with pytest.raises(ConfigurationError) as caught:
        await bad.externalcontact.get_follow_user_list()

    assert caught.value.errcode == 40001
    assert caught.value.path == "gettoken"
    assert len(fake.calls("gettoken")) == 1
    assert wrong not in str(caught.value)
    assert wrong not in repr(caught.value)


async def test_gettoken_errmsg_echoing_the_secret_is_masked(client, fake):
    fake.reply(
        "gettoken",
        err(40001, f"invalid credential, corpsecret={SECRET}, hint: [1700000000]"),
    )

    with pytest.raises(ConfigurationError) as caught:
        await client.externalcontact.get_follow_user_list()

    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value)
    assert "***" in str(caught.value)


async def test_token_and_secret_never_in_errors_or_logs(
    client, fake, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    # Set httpx's own level too: app logging set-up may have raised it to WARNING, which
    # would hide the very records (URLs with tokens) this test is about.
    caplog.set_level(logging.INFO, logger="httpx")
    fake.always(PATH, ok(follow_user=[]))
    await client.externalcontact.get_follow_user_list()
    token, next_token = "TOKEN-1-" + "x" * 20, "TOKEN-2-" + "x" * 20
    assert fake.calls(PATH)[0].token == token
    # WeCom's hints could quote the refused token; both refusals here do.
    fake.reply(
        PATH,
        err(40014, f"invalid access_token {token}"),
        err(40014, f"access_token {next_token} refused, url ?access_token={next_token}&x=1"),
    )

    with pytest.raises(TokenInvalid) as caught:
        await client.externalcontact.get_follow_user_list()

    text = f"{caught.value} {caught.value!r} {caught.value.errmsg} {caught.value.args}"
    assert token not in text
    assert next_token not in text
    assert "HTTP Request" in caplog.text  # httpx did log the requests...
    for secret in (SECRET, token, next_token):
        assert secret not in caplog.text  # ...with the query masked


async def test_gettoken_timeout_is_unavailable_and_masked(client, fake):
    fake.reply("gettoken", httpx.ConnectTimeout(f"timed out: corpsecret={SECRET}"))

    with pytest.raises(WeComUnavailable) as caught:
        await client.with_options(retries=False).externalcontact.get_follow_user_list()

    assert SECRET not in str(caught.value)
    assert caught.value.path == "gettoken"
