"""Full retag of N customers (profiles, AUM history, relations): first run, a day later, idle.

The first run writes every tag; the second, a day later with 10% of AUMs moved, writes the
diff; the third finds nothing to do. Each run goes through `retag_all`, chunk by chunk.

    .venv/bin/python -m bench.retag [--customers 100000] [--url postgresql://...]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update

from bot.config import Settings
from bot.store.db import Database
from bot.store.migrate import upgrade
from bot.store.models import (
    AttributeChange,
    Base,
    Customer,
    CustomerProfile,
    CustomerTag,
    FollowRelation,
)
from bot.tagging.engine import RetagResult, retag_all

NOW = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
STATES = ["qr_branch_a", "qr_lobby", "qr_senior_club", "link_wechat_article", "other", None]
REMARKS = ["王老板", "李老师", "退休教师", "张先生", None]


def seed(db: Database, size: int, rng: random.Random) -> None:
    customers: list[dict[str, Any]] = []
    profiles: list[dict[str, Any]] = []
    relations: list[dict[str, Any]] = []
    history: list[dict[str, Any]] = []
    for i in range(size):
        eid, key = f"wm{i:07d}", f"C{i:07d}"
        customers.append(
            {"external_userid": eid, "name": "客户", "created_at": NOW, "updated_at": NOW}
        )
        relations.append(
            {
                "external_userid": eid,
                "userid": f"m{i % 25}",
                "state": rng.choice(STATES),
                "remark": rng.choice(REMARKS),
                "description": None,
                "status": "active",
                "added_at": NOW - timedelta(days=rng.randint(0, 700)),
                "updated_at": NOW,
            }
        )
        if rng.random() < 0.1:
            continue  # a WeCom customer the bank has no data for
        aum = round(rng.lognormvariate(11, 1.5), 2)
        profiles.append(
            {
                "customer_key": key,
                "external_userid": eid,
                "aum": aum,
                "payroll": rng.random() < 0.3,
                "age": rng.randint(18, 90),
                "opened_at": date(2026, 11, 23) - timedelta(days=rng.randint(0, 4000)),
                "last_login_at": NOW - timedelta(days=rng.randint(0, 200)),
                "imported_at": NOW,
                "updated_at": NOW,
            }
        )
        history.append(
            {
                "customer_key": key,
                "attribute": "aum",
                "old_value": None,
                "new_value": f"{aum * rng.uniform(0.6, 1.4):.2f}",
                "changed_at": NOW - timedelta(days=60),
            }
        )
        if rng.random() < 0.5:
            history.append(
                {
                    "customer_key": key,
                    "attribute": "aum",
                    "old_value": history[-1]["new_value"],
                    "new_value": f"{aum:.2f}",
                    "changed_at": NOW - timedelta(days=rng.randint(1, 29)),
                }
            )
    tables = Base.metadata.tables
    with db.session() as s:
        for name, rows in (
            ("customers", customers),
            ("customer_profiles", profiles),
            ("follow_relations", relations),
            ("attribute_history", history),
        ):
            for start in range(0, len(rows), 20_000):
                s.execute(insert(tables[name]), rows[start : start + 20_000])


def move_aums(db: Database, rng: random.Random, share: float) -> None:
    with db.session() as s:
        rows = s.execute(select(CustomerProfile.customer_key, CustomerProfile.aum)).all()
        moved = [
            {"k": key, "aum": round((aum or 0) * rng.uniform(0.9, 1.1), 2)}
            for key, aum in rows
            if rng.random() < share
        ]
        s.execute(
            update(Base.metadata.tables["customer_profiles"])
            .where(Base.metadata.tables["customer_profiles"].c.customer_key == bindparam("k"))
            .values(aum=bindparam("aum")),
            moved,
        )


def timed(label: str, db: Database, now: datetime) -> RetagResult:
    started, cpu = time.perf_counter(), time.process_time()
    result = retag_all(db, settings=Settings(), now=now)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(
        f"{label:<28} {seconds:6.2f} s ({cpu:5.2f} s CPU in this process)  "
        f"{result.evaluated / seconds:9,.0f} customers/s  {len(result.changes):7,} changed"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--url", help="database URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = args.url or f"sqlite:///{Path(folder) / 'retag.db'}"
        db = Database.from_url(url)
        upgrade(db.engine)
        with db.session() as s:
            if s.scalar(select(func.count()).select_from(Customer)):
                raise SystemExit(f"{url} is not empty")
        rng = random.Random(7)
        seed(db, args.customers, rng)
        print(f"{db.dialect}, {args.customers:,} customers")
        timed("first run (all tags new)", db, NOW)
        move_aums(db, rng, 0.1)
        timed("a day later, 10% AUM moved", db, NOW + timedelta(days=1))
        timed("again, nothing to do", db, NOW + timedelta(days=1, hours=1))
        with db.session() as s:
            tags = s.scalar(select(func.count()).select_from(CustomerTag))
            relations = s.scalar(select(func.count()).select_from(FollowRelation))
            changes = s.scalar(select(func.count()).select_from(AttributeChange))
        print(f"{tags:,} tags, {relations:,} relations, {changes:,} history rows")
        db.dispose()


if __name__ == "__main__":
    main()
