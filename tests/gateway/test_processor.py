"""The inbox processor: dispatch, observers, unhandled, retries with backoff, leases, run loop."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from bot.clock import FrozenClock
from bot.config import DispatcherConfig, Settings
from bot.dispatch import Registry, RetryLater
from bot.gateway import xmlsafe
from bot.gateway.events import (
    AddExternalContact,
    CallbackEvent,
    DelFollowUser,
    EventKey,
    ExternalChatUpdate,
    UnknownEvent,
)
from bot.gateway.inbox import dedupe_key
from bot.gateway.processor import (
    PARSED_CACHE_SIZE,
    RECORD_EVERY_SECONDS,
    InboxProcessor,
    backoff_seconds,
)
from bot.handlers.context import HandlerContext
from bot.store.db import Database
from bot.store.models import InboxEvent
from tests.gateway.conftest import fixture_xml, inbox_rows, make_context, store_plaintext

CONTACT = EventKey("event", "change_external_contact")
ADD = EventKey("event", "change_external_contact", "add_external_contact")
CHAT_UPDATE = EventKey("event", "change_external_chat", "update")


def store(db: Database, clock: FrozenClock, plaintext: bytes) -> None:
    assert store_plaintext(db, plaintext, clock.now())


def chat_update(n: int) -> bytes:
    """Distinct update events for one group (the versions make each plaintext unique)."""
    return fixture_xml("external_chat_update").replace(
        b"71217227bbd112ecfe3a49c482195cb4", f"version-{n:04d}".encode()
    )


def make_processor(
    db: Database,
    clock: FrozenClock,
    registry: Registry,
    ctx: HandlerContext,
    *,
    worker_id: str = "worker-1",
    max_attempts: int = 3,
    batch_size: int = 20,
) -> InboxProcessor:
    config = DispatcherConfig(max_attempts=max_attempts, lease_seconds=60, poll_interval_seconds=5)
    return InboxProcessor(db, clock, registry, ctx, config, worker_id, batch_size=batch_size)


class Recorder:
    """Handlers and observers that remember what they saw."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, CallbackEvent]] = []

    def handler(self, name: str):
        async def handle(event: CallbackEvent, ctx: HandlerContext) -> None:
            assert isinstance(ctx, HandlerContext)
            self.calls.append((name, event))

        return handle

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


async def test_dispatches_to_the_most_specific_handler(
    db: Database, clock: FrozenClock, handler_context: HandlerContext
) -> None:
    seen = Recorder()
    registry = Registry()
    registry.register(ADD, seen.handler("add"))
    registry.register(CONTACT, seen.handler("contact"))
    store(db, clock, fixture_xml("add_external_contact"))
    store(db, clock, fixture_xml("del_follow_user"))
    processor = make_processor(db, clock, registry, handler_context)

    assert await processor.drain() == 2

    assert seen.names() == ["add", "contact"]
    assert isinstance(seen.calls[0][1], AddExternalContact)
    assert isinstance(seen.calls[1][1], DelFollowUser)
    rows = inbox_rows(db)
    assert [r.status for r in rows] == ["done", "done"]
    assert all(r.processed_at == clock.now() for r in rows)
    assert all(r.lease_until is None and r.leased_by is None for r in rows)
    assert processor.counters.processed == 2


async def test_processed_once_a_second_drain_does_nothing(
    db: Database, clock: FrozenClock, handler_context: HandlerContext
) -> None:
    seen = Recorder()
    registry = Registry()
    registry.register(CONTACT, seen.handler("contact"))
    store(db, clock, fixture_xml("del_follow_user"))
    processor = make_processor(db, clock, registry, handler_context)

    assert await processor.drain() == 1
    clock.advance(timedelta(hours=1))
    assert await processor.drain() == 0
    assert await make_processor(db, clock, registry, handler_context, worker_id="w2").drain() == 0
    assert seen.names() == ["contact"]


async def test_observers_see_every_event_handled_or_not(
    db: Database, clock: FrozenClock, handler_context: HandlerContext
) -> None:
    seen = Recorder()
    registry = Registry()
    registry.register(ADD, seen.handler("add"))
    registry.observe(seen.handler("audit"))
    registry.observe(seen.handler("metrics"))
    for name in ("add_external_contact", "unknown_event", "text_message"):
        store(db, clock, fixture_xml(name))

    await make_processor(db, clock, registry, handler_context).drain()

    assert seen.names() == [
        "audit", "metrics", "add",  # observers run before the handler
        "audit", "metrics",
        "audit", "metrics",
    ]  # fmt: skip
    assert isinstance(seen.calls[3][1], UnknownEvent)


async def test_unknown_event_is_unhandled_without_an_error(
    db: Database,
    clock: FrozenClock,
    handler_context: HandlerContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="bot.gateway.processor")
    registry = Registry()
    registry.register(EventKey("event"), Recorder().handler("catch-all"))
    store(db, clock, fixture_xml("unknown_event"))
    store(db, clock, fixture_xml("text_message"))  # modelled, but nobody registered for it
    processor = make_processor(db, clock, registry, handler_context)

    assert await processor.drain() == 2

    assert [r.status for r in inbox_rows(db)] == ["unhandled", "unhandled"]
    assert all(r.processed_at == clock.now() and r.last_error is None for r in inbox_rows(db))
    assert processor.counters.unhandled == 2
    assert "event/enter_agent has no handler" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_failing_handler_backs_off_then_fails_for_good(
    db: Database, clock: FrozenClock, handler_context: HandlerContext
) -> None:
    attempts: list[int] = []

    async def boom(event: CallbackEvent, ctx: HandlerContext) -> None:
        attempts.append(1)
        raise RuntimeError(f"WeCom said no (try {len(attempts)})")

    registry = Registry()
    registry.register(CONTACT, boom)
    store(db, clock, fixture_xml("del_follow_user"))
    processor = make_processor(db, clock, registry, handler_context, max_attempts=3)
    start = clock.now()

    assert await processor.drain() == 1
    [row] = inbox_rows(db)
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.next_attempt_at == start + timedelta(seconds=2)
    assert row.last_error == "RuntimeError: WeCom said no (try 1)"
    assert row.lease_until is None

    assert await processor.drain() == 0  # not due yet
    clock.advance(timedelta(seconds=2))
    assert await processor.drain() == 1
    [row] = inbox_rows(db)
    assert (row.status, row.attempts) == ("pending", 2)
    assert row.next_attempt_at == clock.now() + timedelta(seconds=4)

    clock.advance(timedelta(seconds=4))
    assert await processor.drain() == 1
    [row] = inbox_rows(db)
    assert (row.status, row.attempts) == ("failed", 3)
    assert row.last_error == "RuntimeError: WeCom said no (try 3)"
    assert row.processed_at == clock.now()

    clock.advance(timedelta(days=1))
    assert await processor.drain() == 0
    assert len(attempts) == 3
    assert (processor.counters.retried, processor.counters.failed) == (2, 1)


async def test_a_retry_that_succeeds_is_done(
    db: Database, clock: FrozenClock, handler_context: HandlerContext
) -> None:
    calls: list[int] = []

    async def flaky(event: CallbackEvent, ctx: HandlerContext) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise TimeoutError("groupchat/get timed out")

    registry = Registry()
    registry.register(CHAT_UPDATE, flaky)
    store(db, clock, fixture_xml("external_chat_update"))
    processor = make_processor(db, clock, registry, handler_context)

    await processor.drain()
    clock.advance(timedelta(seconds=2))
    await processor.drain()
    [row] = inbox_rows(db)
    assert (row.status, row.attempts) == ("done", 2)
    assert len(calls) == 2


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff_seconds(n) for n in (1, 2, 3, 8, 9, 50)] == [2, 4, 8, 256, 300, 300]


async def test_failing_observer_does_not_block_the_handler(
    db: Database, clock: FrozenClock, handler_context: HandlerContext
) -> None:
    seen = Recorder()

    async def broken(event: CallbackEvent, ctx: HandlerContext) -> None:
        raise ValueError("metrics backend down")

    registry = Registry()
    registry.observe(broken)
    registry.register(CONTACT, seen.handler("contact"))
    store(db, clock, fixture_xml("del_follow_user"))
    processor = make_processor(db, clock, registry, handler_context)

    await processor.drain()
    assert seen.names() == ["contact"]
    assert inbox_rows(db)[0].status == "done"
    assert processor.counters.observer_errors == 1


async def _set_lease(db: Database, row_id: int, **values: object) -> None:
    await db.run(
        lambda s: s.execute(update(InboxEvent).where(InboxEvent.id == row_id).values(**values))
    )


async def test_expired_lease_of_a_dead_worker_is_recovered(
    db: Database, clock: FrozenClock, handler_context: HandlerContext
) -> None:
    seen = Recorder()
    registry = Registry()
    registry.register(CONTACT, seen.handler("contact"))
    store(db, clock, fixture_xml("del_follow_user"))
    store(db, clock, fixture_xml("transfer_fail"))
    await _set_lease(
        db,
        1,
        status="processing",
        attempts=1,
        leased_by="dead",
        lease_until=clock.now() - timedelta(seconds=1),
    )
    await _set_lease(
        db,
        2,
        status="processing",
        attempts=1,
        leased_by="alive",
        lease_until=clock.now() + timedelta(seconds=30),
    )
    processor = make_processor(db, clock, registry, handler_context)

    assert await processor.drain() == 1
    first, second = inbox_rows(db)
    assert (first.status, first.attempts, first.leased_by) == ("done", 2, None)
    assert (second.status, second.leased_by) == ("processing", "alive")  # live lease respected
    assert [type(e) for _, e in seen.calls] == [DelFollowUser]

    clock.advance(timedelta(seconds=31))
    assert await processor.drain() == 1
    assert inbox_rows(db)[1].status == "done"


async def test_lease_expired_on_the_last_attempt_is_failed_not_rerun(
    db: Database, clock: FrozenClock, handler_context: HandlerContext
) -> None:
    seen = Recorder()
    registry = Registry()
    registry.register(CONTACT, seen.handler("contact"))
    store(db, clock, fixture_xml("del_follow_user"))
    # The third and last attempt killed its worker (a poison message).
    await _set_lease(
        db,
        1,
        status="processing",
        attempts=3,
        leased_by="dead",
        lease_until=clock.now() - timedelta(seconds=1),
    )
    await make_processor(db, clock, registry, handler_context, max_attempts=3).drain()
    [row] = inbox_rows(db)
    assert row.status == "failed"
    assert row.last_error is not None
    assert "lease expired after 3 attempts" in row.last_error
    assert seen.calls == []


async def test_outcome_is_not_written_over_a_lease_taken_by_another_worker(
    db: Database, clock: FrozenClock, handler_context: HandlerContext
) -> None:
    async def slow(event: CallbackEvent, ctx: HandlerContext) -> None:
        # While this handler ran, its lease expired and another worker claimed the row.
        await _set_lease(
            db, 1, leased_by="worker-2", lease_until=clock.now() + timedelta(seconds=60)
        )

    registry = Registry()
    registry.register(CONTACT, slow)
    store(db, clock, fixture_xml("del_follow_user"))
    processor = make_processor(db, clock, registry, handler_context)

    await processor.drain()
    [row] = inbox_rows(db)
    assert (row.status, row.leased_by) == ("processing", "worker-2")
    assert processor.counters.lost_leases == 1
    assert processor.counters.processed == 1


async def test_rows_of_one_group_are_handled_in_stored_order(
    db: Database, clock: FrozenClock, handler_context: HandlerContext
) -> None:
    versions: list[str | None] = []

    async def on_update(event: ExternalChatUpdate, ctx: HandlerContext) -> None:
        versions.append(event.cur_mem_ver)
        await asyncio.sleep(0)

    registry = Registry()
    registry.register(CHAT_UPDATE, on_update)
    for n in range(25):
        store(db, clock, chat_update(n))

    assert await make_processor(db, clock, registry, handler_context, batch_size=7).drain() == 25
    assert versions == [f"version-{n:04d}" for n in range(25)]


@pytest.mark.parametrize("handler_seconds", [0.0, 0.6])
async def test_outcomes_are_written_per_batch_and_sooner_when_handlers_are_slow(
    db: Database, clock: FrozenClock, handler_context: HandlerContext, handler_seconds: float
) -> None:
    """Fast handlers: the whole batch's outcomes in one write at its end. Handlers that take
    time: written as soon as RECORD_EVERY_SECONDS have passed, not left to the batch end."""
    seen_done: list[int] = []

    async def on_update(event: ExternalChatUpdate, ctx: HandlerContext) -> None:
        seen_done.append(sum(r.status == "done" for r in inbox_rows(db)))
        clock.advance(handler_seconds)

    registry = Registry()
    registry.register(CHAT_UPDATE, on_update)
    for n in range(6):
        store(db, clock, chat_update(n))

    assert await make_processor(db, clock, registry, handler_context, batch_size=6).drain() == 6

    assert RECORD_EVERY_SECONDS == 1.0
    # At 0.6 s per handler, every second row crosses the second since the last write.
    assert seen_done == ([0, 0, 0, 0, 0, 0] if handler_seconds == 0 else [0, 0, 2, 2, 4, 4])
    assert all(r.status == "done" for r in inbox_rows(db))


async def test_two_workers_never_process_a_row_twice(
    db: Database, clock: FrozenClock, handler_context: HandlerContext
) -> None:
    handled: Counter[str | None] = Counter()
    by_worker: Counter[str] = Counter()

    def handler_for(worker: str):
        async def handle(event: ExternalChatUpdate, ctx: HandlerContext) -> None:
            handled[event.cur_mem_ver] += 1
            by_worker[worker] += 1
            await asyncio.sleep(0)

        return handle

    registries = []
    for worker in ("a", "b"):
        registry = Registry()
        registry.register(CHAT_UPDATE, handler_for(worker))
        registries.append(registry)
    for n in range(40):
        store(db, clock, chat_update(n))
    workers = [
        make_processor(db, clock, registries[i], handler_context, worker_id=w, batch_size=3)
        for i, w in enumerate(("a", "b"))
    ]

    counts = await asyncio.gather(*(w.drain() for w in workers))

    assert sum(counts) == 40
    assert set(handled.values()) == {1}
    assert len(handled) == 40
    # Which worker got how many is up to the scheduler (on SQLite one may take them all);
    # what matters is that together they handled each row exactly once.
    assert sum(by_worker.values()) == 40
    assert all(r.status == "done" for r in inbox_rows(db))


async def test_postgres_claim_skips_rows_locked_by_another_claim(
    postgres_db: Database, clock: FrozenClock, settings: Settings
) -> None:
    seen = Recorder()
    registry = Registry()
    registry.register(CHAT_UPDATE, seen.handler("update"))
    for n in range(4):
        store(postgres_db, clock, chat_update(n))
    processor = make_processor(
        postgres_db, clock, registry, make_context(settings, postgres_db, clock)
    )

    with postgres_db.engine.connect() as other_worker:
        claim = other_worker.begin()
        other_worker.execute(
            select(InboxEvent.id).where(InboxEvent.id.in_([1, 2])).with_for_update()
        )
        # Without SKIP LOCKED this drain would wait on the other transaction (and time out).
        processed = await asyncio.wait_for(processor.drain(), timeout=5)
        claim.rollback()

    assert processed == 2
    assert [r.status for r in inbox_rows(postgres_db)] == ["pending", "pending", "done", "done"]
    assert await processor.drain() == 2


async def test_run_wakes_on_notify_and_stops(
    db: Database,
    clock: FrozenClock,
    handler_context: HandlerContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handled = asyncio.Event()

    async def handle(event: CallbackEvent, ctx: HandlerContext) -> None:
        handled.set()

    registry = Registry()
    registry.register(CONTACT, handle)
    # A poll interval far longer than the test: only notify() can explain a prompt pick-up.
    config = DispatcherConfig(poll_interval_seconds=3600)
    processor = InboxProcessor(db, clock, registry, handler_context, config, "runner")
    drained = asyncio.Event()
    real_drain = processor.drain

    async def drain_and_signal(*, linger: float = 0.0) -> int:
        count = await real_drain(linger=linger)
        drained.set()
        return count

    monkeypatch.setattr(processor, "drain", drain_and_signal)
    stop = asyncio.Event()
    task = asyncio.create_task(processor.run(stop))
    await asyncio.wait_for(drained.wait(), timeout=10)  # the first, empty drain is over

    store(db, clock, fixture_xml("del_follow_user"))
    processor.notify()
    await asyncio.wait_for(handled.wait(), timeout=10)

    stop.set()
    await asyncio.wait_for(task, timeout=10)
    assert inbox_rows(db)[0].status == "done"


async def test_run_survives_a_failing_drain(
    db: Database,
    clock: FrozenClock,
    handler_context: HandlerContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    processor = make_processor(db, clock, Registry(), handler_context)
    stop = asyncio.Event()
    first_failed = asyncio.Event()
    calls: list[int] = []

    async def failing_drain(*, linger: float = 0.0) -> int:
        calls.append(1)
        first_failed.set()
        if len(calls) == 2:
            stop.set()
        raise RuntimeError("database unreachable")

    monkeypatch.setattr(processor, "drain", failing_drain)
    task = asyncio.create_task(processor.run(stop))
    await asyncio.wait_for(first_failed.wait(), timeout=10)
    processor.notify()  # the loop is still alive and drains again
    await asyncio.wait_for(task, timeout=10)
    assert len(calls) == 2


async def test_retry_later_puts_the_row_off_without_holding_the_others(
    db: Database, clock: FrozenClock, handler_context: HandlerContext
) -> None:
    seen: list[str] = []

    async def lagging(event: CallbackEvent, ctx: HandlerContext) -> None:
        assert isinstance(event, ExternalChatUpdate)
        seen.append(event.cur_mem_ver or "")
        if event.cur_mem_ver == "version-0001":
            raise RetryLater(1.5, "WeCom has not caught up")

    registry = Registry()
    registry.register(CHAT_UPDATE, lagging)
    store(db, clock, chat_update(1))
    store(db, clock, chat_update(2))
    processor = make_processor(db, clock, registry, handler_context, max_attempts=3)

    await processor.drain()
    first, second = inbox_rows(db)
    assert second.status == "done"  # not held up behind the lagging row
    assert (first.status, first.attempts) == ("pending", 1)
    assert first.next_attempt_at == clock.now() + timedelta(seconds=1.5)
    assert "WeCom has not caught up" in (first.last_error or "")

    clock.advance(timedelta(seconds=1.5))
    await processor.drain()
    first, _ = inbox_rows(db)
    # Put off again, for longer: the delay grows with the attempt number.
    assert (first.status, first.attempts) == ("pending", 2)
    assert first.next_attempt_at == clock.now() + timedelta(seconds=3)

    clock.advance(timedelta(seconds=3))
    await processor.drain()
    first, _ = inbox_rows(db)
    assert (first.status, first.attempts) == ("failed", 3)  # attempts still run out
    assert seen.count("version-0001") == 3


async def test_fields_handed_over_by_the_gateway_are_not_parsed_again(
    db: Database,
    clock: FrozenClock,
    handler_context: HandlerContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = Recorder()
    registry = Registry()
    registry.register(CONTACT, seen.handler("contact"))
    handed, stored_only = fixture_xml("add_external_contact"), fixture_xml("del_follow_user")
    store(db, clock, handed)
    store(db, clock, stored_only)
    processor = make_processor(db, clock, registry, handler_context)
    processor.accept(dedupe_key(handed), xmlsafe.parse_xml(handed, max_bytes=65_536))
    parsed: list[bytes] = []
    real_parse = xmlsafe.parse_xml

    def counting_parse(data: bytes, *, max_bytes: int) -> dict[str, object]:
        parsed.append(data)
        return real_parse(data, max_bytes=max_bytes)

    monkeypatch.setattr("bot.gateway.processor.parse_xml", counting_parse)

    assert await processor.drain() == 2

    # The row stored elsewhere (no hand-over) is parsed from its payload; both are handled.
    assert parsed == [stored_only]
    assert [type(event) for _, event in seen.calls] == [AddExternalContact, DelFollowUser]


def test_the_hand_over_cache_is_bounded(
    db: Database, clock: FrozenClock, handler_context: HandlerContext
) -> None:
    processor = make_processor(db, clock, Registry(), handler_context)
    for n in range(PARSED_CACHE_SIZE + 5):
        processor.accept(f"key-{n}", {"MsgType": "text"})
    kept = processor._parsed
    assert len(kept) == PARSED_CACHE_SIZE
    assert "key-4" not in kept
    assert "key-5" in kept
    assert f"key-{PARSED_CACHE_SIZE + 4}" in kept


async def test_rows_handled_before_a_shutdown_are_recorded(
    db: Database, clock: FrozenClock, handler_context: HandlerContext
) -> None:
    """Cancelled mid-batch (bot serve stopping): the rows already handled are written as
    done; the one in its handler and those after it keep their lease, to run again."""
    third_started = asyncio.Event()
    never = asyncio.Event()
    calls = 0

    async def on_update(event: ExternalChatUpdate, ctx: HandlerContext) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            third_started.set()
            await never.wait()

    registry = Registry()
    registry.register(CHAT_UPDATE, on_update)
    for n in range(5):
        store(db, clock, chat_update(n))
    draining = asyncio.create_task(make_processor(db, clock, registry, handler_context).drain())
    await asyncio.wait_for(third_started.wait(), timeout=10)

    draining.cancel()
    with pytest.raises(asyncio.CancelledError):
        await draining

    assert [r.status for r in inbox_rows(db)] == ["done", "done"] + ["processing"] * 3
