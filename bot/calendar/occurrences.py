"""When each slot runs: the calendar's slots on concrete dates, with holidays and overrides.

For one date: the regular slots of that weekday, unless an override covering the date
replaces them or skips them, plus the slots of every override covering it. Then holidays:
on a statutory day off (国庆节, 春节, …; weekends included, ordinary weekends excluded) a
slot follows its policy — `skip` drops it, `variant` keeps date and time with the holiday
template, `next_workday` moves it to the first workday after the holiday at the same time.
A moved slot does not run twice on the day it lands on (one occurrence per slot id and
day), and an override that keeps a slot off that day keeps the moved one off too.
Adjusted workdays (调休 weekends) invent nothing: their date's own weekend slots run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import Literal

from bot.calendar import holidays
from bot.calendar.schedule import Attachment, Calendar, Slot


@dataclass(frozen=True)
class Occurrence:
    """One slot on one date, ready for planning."""

    slot_id: str
    theme: str
    day: date  # the date it runs (after a holiday move)
    fire_at: datetime  # aware, in the zone the occurrences were asked for
    channel: Literal["group", "single", "moments"]
    audience: str | None
    groups: str | None
    tags: tuple[str, ...]
    template: str  # the holiday variant's template on a holiday
    attachments: tuple[Attachment, ...]
    priority: int
    window_policy: Literal["defer", "skip"]
    lateness: timedelta
    note: str | None
    source: str  # "path:line" where the slot is defined


def _sort_key(occ: Occurrence) -> tuple[datetime, int, str]:
    return occ.fire_at, -occ.priority, occ.slot_id


def _planned(calendar: Calendar, day: date) -> list[Slot]:
    """The slots planned for `day` by the weekly pattern and the overrides, before holidays."""
    covering = [o for o in calendar.overrides if o.covers(day)]
    skipped = {slot_id for o in covering for slot_id in o.skip}
    slots: list[Slot] = []
    if not any(o.mode == "replace" for o in covering):
        slots += [s for s in calendar.slots if s.on_weekday(day)]
    slots += [s for o in covering for s in o.slots if s.on_weekday(day)]
    return [s for s in slots if s.id not in skipped]


def _kept_off(calendar: Calendar, day: date, slot: Slot) -> bool:
    """Whether the overrides covering `day` leave no room for `slot` that day."""
    covering = [o for o in calendar.overrides if o.covers(day)]
    if any(slot.id in o.skip for o in covering):
        return True
    replaced = any(o.mode == "replace" for o in covering)
    return replaced and not any(slot in o.slots for o in covering)


def _moved_here(calendar: Calendar, day: date) -> list[tuple[Slot, date, str]]:
    """Slots whose next_workday policy lands them on `day`: (slot, original date, holiday
    name). When one slot falls on several holiday dates before `day` (a Monday slot over
    a nine-day Spring Festival), the latest date is the one kept."""
    if not holidays.is_workday(day):
        return []
    moved: dict[str, tuple[Slot, date, str]] = {}
    origin = day - timedelta(days=1)
    # Every day between the previous workday and `day` has `day` as its next workday.
    for _ in range(holidays.MAX_DAYS_OFF):
        if holidays.is_workday(origin):
            break
        name = holidays.day_off_name(origin)
        if name is not None:
            for slot in _planned(calendar, origin):
                if slot.holiday == "next_workday" and slot.id not in moved:
                    moved[slot.id] = (slot, origin, name)
        origin -= timedelta(days=1)
    return list(moved.values())


def _occurrence(
    calendar: Calendar,
    slot: Slot,
    day: date,
    tz: tzinfo,
    *,
    template: str | None = None,
    note: str | None = None,
) -> Occurrence:
    notes = [n for n in (f"override {slot.override}" if slot.override else None, note) if n]
    lateness = (
        calendar.default_lateness
        if slot.lateness_minutes is None
        else timedelta(minutes=slot.lateness_minutes)
    )
    return Occurrence(
        slot_id=slot.id,
        theme=slot.theme,
        day=day,
        fire_at=datetime.combine(day, slot.time, tzinfo=tz),
        channel=slot.channel,
        audience=slot.audience,
        groups=slot.groups,
        tags=slot.tags,
        template=template or slot.template,
        attachments=slot.attachments,
        priority=slot.priority,
        window_policy=slot.window_policy,
        lateness=lateness,
        note="; ".join(notes) or None,
        source=slot.source,
    )


def occurrences_on(calendar: Calendar, day: date, tz: tzinfo) -> list[Occurrence]:
    """Everything that runs on local date `day`, sorted by fire_at, -priority, slot_id."""
    out: list[Occurrence] = []
    holiday = holidays.day_off_name(day)
    for slot in _planned(calendar, day):
        if holiday is None:
            out.append(_occurrence(calendar, slot, day, tz))
        elif slot.holiday == "variant":
            variant = f"holiday variant ({holiday})"
            out.append(
                _occurrence(calendar, slot, day, tz, template=slot.holiday_template, note=variant)
            )
    present = {occ.slot_id for occ in out}
    for slot, origin, name in _moved_here(calendar, day):
        if slot.id in present or _kept_off(calendar, day, slot):
            continue
        note = f"moved from {origin.isoformat()} ({name})"
        out.append(_occurrence(calendar, slot, day, tz, note=note))
    return sorted(out, key=_sort_key)


def occurrences_between(
    calendar: Calendar, start: datetime, end: datetime, tz: tzinfo | None = None
) -> list[Occurrence]:
    """Occurrences with fire_at in [start, end), sorted as `occurrences_on`.

    Slot times are local to `tz`, by default the zone `start` is expressed in (the clock's
    zone, which is settings.timezone).
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be aware datetimes")
    zone = tz or start.tzinfo
    out: list[Occurrence] = []
    day = start.astimezone(zone).date()
    last = end.astimezone(zone).date()
    while day <= last:
        out += [o for o in occurrences_on(calendar, day, zone) if start <= o.fire_at < end]
        day += timedelta(days=1)
    return sorted(out, key=_sort_key)
