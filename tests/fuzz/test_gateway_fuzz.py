"""The callback endpoint, over the real ASGI app, against hostile and broken deliveries:
never a 500 or a hang, a row only for an authentic message, no DTD or oversized body ever
parsed, and a replay stored once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.clock import FrozenClock
from bot.store.db import Database
from tests.fuzz.bounds import fuzz_settings
from tests.fuzz.gateway_harness import (
    CallbackHarness,
    Delivery,
    Replay,
    random_deliveries,
    replays,
    sealed_strategy,
)


@pytest.fixture
def harness(db: Database, clock: FrozenClock) -> Iterator[CallbackHarness]:
    with CallbackHarness(db, clock) as h:
        yield h


@pytest.fixture
def sqlite_harness(sqlite_db: Database, clock: FrozenClock) -> Iterator[CallbackHarness]:
    with CallbackHarness(sqlite_db, clock) as h:
        yield h


# SQLite only: nothing here is authentic, so no example writes, and the database is only
# counted; generating these inputs is the slow part, and twice would add seconds for nothing.
@fuzz_settings(max_examples=80, deadline_ms=None)
@given(case=random_deliveries())
def test_random_requests_are_refused_and_store_nothing(
    sqlite_harness: CallbackHarness, case: Delivery
) -> None:
    sqlite_harness.check(case)


# Both engines: authentic deliveries are stored, and storing is engine-specific.
@fuzz_settings(max_examples=60, deadline_ms=None)
@given(data=st.data())
def test_sealed_deliveries_are_stored_only_when_authentic(
    harness: CallbackHarness, data: st.DataObject
) -> None:
    harness.check(data.draw(sealed_strategy(harness), label="delivery"))


@fuzz_settings(max_examples=15, deadline_ms=None)
@given(data=st.data())
def test_a_replay_is_a_no_op_in_the_window_and_refused_outside(
    harness: CallbackHarness, data: st.DataObject
) -> None:
    case: Replay = data.draw(replays(harness.tolerance), label="replay")
    harness.check_replay(case)
