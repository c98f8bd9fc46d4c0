"""Group segments by name, owner, member composition and by hand, written as a diff."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.clock import FrozenClock
from bot.config import SegmentRule, SegmentsConfig, Settings
from bot.store.db import Database
from bot.store.models import Group, GroupSegment
from bot.tagging.segments import GroupFacts, SegmentDecision, recompute_segments, rule_segments
from tests.tagging.rules_world import add_customer, add_group, add_member, add_tag

RULES = [
    SegmentRule(segment="代发工资群", name_contains=["代发", "工资"]),
    SegmentRule(
        segment="银发群", name_contains=["银发"], member_tag="老年客户", member_tag_share=0.5
    ),
    SegmentRule(segment="李经理的群", owners=["li"]),
]
SETTINGS = Settings(segments=SegmentsConfig(rules=RULES, manual={"wr3": ["重点群", "银发群"]}))


def stored(db: Database) -> dict[tuple[str, str], tuple[str, str]]:
    def read(s: Session) -> dict[tuple[str, str], tuple[str, str]]:
        return {
            (g.chat_id, g.segment): (g.source, g.reason) for g in s.scalars(select(GroupSegment))
        }

    return db.call(read)


def test_rules_match_on_name_owner_or_member_share() -> None:
    group = GroupFacts("wr1", "XX公司代发群", "li", customers=4, tagged={"老年客户": 2})
    assert rule_segments(group, RULES) == [
        SegmentDecision("代发工资群", "rule", "name 「XX公司代发群」 contains 「代发」"),
        SegmentDecision("银发群", "rule", "2 of 4 customers (50%) tagged 老年客户 (≥ 50%)"),
        SegmentDecision("李经理的群", "rule", "owned by manager li"),
    ]
    below = GroupFacts("wr2", "周末群", "wang", customers=5, tagged={"老年客户": 2})
    assert rule_segments(below, RULES) == []
    empty = GroupFacts("wr3", "周末群", None)
    assert rule_segments(empty, RULES) == []


def seed(db: Database, clock: FrozenClock) -> None:
    now = clock.now()

    def run(s: Session) -> None:
        add_group(s, "wr1", "XX公司代发群", now, owner="wang")
        add_group(s, "wr2", "周末活动群", now, owner="zhao")
        add_group(s, "wr3", "手工群", now, owner="zhao")
        add_group(s, "wr4", "李经理客户群", now, owner="li")
        add_group(s, "wr5", "老代发群", now, owner="wang", status="dismissed")
        for i in range(5):
            add_customer(s, f"wm{i}", now)
            add_member(s, "wr2", f"wm{i}", now)
        for i in range(3):
            add_tag(s, f"wm{i}", "老年客户", "senior", now)
        add_customer(s, "wm9", now)
        add_tag(s, "wm9", "老年客户", "senior", now)
        # Members who left and employees do not count towards the share.
        add_member(s, "wr2", "wm9", now, left_at=now - timedelta(days=1))
        add_member(s, "wr2", "li", now, type=1)

    db.call(run)


def test_recompute_writes_segments_with_reasons_and_sources(
    db: Database, clock: FrozenClock
) -> None:
    seed(db, clock)
    settings = Settings(
        segments=SegmentsConfig(rules=RULES, manual={"wr3": ["重点群"], "wr404": ["重点群"]})
    )
    result = recompute_segments(db, settings=settings, now=clock.now())
    assert stored(db) == {
        ("wr1", "代发工资群"): ("rule", "name 「XX公司代发群」 contains 「代发」"),
        ("wr2", "银发群"): ("rule", "3 of 5 customers (60%) tagged 老年客户 (≥ 50%)"),
        ("wr3", "重点群"): ("config", "set by hand in config"),
        ("wr4", "李经理的群"): ("rule", "owned by manager li"),
    }
    assert result.counts == {"代发工资群": 1, "银发群": 1, "重点群": 1, "李经理的群": 1}
    assert result.unknown_chat_ids == ["wr404"]
    assert result.added == {
        "wr1": {"代发工资群"},
        "wr2": {"银发群"},
        "wr3": {"重点群"},
        "wr4": {"李经理的群"},
    }


def test_manual_segment_wins_over_the_rule_of_the_same_name(
    db: Database, clock: FrozenClock
) -> None:
    seed(db, clock)
    manual = Settings(segments=SegmentsConfig(rules=RULES, manual={"wr2": ["银发群"]}))
    recompute_segments(db, settings=manual, now=clock.now())
    assert stored(db)[("wr2", "银发群")] == ("config", "set by hand in config")


def test_diff_keeps_since_and_removes_what_no_longer_holds(
    db: Database, clock: FrozenClock
) -> None:
    seed(db, clock)
    first = clock.now()
    recompute_segments(db, settings=SETTINGS, now=first)
    clock.advance(timedelta(days=1))
    db.call(
        lambda s: s.execute(update(Group).where(Group.chat_id == "wr1").values(name="XX公司群"))
    )
    db.call(
        lambda s: s.execute(update(Group).where(Group.chat_id == "wr4").values(status="dismissed"))
    )
    second = recompute_segments(db, settings=SETTINGS, now=clock.now())
    assert second.removed == {"wr1": {"代发工资群"}, "wr4": {"李经理的群"}}
    assert second.added == {}
    since = db.call(
        lambda s: {(g.chat_id, g.segment): g.since for g in s.scalars(select(GroupSegment))}
    )
    assert since == {("wr2", "银发群"): first, ("wr3", "重点群"): first, ("wr3", "银发群"): first}
    third = recompute_segments(db, settings=SETTINGS, now=clock.now())
    assert (third.added, third.removed) == ({}, {})


def test_no_groups_and_no_rules_is_fine(db: Database, clock: FrozenClock) -> None:
    result = recompute_segments(db, settings=Settings(), now=clock.now())
    assert result.counts == {}
    assert result.unknown_chat_ids == []
