"""`bot check`: validate config, calendars and content, reporting file and line of each problem."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from bot.calendar.content import ContentLibrary
from bot.calendar.holidays import has_data
from bot.calendar.lint import lint_content
from bot.calendar.schedule import Calendar, CalendarError, load_calendar
from bot.config import ConfigError, Settings, load_config
from bot.templates import Templates


def check_calendar(settings: Settings) -> tuple[Calendar | None, list[str]]:
    """The theme calendar (schedules/), validated against the content folder."""
    try:
        calendar = load_calendar(
            settings.schedules_dir(),
            settings.content_dir(),
            lateness_minutes=settings.calendar.lateness_minutes,
        )
    except CalendarError as exc:
        return None, list(exc.problems)
    return calendar, []


def check_copy(settings: Settings, calendar: Calendar | None) -> list[str]:
    """Copy lint over the calendar's posts and every content/calendar template."""
    return lint_content(ContentLibrary(settings.content_dir()), settings, calendar)


def holiday_warnings(today: date) -> list[str]:
    """Years the holiday data does not cover yet, this year and next: slots then follow plain
    weekdays, so operators should upgrade chinesecalendar once the State Council publishes."""
    return [
        f"holidays: no Chinese holiday data for {year}; weekday slots follow Mon–Fri "
        "(upgrade chinesecalendar when the year's holidays are published)"
        for year in (today.year, today.year + 1)
        if not has_data(year)
    ]


def check_welcome_templates(settings: Settings, templates: Templates) -> list[str]:
    problems: list[str] = []
    config_file = Path(settings.base_dir) / "config.yaml"
    names = {"welcome.default_template": settings.welcome.default_template}
    names.update({f"welcome.by_state.{k}": v for k, v in settings.welcome.by_state.items()})
    for key, name in names.items():
        if not templates.exists(name):
            problems.append(
                f"{config_file} ({key}): template {name!r} not found in {templates.root}"
            )
    return problems


def run_checks(config: str | Path | None) -> tuple[Settings | None, list[str]]:
    """All problems found, each as 'file:line: message'."""
    try:
        settings = load_config(config)
    except ConfigError as exc:
        return None, list(exc.problems)
    templates = Templates(settings.content_dir())
    problems = [str(p) for p in templates.check()]
    problems += check_welcome_templates(settings, templates)
    calendar, calendar_problems = check_calendar(settings)
    problems += calendar_problems
    problems += check_copy(settings, calendar)
    return settings, problems
