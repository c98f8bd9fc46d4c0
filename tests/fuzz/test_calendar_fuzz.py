"""Calendar files and posts, random and mutated: load_calendar gives a Calendar or a
CalendarError whose problems name a file (and a line where there is one); rendering fails
only with a RenderError naming the file; lint never raises."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import event, given

from tests.fuzz.bounds import fuzz_settings
from tests.fuzz.calendar_cases import (
    CalendarHarness,
    PostCase,
    ScheduleCase,
    post_cases,
    schedule_cases,
)


@pytest.fixture
def harness() -> Iterator[CalendarHarness]:
    with CalendarHarness() as h:
        yield h


@fuzz_settings(max_examples=100, deadline_ms=5000)
@given(case=schedule_cases())
def test_calendar_files_load_or_fail_naming_file_and_line(
    harness: CalendarHarness, case: ScheduleCase
) -> None:
    event(harness.check_schedule(case))


@fuzz_settings(max_examples=20, deadline_ms=10_000)
@given(case=post_cases())
def test_posts_render_or_fail_naming_the_file_and_lint_never_raises(
    harness: CalendarHarness, case: PostCase
) -> None:
    event(harness.check_post(case))
