"""Chinese public holidays and adjusted workdays (调休), from the chinese_calendar library.

The library ships the State Council's announcements for a fixed range of years. Outside
that range we fall back to "Monday to Friday are workdays": a calendar then simply runs as
on ordinary weeks, and `has_data` lets `bot check` warn that holidays are not known yet.
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import cache
from typing import cast

import chinese_calendar

# The longest run of consecutive days off in any announced year is well under this; the
# bound only stops a loop should the data ever be wrong.
MAX_DAYS_OFF = 40


@cache
def data_years() -> tuple[int, int]:
    """First and last year the library has holiday data for."""
    days = cast("dict[date, str]", chinese_calendar.holidays).keys()
    return min(days).year, max(days).year


def has_data(year: int) -> bool:
    """Whether holidays and adjusted workdays of `year` are known."""
    first, last = data_years()
    return first <= year <= last


def is_workday(day: date) -> bool:
    """A working day: Mon–Fri except statutory holidays, plus adjusted weekend workdays."""
    if not has_data(day.year):
        return day.weekday() < 5
    return bool(chinese_calendar.is_workday(day))


def day_off_name(day: date) -> str | None:
    """The Chinese name of the statutory holiday `day` belongs to (国庆节, 春节, …), or None
    on workdays, on ordinary weekends and in years without data."""
    if not has_data(day.year):
        return None
    english = cast("dict[date, str]", chinese_calendar.holidays).get(day)
    if english is None:
        return None
    try:
        return str(chinese_calendar.Holiday(english).chinese)
    except ValueError:  # a name the enum does not list: still a holiday
        return english


def next_workday(day: date) -> date:
    """The first workday strictly after `day`."""
    probe = day + timedelta(days=1)
    for _ in range(MAX_DAYS_OFF):
        if is_workday(probe):
            return probe
        probe += timedelta(days=1)
    raise ValueError(f"no workday within {MAX_DAYS_OFF} days after {day.isoformat()}")
