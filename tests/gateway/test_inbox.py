"""The inbox table: insert-once under the dedupe key, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.exc import OperationalError

from bot.clock import FrozenClock
from bot.gateway.events import CallbackEvent
from bot.gateway.inbox import (
    Callback,
    InboxWriter,
    dedupe_key,
    purge_finished,
    store_events,
)
from bot.gateway.parse import parse_event
from bot.store.db import Database
from bot.store.models import InboxEvent
from tests.gateway.conftest import callback_of, fixture_xml, inbox_rows, store_plaintext


def test_dedupe_key_is_sha256_of_the_plaintext() -> None:
    plaintext = fixture_xml("del_follow_user")
    assert dedupe_key(plaintext) == hashlib.sha256(plaintext).hexdigest()
    assert len(dedupe_key(plaintext)) == 64


def test_same_second_sys_events_get_distinct_keys() -> None:
    # Same FromUserName (sys) and CreateTime: WeCom's suggested key would merge them.
    create = fixture_xml("external_tag_create")
    second = create.replace(
        b"etJ2GCAAAAtWyujaWJHDDGi0mACHABCD", b"etJ2GCAAAAtWyujaWJHDDGi0mACHWXYZ"
    )
    assert dedupe_key(create) != dedupe_key(second)


def test_store_once_then_duplicate(db: Database, clock: FrozenClock) -> None:
    plaintext = fixture_xml("add_external_contact")
    assert store_plaintext(db, plaintext, clock.now()) is True
    assert store_plaintext(db, plaintext, clock.now()) is False
    [row] = inbox_rows(db)
    assert row.dedupe_key == dedupe_key(plaintext)
    assert row.payload == plaintext
    assert (row.msg_type, row.event, row.change_type) == (
        "event",
        "change_external_contact",
        "add_external_contact",
    )
    assert row.status == "pending"
    assert row.attempts == 0
    assert row.received_at == clock.now()
    assert row.next_attempt_at == clock.now()
    assert row.lease_until is None
    assert row.processed_at is None


def test_a_group_stores_each_new_key_once_in_order(db: Database, clock: FrozenClock) -> None:
    """One multi-row insert: a key stored before and a key repeated inside the group are
    both reported as duplicates, and only the first of a repeated key as stored."""

    def callback(name: str) -> Callback:
        return callback_of(fixture_xml(name), clock.now())

    earlier = callback("add_external_contact")
    assert db.call_core(lambda c: store_events(c, [earlier])) == [True]
    fresh, other = callback("del_follow_user"), callback("external_chat_update")
    group = [fresh, earlier, fresh, other, earlier]

    assert db.call_core(lambda c: store_events(c, group)) == [True, False, False, True, False]

    rows = inbox_rows(db)
    assert [r.dedupe_key for r in rows] == [earlier.key, fresh.key, other.key]
    assert [r.payload for r in rows] == [earlier.payload, fresh.payload, other.payload]
    assert rows[2].change_type == "update"


def test_messages_and_unknown_events_are_stored_with_their_keys(
    db: Database, clock: FrozenClock
) -> None:
    assert store_plaintext(db, fixture_xml("text_message"), clock.now())
    assert store_plaintext(db, fixture_xml("unknown_event"), clock.now())
    text, unknown = inbox_rows(db)
    assert (text.msg_type, text.event, text.change_type) == ("text", None, None)
    assert (unknown.msg_type, unknown.event, unknown.change_type) == ("event", "enter_agent", None)


def test_overlong_type_names_are_truncated_not_an_error(db: Database, clock: FrozenClock) -> None:
    plaintext = fixture_xml("unknown_event").replace(b"enter_agent", b"e" * 200)
    assert store_plaintext(db, plaintext, clock.now())
    [row] = inbox_rows(db)
    assert row.event == "e" * 64


def test_purge_removes_only_old_finished_rows(db: Database, clock: FrozenClock) -> None:
    store_plaintext(db, fixture_xml("del_follow_user"), clock.now())  # old, still pending
    store_plaintext(db, fixture_xml("transfer_fail"), clock.now())  # old, done
    clock.advance(timedelta(hours=80))
    store_plaintext(db, fixture_xml("edit_external_contact"), clock.now())  # recent, done
    db.call(
        lambda s: s.execute(
            update(InboxEvent).where(InboxEvent.id.in_([2, 3])).values(status="done")
        )
    )
    deleted = db.call(lambda s: purge_finished(s, before=clock.now() - timedelta(hours=72)))
    assert deleted == 1
    assert [row.id for row in inbox_rows(db)] == [1, 3]


# --- group commit ---------------------------------------------------------------------------


def _pending(name: str, n: int = 0) -> tuple[str, CallbackEvent, bytes]:
    plaintext = fixture_xml(name) + f"<!-- {n} -->".encode()
    return dedupe_key(plaintext), parse_event(plaintext), plaintext


async def test_writer_batches_concurrent_stores_into_few_transactions(
    db: Database, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = InboxWriter(db, max_batch=64)
    transactions: list[int] = []
    real_run = db.run_core

    async def counting_run(fn):
        transactions.append(1)
        return await real_run(fn)

    monkeypatch.setattr(db, "run_core", counting_run)
    items = [_pending("external_chat_update", n) for n in range(30)]
    duplicate = items[0]
    results = await asyncio.gather(
        *(
            writer.store(key=k, routing=e.routing_key, payload=p, now=clock.now())
            for k, e, p in [*items, duplicate]
        )
    )
    assert results == [True] * 30 + [False]
    assert len(inbox_rows(db)) == 30
    # The flusher starts after every caller already scheduled has queued: one transaction.
    assert len(transactions) == 1


async def test_writer_reports_a_failed_transaction_to_every_caller_in_it(
    db: Database, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = InboxWriter(db)

    async def broken(fn):
        raise OperationalError("INSERT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(db, "run_core", broken)
    items = [_pending("del_follow_user", n) for n in range(3)]
    results = await asyncio.gather(
        *(
            writer.store(key=k, routing=e.routing_key, payload=p, now=clock.now())
            for k, e, p in items
        ),
        return_exceptions=True,
    )
    assert all(isinstance(r, OperationalError) for r in results)
    monkeypatch.undo()
    assert inbox_rows(db) == []
    # The writer recovers: the next store succeeds.
    key, event, payload = items[0]
    assert await writer.store(key=key, routing=event.routing_key, payload=payload, now=clock.now())


async def test_cancelled_caller_does_not_stop_the_shared_write(
    db: Database, clock: FrozenClock
) -> None:
    writer = InboxWriter(db)
    (k1, e1, p1), (k2, e2, p2) = _pending("transfer_fail", 1), _pending("transfer_fail", 2)
    first = asyncio.create_task(
        writer.store(key=k1, routing=e1.routing_key, payload=p1, now=clock.now())
    )
    second = asyncio.create_task(
        writer.store(key=k2, routing=e2.routing_key, payload=p2, now=clock.now())
    )
    await asyncio.sleep(0)
    first.cancel()
    assert await second is True
    with pytest.raises(asyncio.CancelledError):
        await first
    assert len(inbox_rows(db)) == 2
