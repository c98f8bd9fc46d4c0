"""The `bot` command."""

from __future__ import annotations

import asyncio
import gc
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.console import Console

from bot.config import ConfigError, ServerRole, Settings, load_config
from bot.logs import setup_logging
from bot.store.db import Database, DatabaseNotMigrated

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="WeCom community-operations bot."
)
db_app = typer.Typer(no_args_is_help=True, help="Database administration.")
app.add_typer(db_app, name="db")

console = Console()
err = Console(stderr=True)


ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="config.yaml to use (default: $BOT_CONFIG or ./config.yaml)"
    ),
]


def _settings(config: Path | None) -> Settings:
    try:
        settings = load_config(config)
    except ConfigError as exc:
        for problem in exc.problems:
            err.print(f"[red]config error[/red] {problem}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    setup_logging(settings.log_level, fmt=settings.log_format)
    return settings


def _database(settings: Settings) -> Database:
    return Database.from_url(
        settings.database.url, busy_timeout_ms=settings.database.busy_timeout_ms
    )


def _require_migrated(db: Database) -> None:
    try:
        db.check_migrated()
    except DatabaseNotMigrated as exc:
        err.print(f"[red]{exc}[/red]", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None, revision: str = "head") -> None:
    """Migrate the database named by database.url."""
    from bot.store.migrate import current_revision, upgrade

    settings = _settings(config)
    database = _database(settings)
    upgrade(database.engine, revision)
    console.print(f"database at revision {current_revision(database.engine)}")


@app.command()
def check(config: ConfigOption = None) -> None:
    """Validate config, calendars and content; exit non-zero listing each problem."""
    from bot.checks import holiday_warnings, run_checks
    from bot.clock import SystemClock

    settings, problems = run_checks(config)
    if settings is not None:
        today = SystemClock(ZoneInfo(settings.timezone)).now().date()
        for warning in holiday_warnings(today):
            err.print(f"[yellow]![/yellow] {warning}", highlight=False, soft_wrap=True)
    for problem in problems:
        err.print(f"[red]✗[/red] {problem}", highlight=False, soft_wrap=True)
    if problems:
        err.print(f"{len(problems)} problem(s) found")
        raise typer.Exit(1)
    console.print("[green]✓[/green] config, schedules and content are valid")


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="listen address (server.host)")] = None,
    port: Annotated[int | None, typer.Option(help="listen port (server.port)")] = None,
    role: Annotated[
        ServerRole | None,
        typer.Option(help="all: HTTP and background work; gateway: HTTP only (server.role)"),
    ] = None,
) -> None:
    """Run the HTTP app, dispatcher, outbox sender and scheduler in one process."""
    import uvicorn

    from bot.app import create_app

    settings = _settings(config)
    if role is not None:
        settings = settings.model_copy(
            update={"server": settings.server.model_copy(update={"role": role})}
        )
    bot = create_app(settings)
    _require_migrated(bot.db)
    lower_priority(settings.server.nice)
    # What is built by now (modules, models, compiled statements) lives as long as the
    # process: frozen, it is left out of the collector's full passes, which otherwise walked
    # all of it every few seconds under load, 80-120 ms each (the callbacks' p99).
    gc.collect()
    gc.freeze()
    uvicorn.run(
        bot.asgi,
        host=host or settings.server.host,
        port=port if port is not None else settings.server.port,
        log_level=settings.log_level.lower(),
        # uvicorn's own loggers go through ours (scrubbed, and JSON when configured).
        log_config=None,
        access_log=False,
    )


def lower_priority(increment: int) -> None:
    """Add `increment` to this process's niceness (server.nice); 0 leaves it alone."""
    if increment:
        niceness = os.nice(increment)
        err.print(f"bot serve: running at niceness {niceness}", highlight=False)


@app.command()
def sync(config: ConfigOption = None) -> None:
    """Full pull of follow users, their customers, groups and corp tags (resumable)."""
    from bot.app import create_app
    from bot.sync import run_sync

    settings = _settings(config)
    bot = create_app(settings)
    _require_migrated(bot.db)
    report = asyncio.run(run_sync(bot, progress=True))
    console.print(report.summary())


@app.command()
def tick(
    config: ConfigOption = None,
    at: Annotated[
        str | None, typer.Option("--at", help="ISO time to run as (default: now)")
    ] = None,
) -> None:
    """Run whatever is due up to TIME (stored callbacks, calendar slots, manager notices,
    reminders, send results, outbox rows, housekeeping) and exit."""
    from bot.app import create_app
    from bot.clock import FrozenClock

    settings = _settings(config)
    clock = None
    if at:
        try:
            when = datetime.fromisoformat(at)
        except ValueError:
            err.print(f"--at: not an ISO date-time: {at!r}")
            raise typer.Exit(2) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=ZoneInfo(settings.timezone))
        clock = FrozenClock(when, ZoneInfo(settings.timezone))
    bot = create_app(settings, clock=clock)
    _require_migrated(bot.db)

    async def run() -> tuple[int, str]:
        try:
            done = await bot.drain()
            calendar = await bot.calendar.tick(bot.drain)
            done += await bot.drain()
            await bot.ticker.housekeeping()
            return done, calendar.summary()
        finally:
            await bot.wecom.aclose()

    done, calendar = asyncio.run(run())
    console.print(f"tick at {bot.clock.now().isoformat()}: {done} item(s) processed")
    console.print(calendar, highlight=False, soft_wrap=True)


@app.command()
def sandbox(
    config: ConfigOption = None,
    host: Annotated[str, typer.Option(help="listen address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="listen port")] = 8900,
    callback_url: Annotated[
        str | None, typer.Option(help="where to deliver callbacks (default: the bot's server)")
    ] = None,
    seed: Annotated[int, typer.Option(help="random seed for the simulated branch")] = 7,
    customers: Annotated[int, typer.Option(help="customers in the simulated branch")] = 300,
) -> None:
    """Run the local WeCom simulator (API, callbacks, OAuth) as a server."""
    from bot.sandbox.server import run_sandbox

    settings = _settings(config)
    url = callback_url or f"http://{settings.server.host}:{settings.server.port}/wecom/callback"
    run_sandbox(
        host=host, port=port, settings=settings, callback_url=url, seed=seed, customers=customers
    )


@app.command()
def demo(
    size: Annotated[int, typer.Option(help="customers in the simulated branch")] = 300,
    managers: Annotated[int, typer.Option(help="customer managers")] = 5,
    groups: Annotated[int, typer.Option(help="customer groups")] = 12,
    folder: Annotated[
        Path | None,
        typer.Option("--dir", help="working folder (default: a fresh one under .demo/)"),
    ] = None,
    seed: Annotated[int, typer.Option(help="random seed")] = 7,
) -> None:
    """Run the whole product against the built-in WeCom sandbox and print a report."""
    from bot.demo import run_demo

    setup_logging("WARNING")
    try:
        asyncio.run(
            run_demo(
                customers=size,
                managers=managers,
                groups=groups,
                folder=folder,
                seed=seed,
                console=console,
            )
        )
    except KeyboardInterrupt:  # pragma: no cover - interactive
        sys.exit(130)


def _register_commands() -> None:
    from bot import privacy_cli
    from bot.calendar import plan_cli
    from bot.observability import status_cli
    from bot.tagging import audience_cli, import_cli, rules_cli, tagsync_cli

    for module in (
        import_cli,
        rules_cli,
        audience_cli,
        tagsync_cli,
        plan_cli,
        status_cli,
        privacy_cli,
    ):
        module.register(app)


_register_commands()


def main() -> None:
    app()
