"""The inbox table: insert-once under the dedupe key, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from sqlalchemy import update

from bot.clock import FrozenClock
from bot.gateway.inbox import dedupe_key, purge_finished, store_event
from bot.gateway.parse import parse_event
from bot.store.db import Database
from bot.store.models import InboxEvent
from tests.gateway.conftest import fixture_xml, inbox_rows


def _store(db: Database, plaintext: bytes, clock: FrozenClock) -> bool:
    event = parse_event(plaintext)
    key = dedupe_key(plaintext)
    return db.call(
        lambda s: store_event(s, key=key, event=event, payload=plaintext, now=clock.now())
    )


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
    assert _store(db, plaintext, clock) is True
    assert _store(db, plaintext, clock) is False
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


def test_messages_and_unknown_events_are_stored_with_their_keys(
    db: Database, clock: FrozenClock
) -> None:
    assert _store(db, fixture_xml("text_message"), clock)
    assert _store(db, fixture_xml("unknown_event"), clock)
    text, unknown = inbox_rows(db)
    assert (text.msg_type, text.event, text.change_type) == ("text", None, None)
    assert (unknown.msg_type, unknown.event, unknown.change_type) == ("event", "enter_agent", None)


def test_overlong_type_names_are_truncated_not_an_error(db: Database, clock: FrozenClock) -> None:
    plaintext = fixture_xml("unknown_event").replace(b"enter_agent", b"e" * 200)
    assert _store(db, plaintext, clock)
    [row] = inbox_rows(db)
    assert row.event == "e" * 64


def test_purge_removes_only_old_finished_rows(db: Database, clock: FrozenClock) -> None:
    _store(db, fixture_xml("del_follow_user"), clock)  # old, still pending
    _store(db, fixture_xml("transfer_fail"), clock)  # old, done
    clock.advance(timedelta(hours=80))
    _store(db, fixture_xml("edit_external_contact"), clock)  # recent, done
    db.call(
        lambda s: s.execute(
            update(InboxEvent).where(InboxEvent.id.in_([2, 3])).values(status="done")
        )
    )
    deleted = db.call(lambda s: purge_finished(s, before=clock.now() - timedelta(hours=72)))
    assert deleted == 1
    assert [row.id for row in inbox_rows(db)] == [1, 3]
