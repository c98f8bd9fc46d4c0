"""`bot forget CUSTOMER` and `bot opt-out CUSTOMER [--undo]` (registered by bot/cli.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.clock import SystemClock
from bot.privacy import hash_id, mask_name
from bot.privacy_forget import (
    ForgetResult,
    MessagesInFlight,
    NotAWeComCustomer,
    UnknownCustomer,
    find,
    forget,
)
from bot.privacy_forget import opt_out as set_opt_out
from bot.store.db import Database
from bot.store.models import Customer

# Kept here rather than imported: bot.cli imports this module while it is being built.
_ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="config.yaml to use (default: $BOT_CONFIG or ./config.yaml)"
    ),
]
_CustomerArgument = Annotated[
    str, typer.Argument(help="external_userid or bank customer key", show_default=False)
]

console = Console()


def register(app: typer.Typer) -> None:
    """Add this module's commands to `app`."""
    app.command("forget")(forget_command)
    app.command("opt-out")(opt_out_command)


def _say(text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _fail(message: str) -> typer.Exit:
    Console(stderr=True).print(message, markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(1)


def _open(config: Path | None) -> tuple[Database, SystemClock]:
    from bot.cli import _database, _require_migrated, _settings

    settings = _settings(config)
    db = _database(settings)
    _require_migrated(db)
    return db, SystemClock(ZoneInfo(settings.timezone))


def _describe(db: Database, customer: str) -> str:
    """How the prompt names the customer: masked name and the ids as given."""

    def read(session: Session) -> str:
        external_userid, key = find(session, customer)
        name = (
            session.scalar(select(Customer.name).where(Customer.external_userid == external_userid))
            if external_userid
            else None
        )
        wecom = external_userid or "no WeCom customer"
        bank = f"bank key {key}" if key else "no bank profile"
        return f"{mask_name(name) or '(no name)'} ({wecom}, {bank})"

    return db.call(read)


def forget_command(
    customer: _CustomerArgument,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
    config: _ConfigOption = None,
) -> None:
    """Erase a customer's personal data (keeping counts) and opt them out."""
    db, clock = _open(config)
    try:
        try:
            who = _describe(db, customer)
        except UnknownCustomer as exc:
            raise _fail(str(exc)) from None
        if not yes and not typer.confirm(
            f"Erase the personal data of customer {who}? This cannot be undone."
        ):
            raise _fail("nothing changed")
        try:
            result = forget(db, customer, now=clock.now())
        except MessagesInFlight as exc:
            raise _fail(str(exc)) from None
    finally:
        db.dispose()
    _print_forget(result)


def _print_forget(result: ForgetResult) -> None:
    who = hash_id(result.external_userid or result.customer_key)
    if not result.changed:
        _say(f"customer {who}: nothing left to erase (already forgotten)")
    else:
        _say(f"customer {who} forgotten: {result.summary()}")
    if result.external_userid is None:
        _say("  no WeCom customer: only the bank profile was erased; nobody to opt out")
        return
    if result.opted_out_now:
        _say("  opted out: excluded from every audience from now on")
    _say(
        "  kept forgotten: callbacks, `bot sync` and bank imports no longer store their "
        "personal data (WeCom still lists them for their managers)"
    )


def opt_out_command(
    customer: _CustomerArgument,
    undo: Annotated[bool, typer.Option("--undo", help="opt the customer back in")] = False,
    config: _ConfigOption = None,
) -> None:
    """Opt a customer out of every audience (or back in with --undo)."""
    db, clock = _open(config)
    try:
        external_userid, changed = set_opt_out(
            db, customer, now=clock.now(), undo=undo, source="bot opt-out"
        )
    except (UnknownCustomer, NotAWeComCustomer) as exc:
        raise _fail(str(exc)) from None
    finally:
        db.dispose()
    who = hash_id(external_userid)
    if changed:
        _say(f"customer {who} {'opted back in' if undo else 'opted out'}")
    else:
        _say(f"customer {who} {'is not opted out' if undo else 'was already opted out'}")
