"""Which slots run when: weekdays, Asia/Shanghai times, holidays, adjusted workdays, overrides."""

from __future__ import annotations

import textwrap
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from bot.calendar.occurrences import Occurrence, occurrences_between, occurrences_on
from bot.calendar.schedule import Calendar, load_calendar
from bot.clock import SHANGHAI

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def default() -> Calendar:
    return load_calendar(ROOT / "schedules")


def at(day: date, hhmm: str) -> datetime:
    hh, mm = hhmm.split(":")
    return datetime(day.year, day.month, day.day, int(hh), int(mm), tzinfo=SHANGHAI)


def on(calendar: Calendar, day: date) -> list[Occurrence]:
    return occurrences_on(calendar, day, SHANGHAI)


def ids(calendar: Calendar, day: date) -> list[str]:
    return [o.slot_id for o in on(calendar, day)]


def small(tmp_path: Path, text: str) -> Calendar:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "cal.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    return load_calendar(tmp_path)


# -- an ordinary week -------------------------------------------------------------------------

WEEK_OF_NOV_23 = {
    date(2026, 11, 23): [("mon-wealth-brief", "09:30"), ("mon-wealth-vip", "10:00")],
    date(2026, 11, 24): [("tue-prepurchase", "10:00")],
    date(2026, 11, 25): [("wed-half-off", "10:00"), ("wed-payroll-steady", "12:10")],
    date(2026, 11, 26): [("thu-joint-rights", "10:00"), ("thu-moments", "20:00")],
    date(2026, 11, 27): [("fri-movie", "11:00")],
    date(2026, 11, 28): [("sat-family", "10:00")],
    date(2026, 11, 29): [("sun-senior", "09:30"), ("sun-senior-group", "15:00")],
}


@pytest.mark.parametrize(("day", "expected"), WEEK_OF_NOV_23.items())
def test_each_weekday_fires_its_slots_at_local_time(
    default: Calendar, day: date, expected: list[tuple[str, str]]
) -> None:
    found = on(default, day)
    assert [(o.slot_id, o.fire_at) for o in found] == [(s, at(day, t)) for s, t in expected]
    for occ in found:
        assert occ.day == day
        assert occ.fire_at.utcoffset() == timedelta(hours=8)
        assert occ.note is None
        assert occ.template == default.slot(occ.slot_id).template


def test_occurrence_carries_the_slot(default: Calendar) -> None:
    (occ,) = [o for o in on(default, date(2026, 11, 25)) if o.slot_id == "wed-payroll-steady"]
    assert occ.theme == "周三工资理财"
    assert occ.channel == "single"
    assert occ.audience == 'tag("代发客户") and not tag("资产50万+")'
    assert occ.groups is None
    assert occ.tags == ()
    assert occ.attachments == ()
    assert occ.window_policy == "defer"
    assert occ.lateness == timedelta(minutes=120)
    path, _, number = occ.source.rpartition(":")
    lines = Path(path).read_text("utf-8").splitlines()
    assert lines[int(number) - 1].strip() == "- id: wed-payroll-steady"


def test_the_week_between_two_instants(default: Calendar) -> None:
    start = at(date(2026, 11, 23), "00:00")
    week = occurrences_between(default, start, start + timedelta(days=7))
    assert [o.slot_id for o in week] == [s for day in WEEK_OF_NOV_23.values() for s, _ in day]
    assert [o.fire_at for o in week] == sorted(o.fire_at for o in week)


def test_between_is_half_open_and_zone_aware(default: Calendar) -> None:
    monday = date(2026, 11, 23)
    # [09:30, 10:00): the 09:30 slot is in, the 10:00 slot is not.
    found = occurrences_between(default, at(monday, "09:30"), at(monday, "10:00"))
    assert [o.slot_id for o in found] == ["mon-wealth-brief"]
    # The same instants written in UTC, with the local zone given: same answer, local times.
    utc = occurrences_between(
        default,
        datetime(2026, 11, 23, 1, 30, tzinfo=UTC),
        datetime(2026, 11, 23, 2, 0, tzinfo=UTC),
        tz=SHANGHAI,
    )
    assert [(o.slot_id, o.fire_at) for o in utc] == [("mon-wealth-brief", at(monday, "09:30"))]
    with pytest.raises(ValueError, match="aware"):
        occurrences_between(default, datetime(2026, 11, 23), datetime(2026, 11, 24))  # noqa: DTZ001


def test_same_time_sorted_by_priority_then_id(tmp_path: Path) -> None:
    calendar = small(
        tmp_path,
        """\
        name: t
        slots:
          - {id: b-low, theme: B, days: [mon], time: "10:00", channel: group, template: t.j2}
          - {id: a-low, theme: A, days: [mon], time: "10:00", channel: group, template: t.j2}
          - {id: z-high, theme: Z, days: [mon], time: "10:00", channel: group, template: t.j2,
             priority: 30}
          - {id: y-early, theme: Y, days: [mon], time: "08:00", channel: group, template: t.j2}
        """,
    )
    assert ids(calendar, date(2026, 11, 23)) == ["y-early", "z-high", "a-low", "b-low"]


def test_lateness_per_slot_or_default(tmp_path: Path) -> None:
    (tmp_path / "cal.yaml").write_text(
        "name: t\nslots:\n"
        '  - {id: a, theme: A, days: [mon], time: "10:00", channel: group, template: t.j2}\n'
        '  - {id: b, theme: B, days: [mon], time: "10:00", channel: group, template: t.j2,'
        " lateness_minutes: 15}\n",
        encoding="utf-8",
    )
    calendar = load_calendar(tmp_path, lateness_minutes=45)
    lateness = {o.slot_id: o.lateness for o in on(calendar, date(2026, 11, 23))}
    assert lateness == {"a": timedelta(minutes=45), "b": timedelta(minutes=15)}


# -- holidays: National Day 2026 (Oct 1–7, Sat Oct 10 worked) ---------------------------------


def test_national_day_variant_keeps_date_and_time_with_holiday_template(
    default: Calendar,
) -> None:
    (thursday,) = on(default, date(2026, 10, 1))  # thu-moments (skip) is gone
    assert thursday.slot_id == "thu-joint-rights"
    assert thursday.fire_at == at(date(2026, 10, 1), "10:00")
    assert thursday.template == "calendar/holiday_greeting.md.j2"
    assert thursday.note == "holiday variant (国庆节)"
    (friday,) = on(default, date(2026, 10, 2))
    assert (friday.slot_id, friday.template) == ("fri-movie", "calendar/holiday_greeting.md.j2")


@pytest.mark.parametrize("day", [date(2026, 10, d) for d in range(5, 8)])
def test_national_day_skips_everything_else(default: Calendar, day: date) -> None:
    assert on(default, day) == []


def test_weekend_slots_on_a_holiday_weekend_send_the_greeting(default: Calendar) -> None:
    # Weekend slots follow their holiday policy on a holiday weekend too (here: variant).
    saturday = on(default, date(2026, 10, 3))
    sunday = on(default, date(2026, 10, 4))
    assert [(o.slot_id, o.template) for o in saturday] == [
        ("sat-family", "calendar/holiday_greeting.md.j2")
    ]
    assert [o.slot_id for o in sunday] == ["sun-senior", "sun-senior-group"]
    assert {o.note for o in sunday} == {"holiday variant (国庆节)"}


def test_national_day_moves_next_workday_slots_to_oct_8(default: Calendar) -> None:
    day = date(2026, 10, 8)
    found = {o.slot_id: o for o in on(default, day)}
    assert list(found) == [
        "mon-wealth-brief",
        "mon-wealth-vip",
        "thu-joint-rights",
        "wed-payroll-steady",
        "thu-moments",
    ]
    assert found["mon-wealth-brief"].fire_at == at(day, "09:30")
    assert found["mon-wealth-brief"].note == "moved from 2026-10-05 (国庆节)"
    assert found["mon-wealth-vip"].fire_at == at(day, "10:00")
    assert found["wed-payroll-steady"].fire_at == at(day, "12:10")
    assert found["wed-payroll-steady"].note == "moved from 2026-10-07 (国庆节)"
    assert found["wed-payroll-steady"].day == day
    assert found["thu-joint-rights"].template == "calendar/thu_joint_rights.md.j2"
    assert found["thu-joint-rights"].note is None


def test_moved_slots_run_once(default: Calendar) -> None:
    start = at(date(2026, 9, 28), "00:00")
    found = occurrences_between(default, start, start + timedelta(days=15))
    assert [o.day for o in found if o.slot_id == "mon-wealth-brief"] == [
        date(2026, 9, 28),
        date(2026, 10, 8),
        date(2026, 10, 12),
    ]


def test_adjusted_workdays_invent_no_weekday_slots(default: Calendar) -> None:
    # Saturday Oct 10 and Sunday Sep 20 are worked: only their own weekend slots run.
    assert ids(default, date(2026, 10, 10)) == ["sat-family"]
    assert ids(default, date(2026, 9, 20)) == ["sun-senior", "sun-senior-group"]


# -- holidays: Spring Festival 2026 (Feb 15–23, Sat Feb 14 and 28 worked) ---------------------


def test_spring_festival_two_mondays_move_once_to_feb_24(default: Calendar) -> None:
    start = at(date(2026, 2, 14), "00:00")
    found = occurrences_between(default, start, at(date(2026, 2, 26), "00:00"))
    brief = [o for o in found if o.slot_id == "mon-wealth-brief"]
    assert [(o.fire_at, o.note) for o in brief] == [
        (at(date(2026, 2, 24), "09:30"), "moved from 2026-02-23 (春节)")
    ]
    payroll = [(o.day, o.note) for o in found if o.slot_id == "wed-payroll-steady"]
    assert payroll == [
        (date(2026, 2, 24), "moved from 2026-02-18 (春节)"),
        (date(2026, 2, 25), None),
    ]
    # tue-prepurchase skips Feb 17 and runs on its own Tuesday Feb 24.
    assert [o.day for o in found if o.slot_id == "tue-prepurchase"] == [date(2026, 2, 24)]
    assert [(o.day, o.template) for o in found if o.slot_id == "thu-joint-rights"] == [
        (date(2026, 2, 19), "calendar/holiday_greeting.md.j2")
    ]


def test_feb_24_orders_moved_and_own_slots(default: Calendar) -> None:
    # At 10:00 the moved mon-wealth-vip (priority 20) comes before tue-prepurchase (10).
    assert ids(default, date(2026, 2, 24)) == [
        "mon-wealth-brief",
        "mon-wealth-vip",
        "tue-prepurchase",
        "wed-payroll-steady",
    ]


def test_adjusted_saturday_before_spring_festival(default: Calendar) -> None:
    assert ids(default, date(2026, 2, 14)) == ["sat-family"]
    assert ids(default, date(2026, 2, 28)) == ["sat-family"]


def test_next_workday_does_not_duplicate_a_slot_already_there(tmp_path: Path) -> None:
    calendar = small(
        tmp_path,
        """\
        name: t
        slots:
          - id: daily
            theme: 每日
            days: [mon, tue, wed, thu, fri, sat, sun]
            time: "08:00"
            channel: group
            template: t.j2
            holiday: {policy: next_workday}
        """,
    )
    (occ,) = on(calendar, date(2026, 10, 8))
    assert (occ.slot_id, occ.note) == ("daily", None)
    assert on(calendar, date(2026, 10, 7)) == []


# -- a year the library has no data for -------------------------------------------------------


def test_2027_runs_as_ordinary_weeks(default: Calendar) -> None:
    # Oct 1 2027 is a Friday; without data it is a workday and fri-movie runs as usual.
    (friday,) = on(default, date(2027, 10, 1))
    assert (friday.slot_id, friday.template, friday.note) == (
        "fri-movie",
        "calendar/fri_movie.md.j2",
        None,
    )
    assert ids(default, date(2027, 1, 4)) == ["mon-wealth-brief", "mon-wealth-vip"]
    assert all(o.note is None for o in on(default, date(2027, 1, 4)))


# -- overrides --------------------------------------------------------------------------------


def test_year_end_campaign_adds_a_daily_slot_and_skips_half_off(default: Calendar) -> None:
    for offset in range(7):
        day = date(2026, 12, 21) + timedelta(days=offset)
        campaign = [o for o in on(default, day) if o.slot_id == "campaign-year-end"]
        assert [(o.fire_at, o.note) for o in campaign] == [
            (at(day, "10:30"), "override 年终理财节")
        ]
    assert ids(default, date(2026, 12, 23)) == ["campaign-year-end", "wed-payroll-steady"]
    assert ids(default, date(2026, 12, 20)) == ["sun-senior", "sun-senior-group"]
    assert "campaign-year-end" not in ids(default, date(2026, 12, 28))
    assert ids(default, date(2026, 12, 30)) == ["wed-half-off", "wed-payroll-steady"]


OVERRIDES = """\
name: t
slots:
  - {id: mon-a, theme: A, days: [mon], time: "09:00", channel: group, template: t.j2,
     holiday: {policy: next_workday}}
  - {id: mon-b, theme: B, days: [mon], time: "11:00", channel: group, template: t.j2}
overrides:
"""


def test_replace_on_a_single_day(tmp_path: Path) -> None:
    calendar = small(
        tmp_path,
        OVERRIDES
        + """\
  - name: 支行开放日
    from: 2026-11-23
    to: 2026-11-23
    mode: replace
    slots:
      - {id: open-day, theme: 开放日, time: "10:00", channel: group, template: t.j2}
""",
    )
    (occ,) = on(calendar, date(2026, 11, 23))
    assert (occ.slot_id, occ.note) == ("open-day", "override 支行开放日")
    assert ids(calendar, date(2026, 11, 30)) == ["mon-a", "mon-b"]
    assert ids(calendar, date(2026, 11, 24)) == []


def test_skip_on_a_single_day(tmp_path: Path) -> None:
    calendar = small(
        tmp_path,
        OVERRIDES + "  - {name: 停发, from: 2026-11-23, to: 2026-11-23, skip: [mon-b]}\n",
    )
    assert ids(calendar, date(2026, 11, 23)) == ["mon-a"]
    assert ids(calendar, date(2026, 11, 30)) == ["mon-a", "mon-b"]


def test_override_slot_days_limit_it_within_the_range(tmp_path: Path) -> None:
    calendar = small(
        tmp_path,
        OVERRIDES
        + """\
  - name: 周末活动
    from: 2026-11-23
    to: 2026-12-06
    slots:
      - {id: weekend, theme: 周末, days: [sat, sun], time: "10:00", channel: group,
         template: t.j2}
""",
    )
    start = at(date(2026, 11, 16), "00:00")
    found = occurrences_between(calendar, start, start + timedelta(days=28))
    assert [o.day for o in found if o.slot_id == "weekend"] == [
        date(2026, 11, 28),
        date(2026, 11, 29),
        date(2026, 12, 5),
        date(2026, 12, 6),
    ]


def test_a_skipped_or_replaced_holiday_slot_does_not_move(tmp_path: Path) -> None:
    # mon-a (next_workday) falls on Oct 5; skipped there, it is not moved to Oct 8.
    skipped = small(
        tmp_path / "a",
        OVERRIDES + "  - {name: 停发, from: 2026-10-05, to: 2026-10-05, skip: [mon-a]}\n",
    )
    assert ids(skipped, date(2026, 10, 8)) == []
    # Not skipped: it moves.
    plain = small(tmp_path / "b", OVERRIDES.replace("overrides:\n", ""))
    assert ids(plain, date(2026, 10, 8)) == ["mon-a"]


def test_an_override_on_the_landing_day_keeps_the_moved_slot_off(tmp_path: Path) -> None:
    replaced = small(
        tmp_path / "a",
        OVERRIDES + "  - {name: 节后整顿, from: 2026-10-08, to: 2026-10-08, mode: replace}\n",
    )
    assert ids(replaced, date(2026, 10, 8)) == []
    skipped = small(
        tmp_path / "b",
        OVERRIDES + "  - {name: 节后, from: 2026-10-08, to: 2026-10-08, skip: [mon-a]}\n",
    )
    assert ids(skipped, date(2026, 10, 8)) == []


def test_override_slots_follow_holiday_policy(tmp_path: Path) -> None:
    calendar = small(
        tmp_path,
        OVERRIDES
        + """\
  - name: 国庆活动
    from: 2026-09-30
    to: 2026-10-02
    slots:
      - {id: greet, theme: 国庆, time: "10:00", channel: group, template: t.j2,
         holiday: {policy: variant, template: h.j2}}
""",
    )
    assert [(o.template, o.note) for o in on(calendar, date(2026, 9, 30))] == [
        ("t.j2", "override 国庆活动")
    ]
    assert [(o.template, o.note) for o in on(calendar, date(2026, 10, 1))] == [
        ("h.j2", "override 国庆活动; holiday variant (国庆节)")
    ]
