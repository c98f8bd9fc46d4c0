"""`bot plan --date D`: preview a day of the calendar without sending anything, and
`bot report`: what each slot run reached."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from bot.calendar.content import ContentLibrary
from bot.calendar.occurrences import occurrences_on
from bot.calendar.planner import DROP_REASONS, SlotPlan, compute_plan, member_names, target_names
from bot.calendar.schedule import Calendar, CalendarError, load_calendar
from bot.config import Settings
from bot.privacy import hash_id
from bot.store.db import Database
from bot.store.models import SlotRun

_ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="config.yaml to use (default: $BOT_CONFIG or ./config.yaml)"
    ),
]
WEEKDAYS = "一二三四五六日"


def register(app: typer.Typer) -> None:
    app.command("plan")(plan_command)
    app.command("report")(report_command)


def plan_command(
    day: Annotated[str, typer.Option("--date", help="the day to preview, YYYY-MM-DD")],
    show: Annotated[
        int,
        typer.Option("--show", min=0, help="list up to N targets per sender (customers masked)"),
    ] = 0,
    config: _ConfigOption = None,
) -> None:
    """Preview a day: per slot, per manager and group, who would get what, and the drops."""
    from bot.cli import _database, _require_migrated, _settings, console, err

    settings = _settings(config)
    when = _day("--date", day, err)
    calendar = _load(settings, err)
    db = _database(settings)
    _require_migrated(db)
    content = ContentLibrary(settings.content_dir())
    occurrences = occurrences_on(calendar, when, ZoneInfo(settings.timezone))
    console.print(
        f"[bold]{when.isoformat()} 周{WEEKDAYS[when.weekday()]}[/bold]: "
        f"{len(occurrences)} slot(s) — preview, nothing is sent",
        highlight=False,
    )
    runs = _runs_of(db, when)
    for occ in occurrences:
        plan = compute_plan(db, occ, settings=settings, content=content)
        print_plan(console, db, plan, status=runs.get(occ.slot_id), show=show)
    db.dispose()


def _day(option: str, text: str, err: Console) -> date:
    """A YYYY-MM-DD option, or exit 2 naming it."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        err.print(f"{option}: not a date (YYYY-MM-DD): {text!r}")
        raise typer.Exit(2) from None


def _load(settings: Settings, err: Console) -> Calendar:
    try:
        return load_calendar(
            settings.schedules_dir(),
            settings.content_dir(),
            lateness_minutes=settings.calendar.lateness_minutes,
        )
    except CalendarError as exc:
        for problem in exc.problems:
            err.print(f"✗ {problem}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def _runs_of(db: Database, when: date) -> dict[str, str]:
    query = select(SlotRun.slot_id, SlotRun.part, SlotRun.status).where(SlotRun.day == when)
    runs: dict[str, str] = {}
    for slot_id, part, status in db.call(lambda s: s.execute(query).all()):
        label = status if part == "main" else f"{part} {status}"
        runs[slot_id] = f"{runs[slot_id]}, {label}" if slot_id in runs else label
    return runs


def print_plan(
    console: Console, db: Database, plan: SlotPlan, *, status: str | None, show: int
) -> None:
    occ = plan.occurrence
    noun = {"customer": "customer(s)", "group": "group(s)", "moment": "customer(s)"}[
        plan.target_kind
    ]
    head = (
        f"\n[bold]{occ.fire_at:%H:%M} {occ.slot_id}[/bold] {occ.theme} "
        f"\\[{occ.channel}] {occ.template}"
    )
    console.print(head, highlight=False, soft_wrap=True)
    if occ.note:
        console.print(f"  note: {occ.note}", highlight=False, soft_wrap=True)
    if status:
        console.print(f"  already run today: {status}", highlight=False)
    if plan.error:
        console.print(f"  [red]cannot plan:[/red] {plan.error}", highlight=False, soft_wrap=True)
        return
    deferred = ", ".join(f"{at:%H:%M} ×{len(t)}" for at, t in sorted(plan.deferred.items()))
    drops = ", ".join(f"{r} {plan.dropped[r]}" for r in DROP_REASONS if plan.dropped[r])
    console.print(
        f"  matched {plan.matched} {noun} → {plan.reached} in {len(plan.tasks)} task(s)"
        + (f"; deferred {deferred}" if deferred else "")
        + f"; dropped: {drops or 'none'}",
        highlight=False,
        soft_wrap=True,
    )
    if not plan.tasks:
        return
    names = _names(db, plan, show)
    table = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
    table.add_column("sender" if plan.target_kind != "moment" else "senders")
    table.add_column("targets", justify="right")
    table.add_column("copy (first line)")
    if show:
        table.add_column("who")
    for task in plan.tasks:
        first = task.text.splitlines()[0] if task.text else ""
        row = [
            names.get(task.sender, task.sender) if plan.target_kind != "moment" else task.sender,
            str(len(task.targets)),
            first,
        ]
        if show:
            listed = [names.get(t, t) for t in task.targets[:show]]
            more = len(task.targets) - len(listed)
            row.append("、".join(listed) + (f" …+{more}" if more > 0 else ""))
        table.add_row(*row)
    console.print(table)


def _names(db: Database, plan: SlotPlan, show: int) -> dict[str, str]:
    """Managers by name; groups by name; customers masked (never a full name or id)."""
    senders = {t.sender for t in plan.tasks}
    out = {u: f"{n} ({u})" for u, n in member_names(db, senders).items()}
    shown = [t for task in plan.tasks for t in task.targets[:show]]
    if not shown or plan.target_kind not in ("group", "customer"):
        return out
    named = target_names(db, plan.target_kind, shown)
    if plan.target_kind == "customer":
        named = {c: f"{n}#{hash_id(c)[:6]}" for c, n in named.items()}
    out.update({t: n or t for t, n in named.items()})
    return out


def report_command(
    since: Annotated[str | None, typer.Option("--from", help="first day, YYYY-MM-DD")] = None,
    until: Annotated[str | None, typer.Option("--to", help="last day, YYYY-MM-DD")] = None,
    config: _ConfigOption = None,
) -> None:
    """Per slot run: status, reach, tasks created and confirmed, delivered and failed."""
    from bot.calendar.report import print_report
    from bot.cli import _database, _require_migrated, _settings, console, err
    from bot.clock import SystemClock

    settings = _settings(config)
    today = SystemClock(ZoneInfo(settings.timezone)).now().date()
    first = _day("--from", since, err) if since else today - timedelta(days=6)
    last = _day("--to", until, err) if until else today
    db = _database(settings)
    _require_migrated(db)
    print_report(console, db, first, last, tz=ZoneInfo(settings.timezone))
    db.dispose()
