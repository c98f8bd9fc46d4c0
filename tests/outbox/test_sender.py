"""The outbox: one row per key, leases, and the retry policy per error class."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot.clock import FrozenClock
from bot.config import OutboxConfig, RetryConfig
from bot.outbox import queue
from bot.outbox.effects import Effect, EffectRegistry
from bot.outbox.sender import Sender
from bot.store.db import Database
from bot.store.models import OutboxItem
from bot.wecom.errors import (
    ConfigurationError,
    OutcomeUnknown,
    RateLimited,
    TokenInvalid,
    TransientError,
    WelcomeCodeUsed,
    WelcomeInProgress,
    error_for,
)


class StubClient:
    """The sender only hands the client to effects; these effects ignore it."""

    def with_options(self, **_: Any) -> StubClient:
        return self


class Script:
    """An effect whose calls fail with queued errors, then succeed."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls: list[dict[str, Any]] = []

    async def __call__(self, _client: Any, payload: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(payload)
        if self.errors:
            raise self.errors.pop(0)
        return {"ok": True, "n": len(self.calls)}


def make_sender(db: Database, clock: FrozenClock, *effects: Effect, **config: Any) -> Sender:
    registry = EffectRegistry()
    for effect in effects:
        registry.register(effect)
    return Sender(
        db=db,
        clock=clock,
        client=StubClient(),  # type: ignore[arg-type]
        effects=registry,
        config=OutboxConfig(**config),
        retry=RetryConfig(),
        worker_id="w1",
        outbox=queue.Outbox(),
        rng=random.Random(1),
    )


def add(db: Database, clock: FrozenClock, key: str, kind: str = "k", **extra: Any) -> bool:
    return db.call(
        lambda s: queue.enqueue(
            s, key=key, kind=kind, payload={"key": key}, now=clock.now(), **extra
        )
    )


def row(db: Database, key: str) -> OutboxItem:
    return db.call(
        lambda s: s.scalars(select(OutboxItem).where(OutboxItem.idempotency_key == key)).one()
    )


async def run_until_settled(sender: Sender, clock: FrozenClock, rounds: int = 30) -> None:
    for _ in range(rounds):
        await sender.drain()
        clock.advance(timedelta(minutes=5))


def test_a_second_row_for_the_same_key_is_impossible(db: Database, clock: FrozenClock) -> None:
    assert add(db, clock, "welcome:abc") is True
    assert add(db, clock, "welcome:abc") is False
    assert db.call(lambda s: len(s.scalars(select(OutboxItem)).all())) == 1


async def test_success_records_result_and_sends_once(db: Database, clock: FrozenClock) -> None:
    script = Script()
    sender = make_sender(db, clock, Effect(kind="k", api_path="p", execute=script))
    add(db, clock, "a")
    assert await sender.drain() == 1
    assert await sender.drain() == 0
    item = row(db, "a")
    assert (item.status, item.attempts, item.result) == ("sent", 1, {"ok": True, "n": 1})
    assert len(script.calls) == 1


async def test_busy_is_retried_at_most_three_times(db: Database, clock: FrozenClock) -> None:
    busy = [error_for(-1, "system busy", "p") for _ in range(10)]
    script = Script(*busy)
    sender = make_sender(db, clock, Effect(kind="k", api_path="p", execute=script))
    add(db, clock, "a")
    await run_until_settled(sender, clock)
    item = row(db, "a")
    assert item.status == "dead"
    assert len(script.calls) == 4  # the first call and three retries
    assert item.last_errcode == -1
    assert "gave up" in (item.last_error or "")


async def test_transient_then_success(db: Database, clock: FrozenClock) -> None:
    script = Script(error_for(45033, "too many concurrent", "p"))
    sender = make_sender(db, clock, Effect(kind="k", api_path="p", execute=script))
    add(db, clock, "a")
    await sender.drain()
    assert row(db, "a").status == "pending"
    assert row(db, "a").due_at > clock.now()  # backed off, not retried at once
    await run_until_settled(sender, clock)
    assert row(db, "a").status == "sent"
    assert len(script.calls) == 2


async def test_rate_limited_waits_for_the_bucket(db: Database, clock: FrozenClock) -> None:
    script = Script(RateLimited(45009, "api freq out of limit", "p", retry_after=60.0))
    sender = make_sender(db, clock, Effect(kind="k", api_path="p", execute=script))
    add(db, clock, "a")
    await sender.drain()
    item = row(db, "a")
    assert item.status == "pending"
    assert item.due_at >= clock.now() + timedelta(seconds=59)
    clock.advance(30)
    assert await sender.drain() == 0  # still paused
    clock.advance(31)
    assert await sender.drain() == 1
    assert row(db, "a").status == "sent"


@pytest.mark.parametrize("code", [40001, 48002, 60011, 60020, 84074])
async def test_configuration_errors_are_final(db: Database, clock: FrozenClock, code: int) -> None:
    exc = error_for(code, "no permission", "p")
    assert isinstance(exc, ConfigurationError)
    script = Script(exc)
    sender = make_sender(db, clock, Effect(kind="k", api_path="p", execute=script))
    add(db, clock, "a")
    await run_until_settled(sender, clock, rounds=3)
    item = row(db, "a")
    assert (item.status, item.last_errcode, len(script.calls)) == ("failed", code, 1)


async def test_welcome_code_used_is_final_and_41096_retried_once(
    db: Database, clock: FrozenClock
) -> None:
    used = Script(WelcomeCodeUsed(41051, "used", "p"))
    busy = Script(
        WelcomeInProgress(41096, "in progress", "p"), WelcomeInProgress(41096, "again", "p")
    )
    sender = make_sender(
        db,
        clock,
        Effect(kind="w1", api_path="p", execute=used, done_errcodes=frozenset({41051})),
        Effect(kind="w2", api_path="p", execute=busy, retry_once_errcodes=frozenset({41096})),
    )
    add(db, clock, "a", kind="w1")
    add(db, clock, "b", kind="w2")
    await run_until_settled(sender, clock, rounds=5)
    assert (row(db, "a").status, len(used.calls)) == ("skipped", 1)
    assert (row(db, "b").status, len(busy.calls)) == ("dead", 2)


async def test_expired_rows_are_never_sent_late(db: Database, clock: FrozenClock) -> None:
    script = Script()
    sender = make_sender(db, clock, Effect(kind="k", api_path="p", execute=script))
    add(db, clock, "a", expires_at=clock.now() + timedelta(seconds=20))
    clock.advance(21)
    await sender.drain()
    assert row(db, "a").status == "expired"
    assert script.calls == []


async def test_gives_up_after_the_bound_with_reason_kept(db: Database, clock: FrozenClock) -> None:
    script = Script(*[error_for(45033, "concurrency", "p") for _ in range(20)])
    sender = make_sender(db, clock, Effect(kind="k", api_path="p", execute=script), max_attempts=4)
    add(db, clock, "a")
    await run_until_settled(sender, clock)
    item = row(db, "a")
    assert (item.status, item.attempts, len(script.calls)) == ("dead", 4, 4)
    assert "45033" in (item.last_error or "")


async def test_unknown_outcome_of_a_non_idempotent_call_is_reconciled(
    db: Database, clock: FrozenClock
) -> None:
    script = Script(OutcomeUnknown(-1000, "read timeout", "p"))
    found: list[str] = []

    async def reconcile(_client: Any, item: queue.Claimed) -> dict[str, Any] | None:
        found.append(item.key)
        return {"msgid": "msg-1", "reconciled": True}

    sender = make_sender(
        db,
        clock,
        Effect(kind="k", api_path="p", execute=script, idempotent=False, reconcile=reconcile),
    )
    add(db, clock, "a")
    await run_until_settled(sender, clock, rounds=3)
    item = row(db, "a")
    assert item.status == "sent"
    assert item.result == {"msgid": "msg-1", "reconciled": True}
    assert len(script.calls) == 1
    assert found == ["a"]


async def test_unknown_outcome_without_reconcile_is_not_repeated(
    db: Database, clock: FrozenClock
) -> None:
    script = Script(OutcomeUnknown(-1000, "read timeout", "p"))
    sender = make_sender(
        db, clock, Effect(kind="k", api_path="p", execute=script, idempotent=False)
    )
    add(db, clock, "a")
    await run_until_settled(sender, clock, rounds=3)
    assert row(db, "a").status == "failed"
    assert len(script.calls) == 1


async def test_a_dead_workers_lease_expires_and_the_row_is_recovered(
    db: Database, clock: FrozenClock
) -> None:
    script = Script()
    sender = make_sender(
        db, clock, Effect(kind="k", api_path="p", execute=script), lease_seconds=60
    )
    add(db, clock, "a")
    # Another worker claimed it and died.
    db.call(
        lambda s: queue.claim(
            s, lane="normal", now=clock.now(), worker_id="dead", lease_seconds=60, limit=5
        )
    )
    assert await sender.drain() == 0
    clock.advance(61)
    assert await sender.drain() == 1
    assert row(db, "a").status == "sent"


async def test_recovered_non_idempotent_row_without_reconcile_is_given_up(
    db: Database, clock: FrozenClock
) -> None:
    script = Script()
    sender = make_sender(
        db, clock, Effect(kind="k", api_path="p", execute=script, idempotent=False)
    )
    add(db, clock, "a")
    db.call(
        lambda s: queue.claim(
            s, lane="normal", now=clock.now(), worker_id="dead", lease_seconds=60, limit=5
        )
    )
    clock.advance(61)
    await sender.drain()
    assert row(db, "a").status == "failed"
    assert script.calls == []


async def test_a_token_refused_after_its_refetch_is_retried_not_failed(
    db: Database, clock: FrozenClock
) -> None:
    expired = error_for(42001, "access_token expired", "p")
    assert isinstance(expired, TokenInvalid)
    script = Script(expired, error_for(40014, "invalid access_token", "p"))
    sender = make_sender(db, clock, Effect(kind="k", api_path="p", execute=script))
    add(db, clock, "a")
    await sender.drain()
    assert row(db, "a").status == "pending"
    await run_until_settled(sender, clock)
    assert (row(db, "a").status, len(script.calls)) == ("sent", 3)


async def test_a_bulk_backlog_does_not_hold_up_the_normal_lane(
    db: Database, clock: FrozenClock
) -> None:
    script = Script()
    sender = make_sender(db, clock, Effect(kind="k", api_path="p", execute=script), batch_size=5)
    for i in range(30):
        add(db, clock, f"bulk{i}", lane=queue.BULK)
    clock.advance(1)
    add(db, clock, "calendar")
    assert await sender.drain(queue.NORMAL) == 1
    assert script.calls == [{"key": "calendar"}]
    assert await sender.drain() == 30  # every lane


async def test_transient_error_class_is_not_final(db: Database, clock: FrozenClock) -> None:
    assert isinstance(error_for(-1, "busy", "p"), TransientError)


async def test_on_success_runs_in_the_transaction_that_marks_the_row_sent(
    db: Database, clock: FrozenClock
) -> None:
    seen: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def on_success(session: Any, payload: dict[str, Any], result: dict[str, Any], now: Any) -> None:
        # The row is already marked sent inside this same transaction.
        status = session.scalar(
            select(OutboxItem.status).where(OutboxItem.idempotency_key == payload["key"])
        )
        seen.append((payload, {**result, "status_then": status}))

    failing = Script(error_for(40001, "bad secret", "p"))
    sender = make_sender(
        db,
        clock,
        Effect(kind="k", api_path="p", execute=Script(), on_success=on_success),
        Effect(kind="bad", api_path="p", execute=failing, on_success=on_success),
    )
    add(db, clock, "a")
    add(db, clock, "b", kind="bad")
    await sender.drain()
    assert seen == [({"key": "a"}, {"ok": True, "n": 1, "status_then": "sent"})]
