"""Incremental retagging (any batches, any order) gives exactly what a full recompute gives."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, insert, update
from sqlalchemy.orm import Session

from bot.clock import FrozenClock
from bot.config import KeywordRule, Settings, TaggingConfig
from bot.store.db import Database
from bot.store.models import AttributeChange, CustomerProfile, CustomerTag
from bot.tagging import engine
from bot.tagging.engine import RetagResult, retag_all, retag_customers
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
    tagging=TaggingConfig(
        keywords=[
            KeywordRule(tag="小微企业主", any=["老板", "店主"]),
            KeywordRule(tag="教师", any=["老师"]),
            KeywordRule(tag="退休人员", any=["退休"]),
        ]
    )
)
AUMS = [0, 47_000, 47_500, 50_000, 96_000, 100_000, 474_999.99, 475_000, 480_000, 500_000,
        5_700_000, 6_000_000]  # fmt: skip
TIER_TAGS = [t.tag for t in SETTINGS.tagging.asset_tiers]
STATES = [*SETTINGS.tagging.channels, "unknown_state", None]
REMARKS = ["王老板", "李老师", "退休教师", "", None, "张三 13812345678"]


def seed(s: Session, rng: random.Random, now: datetime, size: int) -> None:
    for i in range(size):
        eid = f"wm{i:04d}"
        add_customer(s, eid, now)
        if rng.random() < 0.85:
            key = f"C{i:04d}"
            aum = rng.choice([*AUMS, rng.uniform(0, 8_000_000), None])
            add_profile(
                s,
                key,
                eid,
                now,
                aum=aum,
                payroll=rng.choice([True, False, None]),
                age=rng.choice([None, 30, 59, 60, 80]),
                birth_date=rng.choice([None, date(1966, 11, 23), date(1966, 11, 24)]),
                opened_at=rng.choice([None, now.date() - timedelta(days=rng.randint(0, 3000))]),
                last_login_at=rng.choice([None, now - timedelta(days=rng.randint(0, 200))]),
            )
            value: float | None = None
            for back in sorted(rng.sample(range(1, 60), rng.randint(0, 3)), reverse=True):
                new = rng.choice(AUMS)
                add_aum_change(s, key, value, new, now - timedelta(days=back))
                value = new
        for userid in rng.sample(["li", "wang", "zhao"], rng.randint(0, 2)):
            add_relation(
                s,
                eid,
                userid,
                now,
                state=rng.choice(STATES),
                remark=rng.choice(REMARKS),
                description=rng.choice(REMARKS),
                status=rng.choice(["active", "active", "ended"]),
                added_at=now - timedelta(days=rng.randint(0, 500)),
            )
        # Yesterday's tags, so hysteresis, removals and kept `since` all happen.
        for tag in rng.sample(TIER_TAGS, rng.randint(0, 2)):
            add_tag(s, eid, tag, "asset", now - timedelta(days=5))
        if rng.random() < 0.3:
            add_tag(s, eid, rng.choice(["新客户", "成熟客户", "流失预警"]), "lifecycle", now)
        if rng.random() < 0.2:
            add_tag(s, eid, "教师", "keyword", now - timedelta(days=1))


def snapshot(s: Session) -> dict[str, Any]:
    return {
        "tags": tags_of(s),
        "profiles": profiles_of(s),
        "history": history_of(s, "asset_tier", "lifecycle"),
    }


def restore(db: Database, before: dict[str, Any]) -> None:
    def run(s: Session) -> None:
        s.execute(delete(CustomerTag))
        s.execute(
            delete(AttributeChange).where(
                AttributeChange.attribute.in_(["asset_tier", "lifecycle"])
            )
        )
        rows = [
            {"external_userid": e, "tag": t, "family": f, "rule": r, "reason": why, "since": at}
            for e, tags in before["tags"].items()
            for t, (f, r, why, at) in tags.items()
        ]
        s.execute(insert(CustomerTag), rows)
        s.execute(
            update(CustomerProfile),
            [
                {"customer_key": k, "asset_tier": tier, "lifecycle": stage, "aum_trend": trend}
                for k, (tier, stage, trend) in before["profiles"].items()
            ],
        )

    db.call(run)


@pytest.mark.parametrize("chunk_size", [7, 1000])
def test_incremental_equals_full_recompute(
    db: Database, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch, chunk_size: int
) -> None:
    monkeypatch.setattr(engine, "CHUNK_SIZE", chunk_size)
    rng = random.Random(20261123 + chunk_size)
    now = clock.now()
    db.call(lambda s: seed(s, rng, now, 240))
    before = db.call(snapshot)

    full = retag_all(db, settings=SETTINGS, now=now)
    after_full = db.call(snapshot)

    restore(db, before)
    assert db.call(snapshot) == before
    incremental = RetagResult()
    pending = [f"wm{i:04d}" for i in range(240)]
    rng.shuffle(pending)
    while pending:
        size = rng.randint(1, 40)
        batch, pending = pending[:size], pending[size:]
        incremental.merge(retag_customers(db, batch, settings=SETTINGS, now=now))
    after_incremental = db.call(snapshot)

    assert after_incremental == after_full
    assert incremental.changes == full.changes
    assert incremental.counts == full.counts
    assert incremental.evaluated == full.evaluated == 240
    # The dataset exercised what it is meant to: kept tiers, dropped tiers, new tags.
    reasons = [why for tags in after_full["tags"].values() for (_, _, why, _) in tags.values()]
    assert any(why.startswith("kept ") for why in reasons)
    assert any(diff.removed for diff in full.changes.values())
    assert any(diff.added for diff in full.changes.values())
