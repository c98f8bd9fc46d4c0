"""`bot audience "EXPR"`: count, count per manager and a masked sample of an audience."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy import Select
from sqlalchemy.exc import CompileError

from bot.store.db import Database
from bot.tagging import audience

# Kept here rather than imported: bot.cli imports this module while it is being built.
_ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="config.yaml to use (default: $BOT_CONFIG or ./config.yaml)"
    ),
]
MAX_MANAGER_ROWS = 20


def register(app: typer.Typer) -> None:
    """Add this module's commands to `app`."""
    app.command("audience")(audience_command)


def audience_command(
    expression: Annotated[
        str, typer.Argument(help='e.g. \'tag("资产50万+") and not tag("老年客户")\'')
    ],
    sample_size: Annotated[
        int, typer.Option("--sample", min=0, help="how many masked customers to show")
    ] = 10,
    at: Annotated[
        str | None,
        typer.Option("--at", help="ISO time for login_within/joined_within (default: now)"),
    ] = None,
    show_sql: Annotated[bool, typer.Option("--sql", help="also print the compiled SQL")] = False,
    config: _ConfigOption = None,
) -> None:
    """Count the customers an audience expression selects, per manager, with a sample."""
    from bot.cli import _database, _require_migrated, _settings, console, err
    from bot.clock import SystemClock

    settings = _settings(config)
    zone = ZoneInfo(settings.timezone)
    now = _parse_at(at, zone, err) if at else SystemClock(zone).now()
    try:
        parsed = audience.parse(expression)
        # Compile before touching the database, so every expression error exits the same way.
        query = audience.ids_query(parsed, now=now)
    except audience.ExpressionError as exc:
        err.print(
            f"expression error at {exc.render()}", markup=False, highlight=False, soft_wrap=True
        )
        raise typer.Exit(2) from None
    db = _database(settings)
    try:
        _require_migrated(db)
        total = audience.count(db, parsed, now=now)
        managers = audience.per_manager(db, parsed, now=now)
        rows = audience.sample(db, parsed, sample_size, now=now)
        if show_sql:
            console.print(_sql_text(query, db), markup=False, highlight=False, soft_wrap=True)
    finally:
        db.dispose()
    noun = "customer" if total == 1 else "customers"
    console.print(f"audience: {total:,} {noun}", highlight=False)
    console.print(f"  {parsed.source}", markup=False, highlight=False, soft_wrap=True)
    _print_managers(console, managers, total)
    _print_sample(console, rows)


def _sql_text(query: Select[str], db: Database) -> str:
    try:
        return str(query.compile(db.engine, compile_kwargs={"literal_binds": True}))
    except (CompileError, NotImplementedError):
        # Some bound types (aware datetimes on SQLite) have no literal form: show the markers.
        return str(query.compile(db.engine))


def _parse_at(value: str, zone: ZoneInfo, err: Console) -> datetime:
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        err.print(f"--at: not an ISO date-time: {value!r}", markup=False)
        raise typer.Exit(2) from None
    return when if when.tzinfo else when.replace(tzinfo=zone)


def _print_managers(console: Console, managers: dict[str, int], total: int) -> None:
    if not managers:
        return
    table = Table(title="per manager")
    table.add_column("manager")
    table.add_column("customers", justify="right")
    for userid, n in list(managers.items())[:MAX_MANAGER_ROWS]:
        table.add_row(Text(userid), f"{n:,}")
    hidden = len(managers) - MAX_MANAGER_ROWS
    if hidden > 0:
        table.add_row(f"… {hidden} more", "")
    console.print(table)
    if sum(managers.values()) > total:
        console.print("(a customer followed by several managers counts for each of them)")


def _print_sample(console: Console, rows: list[audience.SampleRow]) -> None:
    if not rows:
        return
    table = Table(title=f"sample of {len(rows)} (masked)")
    for name in ("customer", "name", "managers", "tier", "lifecycle", "branch"):
        table.add_column(name)
    for row in rows:
        # Text() cells: bank data must never be read as rich markup.
        table.add_row(
            *(
                Text(value or "")
                for value in (
                    row.customer,
                    row.name,
                    ", ".join(row.managers),
                    row.asset_tier,
                    row.lifecycle,
                    row.branch,
                )
            )
        )
    console.print(table)
