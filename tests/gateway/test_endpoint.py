"""The callback endpoint through ASGI: every refusal stores nothing; valid deliveries store once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy.exc import OperationalError
from starlette.applications import Starlette
from starlette.requests import Request

from bot.clock import FrozenClock, utc_from_timestamp
from bot.config import Settings
from bot.gateway.crypto import WeComCrypto
from bot.gateway.endpoint import CallbackGateway
from bot.gateway.inbox import dedupe_key
from bot.store.db import Database
from tests.gateway.conftest import (
    AES_KEY,
    CORP_ID,
    RANDOM16,
    TOKEN,
    Sender,
    fixture_xml,
    inbox_rows,
)
from tests.gateway.test_crypto import (
    SAMPLE_AES_KEY,
    SAMPLE_CORP_ID,
    SAMPLE_ECHO,
    SAMPLE_TOKEN,
    SAMPLE_VERIFY,
)

DTD_INNER = (
    b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "b">]><xml><MsgType>&a;</MsgType></xml>'
)


def _app(gateway: CallbackGateway) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=Starlette(routes=gateway.routes()))
    return httpx.AsyncClient(transport=transport, base_url="http://bot.test")


# --- URL verification ----------------------------------------------------------------------


async def test_get_echoes_the_bare_plaintext(sender: Sender, client: httpx.AsyncClient) -> None:
    envelope = sender.seal(b"8173649201934")
    response = await client.get(
        "/wecom/callback", params={**envelope.query(), "echostr": envelope.encrypt}
    )
    assert response.status_code == 200
    assert response.content == b"8173649201934"
    assert response.headers["content-type"].startswith("text/plain")


async def test_get_with_the_official_sample(db: Database, settings: Settings) -> None:
    clock = FrozenClock(utc_from_timestamp(int(SAMPLE_VERIFY["timestamp"])))
    crypto = WeComCrypto(SAMPLE_TOKEN, SAMPLE_AES_KEY, SAMPLE_CORP_ID)
    async with _app(CallbackGateway(settings, db, clock, crypto)) as http:
        query = {k: SAMPLE_VERIFY[k] for k in ("msg_signature", "timestamp", "nonce")}
        response = await http.get(
            "/wecom/callback", params={**query, "echostr": SAMPLE_VERIFY["encrypt"]}
        )
    assert (response.status_code, response.content) == (200, SAMPLE_ECHO)


async def test_get_tolerates_an_unescaped_plus(sender: Sender, client: httpx.AsyncClient) -> None:
    # Find a sealed echostr with a '+' in it (the prefix is varied to get one).
    for n in range(200):
        envelope = sender.crypto.seal(
            str(n).encode(), timestamp=str(int(sender.clock.timestamp())), nonce="77"
        )
        if "+" in envelope.encrypt:
            break
    else:
        pytest.fail("no ciphertext with '+' found")
    raw_query = (
        f"msg_signature={envelope.msg_signature}&timestamp={envelope.timestamp}"
        f"&nonce=77&echostr={envelope.encrypt}"  # '+' left raw, as some proxies do
    )
    response = await client.get(f"/wecom/callback?{raw_query}")
    assert (response.status_code, response.content) == (200, str(n).encode())
    escaped = raw_query.replace(envelope.encrypt, quote(envelope.encrypt, safe=""))
    response = await client.get(f"/wecom/callback?{escaped}")
    assert (response.status_code, response.content) == (200, str(n).encode())


async def test_get_with_forged_signature_is_forbidden(
    sender: Sender, client: httpx.AsyncClient, gateway: CallbackGateway
) -> None:
    envelope = sender.seal(b"123")
    params = {**envelope.query(), "msg_signature": "0" * 40, "echostr": envelope.encrypt}
    response = await client.get("/wecom/callback", params=params)
    assert (response.status_code, response.content) == (403, b"")
    assert gateway.counters.rejected["bad_signature"] == 1


async def test_get_with_missing_echostr_is_a_bad_request(
    sender: Sender, client: httpx.AsyncClient
) -> None:
    response = await client.get("/wecom/callback", params=sender.seal(b"1").query())
    assert response.status_code == 400


# --- deliveries ---------------------------------------------------------------------------


async def test_valid_delivery_is_stored_and_acknowledged_empty(
    sender: Sender, db: Database, gateway: CallbackGateway, stored_calls: list[int]
) -> None:
    plaintext = fixture_xml("add_external_contact")
    response = await sender.post(plaintext)
    assert response.status_code == 200
    assert response.content == b""
    [row] = inbox_rows(db)
    assert row.payload == plaintext
    assert row.dedupe_key == dedupe_key(plaintext)
    assert row.change_type == "add_external_contact"
    assert stored_calls == [1]
    assert (gateway.counters.received, gateway.counters.stored) == (1, 1)


async def test_same_delivery_twice_is_stored_once(
    sender: Sender, db: Database, gateway: CallbackGateway, stored_calls: list[int]
) -> None:
    envelope = sender.seal(fixture_xml("del_follow_user"))
    first = await sender.post_envelope(envelope)
    second = await sender.post_envelope(envelope)
    assert (first.status_code, second.status_code) == (200, 200)
    assert len(inbox_rows(db)) == 1
    assert stored_calls == [1]  # the processor is not woken for a duplicate
    assert gateway.counters.duplicates == 1


async def test_retry_encrypted_afresh_is_still_a_duplicate(
    sender: Sender, crypto: WeComCrypto, clock: FrozenClock, db: Database
) -> None:
    plaintext = fixture_xml("del_follow_user")
    ts = str(int(clock.timestamp()))
    first = crypto.seal(plaintext, timestamp=ts, nonce="1", random16=b"A" * 16)
    retry = crypto.seal(plaintext, timestamp=ts, nonce="2", random16=b"B" * 16)
    assert first.encrypt != retry.encrypt
    assert (await sender.post_envelope(first)).status_code == 200
    assert (await sender.post_envelope(retry)).status_code == 200
    assert len(inbox_rows(db)) == 1


async def test_distinct_sys_events_in_the_same_second_are_both_stored(
    sender: Sender, db: Database
) -> None:
    tag = fixture_xml("external_tag_create")
    other_tag = tag.replace(
        b"etJ2GCAAAAtWyujaWJHDDGi0mACHABCD", b"etJ2GCAAAAtWyujaWJHDDGi0mACHWXYZ"
    )
    assert b"<CreateTime>1795395590</CreateTime>" in other_tag  # same sender, same second
    assert (await sender.post(tag)).status_code == 200
    assert (await sender.post(other_tag)).status_code == 200
    assert len(inbox_rows(db)) == 2


async def test_concurrent_duplicate_deliveries_store_one_row(
    sender: Sender, db: Database, gateway: CallbackGateway
) -> None:
    envelope = sender.seal(fixture_xml("external_chat_update"))
    responses = await asyncio.gather(*(sender.post_envelope(envelope) for _ in range(20)))
    assert [r.status_code for r in responses] == [200] * 20
    assert len(inbox_rows(db)) == 1
    assert gateway.counters.stored == 1
    assert gateway.counters.duplicates == 19


async def test_unknown_event_is_stored_not_refused(sender: Sender, db: Database) -> None:
    assert (await sender.post(fixture_xml("unknown_event"))).status_code == 200
    [row] = inbox_rows(db)
    assert (row.msg_type, row.event) == ("event", "enter_agent")


async def test_decrypted_body_is_never_logged(
    sender: Sender, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    plaintext = fixture_xml("text_message")
    envelope = sender.seal(plaintext)
    await sender.post_envelope(envelope)
    await sender.post_envelope(envelope)
    assert "今天的群发已确认" not in caplog.text
    assert dedupe_key(plaintext)[:12] in caplog.text
    assert "text" in caplog.text


# --- refusals: nothing stored -------------------------------------------------------------


async def _assert_nothing_stored(db: Database, stored_calls: list[int]) -> None:
    assert inbox_rows(db) == []
    assert stored_calls == []


async def test_forged_signature_is_forbidden(
    sender: Sender, db: Database, stored_calls: list[int], gateway: CallbackGateway
) -> None:
    envelope = sender.seal(fixture_xml("add_external_contact"))
    forged = WeComCrypto("forgedToken", AES_KEY, CORP_ID).seal(
        fixture_xml("add_external_contact"),
        timestamp=envelope.timestamp,
        nonce=envelope.nonce,
        random16=RANDOM16,
    )
    response = await sender.post_envelope(forged)
    assert (response.status_code, response.content) == (403, b"")
    await _assert_nothing_stored(db, stored_calls)
    assert gateway.counters.rejected["bad_signature"] == 1


async def test_signature_of_another_body_is_forbidden(
    sender: Sender, db: Database, stored_calls: list[int]
) -> None:
    genuine = sender.seal(fixture_xml("add_external_contact"))
    other = sender.seal(fixture_xml("del_follow_user"))
    body = other.callback_xml(CORP_ID).encode()
    response = await sender.post_envelope(genuine, body=body)
    assert response.status_code == 403
    await _assert_nothing_stored(db, stored_calls)


@pytest.mark.parametrize("skew", [-301, 301, -86_400, 10**9])
async def test_stale_or_future_timestamp_is_forbidden(
    sender: Sender, clock: FrozenClock, db: Database, stored_calls: list[int], skew: int
) -> None:
    ts = str(int(clock.timestamp()) + skew)
    response = await sender.post(fixture_xml("del_follow_user"), timestamp=ts)
    assert response.status_code == 403
    await _assert_nothing_stored(db, stored_calls)


@pytest.mark.parametrize("skew", [-300, 300])
async def test_timestamp_at_the_tolerance_is_accepted(
    sender: Sender, clock: FrozenClock, db: Database, skew: int
) -> None:
    ts = str(int(clock.timestamp()) + skew)
    assert (await sender.post(fixture_xml("del_follow_user"), timestamp=ts)).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b"<xml><Encrypt>&x;</Encrypt></xml>",
        b'<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        b"<xml><Encrypt>&b;</Encrypt></xml>",
        b"<xml><Encrypt>abc</Encrypt>",
        b'{"encrypt": "abc"}',
        b"<xml><ToUserName>ww</ToUserName></xml>",
        b"<xml><Encrypt></Encrypt></xml>",
        b"",
    ],
    ids=["xxe", "entity-expansion", "unclosed", "json", "no-encrypt", "empty-encrypt", "empty"],
)
async def test_bad_outer_xml_is_a_bad_request(
    sender: Sender, db: Database, stored_calls: list[int], body: bytes
) -> None:
    envelope = sender.seal(fixture_xml("del_follow_user"))
    response = await sender.post_envelope(envelope, body=body)
    assert (response.status_code, response.content) == (400, b"")
    await _assert_nothing_stored(db, stored_calls)


@pytest.mark.parametrize(
    "plaintext",
    [DTD_INNER, b"<xml><MsgType>event</MsgType>", b"just text", b""],
    ids=["dtd", "unclosed", "not-xml", "empty"],
)
async def test_bad_inner_xml_is_a_bad_request(
    sender: Sender,
    db: Database,
    stored_calls: list[int],
    gateway: CallbackGateway,
    plaintext: bytes,
) -> None:
    response = await sender.post(plaintext)
    assert response.status_code == 400
    await _assert_nothing_stored(db, stored_calls)
    assert gateway.counters.rejected["bad_message"] == 1


async def test_undecryptable_message_is_a_bad_request(
    sender: Sender, db: Database, stored_calls: list[int], gateway: CallbackGateway
) -> None:
    # Correctly signed (same token), but encrypted for another corp: the receive id differs.
    other_corp = WeComCrypto(TOKEN, AES_KEY, "ww0000000000000000")
    envelope = other_corp.seal(
        fixture_xml("del_follow_user"),
        timestamp=str(int(sender.clock.timestamp())),
        nonce="5",
        random16=RANDOM16,
    )
    response = await sender.post_envelope(envelope)
    assert response.status_code == 400
    await _assert_nothing_stored(db, stored_calls)
    assert gateway.counters.rejected["decrypt_failed"] == 1


@pytest.mark.parametrize("missing", ["msg_signature", "timestamp", "nonce"])
async def test_missing_query_parameter_is_a_bad_request(
    sender: Sender, client: httpx.AsyncClient, db: Database, stored_calls: list[int], missing: str
) -> None:
    envelope = sender.seal(fixture_xml("del_follow_user"))
    params = {k: v for k, v in envelope.query().items() if k != missing}
    body = envelope.callback_xml(CORP_ID).encode()
    response = await client.post("/wecom/callback", params=params, content=body)
    assert response.status_code == 400
    await _assert_nothing_stored(db, stored_calls)


async def test_non_numeric_timestamp_is_a_bad_request(
    sender: Sender, client: httpx.AsyncClient
) -> None:
    envelope = sender.seal(fixture_xml("del_follow_user"))
    params = {**envelope.query(), "timestamp": "1e9"}
    body = envelope.callback_xml(CORP_ID).encode()
    assert (await client.post("/wecom/callback", params=params, content=body)).status_code == 400


async def test_oversized_body_is_refused(
    sender: Sender, db: Database, stored_calls: list[int], gateway: CallbackGateway
) -> None:
    envelope = sender.seal(fixture_xml("del_follow_user"))
    body = b"<xml><Pad>" + b"x" * 70_000 + b"</Pad></xml>"
    response = await sender.post_envelope(envelope, body=body)
    assert response.status_code == 413
    await _assert_nothing_stored(db, stored_calls)
    assert gateway.counters.rejected["too_large"] == 1


async def test_oversized_chunked_body_without_length_is_refused(
    sender: Sender, client: httpx.AsyncClient, db: Database, stored_calls: list[int]
) -> None:
    envelope = sender.seal(fixture_xml("del_follow_user"))
    sent: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            sent.append(1)
            yield b"x" * 4096

    response = await client.post("/wecom/callback", params=envelope.query(), content=chunks())
    assert response.status_code == 413
    await _assert_nothing_stored(db, stored_calls)
    assert len(sent) < 100  # reading stopped once past the limit


async def test_client_gone_mid_body_stores_nothing(
    sender: Sender, gateway: CallbackGateway, db: Database, stored_calls: list[int]
) -> None:
    envelope = sender.seal(fixture_xml("del_follow_user"))
    body = envelope.callback_xml(CORP_ID).encode()
    messages: list[dict[str, object]] = [
        {"type": "http.request", "body": body[:40], "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> dict[str, object]:
        return messages.pop(0)

    query = "&".join(f"{k}={v}" for k, v in envelope.query().items())
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/wecom/callback",
        "query_string": query.encode(),
        "headers": [],
    }
    response = await gateway.receive(Request(scope, receive))
    assert response.status_code == 400
    await _assert_nothing_stored(db, stored_calls)
    assert gateway.counters.rejected["client_disconnected"] == 1


async def test_unconfigured_app_answers_503(
    settings: Settings, db: Database, clock: FrozenClock, sender: Sender
) -> None:
    gateway = CallbackGateway(settings, db, clock, None)
    envelope = sender.seal(fixture_xml("del_follow_user"))
    async with _app(gateway) as http:
        post = await http.post(
            "/wecom/callback", params=envelope.query(), content=envelope.callback_xml(CORP_ID)
        )
        get = await http.get(
            "/wecom/callback", params={**envelope.query(), "echostr": envelope.encrypt}
        )
    assert (post.status_code, get.status_code) == (503, 503)
    assert inbox_rows(db) == []


async def test_database_failure_is_not_acknowledged(
    sender: Sender, gateway: CallbackGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(_fn: object) -> None:
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr(gateway.db, "run_core", broken)
    response = await sender.post(fixture_xml("del_follow_user"))
    assert response.status_code == 503
    assert gateway.counters.rejected["store_failed"] == 1


async def test_other_methods_are_not_allowed(client: httpx.AsyncClient) -> None:
    assert (await client.put("/wecom/callback")).status_code == 405
