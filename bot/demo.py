"""`bot demo`: the whole product against the built-in WeCom sandbox, on SQLite, in simulated time.

A branch that already exists in WeCom is pulled with `bot sync`; then customers add their
managers through channel QR codes and join groups, a few relations and groups change, and
WeCom's duplicate deliveries are simulated. The report says what the bot did.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from bot.app import BotApp, create_app
from bot.clock import FrozenClock, SystemClock
from bot.config import Settings, build_settings
from bot.demo_calendar import play_week
from bot.demo_tagging import play_tagging
from bot.outbox.kinds import WELCOME_MSG
from bot.privacy import mask_name
from bot.sandbox.branch import Branch, build_branch, chinese_name
from bot.sandbox.callbacks import CallbackDeliverer
from bot.sandbox.harness import Sandbox
from bot.sandbox.script import NewCustomer
from bot.store.db import Database
from bot.store.migrate import upgrade
from bot.store.models import Customer, FollowRelation, Group, GroupMember, OutboxItem
from bot.sync import run_sync
from bot.yamlsource import load_yaml

DEMO_TOKEN = "DemoToken2026"
DEMO_AES_KEY = "DemoEncodingAesKey0123456789abcdefghijklmno"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class DemoRun:
    """Everything the report reads."""

    bot: BotApp
    sandbox: Sandbox
    deliverer: CallbackDeliverer
    branch: Branch
    sync_summary: str
    joined: list[str]
    half: int
    no_code: int
    duplicates_sent: int


def demo_settings(folder: Path) -> Settings:
    base = load_yaml(PROJECT_ROOT / "config.yaml")
    env = {
        "BOT_DATABASE__URL": f"sqlite:///{folder / 'bot.db'}",
        "BOT_WECOM__API_BASE": "http://sandbox/cgi-bin",
        "BOT_WECOM__CORP_ID": "ww5a1b2c3d4e5f6a7b",
        "BOT_WECOM__AGENT_ID": "1000002",
        "BOT_WECOM__SECRET": "sandbox-secret-0123456789abcdefghijklmnopq",
        "BOT_WECOM__TOKEN": DEMO_TOKEN,
        "BOT_WECOM__ENCODING_AES_KEY": DEMO_AES_KEY,
    }
    return build_settings(base.data, env, doc=base, base_dir=PROJECT_ROOT)


def fresh_folder(folder: Path | None, clock: SystemClock) -> Path:
    if folder is None:
        folder = PROJECT_ROOT / ".demo" / clock.now().strftime("%Y%m%d-%H%M%S-%f")
    folder.mkdir(parents=True, exist_ok=True)
    for leftover in folder.glob("bot.db*"):
        leftover.unlink()
    return folder


async def run_demo(
    *,
    customers: int,
    managers: int,
    groups: int,
    folder: Path | None,
    seed: int,
    console: Console,
) -> DemoRun:
    real = SystemClock()
    folder = fresh_folder(folder, real)
    settings = demo_settings(folder)
    clock = FrozenClock(real.now().replace(microsecond=0), real.tz)
    db = Database.from_url(settings.database.url)
    upgrade(db.engine)
    rng = random.Random(seed)

    sandbox = Sandbox.create(
        clock,
        seed=seed,
        token=DEMO_TOKEN,
        encoding_aes_key=DEMO_AES_KEY,
        corp_id=settings.wecom.corp_id,
        agent_id=settings.wecom.agent_id,
        secret=settings.wecom.secret.get_secret_value(),
    )
    standing = max(0, customers - customers // 5)
    branch = build_branch(
        sandbox.world, managers=managers, customers=standing, groups=groups, rng=rng
    )
    bot = create_app(settings, clock=clock, transport=sandbox.api_transport(), db=db)
    deliverer = sandbox.deliverer_to(bot.asgi)
    console.print(f"[bold]bot demo[/bold] — working folder {folder}")
    console.print(
        f"sandbox branch: {len(branch.managers)} managers, {len(branch.customers)} customers, "
        f"{len(branch.groups)} groups, {sum(len(t) for t in branch.tags.values())} corp tags"
    )
    try:
        report = await run_sync(bot)
        console.print(f"initial {report.summary()}")
        run = DemoRun(bot, sandbox, deliverer, branch, report.summary(), [], 0, 0, 0)
        await play_joins(run, count=customers - standing, rng=rng)
        await play_changes(run, rng=rng)
        print_report(run, console)
        await play_tagging(run, folder, rng=rng, console=console)
        await play_week(run, rng=rng, console=console)
    finally:
        await deliverer.aclose()
        await bot.wecom.aclose()
        db.dispose()
    return run


async def settle(run: DemoRun, seconds: float = 3.0) -> None:
    """Deliver pending callbacks, let the bot work, then let simulated time pass."""
    await run.deliverer.flush()
    await run.bot.drain()
    clock = run.bot.clock
    assert isinstance(clock, FrozenClock)
    clock.advance(seconds)


async def play_joins(run: DemoRun, *, count: int, rng: random.Random) -> None:
    """New customers scan channel QR codes, some join a group; WeCom repeats a few callbacks."""
    script = run.sandbox.script
    states = run.branch.states
    for index in range(count):
        manager = rng.choice(run.branch.managers)
        verified = rng.random() > 0.1
        with_code = rng.random() > 0.05
        result = script.customer_adds_member(
            NewCustomer(name=chinese_name(rng), gender=rng.choice([1, 2])),
            manager,
            state=states[index % len(states)],
            verified=verified,
            welcome_code=with_code,
        )
        run.joined.append(result.external_userid)
        run.half += 0 if verified else 1
        run.no_code += 0 if with_code else 1
        if index % 7 == 0:
            run.deliverer.duplicate_next()
            run.duplicates_sent += 1
        await settle(run, seconds=1.0)
        if run.branch.groups and rng.random() < 0.6:
            script.customer_joins_group(rng.choice(run.branch.groups), result.external_userid)
            await settle(run, seconds=2.0)


async def play_changes(run: DemoRun, *, rng: random.Random) -> None:
    """The everyday churn a branch sees: edits, deletions, a renamed group, a new tag."""
    script = run.sandbox.script
    world = run.sandbox.world
    if run.joined:
        ext = run.joined[0]
        manager = next(r.userid for r in world.followers(ext))
        script.member_edits_customer(manager, ext, remark="重点客户")
        script.customer_deletes_member(
            run.joined[-1], next(r.userid for r in world.followers(run.joined[-1]))
        )
    if run.branch.groups:
        chat_id = run.branch.groups[0]
        script.rename_group(chat_id, "本支行理财交流群（新）")
        members = [m.userid for m in world.chat(chat_id).members if m.userid.startswith("wm")]
        if members:
            script.customer_leaves_group(chat_id, rng.choice(members))
    script.admin_creates_tag("活动参与", ["已签到", "已答题"])
    await settle(run, seconds=5.0)


def count(db: Database, query: Any) -> int:
    return int(db.call(lambda s: s.scalar(query)) or 0)


def print_report(run: DemoRun, console: Console) -> None:
    bot, world = run.bot, run.sandbox.world
    db = bot.db
    gateway = bot.gateway.counters
    welcomes = [m for m in world.welcome_codes.values() if m.used_at is not None]
    latencies = sorted(m.used_at - m.issued_at for m in welcomes if m.used_at is not None)
    sent = count(
        db,
        select(func.count())
        .select_from(OutboxItem)
        .where(OutboxItem.kind == WELCOME_MSG, OutboxItem.status == "sent"),
    )
    codes = len(world.welcome_codes)

    table = Table(title="What the bot did", show_header=True, header_style="bold")
    table.add_column("")
    table.add_column("count", justify="right")
    table.add_row("callbacks received", str(gateway.received))
    table.add_row("  stored", str(gateway.stored))
    table.add_row(
        "  duplicates ignored", f"{gateway.duplicates} (sandbox repeated {run.duplicates_sent})"
    )
    table.add_row("  rejected", str(sum(gateway.rejected.values())))
    table.add_row("callbacks processed", str(bot.processor.counters.processed))
    table.add_row("welcome messages sent", f"{sent} of {codes} welcome codes")
    if latencies:
        table.add_row("  slowest welcome (s after the add)", str(latencies[-1]))
    table.add_row(
        "customers joined during the demo",
        f"{len(run.joined)} ({run.half} without verification, "
        f"{run.no_code} without a welcome code)",
    )
    table.add_row("customers mirrored", str(count(db, select(func.count()).select_from(Customer))))
    table.add_row(
        "  active follow relations",
        str(
            count(
                db,
                select(func.count())
                .select_from(FollowRelation)
                .where(FollowRelation.status == "active"),
            )
        ),
    )
    table.add_row(
        "  ended relations (kept as history)",
        str(
            count(
                db,
                select(func.count())
                .select_from(FollowRelation)
                .where(FollowRelation.status == "ended"),
            )
        ),
    )
    table.add_row("groups mirrored", str(count(db, select(func.count()).select_from(Group))))
    table.add_row(
        "  current group memberships",
        str(
            count(
                db,
                select(func.count()).select_from(GroupMember).where(GroupMember.left_at.is_(None)),
            )
        ),
    )
    table.add_row("WeCom API calls", str(sum(bot.wecom.stats.calls.values())))
    console.print(table)
    sample = db.call(
        lambda s: s.scalars(select(Customer).order_by(Customer.updated_at.desc()).limit(3)).all()
    )
    console.print("latest customers (masked): " + ", ".join(mask_name(c.name) for c in sample))
    drift = mirror_drift(run)
    console.print(
        "mirror matches the sandbox"
        if not drift
        else f"[red]mirror differs from the sandbox: {drift}[/red]"
    )


def mirror_drift(run: DemoRun) -> list[str]:
    """Differences between the sandbox's truth and the bot's mirror (expected: none)."""
    world, db = run.sandbox.world, run.bot.db
    problems: list[str] = []
    live = {
        (r.userid, r.external_userid)
        for r in world.relations.values()
        if r.alive and not r.customer_deleted
    }
    query = select(FollowRelation.userid, FollowRelation.external_userid).where(
        FollowRelation.status == "active"
    )
    mirrored = {(u, e) for u, e in db.call(lambda s: s.execute(query).all())}
    if live != mirrored:
        problems.append(f"{len(live ^ mirrored)} follow relations")
    for chat_id, group in world.groups.items():
        members = {m.userid for m in group.members if not group.dismissed}
        if members != _current_members(db, chat_id):
            problems.append(f"group {chat_id[-6:]} members")
    return problems


def _current_members(db: Database, chat_id: str) -> set[str]:
    query = select(GroupMember.member_id).where(
        GroupMember.chat_id == chat_id, GroupMember.left_at.is_(None)
    )
    return set(db.call(lambda s: s.scalars(query).all()))
