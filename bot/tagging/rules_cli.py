"""`bot retag`, `bot explain` and `bot segments` (registered on the `bot` app by bot/cli.py)."""

from __future__ import annotations

from datetime import datetime, tzinfo
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.table import Table

from bot.clock import SystemClock
from bot.config import Settings
from bot.privacy import scrub
from bot.store.db import Database
from bot.tagging.engine import RetagResult
from bot.tagging.explain import Explanation
from bot.tagging.rules import money

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="config.yaml to use (default: $BOT_CONFIG or ./config.yaml)"
    ),
]
CustomerOption = Annotated[
    str | None,
    typer.Option("--customer", help="only this customer: external_userid or bank customer key"),
]
CustomerArgument = Annotated[
    str, typer.Argument(help="external_userid or bank customer key", show_default=False)
]

console = Console()


def register(app: typer.Typer) -> None:
    """Add this module's commands to `app`."""
    app.command("retag")(retag)
    app.command("explain")(explain)
    app.command("segments")(segments)


def _open(config: Path | None) -> tuple[Settings, Database, datetime]:
    # bot.cli imports this module while it is being built, so its helpers are imported late.
    from bot.cli import _database, _require_migrated, _settings

    settings = _settings(config)
    db = _database(settings)
    _require_migrated(db)
    return settings, db, SystemClock(ZoneInfo(settings.timezone)).now()


def _say(text: str) -> None:
    # Reasons hold brackets and CJK text: no markup, no highlighting, no re-wrapping. Group
    # names and reasons are free text, so a mobile number in one is masked like in logs.
    console.print(scrub(text), markup=False, highlight=False, soft_wrap=True)


def _fail(message: str) -> typer.Exit:
    Console(stderr=True).print(message, markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(1)


def retag(config: ConfigOption = None, customer: CustomerOption = None) -> None:
    """Recompute rule tags (everyone, or one customer) and print customers per tag."""
    from bot.tagging.engine import retag_all, retag_customers
    from bot.tagging.explain import resolve

    settings, db, now = _open(config)
    try:
        if customer is None:
            result = retag_all(db, settings=settings, now=now, progress=True)
        else:
            found = db.call(lambda s: resolve(s, customer))
            if found is None or found[0] is None:
                raise _fail(f"no WeCom customer for {customer!r}")
            result = retag_customers(db, [found[0]], settings=settings, now=now)
    finally:
        db.dispose()
    _print_retag(result)


def _print_retag(result: RetagResult) -> None:
    _say(
        f"{result.evaluated} customer(s) evaluated, {len(result.changes)} with changed tags, "
        f"{result.profiles_updated} profile(s) updated"
    )
    added: dict[str, int] = {}
    removed: dict[str, int] = {}
    for diff in result.changes.values():
        for tag in diff.added:
            added[tag] = added.get(tag, 0) + 1
        for tag in diff.removed:
            removed[tag] = removed.get(tag, 0) + 1
    table = Table("tag", "customers", "added", "removed")
    for tag in sorted(result.counts.keys() | removed.keys()):
        table.add_row(
            tag, str(result.counts[tag]), str(added.get(tag, 0)), str(removed.get(tag, 0))
        )
    console.print(table)


def explain(customer: CustomerArgument, config: ConfigOption = None) -> None:
    """Show a customer (masked), every tag with its reason, their tier history and groups."""
    from bot.tagging.explain import explain as load

    settings, db, _now = _open(config)
    try:
        found = db.call(lambda s: load(s, customer))
    finally:
        db.dispose()
    if found is None:
        raise _fail(f"no customer or bank customer key {customer!r}")
    _print_explanation(found, ZoneInfo(settings.timezone))


def _print_explanation(found: Explanation, tz: tzinfo) -> None:
    who = found.masked_name or "(no name)"
    wecom = found.external_userid or "not matched to a WeCom customer"
    bank = f"bank key {found.customer_key}" if found.customer_key else "no bank profile"
    _say(f"customer {who} ({wecom}, {bank})")
    profile = found.profile
    if profile is not None:
        trend = f"{profile.aum_trend * 100:+.1f}%" if profile.aum_trend is not None else "-"
        _say(
            f"  AUM {money(profile.aum) if profile.aum is not None else '-'} · "
            f"tier {profile.asset_tier or '-'} · lifecycle {profile.lifecycle or '-'} "
            f"(AUM trend {trend}) · payroll {_yes_no(profile.payroll)} · "
            f"opened {profile.opened_at or '-'} · "
            f"last login {_day(profile.last_login_at, tz)}"
        )
    _say("tags:" if found.tags else "tags: none (run `bot retag`)")
    for line in found.tags:
        _say(f"  {line.tag}  [{line.family}, {line.rule}]  since {_minute(line.since, tz)}")
        _say(f"      {line.reason}")
    if found.history:
        _say("asset tier and lifecycle history:")
    for change in found.history:
        old, new = change.old or "-", change.new or "-"
        _say(f"  {_minute(change.at, tz)}  {change.attribute:<10}  {old} → {new}")
    _say("groups:" if found.groups else "groups: none")
    for group in found.groups:
        segments = "; ".join(f"{s.segment} ({s.source}: {s.reason})" for s in group.segments)
        _say(f"  {group.name} ({group.chat_id}): {segments or 'no segment'}")


def _yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")


def _day(value: datetime | None, tz: tzinfo) -> str:
    return value.astimezone(tz).date().isoformat() if value else "-"


def _minute(value: datetime, tz: tzinfo) -> str:
    return value.astimezone(tz).strftime("%Y-%m-%d %H:%M")


def segments(config: ConfigOption = None) -> None:
    """Recompute group segments from config and list every group's segments."""
    from bot.tagging.segments import list_segments, recompute_segments

    settings, db, now = _open(config)
    try:
        result = recompute_segments(db, settings=settings, now=now)
        rows = db.call(list_segments)
    finally:
        db.dispose()
    for chat_id in result.unknown_chat_ids:
        _say(f"warning: segments.manual names {chat_id}, which is not an active group")
    added = sum(len(s) for s in result.added.values())
    removed = sum(len(s) for s in result.removed.values())
    _say(f"{len(rows)} group segment(s): {added} added, {removed} removed")
    current = None
    for row in rows:
        if row.segment != current:
            current = row.segment
            _say(f"{row.segment} ({result.counts[row.segment]} group(s))")
        _say(f"  {row.group_name} ({row.chat_id}) {row.source}: {row.reason}")
