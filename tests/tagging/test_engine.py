"""The tagging engine on both database engines: diffs, since, reasons, history, trend."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from bot.clock import FrozenClock
from bot.config import KeywordRule, Settings, TaggingConfig
from bot.store.db import Database
from bot.store.models import AttributeChange, CustomerProfile
from bot.tagging.engine import TagDiff, retag_all, retag_customers, retag_session
from bot.tagging.rules import TextSource
from tests.tagging.rules_world import (
    add_aum_change,
    add_customer,
    add_profile,
    add_relation,
    add_tag,
    history_of,
    profiles_of,
    tags_of,
)

SETTINGS = Settings(
    tagging=TaggingConfig(keywords=[KeywordRule(tag="小微企业主", any=["老板", "店主"])])
)


def set_aum(db: Database, key: str, aum: float) -> None:
    db.call(
        lambda s: s.execute(
            update(CustomerProfile).where(CustomerProfile.customer_key == key).values(aum=aum)
        )
    )


def test_retag_writes_every_rule_tag_with_its_reason(db: Database, clock: FrozenClock) -> None:
    now = clock.now()

    def seed(s: Session) -> None:
        add_customer(s, "wm1", now)
        add_profile(
            s,
            "C1",
            "wm1",
            now,
            aum=523_000,
            payroll=True,
            age=61,
            opened_at=date(2020, 1, 1),
            last_login_at=now - timedelta(days=2),
        )
        add_relation(
            s, "wm1", "li", now, state="qr_lobby", remark="王老板", added_at=now - timedelta(days=9)
        )
        add_customer(s, "wm2", now)

    db.call(seed)
    result = retag_customers(db, ["wm2", "wm1"], settings=SETTINGS, now=now)

    assert db.call(tags_of) == {
        "wm1": {
            "资产50万+": ("asset", "asset_tier:T3", "AUM 523,000 ≥ 500,000 (资产50万+)", now),
            "代发客户": ("payroll", "payroll", "代发 (payroll) flag set in bank data", now),
            "老年客户": ("senior", "senior_age", "age 61 (from bank data) ≥ 60 (老年客户)", now),
            "成熟客户": (
                "lifecycle",
                "lifecycle:mature",
                "account opened on 2020-01-01 (over 730 days), stable: no churn or growth signal",
                now,
            ),
            "渠道-大堂": (
                "channel",
                "channel:qr_lobby",
                "came through channel State qr_lobby (manager li on 2026-11-14)",
                now,
            ),
            "小微企业主": ("keyword", "keyword:老板", "「老板」 in manager li's remark", now),
        },
        "wm2": {
            "潜力客户": (
                "lifecycle",
                "lifecycle:potential",
                "WeCom customer without a bank profile",
                now,
            )
        },
    }
    assert result.evaluated == 2
    assert result.changes == {
        "wm1": TagDiff(
            added={"资产50万+", "代发客户", "老年客户", "成熟客户", "渠道-大堂", "小微企业主"},
            removed=set(),
        ),
        "wm2": TagDiff(added={"潜力客户"}, removed=set()),
    }
    assert result.counts["潜力客户"] == 1
    assert result.counts["资产50万+"] == 1
    assert db.call(profiles_of) == {"C1": ("T3", "mature", 0.0)}
    assert db.call(lambda s: history_of(s, "asset_tier", "lifecycle")) == [
        ("C1", "asset_tier", None, "T3"),
        ("C1", "lifecycle", None, "mature"),
    ]


def test_hysteresis_across_days_keeps_since_and_reports_diffs(
    db: Database, clock: FrozenClock
) -> None:
    first = clock.now()

    def seed(s: Session) -> None:
        add_customer(s, "wm1", first)
        add_profile(s, "C1", "wm1", first, aum=523_000, opened_at=date(2020, 1, 1))

    db.call(seed)
    retag_customers(db, ["wm1"], settings=SETTINGS, now=first)

    clock.advance(timedelta(days=1))
    set_aum(db, "C1", 480_000)
    kept = retag_customers(db, ["wm1"], settings=SETTINGS, now=clock.now())
    tags = db.call(tags_of)["wm1"]
    assert kept.changes == {}
    assert tags["资产50万+"][3] == first
    assert tags["资产50万+"][2] == (
        "kept 资产50万+: AUM 480,000 still above the 475,000 exit line (hysteresis 5%)"
    )

    clock.advance(timedelta(days=1))
    set_aum(db, "C1", 470_000)
    dropped = retag_customers(db, ["wm1"], settings=SETTINGS, now=clock.now())
    tags = db.call(tags_of)["wm1"]
    assert dropped.changes == {"wm1": TagDiff(added={"资产10万+"}, removed={"资产50万+"})}
    assert "资产50万+" not in tags
    assert tags["资产10万+"][3] == clock.now()
    assert tags["成熟客户"][3] == first
    assert db.call(profiles_of)["C1"][0] == "T2"
    assert db.call(lambda s: history_of(s, "asset_tier")) == [
        ("C1", "asset_tier", None, "T3"),
        ("C1", "asset_tier", "T3", "T2"),
    ]


def test_a_run_with_nothing_new_writes_nothing(db: Database, clock: FrozenClock) -> None:
    now = clock.now()

    def seed(s: Session) -> None:
        add_customer(s, "wm1", now)
        add_profile(s, "C1", "wm1", now, aum=120_000, opened_at=date(2026, 10, 1))

    db.call(seed)
    retag_customers(db, ["wm1"], settings=SETTINGS, now=now)
    before = db.call(tags_of)
    # A day later the reasons still read the same (they name dates, not day counts).
    clock.advance(timedelta(days=1))
    again = retag_customers(db, ["wm1"], settings=SETTINGS, now=clock.now())
    assert again.changes == {}
    assert again.profiles_updated == 0
    assert again.evaluated == 1
    assert db.call(tags_of) == before
    assert db.call(lambda s: s.scalar(select(func.count()).select_from(AttributeChange))) == 2


def test_aum_trend_comes_from_the_history(db: Database, clock: FrozenClock) -> None:
    now = clock.now()
    old = date(2023, 1, 1)

    def seed(s: Session) -> None:
        for eid, key, aum in (
            ("wm1", "UP", 130_000),
            ("wm2", "DOWN", 70_000),
            ("wm3", "FRESH", 50_000),
            ("wm4", "STEADY", 100_000),
        ):
            add_customer(s, eid, now)
            add_profile(s, key, eid, now, aum=aum, opened_at=old)
        add_aum_change(s, "UP", None, 100_000, now - timedelta(days=40))
        add_aum_change(s, "UP", 100_000, 130_000, now - timedelta(days=10))
        add_aum_change(s, "DOWN", None, 100_000, now - timedelta(days=40))
        add_aum_change(s, "DOWN", 100_000, 90_000, now - timedelta(days=20))
        add_aum_change(s, "DOWN", 90_000, 70_000, now - timedelta(days=5))
        add_aum_change(s, "FRESH", None, 50_000, now - timedelta(days=10))
        add_aum_change(s, "STEADY", None, 100_000, now - timedelta(days=40))

    db.call(seed)
    retag_all(db, settings=SETTINGS, now=now)
    assert db.call(profiles_of) == {
        "UP": ("T2", "growth", 0.3),
        "DOWN": ("T1", "churning", -0.3),
        "FRESH": ("T1", "mature", None),
        "STEADY": ("T2", "mature", 0.0),
    }
    tags = db.call(tags_of)
    assert tags["wm1"]["成长客户"][2] == "AUM up 30.0% over 30 days (≥ +5%)"
    assert tags["wm2"]["流失预警"][2] == "AUM down 30.0% over 30 days (≤ -20%)"


def test_unknown_customers_are_reported_not_fatal(db: Database, clock: FrozenClock) -> None:
    now = clock.now()
    db.call(lambda s: add_customer(s, "wm1", now))
    result = retag_customers(db, ["wm1", "ghost", "wm1"], settings=SETTINGS, now=now)
    assert result.unknown == ["ghost"]
    assert result.evaluated == 1
    assert set(db.call(tags_of)) == {"wm1"}


def test_tags_of_other_families_are_left_alone(db: Database, clock: FrozenClock) -> None:
    now = clock.now()

    def seed(s: Session) -> None:
        add_customer(s, "wm1", now)
        add_tag(s, "wm1", "活动达人", "activity", now - timedelta(days=3))
        add_tag(s, "wm1", "渠道-大堂", "channel", now - timedelta(days=3))

    db.call(seed)
    result = retag_customers(db, ["wm1"], settings=SETTINGS, now=now)
    tags = db.call(tags_of)["wm1"]
    assert set(tags) == {"活动达人", "潜力客户"}
    assert result.changes == {"wm1": TagDiff(added={"潜力客户"}, removed={"渠道-大堂"})}


def test_keywords_read_active_relations_and_extra_text_sources(
    db: Database, clock: FrozenClock
) -> None:
    now = clock.now()

    def seed(s: Session) -> None:
        add_customer(s, "wm1", now)
        add_relation(s, "wm1", "li", now, remark="店主", status="ended", state="qr_lobby")
        add_customer(s, "wm2", now)

    def answers(session: Session, ids: Sequence[str]) -> dict[str, list[TextSource]]:
        assert list(ids) == ["wm1", "wm2"]
        return {"wm2": [TextSource("quiz answer", "我是开店的老板")]}

    db.call(seed)
    retag_customers(db, ["wm1", "wm2"], settings=SETTINGS, now=now, text_loaders=[answers])
    tags = db.call(tags_of)
    # The relation ended: its remark no longer speaks for the customer, its channel still does.
    assert "小微企业主" not in tags["wm1"]
    assert "渠道-大堂" in tags["wm1"]
    assert tags["wm2"]["小微企业主"][2] == "「老板」 in quiz answer"


def test_retag_session_joins_the_callers_transaction(db: Database, clock: FrozenClock) -> None:
    now = clock.now()

    def seed_and_tag(s: Session) -> int:
        add_customer(s, "wm1", now)
        add_profile(s, "C1", "wm1", now, aum=60_000)
        s.flush()
        return retag_session(s, ["wm1"], settings=SETTINGS, now=now).evaluated

    assert db.call(seed_and_tag) == 1
    assert "资产5万+" in db.call(tags_of)["wm1"]
