"""Holiday data from chinese_calendar, and the Mon–Fri fallback for years it lacks."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from bot.calendar import holidays


def test_data_covers_2026_and_not_2027() -> None:
    first, last = holidays.data_years()
    assert first <= 2026 == last
    assert holidays.has_data(2026)
    assert not holidays.has_data(2027)


@pytest.mark.parametrize("offset", range(7))
def test_national_day_2026_is_seven_days_off(offset: int) -> None:
    day = date(2026, 10, 1) + timedelta(days=offset)
    assert not holidays.is_workday(day)
    assert holidays.day_off_name(day) == "国庆节"


def test_spring_festival_2026_runs_feb_15_to_23_with_adjusted_saturdays() -> None:
    days_off = [date(2026, 2, 15) + timedelta(days=i) for i in range(9)]
    assert all(holidays.day_off_name(d) == "春节" for d in days_off)
    assert not any(holidays.is_workday(d) for d in days_off)
    assert holidays.day_off_name(date(2026, 2, 14)) is None
    assert holidays.day_off_name(date(2026, 2, 24)) is None
    # Saturdays worked in exchange (调休).
    for saturday in (date(2026, 2, 14), date(2026, 2, 28)):
        assert saturday.weekday() == 5
        assert holidays.is_workday(saturday)


def test_ordinary_days() -> None:
    assert holidays.is_workday(date(2026, 11, 23))  # a Monday
    assert not holidays.is_workday(date(2026, 11, 28))  # a Saturday
    assert holidays.day_off_name(date(2026, 11, 28)) is None  # a weekend is not a holiday
    assert holidays.day_off_name(date(2026, 11, 23)) is None


def test_other_2026_holiday_names() -> None:
    assert holidays.day_off_name(date(2026, 1, 1)) == "元旦"
    assert holidays.day_off_name(date(2026, 5, 1)) == "劳动节"
    assert holidays.day_off_name(date(2026, 9, 25)) == "中秋"


def test_next_workday_skips_the_whole_holiday() -> None:
    assert holidays.next_workday(date(2026, 10, 1)) == date(2026, 10, 8)
    assert holidays.next_workday(date(2026, 10, 7)) == date(2026, 10, 8)
    assert holidays.next_workday(date(2026, 2, 16)) == date(2026, 2, 24)
    # An adjusted Sunday is a workday: the day after New Year's holiday.
    assert holidays.next_workday(date(2026, 1, 2)) == date(2026, 1, 4)
    assert holidays.next_workday(date(2026, 11, 27)) == date(2026, 11, 30)  # Fri → Mon


def test_2027_falls_back_to_monday_to_friday() -> None:
    new_year = date(2027, 1, 1)  # a Friday; the library does not know the holiday yet
    assert new_year.weekday() == 4
    assert holidays.is_workday(new_year)
    assert holidays.day_off_name(new_year) is None
    assert not holidays.is_workday(date(2027, 1, 2))
    assert holidays.next_workday(new_year) == date(2027, 1, 4)
    # National Day 2027 is not known either.
    assert holidays.day_off_name(date(2027, 10, 1)) is None


def test_next_workday_crosses_into_a_year_without_data() -> None:
    assert holidays.next_workday(date(2026, 12, 31)) == date(2027, 1, 1)
