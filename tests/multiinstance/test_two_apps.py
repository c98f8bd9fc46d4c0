"""Two full bot apps on one database and one simulated WeCom, planning the same calendar
slots at the same moments: exactly one WeCom task reaches each (slot, target)."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bot.app import BotApp, create_app
from bot.clock import FrozenClock
from bot.config import Settings, build_settings
from bot.sandbox import Sandbox
from bot.store.db import Database
from bot.store.models import Customer, GroupSegment, Member, SlotRun
from bot.wecom.ratelimit_db import DatabaseRateLimiter
from tests.calendar.planner_world import SENIOR, SHANGHAI, TIER, write_branch_files
from tests.tagging.rules_world import add_customer, add_group, add_relation, add_tag

CORP_ID = "ww5a1b2c3d4e5f6a7b"
AGENT_ID = 1000002
SECRET = "sandbox-secret-0123456789abcdefghijklmnopq"
ADD_TEMPLATE = "externalcontact/add_msg_template"
# Monday 10:00 is when both of the branch calendar's slots fire (tests/calendar/planner_world).
TEN = datetime(2026, 11, 23, 10, 0, 5, tzinfo=SHANGHAI)
FOLLOWS = {"c1": ["m1"], "c2": ["m1"], "c3": ["m2"], "c4": ["m2"], "c5": ["m1"], "c7": ["m1", "m2"]}
GROUPS = {"理财交流一群": "m1", "社区二群": "m2", "银发俱乐部": "m1"}


def settings_for(root: Path) -> Settings:
    env = {
        "BOT_WECOM__API_BASE": "http://sandbox/cgi-bin",
        "BOT_WECOM__CORP_ID": CORP_ID,
        "BOT_WECOM__AGENT_ID": str(AGENT_ID),
        "BOT_WECOM__SECRET": SECRET,
        # The shared limiter on SQLite too, so both engines run it under real traffic.
        "BOT_WECOM__SHARED_RATE_LIMITS": "on",
    }
    return build_settings({}, env, base_dir=root)


def branch(db: Database, sandbox: Sandbox, now: datetime) -> dict[str, str]:
    """The same managers, customers and groups in WeCom and in the bot's mirror; returns
    the groups' chat ids by name. c5 opted out; c4 is a senior (reachable at 10:00)."""
    world = sandbox.world
    world.add_member("m1", "张经理")
    world.add_member("m2", "李经理")
    for eid, userids in FOLLOWS.items():
        world.add_customer("王小明", external_userid=eid)
        for userid in userids:
            world.add_follow(userid, eid)
    chat_ids = {name: world.create_group(owner, name).chat_id for name, owner in GROUPS.items()}
    early = datetime(2025, 1, 1, tzinfo=SHANGHAI)

    def write(s: Any) -> None:
        s.add(Member(userid="m1", name="张经理", updated_at=now))
        s.add(Member(userid="m2", name="李经理", updated_at=now))
        for eid in FOLLOWS:
            add_customer(s, eid, now, name="王小明")
        s.flush()
        for eid, userids in FOLLOWS.items():
            for userid in userids:
                add_relation(s, eid, userid, now, added_at=early)
            add_tag(s, eid, TIER, "asset", now)
        add_tag(s, "c4", SENIOR, "senior", now)
        s.flush()
        s.get(Customer, "c5").opted_out = True
        for name, owner in GROUPS.items():
            add_group(s, chat_ids[name], name, now, owner=owner)
        s.flush()
        for name, segment in (("理财交流一群", "理财交流群"), ("银发俱乐部", "银发群")):
            s.add(
                GroupSegment(
                    chat_id=chat_ids[name], segment=segment, source="rule", reason="t", since=now
                )
            )

    db.call(write)
    return chat_ids


@dataclass
class Pair:
    sandbox: Sandbox
    a: BotApp
    b: BotApp
    chat_ids: dict[str, str]

    async def close(self) -> None:
        for bot in (self.a, self.b):
            await bot.wecom.aclose()

    def reached(self) -> Counter[tuple[str, str]]:
        """How many WeCom tasks reach each (chat type, target)."""
        return Counter(
            (task.chat_type, recipient.target)
            for task in self.sandbox.world.tasks.values()
            for recipient in task.recipients
        )


def two_apps(db: Database, twin: Database, clock: FrozenClock, tmp_path: Path) -> Pair:
    write_branch_files(tmp_path)
    settings = settings_for(tmp_path)
    sandbox = Sandbox.create(clock, corp_id=CORP_ID, agent_id=AGENT_ID, secret=SECRET)
    chat_ids = branch(db, sandbox, clock.now())
    a = create_app(
        settings, clock=clock, transport=sandbox.api_transport(), db=db, worker_id="host-a:7"
    )
    b = create_app(
        settings, clock=clock, transport=sandbox.api_transport(), db=twin, worker_id="host-b:7"
    )
    return Pair(sandbox, a, b, chat_ids)


def expected(pair: Pair) -> Counter[tuple[str, str]]:
    singles = [("single", eid) for eid in ("c1", "c2", "c3", "c4", "c7")]  # c5 opted out
    groups = [("group", chat_id) for chat_id in pair.chat_ids.values()]
    return Counter(singles + groups)


async def test_two_apps_planning_the_same_slots_create_one_task_per_target(
    db: Database, twin: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    pair = two_apps(db, twin, clock, tmp_path)
    assert isinstance(pair.a.wecom.limiter, DatabaseRateLimiter)
    clock.set(TEN)
    try:
        # Three ticks, each planned by both instances at once (no leader: this is what the
        # data's unique keys must hold on their own), then both send at once.
        written: Counter[str] = Counter()
        for _ in range(3):
            reports = await asyncio.gather(pair.a.calendar.plan_due(), pair.b.calendar.plan_due())
            for report in reports:
                assert report is not None
                written.update(o.slot_id for o in report.outcomes if o.run_id is not None)
            await asyncio.gather(pair.a.drain(), pair.b.drain())
            clock.advance(timedelta(seconds=30))
    finally:
        await pair.close()
    # Whichever instance got there first wrote each run; the other wrote nothing.
    assert written == {"mon-vip": 1, "mon-groups": 1}
    assert pair.reached() == expected(pair)
    # No task was created and then lost or repeated: one call per task WeCom holds.
    assert len(pair.sandbox.world.calls(ADD_TEMPLATE)) == len(pair.sandbox.world.tasks) == 4
    runs = db.call(lambda s: sorted(s.execute(select(SlotRun.slot_id, SlotRun.status)).all()))
    assert [tuple(r) for r in runs] == [("mon-groups", "planned"), ("mon-vip", "planned")]


async def test_only_the_leading_app_runs_the_calendar_job(
    db: Database, twin: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    pair = two_apps(db, twin, clock, tmp_path)
    clock.set(TEN)
    tickers = (pair.a.ticker, pair.b.ticker)
    try:
        leaders = [t.leader for t in tickers]
        assert leaders[0] is not None
        assert leaders[1] is not None
        assert sorted(await asyncio.gather(leaders[0].renew(), leaders[1].renew())) == [
            False,
            True,
        ]
        assert sorted(t.is_leader for t in tickers) == [False, True]
        ran = await asyncio.gather(*(t.as_leader(t.calendar_slots) for t in tickers))
        assert sorted(ran) == [False, True]
        await asyncio.gather(pair.a.drain(), pair.b.drain())
    finally:
        await pair.close()
    assert pair.reached() == expected(pair)
