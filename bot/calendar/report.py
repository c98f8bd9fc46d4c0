"""The calendar's record per slot run and per theme: reach, tasks created and confirmed,
delivery, and what the caps and contact windows held back (for `bot report` and the demo)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, tzinfo
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.calendar.results import SlotResult, slot_results
from bot.store.db import Database
from bot.store.models import SlotRun


@dataclass(frozen=True)
class RunLine:
    """One slot run as the report shows it."""

    run: SlotResult
    status: str
    time: str
    stats: dict[str, Any]
    note: str | None

    def dropped(self, reason: str) -> int:
        return int((self.stats.get("dropped") or {}).get(reason, 0))


def run_lines(session: Session, first: date, last: date, tz: tzinfo) -> list[RunLine]:
    runs = session.execute(
        select(SlotRun.id, SlotRun.status, SlotRun.fire_at, SlotRun.stats, SlotRun.note).where(
            SlotRun.day >= first, SlotRun.day <= last
        )
    ).all()
    by_id = {r.id: r for r in runs}
    lines = []
    for result in slot_results(session, list(by_id)):
        row = by_id[result.run_id]
        lines.append(
            RunLine(
                result,
                row.status,
                f"{row.fire_at.astimezone(tz):%H:%M}",
                dict(row.stats or {}),
                row.note,
            )
        )
    return lines


def print_report(console: Console, db: Database, first: date, last: date, *, tz: tzinfo) -> None:
    lines = db.call(lambda s: run_lines(s, first, last, tz))
    console.print(f"[bold]Calendar {first} → {last}[/bold]: {len(lines)} slot run(s)")
    if not lines:
        return
    console.print(
        "reached: customers or groups queued; tasks: created / confirmed by the manager; "
        "failed: not a friend + already received (WeCom's cap); deferred: to a later "
        "contact window (a part of its own); moments: reached = members asked to publish, "
        "delivered = members who published",
        highlight=False,
        soft_wrap=True,
    )
    table = Table(show_header=True, header_style="bold", box=None, padding=(0, 1))
    table.add_column("when", no_wrap=True)
    table.add_column("slot", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for name in ("reached", "tasks", "delivered", "failed", "unsent", "capped", "deferred"):
        table.add_column(name, justify="right", no_wrap=True)
    for line in lines:
        r = line.run
        part = "" if r.part == "main" else f" ({r.part})"
        table.add_row(
            f"{r.day:%m-%d} {line.time}",
            f"{r.slot_id}{part}",
            line.status,
            str(r.targets),
            f"{r.created}/{r.confirmed}",
            str(r.delivered),
            str(r.failed),
            str(r.unsent),
            str(line.dropped("capped")),
            str(sum((line.stats.get("deferred") or {}).values())),
        )
    console.print(table)
    expired = [line for line in lines if line.status in ("expired", "failed")]
    for line in expired:
        console.print(
            f"[yellow]{line.run.day} {line.time} {line.run.slot_id}: {line.status}[/yellow]"
            f" — {line.note or ''}",
            highlight=False,
            soft_wrap=True,
        )
    print_themes(console, lines)


def print_themes(console: Console, lines: list[RunLine]) -> None:
    """Reach per theme, over every run and part of it."""
    themes: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0, 0])
    for line in lines:
        totals = themes[line.run.theme]
        totals[0] += line.run.targets
        totals[1] += line.run.delivered
        totals[2] += line.run.created
        totals[3] += line.run.confirmed
        totals[4] += line.dropped("capped") + line.dropped("window")
        totals[5] += sum((line.stats.get("deferred") or {}).values())
    table = Table(show_header=True, header_style="bold", box=None, padding=(0, 1))
    names = ("theme", "reached", "delivered", "tasks", "confirmed", "cap/window drops", "deferred")
    for name in names:
        table.add_column(name, justify="left" if name == "theme" else "right", no_wrap=True)
    for theme, totals in themes.items():
        table.add_row(theme, *(str(v) for v in totals))
    console.print("\n[bold]Per theme[/bold]")
    console.print(table)
