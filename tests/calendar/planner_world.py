"""A small branch and calendar for the planner tests (helpers, no tests)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from bot.calendar.content import ContentLibrary
from bot.calendar.occurrences import Occurrence, occurrences_on
from bot.calendar.schedule import Calendar, load_calendar
from bot.config import Settings, build_settings
from bot.store.db import Database
from bot.store.models import (
    Customer,
    GroupSegment,
    Member,
    OutboxItem,
    ReceiveCount,
    SlotRun,
    SlotTarget,
)
from tests.tagging.rules_world import add_customer, add_group, add_relation, add_tag

SHANGHAI = ZoneInfo("Asia/Shanghai")
TIER = "资产50万+"
SENIOR = "老年客户"

CALENDAR = """\
name: 测试支行日历
slots:
  - id: mon-vip
    theme: 周一财富早班车
    days: [mon]
    time: "10:00"
    channel: single
    audience: 'tag("资产50万+")'
    template: calendar/vip.md.j2
    window_policy: {window_policy}
  - id: mon-groups
    theme: 周一群早报
    days: [mon]
    time: "10:00"
    channel: group{groups_line}
    template: calendar/{group_template}
"""

VIP = """\
---
title: 周一财富早班车
product: 天天盈
wealth: true
---
{{ manager }}的周一早班车
新的一周从理财开始
天天盈：灵活存取
理财非存款，产品有风险，投资须谨慎
"""

GROUP_PLAIN = """\
---
title: 群早报
---
各位早上好
本周活动看这里：{{ activity_link }}
"""

GROUP_NAMED = """\
---
title: 群早报
---
{{ group_name }}的朋友们早上好
本周活动看这里：{{ activity_link }}
"""


def write_branch_files(
    root: Path,
    *,
    window_policy: str = "defer",
    groups: str | None = None,
    group_template: str = "group_plain.md.j2",
) -> None:
    schedules = root / "schedules"
    content = root / "content" / "calendar"
    schedules.mkdir(parents=True, exist_ok=True)
    content.mkdir(parents=True, exist_ok=True)
    (schedules / "branch.yaml").write_text(
        CALENDAR.format(
            window_policy=window_policy,
            groups_line=f"\n    groups: '{groups}'" if groups else "",
            group_template=group_template,
        ),
        encoding="utf-8",
    )
    (content / "vip.md.j2").write_text(VIP, encoding="utf-8")
    (content / "group_plain.md.j2").write_text(GROUP_PLAIN, encoding="utf-8")
    (content / "group_named.md.j2").write_text(GROUP_NAMED, encoding="utf-8")


def branch_settings(root: Path, **calendar: Any) -> Settings:
    data: dict[str, Any] = {"calendar": calendar} if calendar else {}
    return build_settings(data, {}, base_dir=root)


def load(settings: Settings) -> tuple[Calendar, ContentLibrary]:
    calendar = load_calendar(
        settings.schedules_dir(),
        settings.content_dir(),
        lateness_minutes=settings.calendar.lateness_minutes,
    )
    return calendar, ContentLibrary(settings.content_dir())


def occurrence(calendar: Calendar, slot_id: str, day: datetime) -> Occurrence:
    for occ in occurrences_on(calendar, day.date(), SHANGHAI):
        if occ.slot_id == slot_id:
            return occ
    raise AssertionError(f"{slot_id} does not run on {day.date()}")


def add_branch(db: Database, now: datetime) -> None:
    """Two managers; seven customers; four groups.

    c1, c2 (m1) and c3 (m2) have the tier; c4 (m2) too and is a senior; c5 has it but
    opted out; c6 has it and is at the month's cap; c7 is followed by m1, then by m2.
    """

    def write(s: Any) -> None:
        s.add(Member(userid="m1", name="张经理", updated_at=now))
        s.add(Member(userid="m2", name="李经理", updated_at=now))
        for eid in ("c1", "c2", "c3", "c4", "c5", "c6", "c7"):
            add_customer(s, eid, now, name="王小明")
        s.flush()
        early, late = datetime(2025, 1, 1, tzinfo=SHANGHAI), datetime(2026, 1, 1, tzinfo=SHANGHAI)
        for eid, userid in (("c1", "m1"), ("c2", "m1"), ("c3", "m2"), ("c4", "m2")):
            add_relation(s, eid, userid, now, added_at=early)
        add_relation(s, "c5", "m1", now, added_at=early)
        add_relation(s, "c6", "m1", now, added_at=early)
        add_relation(s, "c7", "m1", now, added_at=early)
        add_relation(s, "c7", "m2", now, added_at=late)
        for eid in ("c1", "c2", "c3", "c4", "c5", "c6", "c7"):
            add_tag(s, eid, TIER, "asset", now)
        add_tag(s, "c4", SENIOR, "senior", now)
        s.flush()
        s.get(Customer, "c5").opted_out = True
        s.add(ReceiveCount(period="2026-11", target_kind="customer", target_id="c6", count=30))
        add_group(s, "g1", "理财交流一群", now, owner="m1")
        add_group(s, "g2", "社区二群", now, owner="m2")
        add_group(s, "g3", "无主群", now, owner=None)
        add_group(s, "g4", "银发俱乐部", now, owner="m1")
        s.flush()
        for chat_id, segment in (("g1", "理财交流群"), ("g4", "银发群")):
            s.add(
                GroupSegment(chat_id=chat_id, segment=segment, source="rule", reason="t", since=now)
            )

    db.call(write)


def outbox_rows(db: Database) -> list[OutboxItem]:
    return db.call(lambda s: list(s.scalars(select(OutboxItem).order_by(OutboxItem.id)).all()))


def runs(db: Database) -> list[tuple[str, str, str]]:
    query = select(SlotRun.slot_id, SlotRun.part, SlotRun.status).order_by(SlotRun.id)
    return [tuple(r) for r in db.call(lambda s: s.execute(query).all())]  # type: ignore[misc]


def targets(db: Database) -> dict[str, tuple[str | None, str]]:
    query = select(SlotTarget.target_id, SlotTarget.sender, SlotTarget.status)
    return {t: (sender, status) for t, sender, status in db.call(lambda s: s.execute(query).all())}


def held(db: Database) -> dict[str, str]:
    """Targets held by deferred parts not planned yet: {target: sender}."""
    query = select(SlotRun.deferred_targets).where(SlotRun.deferred_targets.is_not(None))
    docs = db.call(lambda s: s.execute(query).scalars().all())
    return {target: sender for doc in docs for target, sender in (doc or {}).items()}


def counts(db: Database) -> dict[str, int]:
    query = select(ReceiveCount.target_id, ReceiveCount.count)
    return dict(db.call(lambda s: s.execute(query).all()))
