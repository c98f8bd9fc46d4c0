"""Retry policy: what the client retries, how long it waits, and what it raises."""

from __future__ import annotations

import random

import httpx
import pytest
from pydantic import SecretStr

from bot.clock import FrozenClock
from bot.config import MemberMessageLimit, QuotaConfig
from bot.wecom import (
    ConfigurationError,
    InvalidExternalUserId,
    NotExternalContact,
    OutcomeUnknown,
    QuotaWait,
    RateLimited,
    RequestRejected,
    TransientError,
    WeComClient,
    WeComUnavailable,
    WelcomeCodeUsed,
    WelcomeInProgress,
)
from bot.wecom.errors import LOCAL_QUOTA_ERRCODE
from bot.wecom.models import AddMsgTemplateResult, ExternalContactDetail
from bot.wecom.ratelimit import MemoryRateLimiter
from tests.wecom.conftest import MakeClient
from tests.wecom.fake import FakeWeCom, err, ok

GET = "externalcontact/get"
TEMPLATE = "externalcontact/add_msg_template"
WELCOME = "externalcontact/send_welcome_msg"
CONTACT = {"external_contact": {"external_userid": "wmABC", "name": "Li"}, "follow_user": []}


class FixedFraction(random.Random):
    """An rng whose uniform(a, b) is always 90% of the way from a to b."""

    def uniform(self, a: float, b: float) -> float:
        return a + 0.9 * (b - a)


async def get_contact(client: WeComClient) -> ExternalContactDetail:
    return await client.externalcontact.get("wmABC")


async def create_task(client: WeComClient) -> AddMsgTemplateResult:
    return await client.groupmsg.add_msg_template(external_userid=["wmABC"], text="hello")


async def test_busy_is_retried_with_growing_jittered_sleeps(
    make_client: MakeClient, sqlite_db, fake: FakeWeCom, clock: FrozenClock
):
    client = make_client(sqlite_db, rng=FixedFraction())
    fake.always(GET, err(-1, "system busy"))

    with pytest.raises(TransientError) as caught:
        await get_contact(client)

    assert caught.value.errcode == -1
    assert len(fake.calls(GET)) == 1 + 3  # busy_max_retries = 3
    assert clock.slept == pytest.approx([0.45, 0.9, 1.8])  # 90% of 0.5, 1, 2
    assert client.stats.retries[GET] == 3
    assert client.stats.errors[(GET, -1)] == 4


async def test_backoff_stays_under_the_exponential_ceiling(lite_client, fake, clock):
    fake.always(GET, err(-1, "system busy"))

    with pytest.raises(TransientError):
        await get_contact(lite_client)

    assert len(clock.slept) == 3
    for attempt, slept in enumerate(clock.slept):
        assert 0 <= slept <= 0.5 * 2**attempt


async def test_backoff_is_capped(make_client: MakeClient, sqlite_db, fake, clock, config):
    retry = config.retry.model_copy(update={"busy_max_retries": 8, "backoff_cap_seconds": 3.0})
    client = make_client(
        sqlite_db, config=config.model_copy(update={"retry": retry}), rng=FixedFraction()
    )
    fake.always(GET, err(-1, "system busy"))

    with pytest.raises(TransientError):
        await get_contact(client)

    assert max(clock.slept) == pytest.approx(2.7)
    assert len(clock.slept) == 8


async def test_busy_then_success(lite_client, fake):
    fake.reply(GET, err(-1, "system busy"), ok(**CONTACT))

    detail = await get_contact(lite_client)

    assert detail.external_contact.name == "Li"
    assert len(fake.calls(GET)) == 2


async def test_concurrency_limit_is_retried(lite_client, fake):
    fake.reply(GET, err(45033, "api concurrent out of limit"), ok(**CONTACT))

    detail = await get_contact(lite_client)

    assert detail.external_contact.external_userid == "wmABC"
    assert len(fake.calls(GET)) == 2


async def test_busy_is_retried_for_a_non_idempotent_call_too(lite_client, fake):
    # An errcode is WeCom's definite "not done", so even a mass-send can be sent again.
    fake.reply(TEMPLATE, err(-1, "system busy"), ok(msgid="msgA", fail_list=[]))

    result = await create_task(lite_client)

    assert result.msgid == "msgA"
    assert len(fake.calls(TEMPLATE)) == 2


async def test_rate_limited_pauses_the_bucket_and_is_not_retried(lite_client, fake, clock):
    fake.reply(GET, err(45009, "api freq out of limit"))

    with pytest.raises(RateLimited) as caught:
        await get_contact(lite_client)

    assert caught.value.retry_after == 60.0
    assert len(fake.calls(GET)) == 1
    assert clock.slept == []
    assert lite_client.limiter.reserve(GET) == pytest.approx(60.0)
    assert lite_client.limiter.reserve("externalcontact/list") == 0.0


async def test_after_rate_limit_the_next_call_waits_for_the_pause(lite_client, fake, clock):
    fake.reply(GET, err(45009, "api freq out of limit"), ok(**CONTACT))
    with pytest.raises(RateLimited):
        await get_contact(lite_client)

    await get_contact(lite_client)

    assert clock.slept == [pytest.approx(60.0)]


async def test_read_timeout_on_a_read_is_retried(lite_client, fake, clock):
    fake.reply(GET, httpx.ReadTimeout("timed out"), ok(**CONTACT))

    detail = await get_contact(lite_client)

    assert detail.external_contact.name == "Li"
    assert len(fake.calls(GET)) == 2
    assert len(clock.slept) == 1
    assert lite_client.stats.transport_errors[GET] == 1


async def test_read_timeouts_give_up_as_unavailable(lite_client, fake):
    fake.always(GET, httpx.ReadTimeout("timed out"))

    with pytest.raises(WeComUnavailable):
        await get_contact(lite_client)

    assert len(fake.calls(GET)) == 4


async def test_timeout_on_mass_send_is_outcome_unknown_without_retry(lite_client, fake, clock):
    fake.reply(TEMPLATE, httpx.ReadTimeout("timed out"))

    with pytest.raises(OutcomeUnknown) as caught:
        await create_task(lite_client)

    assert not isinstance(caught.value, WeComUnavailable)
    assert len(fake.calls(TEMPLATE)) == 1
    assert clock.slept == []


@pytest.mark.parametrize(
    "failure", [httpx.WriteTimeout("timed out"), httpx.RemoteProtocolError("peer closed")]
)
async def test_other_maybe_sent_failures_on_non_idempotent_calls(lite_client, fake, failure):
    fake.reply("message/send", failure)

    with pytest.raises(OutcomeUnknown):
        await lite_client.message.send_text("zhangsan", "hi")

    assert len(fake.calls("message/send")) == 1


async def test_connect_error_on_mass_send_is_retried_because_nothing_was_sent(lite_client, fake):
    fake.reply(TEMPLATE, httpx.ConnectError("connection refused"), ok(msgid="msgA"))

    result = await create_task(lite_client)

    assert result.msgid == "msgA"
    assert len(fake.calls(TEMPLATE)) == 2


@pytest.mark.parametrize("errcode", [40001, 48002, 60011, 60020, 84074])
async def test_configuration_errors_are_final_and_not_retried(lite_client, fake, clock, errcode):
    fake.reply(GET, err(errcode, "permission problem"))

    with pytest.raises(ConfigurationError) as caught:
        await get_contact(lite_client)

    assert caught.value.errcode == errcode
    assert caught.value.final
    assert len(fake.calls(GET)) == 1
    assert clock.slept == []


async def test_welcome_code_used(lite_client, fake):
    fake.reply(WELCOME, err(41051, "externaluser has started chatting"))

    with pytest.raises(WelcomeCodeUsed):
        await lite_client.externalcontact.send_welcome_msg("CODE", text="welcome")

    assert len(fake.calls(WELCOME)) == 1


async def test_welcome_in_progress_is_retried_once(lite_client, fake):
    fake.always(WELCOME, err(41096, "welcome msg is being sent"))

    with pytest.raises(WelcomeInProgress):
        await lite_client.externalcontact.send_welcome_msg("CODE", text="welcome")

    assert len(fake.calls(WELCOME)) == 2


@pytest.mark.parametrize(
    ("errcode", "cls"), [(84061, NotExternalContact), (40096, InvalidExternalUserId)]
)
async def test_specific_rejections(lite_client, fake, errcode, cls):
    fake.reply(GET, err(errcode))

    with pytest.raises(cls):
        await get_contact(lite_client)

    assert len(fake.calls(GET)) == 1


async def test_other_errcodes_are_rejected_without_retry(lite_client, fake):
    fake.reply(GET, err(40003, "invalid userid"))

    with pytest.raises(RequestRejected) as caught:
        await get_contact(lite_client)

    assert type(caught.value) is RequestRejected
    assert len(fake.calls(GET)) == 1


async def test_view_without_retries_shares_token_limiter_and_stats(lite_client, fake, clock):
    fake.reply(GET, ok(**CONTACT), err(-1, "system busy"))
    await get_contact(lite_client)
    view = lite_client.with_options(retries=False)

    with pytest.raises(TransientError):
        await get_contact(view)

    assert len(fake.calls(GET)) == 2
    assert clock.slept == []
    assert len(fake.calls("gettoken")) == 1  # same token
    assert view.limiter is lite_client.limiter
    assert view.stats is lite_client.stats
    assert lite_client.stats.calls[GET] == 2
    assert view.retries is False
    assert lite_client.retries is True


async def test_closing_a_view_leaves_the_client_open(lite_client, fake):
    fake.always(GET, ok(**CONTACT))

    await lite_client.with_options(retries=False).aclose()

    await get_contact(lite_client)


async def test_gateway_error_page_on_a_read_is_unavailable(lite_client, fake):
    fake.always(GET, httpx.Response(502, text="<html>Bad Gateway</html>"))

    with pytest.raises(WeComUnavailable):
        await get_contact(lite_client)

    assert len(fake.calls(GET)) == 4


async def test_gateway_error_page_on_mass_send_is_outcome_unknown(lite_client, fake):
    fake.reply(TEMPLATE, httpx.Response(504, text="Gateway Timeout"))

    with pytest.raises(OutcomeUnknown):
        await create_task(lite_client)

    assert len(fake.calls(TEMPLATE)) == 1


async def test_client_error_page_is_rejected(lite_client, fake):
    fake.reply(GET, httpx.Response(404, text="not found"))

    with pytest.raises(RequestRejected):
        await get_contact(lite_client)

    assert len(fake.calls(GET)) == 1


async def test_stats_count_calls_and_errcodes(lite_client, fake):
    fake.reply(GET, err(-1), ok(**CONTACT), err(40096))
    await get_contact(lite_client)
    with pytest.raises(InvalidExternalUserId):
        await get_contact(lite_client)

    snapshot = lite_client.stats.snapshot()

    assert snapshot["calls"] == {"gettoken": 1, GET: 3}
    assert snapshot["errors"] == {f"{GET}:-1": 1, f"{GET}:40096": 1}
    assert snapshot["retries"] == {GET: 1}


async def test_async_context_manager_closes(make_client: MakeClient, sqlite_db, fake):
    fake.always(GET, ok(**CONTACT))
    async with make_client(sqlite_db) as client:
        await get_contact(client)

    with pytest.raises(RuntimeError):
        await get_contact(client)


async def test_view_without_quota_wait_raises_instead_of_sleeping(
    make_client: MakeClient, sqlite_db, fake, clock: FrozenClock
):
    tight = MemoryRateLimiter(
        QuotaConfig(per_minute=2, budget_ratio=1.0), MemberMessageLimit(), clock
    )
    client = make_client(sqlite_db, limiter=tight)
    view = client.with_options(retries=False, wait_for_quota=False)
    fake.always(GET, ok(**CONTACT))
    await get_contact(view)
    await get_contact(view)

    with pytest.raises(QuotaWait) as caught:
        await get_contact(view)

    assert caught.value.retry_after == pytest.approx(61.0)  # one-second slots, conservative
    assert caught.value.errcode == LOCAL_QUOTA_ERRCODE
    assert not caught.value.final
    assert len(fake.calls(GET)) == 2  # nothing was sent
    assert clock.slept == []
    await get_contact(client)  # the waiting client sleeps for the slot instead
    assert clock.slept == [pytest.approx(61.0)]


async def test_quota_wait_for_a_busy_member(lite_client, fake, clock):
    view = lite_client.with_options(wait_for_quota=False)
    fake.always("message/send", ok(msgid="M"))
    for _ in range(30):
        await view.message.send_text("zhangsan", "任务")

    with pytest.raises(QuotaWait):
        await view.message.send_text("zhangsan", "第31条")

    await view.message.send_text("lisi", "任务")
    assert len(fake.calls("message/send")) == 31
    assert clock.slept == []


def test_views_inherit_unset_options(lite_client):
    view = lite_client.with_options(retries=False).with_options(wait_for_quota=False)

    assert view.retries is False
    assert view.wait_for_quota is False
    assert lite_client.retries is True
    assert lite_client.wait_for_quota is True


async def test_ensure_token_fetches_once(lite_client, fake):
    await lite_client.ensure_token()
    await lite_client.ensure_token()

    assert len(fake.calls("gettoken")) == 1
    assert fake.requests == fake.calls("gettoken")


async def test_ensure_token_reports_gettoken_errors(lite_client, fake):
    fake.reply("gettoken", err(60020, "not allow to access from your ip"))

    with pytest.raises(ConfigurationError):
        await lite_client.ensure_token()


async def test_missing_secret_is_a_configuration_error_without_http(
    make_client: MakeClient, sqlite_db, fake, config
):
    client = make_client(sqlite_db, config=config.model_copy(update={"secret": SecretStr("")}))

    with pytest.raises(ConfigurationError, match=r"wecom\.secret must be set"):
        await client.ensure_token()

    assert fake.requests == []
