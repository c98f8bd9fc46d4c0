"""`bot status`: the operator's view of queues, callbacks, today's tasks and the token."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.table import Table

from bot.observability.status import Status, read_status

_ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="config.yaml to use (default: $BOT_CONFIG or ./config.yaml)"
    ),
]


def register(app: typer.Typer) -> None:
    app.command("status")(status_command)


def status_command(
    config: _ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON for machines")] = False,
    at: Annotated[
        str | None, typer.Option("--at", help="ISO time to report as (default: now)")
    ] = None,
) -> None:
    """Outbox depth and age per kind, inbox backlog and recent callbacks, today's tasks and
    slot runs, and the access token's expiry, read from the database."""
    from bot.cli import _database, _require_migrated, _settings, console, err
    from bot.clock import SystemClock

    settings = _settings(config)
    tz = ZoneInfo(settings.timezone)
    if at:
        try:
            now = datetime.fromisoformat(at)
        except ValueError:
            err.print(f"--at: not an ISO date-time: {at!r}")
            raise typer.Exit(2) from None
        now = now.replace(tzinfo=tz) if now.tzinfo is None else now.astimezone(tz)
    else:
        now = SystemClock(tz).now()
    db = _database(settings)
    try:
        _require_migrated(db)
        status = db.call(lambda s: read_status(s, now))
    finally:
        db.dispose()
    if as_json:
        typer.echo(json.dumps(status.to_json(), ensure_ascii=False, indent=2))
    else:
        print_status(console, status)


def duration(seconds: float | None) -> str:
    """90061 → '1d 1h', 185 → '3m 5s': the two largest units, for a glance."""
    if seconds is None:
        return "-"
    sign = "-" if seconds < 0 else ""
    left = int(abs(seconds))
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size or (unit == "s" and not parts):
            parts.append(f"{left // size}{unit}")
            left %= size
    return sign + " ".join(parts[:2])


def _table(title: str, *columns: str) -> Table:
    """Columns named with a leading '>' are right-aligned (numbers, durations)."""
    table = Table(
        title=title,
        title_justify="left",
        header_style="bold",
        box=None,
        pad_edge=False,
        min_width=len(title),
    )
    for name in columns:
        right = name.startswith(">")
        table.add_column(name.lstrip(">"), justify="right" if right else "left", no_wrap=True)
    return table


def _event_type(event_type: str) -> str:
    # Nearly every callback is an `event`: the prefix only widens the table past 80 columns.
    return event_type.removeprefix("event/")


def print_status(console: Console, status: Status) -> None:
    tz = status.now.tzinfo
    console.print(f"[bold]status at {status.now.isoformat()}[/bold]", highlight=False)

    outbox = _table("outbox (open rows)", "kind", ">open", ">oldest")
    for backlog in status.outbox:
        outbox.add_row(backlog.kind, str(backlog.open), duration(backlog.oldest_age_seconds))
    if not status.outbox:
        outbox.add_row("(empty)", "0", "-")
    console.print(outbox)

    inbox = _table("inbox", "status", ">rows")
    for name, count in status.inbox_by_status.items():
        inbox.add_row(name, str(count))
    inbox.add_row("[bold]backlog[/bold]", str(status.inbox_backlog))
    inbox.add_row("oldest unprocessed", duration(status.inbox_oldest_pending_age_seconds))
    console.print(inbox)

    recent = _table("last callbacks", "received", "event", "status", ">tries")
    for callback in status.recent_callbacks:
        recent.add_row(
            callback.received_at.astimezone(tz).strftime("%m-%d %H:%M:%S"),
            _event_type(callback.event_type),
            callback.status,
            str(callback.attempts),
        )
    if not status.recent_callbacks:
        recent.add_row("(none yet)", "", "", "")
    console.print(recent)

    tasks = _table("mass-send tasks", "", ">today", ">all time")
    tasks.add_row("created", str(status.tasks_today.created), str(status.tasks_total.created))
    tasks.add_row("confirmed", str(status.tasks_today.confirmed), str(status.tasks_total.confirmed))
    console.print(tasks)

    runs = _table("slot runs today", "status", ">runs")
    for name, count in status.slot_runs_today.items():
        runs.add_row(name, str(count))
    if not status.slot_runs_today:
        runs.add_row("(none)", "0")
    console.print(runs)

    tokens = _table("access token", "app", "expires", ">in")
    for token in status.tokens:
        expires = token.expires_at.astimezone(tz).strftime("%H:%M:%S") if token.expires_at else "-"
        tokens.add_row(token.key, expires, duration(token.expires_in_seconds))
    if not status.tokens:
        tokens.add_row("(none cached)", "-", "-")
    console.print(tokens)


__all__ = ["duration", "print_status", "register", "status_command"]
