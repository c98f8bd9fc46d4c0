"""Audience expressions at 1,000,000 customers on SQLite and PostgreSQL.

The dataset (built once per database and reused; `--rebuild` forces it): 1 M customers,
95 % with a bank profile (log-normal AUM, asset tier, payroll, age, branch, lifecycle,
products), 1.15 M follow relations across 400 managers (3 % ended), about 5 M rule tags,
60 k hand-set corp tags, 1,500 groups with 300 k memberships, 2 % of customers opted out.
The same seeded generator feeds both engines, so both must report the same counts.

Measured (median of `--runs`, after one warm-up run, through the same `Database.call` path):
- the 4-term expression through `bot.tagging.audience` (parse + compile + execute), as a
  count and as the full id list;
- the same audience as hand-written SQL, in two styles (set algebra, and a per-row
  predicate), and the ratio of the compiled query to the faster of the two;
- a few other expressions, for scale.

    .venv/bin/python -m bench.audience [--engine sqlite|postgresql|both] [--runs 7]
        [--customers 1000000] [--rebuild] [--sqlite PATH] [--postgres URL]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import partial
from itertools import chain
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url

from bench.loading import Rows, load_rows
from bot.store.db import Database, make_engine, normalise_url
from bot.store.migrate import upgrade
from bot.tagging import audience
from bot.tagging.audience.service import run_query

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SQLITE = ROOT / "bench" / "out" / "audience.db"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:54329/bot_bench"
DATASET_VERSION = "audience-v3"
SEED = 20261123
NOW = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
MANAGERS = [f"m{i:04d}" for i in range(1, 401)]
CHUNK = 50_000

EXPRESSION = (
    'tag("资产50万+") and not tag("老年客户") or (aum >= 100000 and lifecycle in ("new", "growth"))'
)
_CORP = (
    "SELECT cu.cid FROM follow_tags ft"
    " JOIN follow_relations f ON f.id = ft.follow_id"
    " JOIN corp_tags t ON t.tag_id = ft.tag_id"
    " JOIN customers cu ON cu.external_userid = f.external_userid"
    " WHERE t.name = '{tag}' AND t.deleted = {false} AND f.status = 'active'"
)
# What a person writes for the same audience on this schema (customer numbers, and the
# maintained `reachable` flag), in the two usual styles.
HAND_SET = """
SELECT {select} FROM customers c
WHERE c.reachable = {true}
  AND c.cid IN (
    SELECT cid FROM customer_tags WHERE tag = '资产50万+'
    UNION {corp_a}
    EXCEPT SELECT cid FROM customer_tags WHERE tag = '老年客户'
    EXCEPT {corp_b}
    UNION SELECT cid FROM customer_profiles
          WHERE aum >= 100000 AND lifecycle IN ('new', 'growth'))
"""
HAND_ROW = """
SELECT {select} FROM customers c
LEFT JOIN customer_profiles p ON p.cid = c.cid
WHERE c.reachable = {true}
  AND ((EXISTS (SELECT 1 FROM customer_tags t WHERE t.tag = '资产50万+' AND t.cid = c.cid)
        OR EXISTS ({corp_a} AND cu.cid = c.cid))
       AND NOT EXISTS (SELECT 1 FROM customer_tags t WHERE t.tag = '老年客户' AND t.cid = c.cid)
       AND NOT EXISTS ({corp_b} AND cu.cid = c.cid)
       OR (p.aum >= 100000 AND p.lifecycle IN ('new', 'growth')))
"""
# The shape the compiler produces, written by hand: drive from the positive terms' indexes,
# probe the negated ones, check reachability only for the audience's own rows.
HAND_TUNED = """
SELECT {select} FROM (
    SELECT a.cid FROM (
        SELECT cid FROM customer_tags WHERE tag = '资产50万+'
        UNION ALL {corp_a}
    ) a
    WHERE NOT EXISTS (SELECT 1 FROM customer_tags s WHERE s.tag = '老年客户' AND s.cid = a.cid)
      AND NOT EXISTS ({corp_b} AND cu.cid = a.cid)
    UNION SELECT cid FROM customer_profiles
          WHERE lifecycle IN ('new', 'growth') AND aum >= 100000
) u
JOIN customers c ON c.cid = u.cid
WHERE c.reachable = {true}
"""
HAND = {"set algebra": HAND_SET, "row predicate": HAND_ROW, "tuned": HAND_TUNED}
OTHERS = [
    ('manager == "m0007" and tag("代发客户")', "one manager's payroll customers"),
    ('in_segment("银发群") and login_within(30)', "senior groups, active last 30 days"),
    ('not tag("资产5万+") and payroll and age < 40', "young payroll, no asset tier"),
    ('product("基金") or tag("理财意向")', "fund holders or tagged by hand"),
]

_PLACES = ["城南", "城北", "城东", "城西", "高新", "滨江", "开发区", "大学城", "火车站"]
BRANCHES = [f"{name}支行" for name in [*_PLACES, "老城"]]
OCCUPATIONS = ["教师", "医生", "公务员", "工程师", "个体", "企业主", "退休", "学生", "销售", "其他"]
DISTRICTS = [f"商圈{i}" for i in range(1, 16)]
LIFECYCLES = (["potential", "new", "growth", "mature", "churning"], [20, 15, 20, 35, 10])
LIFECYCLE_TAGS = {"potential": "潜力客户", "new": "新客户", "growth": "成长客户"}
LIFECYCLE_TAGS |= {"mature": "成熟客户", "churning": "流失预警"}
TIERS = [(6_000_000, "T4", "资产600万+"), (500_000, "T3", "资产50万+")]
TIERS += [(100_000, "T2", "资产10万+"), (50_000, "T1", "资产5万+")]
CHANNELS = {"qr_branch_a": "渠道-网点二维码", "qr_lobby": "渠道-大堂"}
CHANNELS |= {"qr_senior_club": "渠道-银发俱乐部", "link_wechat_article": "渠道-公众号文章"}
_HOBBIES = ["理财", "旅游", "健康", "美食", "亲子", "运动", "书法", "摄影", "戏曲", "广场舞"]
_HOBBIES += ["教育", "汽车", "房产", "保险", "黄金", "基金", "数码", "电影", "宠物", "公益"]
INTERESTS = [f"兴趣-{w}" for w in _HOBBIES]
PRODUCTS = ["基金", "理财", "定期", "保险", "贵金属", "信用卡", "房贷", "养老金"]
CORP_TAGS = ["高净值客户", "理财意向", "基金定投", "VIP", "资产50万+", "老年客户"]
SEGMENTS = ["银发群", "代发群", "理财沙龙"]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂"

# Customers as both generators write them (numbers and reachability included: the loader
# bypasses the triggers that would set them).
CUSTOMER_COLUMNS = ["external_userid", "cid", "name", "type", "opted_out", "reachable"]
CUSTOMER_COLUMNS += ["created_at", "updated_at"]
TABLES: dict[str, list[str]] = {
    "members": ["userid", "name", "follow_enabled", "updated_at"],
    "tag_groups": ["group_id", "name", "order", "deleted", "updated_at"],
    "corp_tags": ["tag_id", "group_id", "name", "order", "deleted", "updated_at"],
    "groups": ["chat_id", "name", "owner", "status", "updated_at"],
    "group_segments": ["chat_id", "segment", "source", "reason", "since"],
    "customers": CUSTOMER_COLUMNS,
    "customer_profiles": [
        "customer_key",
        "external_userid",
        "cid",
        "match_method",
        "aum",
        "asset_tier",
        "payroll",
        "age",
        "products",
        "branch",
        "occupation",
        "district",
        "last_login_at",
        "opened_at",
        "lifecycle",
        "imported_at",
        "updated_at",
    ],
    "follow_relations": [
        "id",
        "external_userid",
        "cid",
        "userid",
        "state",
        "added_at",
        "status",
        "updated_at",
    ],
    "customer_tags": ["external_userid", "cid", "tag", "family", "rule", "reason", "since"],
    "follow_tags": ["follow_id", "tag_id", "tag_type"],
    "group_members": ["chat_id", "member_id", "type", "left_at", "updated_at"],
}
BIG_TABLES = ["customers", "customer_profiles", "follow_relations", "customer_tags"]
BIG_TABLES += ["follow_tags", "group_members"]


# -- data ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Format:
    """How values are written for one engine's bulk loader."""

    dt: Callable[[datetime | None], Any]
    flag: Callable[[bool | None], Any]


SQLITE_FORMAT = Format(
    dt=lambda v: None if v is None else v.strftime("%Y-%m-%d %H:%M:%S.%f"),
    flag=lambda v: None if v is None else int(v),
)
POSTGRES_FORMAT = Format(dt=lambda v: v, flag=lambda v: v)


def customer_id(i: int) -> str:
    return f"wmBench{i:025d}"


def static_rows(fmt: Format) -> Rows:
    now = fmt.dt(NOW)
    rows: Rows = {name: [] for name in TABLES}
    rows["members"] = [(m, f"经理{m}", fmt.flag(True), now) for m in MANAGERS]
    rows["tag_groups"] = [("etHand", "客户经理标签", 0, fmt.flag(False), now)]
    rows["corp_tags"] = [
        (f"etTag{i}", "etHand", name, i, fmt.flag(False), now) for i, name in enumerate(CORP_TAGS)
    ]
    rnd = random.Random(SEED + 1)
    for g in range(1500):
        chat = f"wrBench{g:06d}"
        rows["groups"].append((chat, f"客户群{g}", rnd.choice(MANAGERS), "active", now))
        if rnd.random() < 0.3:
            rows["group_segments"].append((chat, rnd.choice(SEGMENTS), "rule", "bench", now))
    return rows


def customer_rows(n: int, fmt: Format) -> Iterator[Rows]:
    """Chunks of rows for customers 0..n-1 and everything hanging off them."""
    rnd = random.Random(SEED)
    now = fmt.dt(NOW)
    relation_id = 0
    rows: Rows = {name: [] for name in BIG_TABLES}
    for i in range(n):
        eid = customer_id(i)
        # The loader bypasses the triggers on PostgreSQL, so rows carry what they would set.
        cid = i + 1
        name = rnd.choice(SURNAMES) + "".join(rnd.choices(GIVEN, k=rnd.randint(1, 2)))
        opted_out = rnd.random() < 0.02
        followed = False
        tags: list[tuple[str, str]] = []
        if rnd.random() < 0.95:
            tags += _profile(rnd, i, eid, fmt, rows)
        for k in range(2 if rnd.random() < 0.15 else 1):
            relation_id += 1
            manager = MANAGERS[(i * 7 + k * 131 + rnd.randrange(5)) % len(MANAGERS)]
            state = rnd.choice(list(CHANNELS)) if rnd.random() < 0.6 else None
            added = NOW - timedelta(days=rnd.uniform(0, 1100))
            status = "ended" if rnd.random() < 0.03 else "active"
            followed = followed or status == "active"
            rows["follow_relations"].append(
                (relation_id, eid, cid, manager, state, fmt.dt(added), status, now)
            )
            if state and k == 0:
                tags.append((CHANNELS[state], "channel"))
            if rnd.random() < 0.05:
                rows["follow_tags"].append((relation_id, f"etTag{rnd.randrange(6)}", 1))
        reachable = followed and not opted_out
        row = (eid, cid, name, 1, fmt.flag(opted_out), fmt.flag(reachable), now, now)
        rows["customers"].append(row)
        k = min(len(INTERESTS), int(rnd.expovariate(1 / 2.6)))
        tags += [(t, "keyword") for t in rnd.sample(INTERESTS, k)]
        rows["customer_tags"] += [(eid, cid, t, fam, fam, "bench", now) for t, fam in tags]
        if rnd.random() < 0.25:
            for _ in range(2 if rnd.random() < 0.2 else 1):
                chat = f"wrBench{rnd.randrange(1500):06d}"
                left = fmt.dt(NOW - timedelta(days=3)) if rnd.random() < 0.1 else None
                rows["group_members"].append((chat, eid, 2, left, now))
        if (i + 1) % CHUNK == 0 or i == n - 1:
            # The same customer can draw the same group twice; keep the primary key unique.
            rows["group_members"] = list({(r[0], r[1]): r for r in rows["group_members"]}.values())
            yield rows
            rows = {name: [] for name in BIG_TABLES}


def _profile(
    rnd: random.Random, i: int, eid: str, fmt: Format, rows: Rows
) -> list[tuple[str, str]]:
    aum = round(math.exp(rnd.gauss(10.236, 1.517)), 2)
    tier = next(((code, tag) for floor, code, tag in TIERS if aum >= floor), None)
    payroll = rnd.random() < 0.3
    age = rnd.randint(60, 90) if rnd.random() < 0.22 else rnd.randint(18, 59)
    lifecycle = rnd.choices(*LIFECYCLES)[0]
    products = rnd.sample(PRODUCTS, rnd.randint(0, 3))
    login = NOW - timedelta(days=rnd.uniform(0, 180)) if rnd.random() < 0.8 else None
    opened = date(2026, 11, 23) - timedelta(days=rnd.randint(0, 4000))
    rows["customer_profiles"].append(
        (
            f"K{i:09d}", eid, i + 1, "external_userid", aum, tier[0] if tier else "T0",
            fmt.flag(payroll), age, json.dumps(products, ensure_ascii=False),
            rnd.choice(BRANCHES), rnd.choice(OCCUPATIONS), rnd.choice(DISTRICTS),
            fmt.dt(login), opened, lifecycle, fmt.dt(NOW), fmt.dt(NOW),
        )
    )  # fmt: skip
    tags = [(LIFECYCLE_TAGS[lifecycle], "lifecycle")]
    if tier:
        tags.append((tier[1], "asset"))
    if payroll:
        tags.append(("代发客户", "payroll"))
    if age >= 60:
        tags.append(("老年客户", "senior"))
    return tags


# -- loading ------------------------------------------------------------------------------------


def dataset_ready(db: Database, n: int) -> bool:
    if not db.has_table("bench_meta"):
        return False
    with db.engine.connect() as conn:
        value = conn.execute(text("SELECT value FROM bench_meta WHERE key = 'dataset'")).scalar()
    return value == f"{DATASET_VERSION}:{n}"


def secondary_indexes(db: Database) -> list[tuple[str, str]]:
    """(name, CREATE statement) of the non-unique indexes on the big tables."""
    names = ", ".join(f"'{t}'" for t in BIG_TABLES)
    with db.engine.connect() as conn:
        if db.is_postgres:
            rows = conn.execute(
                text(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN "
                    f"({names}) AND indexdef NOT LIKE 'CREATE UNIQUE%'"
                )
            )
        else:
            rows = conn.execute(
                text(
                    "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT "
                    f"NULL AND tbl_name IN ({names}) AND sql NOT LIKE 'CREATE UNIQUE%'"
                )
            )
        return [(r[0], r[1]) for r in rows]


def rebuild(db: Database, n: int) -> None:
    """Recreate the schema and bulk-load the dataset (indexes built after the data)."""
    started = time.perf_counter()
    with db.engine.begin() as conn:
        if db.is_postgres:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    if not db.is_postgres:
        db.dispose()
        path = Path(db.engine.url.database or "")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    upgrade(db.engine)
    indexes = secondary_indexes(db)
    with db.engine.begin() as conn:
        for name, _sql in indexes:
            conn.execute(text(f'DROP INDEX "{name}"'))
    fmt = POSTGRES_FORMAT if db.is_postgres else SQLITE_FORMAT
    load_rows(db, chain([static_rows(fmt)], customer_rows(n, fmt)), TABLES, _progress)
    with db.engine.begin() as conn:
        for name, sql in indexes:
            print(f"  index {name}", flush=True)
            conn.execute(text(sql))
        conn.execute(text("CREATE TABLE bench_meta (key VARCHAR(32) PRIMARY KEY, value TEXT)"))
        conn.execute(
            text("INSERT INTO bench_meta VALUES ('dataset', :v)"), {"v": f"{DATASET_VERSION}:{n}"}
        )
    analyze(db)
    print(f"  loaded in {time.perf_counter() - started:.0f} s")


def analyze(db: Database) -> None:
    """Give the planner what it has in service. PostgreSQL analyzes by itself
    (autovacuum), so its statistics are refreshed here. SQLite only has statistics when
    someone runs ANALYZE, and the store never does, so the dataset goes without them and
    any left from a hand-run ANALYZE are dropped: with them, SQLite read 390,000 profiles
    through the age index for `not tag("资产5万+") and payroll and age < 40` (1.3 s
    against 0.5 s). (An ANALYZE issued through the store's connections never took effect
    anyway: they begin a transaction even in AUTOCOMMIT mode, and it was rolled back.)"""
    if db.is_postgres:
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    else:
        with db.engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS sqlite_stat1"))


def _progress(rows: Rows) -> None:
    if rows.get("customers"):
        last = rows["customers"][-1][0]
        print(f"\r  loaded up to {last}", end="", flush=True)
    else:
        print("  static tables", flush=True)


# -- measuring ----------------------------------------------------------------------------------


def medians_ms(fns: dict[str, Callable[[], object]], runs: int) -> dict[str, tuple[float, object]]:
    """Median time of each function. Runs are interleaved (a, b, c, a, b, c, …) so that a
    noisy machine's load drifts over all of them alike, after one warm-up run each
    (caches, statement compilation, the planner's statistics)."""
    results = {name: fn() for name, fn in fns.items()}
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            started = time.perf_counter()
            results[name] = fn()
            samples[name].append((time.perf_counter() - started) * 1000)
    return {name: (statistics.median(samples[name]), results[name]) for name in fns}


def hand_sql(db: Database, template: str, select: str) -> str:
    false, true = ("false", "true") if db.is_postgres else ("0", "1")
    return template.format(
        select=select,
        false=false,
        true=true,
        corp_a=_CORP.format(tag="资产50万+", false=false),
        corp_b=_CORP.format(tag="老年客户", false=false),
    )


def scalar(db: Database, sql: str) -> Callable[[], object]:
    # Through the service's own transaction wrapper, so both sides get the same settings.
    return lambda: run_query(db, lambda s: s.execute(text(sql)).scalar_one())


def column(db: Database, sql: str) -> Callable[[], object]:
    return lambda: run_query(db, lambda s: list(s.execute(text(sql)).scalars()))


@dataclass
class EngineResult:
    engine: str
    count: int
    count_ms: float
    ids_ms: float
    hand: dict[str, tuple[float, float]]  # style -> (count ms, ids ms)
    others: list[tuple[str, str, int, float]]

    def best_hand(self) -> tuple[float, float]:
        return min(c for c, _ in self.hand.values()), min(i for _, i in self.hand.values())


def measure(db: Database, label: str, runs: int) -> EngineResult:
    fns: dict[str, Callable[[], object]] = {
        "count": partial(audience.count, db, EXPRESSION),
        "ids": partial(audience.ids, db, EXPRESSION),
    }
    for style, template in HAND.items():
        fns[f"{style} count"] = scalar(db, hand_sql(db, template, "count(*)"))
        fns[f"{style} ids"] = column(db, hand_sql(db, template, "c.external_userid"))
    timed = medians_ms(fns, runs)
    (count_ms, count), (ids_ms, found) = timed["count"], timed["ids"]
    assert isinstance(count, int)
    assert isinstance(found, list)
    assert len(found) == count, (len(found), count)
    hand: dict[str, tuple[float, float]] = {}
    for style in HAND:
        (c_ms, c), (i_ms, rows) = timed[f"{style} count"], timed[f"{style} ids"]
        assert c == count, f"hand-written {style} counted {c}, the compiled query {count}"
        assert isinstance(rows, list)
        assert sorted(rows) == sorted(found)
        hand[style] = (c_ms, i_ms)
    others = []
    timed = medians_ms(
        {source: partial(audience.count, db, source, now=NOW) for source, _ in OTHERS}, runs
    )
    for source, what in OTHERS:
        ms, n = timed[source]
        assert isinstance(n, int)
        others.append((source, what, n, ms))
    return EngineResult(label, count, count_ms, ids_ms, hand, others)


def report(results: list[EngineResult], n: int, runs: int, load: str) -> str:
    styles = " / ".join(HAND)
    lines = [
        f"Audience `{EXPRESSION}` over {n:,} customers; median of {runs} runs (ms); "
        f"1-minute load average {load} on {os.cpu_count()} cores.",
        "",
        f"| engine | audience | count | ids | hand count ({styles}) | hand ids ({styles}) "
        "| ratio count | ratio ids |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        best_count, best_ids = r.best_hand()
        counts = " / ".join(f"{c:.0f}" for c, _ in r.hand.values())
        ids = " / ".join(f"{i:.0f}" for _, i in r.hand.values())
        lines.append(
            f"| {r.engine} | {r.count:,} | {r.count_ms:.0f} | {r.ids_ms:.0f} | {counts} | {ids} "
            f"| {r.count_ms / best_count:.2f} | {r.ids_ms / best_ids:.2f} |"
        )
    lines += ["", "| engine | expression | audience | count ms |", "|---|---|---:|---:|"]
    for r in results:
        for source, what, count, ms in r.others:
            lines.append(f"| {r.engine} | `{source}` ({what}) | {count:,} | {ms:.0f} |")
    lines += [
        "",
        "Ratios divide the compiled query's time (parse, check, compile and run) by the "
        "fastest hand-written style. Targets: count < 200 ms, ids < 1,000 ms, ratio <= 1.5.",
    ]
    return "\n".join(lines)


def migrate(db: Database) -> None:
    """Bring a cached dataset's schema to head (new indexes), refreshing statistics if so."""
    from bot.store.migrate import current_revision, head_revision

    if current_revision(db.engine) == head_revision():
        return
    print("  migrating to head (indexes)", flush=True)
    upgrade(db.engine)
    analyze(db)


def open_database(engine: str, args: argparse.Namespace) -> Database:
    if engine == "sqlite":
        path = Path(args.sqlite)
        path.parent.mkdir(parents=True, exist_ok=True)
        return Database.from_url(f"sqlite:///{path}")
    url = make_url(normalise_url(args.postgres))
    admin = make_engine(
        url.set(database="postgres").render_as_string(hide_password=False),
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as conn:
        exists = conn.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": url.database}
        ).scalar()
        if not exists:
            conn.execute(text(f'CREATE DATABASE "{url.database}"'))
    admin.dispose()
    return Database.from_url(url.render_as_string(hide_password=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--rebuild", action="store_true", help="regenerate the dataset")
    parser.add_argument("--build-only", action="store_true", help="build the dataset and stop")
    parser.add_argument("--sqlite", default=str(DEFAULT_SQLITE))
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    args = parser.parse_args()
    engines = ["sqlite", "postgresql"] if args.engine == "both" else [args.engine]
    results = []
    load_before = os.getloadavg()[0]
    for engine in engines:
        db = open_database(engine, args)
        try:
            if args.rebuild or not dataset_ready(db, args.customers):
                print(f"{engine}: building the dataset ({args.customers:,} customers)")
                rebuild(db, args.customers)
                db.dispose()
            else:
                migrate(db)
            if args.build_only:
                continue
            print(f"{engine}: measuring")
            results.append(measure(db, engine, args.runs))
        finally:
            db.dispose()
    print()
    load = f"{load_before:.1f} → {os.getloadavg()[0]:.1f}"
    print(report(results, args.customers, args.runs, load))


if __name__ == "__main__":
    main()
