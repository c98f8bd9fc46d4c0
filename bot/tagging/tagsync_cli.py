"""`bot tag-sync`: push rule tags to WeCom corp tags (registered on the `bot` app by bot/cli.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from bot.privacy import hash_id


def register(app: typer.Typer) -> None:
    """Add this module's commands to `app`."""
    app.command("tag-sync")(tag_sync)


def tag_sync(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="config.yaml to use (default: $BOT_CONFIG or ./config.yaml)"
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="show what would be pushed; change nothing")
    ] = False,
    send: Annotated[
        bool, typer.Option("--send", help="work the outbox now instead of leaving it to serve")
    ] = False,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="re-read WeCom's tag library even if mapped")
    ] = False,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="queue again changes whose rows failed")
    ] = False,
    customer: Annotated[
        list[str] | None,
        typer.Option("--customer", help="only this external_userid (repeatable)"),
    ] = None,
) -> None:
    """Create the bot's tag groups in WeCom if missing, then queue mark_tag per manager and
    customer for the rule tags that changed (tags managers set by hand are never removed)."""
    # Imported here: bot.cli imports this module while it is being built.
    from bot.app import create_app
    from bot.cli import _require_migrated, _settings, console
    from bot.tagging.tagsync import run_tag_sync

    settings = _settings(config)
    bot = create_app(settings)
    _require_migrated(bot.db)

    async def run() -> None:
        try:
            report = await run_tag_sync(
                bot,
                external_userids=customer or None,
                dry_run=dry_run,
                send=send,
                refresh_library=refresh,
                retry_failed=retry_failed,
            )
        finally:
            await bot.wecom.aclose()
            bot.db.dispose()
        console.print(report.summary(), highlight=False, soft_wrap=True)
        if dry_run and report.plan.sample:
            console.print("  e.g.:")
            for change in report.plan.sample:
                added = " ".join(f"+{t}" for t in change.add)
                removed = " ".join(f"-{t}" for t in change.remove)
                console.print(
                    f"    {change.userid} → customer {hash_id(change.external_userid)}: "
                    f"{added} {removed}".rstrip(),
                    highlight=False,
                    soft_wrap=True,
                )
        if report.library.problems:
            raise typer.Exit(1)

    asyncio.run(run())
