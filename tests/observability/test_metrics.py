"""/metrics over the real ASGI app: bearer-token access, counters that move with callbacks,
WeCom calls and quota, and gauges read from the database."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.app import create_app
from bot.clock import FrozenClock
from bot.observability.metrics import bearer_matches
from bot.sandbox.script import NewCustomer
from bot.store.db import Database
from tests.integration.conftest import ZHANG, integration_settings
from tests.observability.conftest import ADMIN_TOKEN, World, seed_operations

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(http: httpx.AsyncClient) -> Samples:
    response = await http.get("/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 for a labelled series not yet exported (a counter at rest)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_bearer_token_comparison() -> None:
    assert bearer_matches(f"Bearer {ADMIN_TOKEN}", ADMIN_TOKEN)
    assert bearer_matches(f"bearer  {ADMIN_TOKEN} ", ADMIN_TOKEN)
    assert not bearer_matches(f"Basic {ADMIN_TOKEN}", ADMIN_TOKEN)
    assert not bearer_matches(ADMIN_TOKEN, ADMIN_TOKEN)
    assert not bearer_matches(f"Bearer {ADMIN_TOKEN}x", ADMIN_TOKEN)
    assert not bearer_matches("Bearer ", ADMIN_TOKEN)
    assert not bearer_matches("", ADMIN_TOKEN)


async def test_metrics_refuse_a_missing_or_wrong_token(http: httpx.AsyncClient) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer wrong-token-0123456789abcdef"},
        {"Authorization": f"Basic {ADMIN_TOKEN}"},
        {"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}"},
    ):
        response = await http.get("/metrics", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert "bot_" not in response.text
    assert (await scrape(http))[("bot_database_up", frozenset())] == 1.0


async def test_metrics_are_disabled_without_a_configured_token(
    db: Database, clock: FrozenClock
) -> None:
    settings = integration_settings(db.engine.url.render_as_string(hide_password=False))
    assert not settings.server.admin_token.get_secret_value()
    bot = create_app(settings, clock=clock, db=db)
    transport = httpx.ASGITransport(app=bot.asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://bot") as http:
        for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer x"}):
            response = await http.get("/metrics", headers=headers)
            assert response.status_code == 404
            assert response.text == ""
        assert (await http.get("/healthz")).status_code != 404
    await bot.wecom.aclose()


async def test_callback_counters_move_with_deliveries_duplicates_and_forgeries(
    world: World, http: httpx.AsyncClient
) -> None:
    before = await scrape(http)
    assert value(before, "bot_callbacks_received_total") == 0
    assert value(before, "bot_inbox_backlog") == 0

    world.script.customer_adds_member(NewCustomer("陈静"), ZHANG)
    world.deliverer.duplicate_next()
    attempts = await world.deliverer.flush()
    assert [a.status_code for a in attempts] == [200, 200]

    # A delivery signed with the wrong key, one replayed an hour late, one too large and
    # one that is not XML: each refused before anything is stored.
    envelope = world.deliverer.seal("<xml><MsgType>text</MsgType></xml>")
    body = envelope.callback_xml(world.settings.wecom.corp_id)
    forged = {**envelope.query(), "msg_signature": "0" * 40}
    assert (await http.post("/wecom/callback", params=forged, content=body)).status_code == 403
    stale = world.deliverer.crypto.seal(
        "<xml/>",
        timestamp=str(int(world.clock.timestamp()) - 3600),
        nonce="1",
        random16=b"0123456789abcdef",
    )
    response = await http.post(
        "/wecom/callback", params=stale.query(), content=stale.callback_xml("x")
    )
    assert response.status_code == 403
    huge = b"<xml>" + b" " * (world.settings.callback.max_body_bytes + 1) + b"</xml>"
    response = await http.post("/wecom/callback", params=envelope.query(), content=huge)
    assert response.status_code == 413
    response = await http.post("/wecom/callback", params=envelope.query(), content=b"<xml><")
    assert response.status_code == 400

    after = await scrape(http)
    assert value(after, "bot_callbacks_received_total") == 6
    assert value(after, "bot_callbacks_stored_total") == 1
    assert value(after, "bot_callbacks_deduped_total") == 1
    for reason in ("signature", "timestamp", "size", "xml"):
        assert value(after, "bot_callbacks_rejected_total", reason=reason) == 1, reason
    assert value(after, "bot_inbox_backlog") == 1
    assert value(after, "bot_inbox_rows", status="pending") == 1
    assert value(after, "bot_inbox_oldest_pending_age_seconds") == 0

    world.clock.advance(45)
    assert value(await scrape(http), "bot_inbox_oldest_pending_age_seconds") == 45


async def test_processing_moves_inbox_outbox_and_wecom_figures(
    world: World, http: httpx.AsyncClient
) -> None:
    world.script.customer_adds_member(NewCustomer("周杰"), ZHANG, state="qr_lobby")
    await world.settle()
    samples = await scrape(http)

    assert value(samples, "bot_inbox_backlog") == 0
    assert value(samples, "bot_inbox_rows", status="done") == 1
    # WeCom lags right after an add (84061): handled once after one retry.
    assert value(samples, "bot_inbox_events_total", outcome="retry") == 1
    assert value(samples, "bot_inbox_events_total", outcome="done") == 1
    assert value(samples, "bot_outbox_rows_total", outcome="sent") == 1

    welcome, get = "externalcontact/send_welcome_msg", "externalcontact/get"
    stats = world.bot.wecom.stats
    assert value(samples, "bot_wecom_calls_total", path=welcome) == 1
    assert value(samples, "bot_wecom_responses_total", path=welcome, errcode="0") == 1
    assert value(samples, "bot_wecom_responses_total", path=get, errcode="84061") >= 1
    assert value(samples, "bot_wecom_responses_total", path=get, errcode="0") == 1
    assert value(samples, "bot_wecom_calls_total", path=get) == stats.calls[get]
    assert value(samples, "bot_wecom_calls_total", path="gettoken") == 1

    # Quota: every call counts in both windows; the minute window empties after a minute.
    quota = world.settings.wecom.quota
    assert value(samples, "bot_wecom_quota_used", path=get, window="minute") == stats.calls[get]
    assert value(samples, "bot_wecom_quota_used", path=get, window="hour") == stats.calls[get]
    assert value(samples, "bot_wecom_quota_limit", path=get, window="minute") == int(
        quota.per_minute * quota.budget_ratio
    )
    world.clock.advance(timedelta(minutes=2))
    later = await scrape(http)
    assert value(later, "bot_wecom_quota_used", path=get, window="minute") == 0
    assert value(later, "bot_wecom_quota_used", path=get, window="hour") == stats.calls[get]
    expires_in = value(later, "bot_wecom_token_expires_in_seconds")
    assert 0 < expires_in <= 7200 - 120


async def test_database_gauges_and_task_counters(world: World, http: httpx.AsyncClient) -> None:
    seeded = seed_operations(world.db, world.clock.now())
    response = await http.get("/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert seeded.external_userid not in response.text
    assert seeded.token not in response.text
    samples = await scrape(http)
    assert value(samples, "bot_outbox_open", kind="mark_tag") == 2
    assert value(samples, "bot_outbox_open", kind="welcome_msg") == 1
    assert value(samples, "bot_outbox_oldest_open_age_seconds", kind="mark_tag") == 90
    assert value(samples, "bot_outbox_oldest_open_age_seconds", kind="welcome_msg") == 30
    assert value(samples, "bot_inbox_backlog") == 2
    assert value(samples, "bot_inbox_rows", status="failed") == 1
    assert value(samples, "bot_inbox_oldest_pending_age_seconds") == 300
    assert value(samples, "bot_mass_tasks_created_total") == 4
    assert value(samples, "bot_mass_tasks_confirmed_total") == 2
    assert value(samples, "bot_mass_tasks", status="created") == 2
    assert value(samples, "bot_wecom_token_expires_in_seconds") == 90 * 60


@pytest.mark.parametrize("token", ["short", " padded-token-0123456789 "])
def test_a_weak_admin_token_is_refused(token: str) -> None:
    from bot.config import ConfigError, build_settings

    with pytest.raises(ConfigError, match="BOT_SERVER__ADMIN_TOKEN"):
        build_settings({}, {"BOT_SERVER__ADMIN_TOKEN": token})
