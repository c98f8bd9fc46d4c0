"""The bank import on random and damaged files: a report or an ImportFileError, and never a
partial write: whenever an import must not write, the store is exactly as it was."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import event, given

from bot.clock import FrozenClock
from bot.store.db import Database
from tests.fuzz.bounds import fuzz_settings
from tests.fuzz.import_cases import ImportCase, ImportHarness, import_cases


@pytest.fixture
def harness(db: Database, clock: FrozenClock) -> Iterator[ImportHarness]:
    with ImportHarness(db, clock.now()) as h:
        yield h


# Both engines: the write path (temporary tables, batched upserts, rollback) differs.
@fuzz_settings(max_examples=25, deadline_ms=None)
@given(case=import_cases())
def test_an_import_reports_or_fails_whole(harness: ImportHarness, case: ImportCase) -> None:
    event(harness.check(case))
