"""The tagging part of `bot demo`: import the bank's export, apply the rules, push tags to
WeCom, and show what came of it (distributions, explained customers, an audience)."""

from __future__ import annotations

import random
from collections import Counter
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from bot.sandbox.bankfile import write_bank_file
from bot.store.models import CustomerProfile, CustomerTag, RuleTagMapping
from bot.tagging.audience import service as audience
from bot.tagging.engine import retag_all
from bot.tagging.explain import explain
from bot.tagging.importer import import_customers
from bot.tagging.segments import recompute_segments
from bot.tagging.tagsync import run_tag_sync

if TYPE_CHECKING:
    from pathlib import Path

    from bot.demo import DemoRun

DEMO_AUDIENCE = (
    'tag("资产50万+") and not tag("老年客户") or (aum >= 100000 and lifecycle in ("new", "growth"))'
)


async def play_tagging(run: DemoRun, folder: Path, *, rng: random.Random, console: Console) -> None:
    """Import → rules → segments → tag sync, then report."""
    bot, world = run.bot, run.sandbox.world
    now = bot.clock.now()
    bank = write_bank_file(world, folder / "bank_export.csv", today=now.date(), rng=rng)
    report = import_customers(bot.db, bank.path, settings=bot.settings, now=now)
    console.print(
        f"bank import: {report.rows} rows ({bank.by_id} with a WeCom id, {bank.by_mobile} with "
        f"only a mobile, {bank.prospects} prospects): {report.matched_by_id} matched by id, "
        f"{report.matched_by_mobile} by remark mobile, {report.unmatched} unmatched, "
        f"{report.rejected} rejected"
    )
    retag = retag_all(bot.db, settings=bot.settings, now=now)
    segments = recompute_segments(bot.db, settings=bot.settings, now=now)
    sync = await run_tag_sync(bot, send=True)
    pushed = sum(len(r.tag_ids) for r in world.relations.values() if r.alive)
    console.print(
        f"rules: {retag.evaluated} customers evaluated; segments: "
        + ", ".join(f"{name} {count}" for name, count in sorted(segments.counts.items()))
    )
    console.print(
        f"tag sync: {sync.plan.enqueued if sync.plan else 0} mark_tag calls queued and sent; "
        f"the sandbox now shows {pushed} tags on live relations "
        f"({_bot_tags_in_sandbox(run)} of them the bot's)"
    )
    _distributions(run, console)
    _explained(run, console)
    count = audience.count(bot.db, DEMO_AUDIENCE, now=now)
    per_manager = audience.per_manager(bot.db, DEMO_AUDIENCE, now=now)
    console.print(f"audience  {DEMO_AUDIENCE}")
    console.print(
        f"  → {count} customers; per manager: "
        + ", ".join(f"{m} {n}" for m, n in sorted(per_manager.items()))
    )


def _bot_tags_in_sandbox(run: DemoRun) -> int:
    world, db = run.sandbox.world, run.bot.db
    ours = set(db.call(lambda s: s.scalars(select(RuleTagMapping.wecom_tag_id)).all()))
    return sum(1 for r in world.relations.values() if r.alive for t in r.tag_ids if t in ours)


def _distributions(run: DemoRun, console: Console) -> None:
    db = run.bot.db
    tiers = dict(
        db.call(
            lambda s: s.execute(
                select(CustomerProfile.asset_tier, func.count()).group_by(
                    CustomerProfile.asset_tier
                )
            ).all()
        )
    )
    stages = dict(
        db.call(
            lambda s: s.execute(
                select(CustomerProfile.lifecycle, func.count()).group_by(CustomerProfile.lifecycle)
            ).all()
        )
    )
    tags: Counter[str] = Counter(
        dict(
            db.call(
                lambda s: s.execute(
                    select(CustomerTag.tag, func.count()).group_by(CustomerTag.tag)
                ).all()
            )
        )
    )
    table = Table(title="Tiers, stages and tags", header_style="bold")
    table.add_column("asset tier")
    table.add_column("customers", justify="right")
    table.add_column("lifecycle")
    table.add_column("customers", justify="right")
    tier_rows = sorted(tiers.items(), key=lambda kv: kv[0] or "")
    stage_rows = sorted(stages.items(), key=lambda kv: kv[0] or "")
    for index in range(max(len(tier_rows), len(stage_rows))):
        tier = tier_rows[index] if index < len(tier_rows) else ("", "")
        stage = stage_rows[index] if index < len(stage_rows) else ("", "")
        table.add_row(
            str(tier[0] or "(none)") if tier != ("", "") else "",
            str(tier[1]),
            str(stage[0] or "(none)") if stage != ("", "") else "",
            str(stage[1]),
        )
    console.print(table)
    console.print("most common tags: " + ", ".join(f"{t} {n}" for t, n in tags.most_common(8)))


def _explained(run: DemoRun, console: Console) -> None:
    db = run.bot.db
    tiered = db.call(
        lambda s: s.scalars(
            select(CustomerProfile.external_userid)
            .where(
                CustomerProfile.asset_tier.is_not(None),
                CustomerProfile.external_userid.is_not(None),
            )
            .order_by(CustomerProfile.aum.desc())
            .limit(2)
        ).all()
    )
    for external_userid in tiered:
        if external_userid is not None:
            _print_explained(run, console, external_userid)


def _print_explained(run: DemoRun, console: Console, external_userid: str) -> None:
    shown = run.bot.db.call(lambda s: explain(s, external_userid))
    if shown is None:
        return
    console.print(f"[bold]bot explain[/bold] {shown.masked_name} ({external_userid[:8]}…):")
    for line in shown.tags:
        console.print(f"  {line.tag:<12} {line.reason}")
