"""`bot import-customers` at scale: a 1,000,000-row bank export on SQLite and PostgreSQL.

The generated export has every configured column with Chinese text; about a third of the
rows carry the external_userid of a customer in the mirror, about a tenth match a remark
mobile on an active follow relation (written with +86, spaces or dashes), a few mobiles are
shared by two customers, one customer in a thousand matched by id has been forgotten
(`bot forget`: their rows store nothing), and the rest match nobody.

Three imports per run, each in a child process of its own, which reports its peak RSS and
CPU time and those of the parsing process it starts for large files (getrusage, self and
children), with the load average over the import:

- first: every row is a new profile;
- daily: the next day's export, where 10 % of the rows have a new AUM or last login;
- same: the daily export imported again a day later (unchanged but for the ages of the
  customers whose birthday it is).

    .venv/bin/python -m bench.import [--rows 1000000] [--runs 3] [--engines sqlite,postgresql]
        [--postgres-url postgresql://postgres@127.0.0.1:54329/postgres] [--workdir DIR]

The files and the SQLite database go to DIR (default: $TMPDIR/bot-bench-import); the
PostgreSQL database `bot_bench_import` is dropped and created afresh.

Target: under 2 minutes and under 500 MB per import.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, text
from sqlalchemy.engine import make_url

from bot.clock import SHANGHAI
from bot.config import build_settings
from bot.store.db import Database, make_engine, normalise_url
from bot.store.migrate import upgrade
from bot.store.models import AttributeChange, Customer, CustomerProfile, FollowRelation, ImportRun

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 23, 6, 0, tzinfo=SHANGHAI)
HEADER = [
    "客户号",
    "企业微信客户ID",
    "手机号",
    "AUM",
    "代发标志",
    "出生日期",
    "年龄",
    "持有产品",
    "网点",
    "职业",
    "兴趣爱好",
    "商圈",
    "最近手机银行登录",
    "开户日期",
]
BRANCHES = [
    f"{name}支行"
    for name in ("南京西路", "陆家嘴", "徐家汇", "五角场", "虹桥", "张江", "静安寺", "人民广场")
]
OCCUPATIONS = [
    "教师",
    "医生",
    "公务员",
    "个体工商户",
    "企业职员",
    "退休",
    "自由职业",
    "工程师",
    "学生",
    "",
]
INTERESTS = ["书法", "太极", "广场舞", "摄影", "旅游", "理财讲座", "亲子", "美食", "钓鱼", "跑步"]
DISTRICTS = ["静安寺", "陆家嘴", "徐家汇", "五角场", "中山公园", "南京东路", "张江高科", ""]
PRODUCTS = ["活期宝", "定期存款", "理财A", "理财B", "基金定投", "国债", "保险", "贵金属", "信用卡"]
MOBILE_FORMS = ("{m}", "+86 {m}", "{a}-{b}-{c}", "86{m}", "{a} {b} {c}")


@dataclass
class Measure:
    engine: str
    phase: str
    seconds: float
    importer_mb: float
    parser_mb: float
    importer_cpu: float
    parser_cpu: float
    load: float
    report: dict[str, Any]


def mobile(i: int) -> str:
    return f"1{3 + i % 7}{i:09d}"[:11]


def styled(number: str, rng: random.Random) -> str:
    form = rng.choice(MOBILE_FORMS)
    return form.format(m=number, a=number[:3], b=number[3:7], c=number[7:])


def world_size(rows: int) -> tuple[int, int]:
    """Customers matched by id, customers matched by mobile."""
    return rows // 3, rows // 10


FORGOTTEN_EVERY = 1000  # of the customers matched by id


def generate(path: Path, rows: int, *, daily: bool, seed: int = 7) -> None:
    """The bank's export; the daily one differs in 10 % of the rows."""
    rng = random.Random(seed)
    change = random.Random(seed + 1)
    by_id, by_mobile = world_size(rows)
    start = date(1940, 1, 1)
    with path.open("w", encoding="utf-8", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(HEADER)
        for i in range(rows):
            aum = round(rng.lognormvariate(10, 1.6), 2)
            login = NOW - timedelta(minutes=rng.randrange(0, 60 * 24 * 200))
            if daily and change.random() < 0.1:
                if change.random() < 0.5:
                    aum = round(aum * change.uniform(0.8, 1.3), 2)
                else:
                    login = NOW - timedelta(minutes=change.randrange(0, 600))
            if i < by_id:
                external_userid, phone = f"wm{i:012d}", ""
            elif i < by_id + by_mobile:
                external_userid, phone = "", styled(mobile(i), rng)
            else:
                external_userid, phone = "", styled(mobile(i), rng) if rng.random() < 0.7 else ""
            birth = start + timedelta(days=rng.randrange(0, 365 * 65))
            out.writerow(
                [
                    f"C{i:010d}",
                    external_userid,
                    phone,
                    f"{aum:,.2f}" if rng.random() < 0.5 else f"{aum:.2f}",
                    rng.choice("YN"),
                    birth.isoformat() if rng.random() < 0.8 else "",
                    "" if rng.random() < 0.8 else str(rng.randrange(18, 90)),
                    "|".join(rng.sample(PRODUCTS, rng.randrange(0, 4))),
                    rng.choice(BRANCHES),
                    rng.choice(OCCUPATIONS),
                    "、".join(rng.sample(INTERESTS, rng.randrange(0, 3))),
                    rng.choice(DISTRICTS),
                    login.strftime("%Y-%m-%d %H:%M:%S"),
                    (date(1995, 1, 1) + timedelta(days=rng.randrange(0, 11_000))).isoformat(),
                ]
            )


def prepare(db: Database, rows: int) -> None:
    """Migrate, and fill the mirror with the customers and relations the export matches."""
    upgrade(db.engine)
    by_id, by_mobile = world_size(rows)
    rng = random.Random(11)
    with db.engine.begin() as conn:
        for table in (AttributeChange, CustomerProfile, ImportRun, FollowRelation, Customer):
            conn.execute(delete(table))
        batch: list[dict[str, Any]] = []
        relations: list[dict[str, Any]] = []
        for i in range(by_id + by_mobile):
            eid = f"wm{i:012d}"
            forgotten = NOW if i < by_id and i % FORGOTTEN_EVERY == 0 else None
            batch.append(
                {
                    "external_userid": eid,
                    "forgotten_at": forgotten,
                    "created_at": NOW,
                    "updated_at": NOW,
                }
            )
            mobiles = [styled(mobile(i), rng)] if i >= by_id else []
            if i >= by_id and i % 500 == 0:
                mobiles.append(styled(mobile(i + 1), rng))  # a number shared by two customers
            relations.append(
                {
                    "external_userid": eid,
                    "userid": f"manager{i % 25}",
                    "remark_mobiles": mobiles,
                    "status": "active",
                    "updated_at": NOW,
                }
            )
            if len(batch) >= 20_000:
                conn.execute(insert(Customer), batch)
                conn.execute(insert(FollowRelation), relations)
                batch, relations = [], []
        if batch:
            conn.execute(insert(Customer), batch)
            conn.execute(insert(FollowRelation), relations)


def reset_profiles(db: Database) -> None:
    with db.engine.begin() as conn:
        for table in (AttributeChange, CustomerProfile, ImportRun):
            conn.execute(delete(table))
    if db.dialect == "sqlite":
        # The engine opens a transaction on every connection; VACUUM needs none.
        database = db.engine.url.database
        assert database is not None
        raw = sqlite3.connect(database, isolation_level=None)
        raw.execute("VACUUM")
        raw.close()
    else:
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))


def child(url: str, file: str, now: str) -> None:
    """Run one import; print its time, counts and peak RSS (its own, its parser's) as JSON."""
    from bot.tagging.importer import import_customers

    db = Database.from_url(url)
    settings = build_settings(None, {})
    started = time.perf_counter()
    report = import_customers(
        db, Path(file), settings=settings, now=datetime.fromisoformat(now), max_reject_ratio=0.01
    )
    seconds = time.perf_counter() - started
    counts = {
        name: getattr(report, name)
        for name in (
            "rows",
            "inserted",
            "updated",
            "unchanged",
            "matched_by_id",
            "matched_by_mobile",
            "kept_match",
            "ambiguous",
            "conflicts",
            "unmatched",
            "forgotten",
            "rejected",
            "history_rows",
            "aum_history_expired",
        )
    }
    counts["changed_ids"] = len(report.changed_external_userids)
    counts["status"] = report.status
    # Linux reports ru_maxrss in KiB; the parsing process (if any) is this one's child.
    me = resource.getrusage(resource.RUSAGE_SELF)
    parser = resource.getrusage(resource.RUSAGE_CHILDREN)
    rss = {"importer_mb": me.ru_maxrss / 1024, "parser_mb": parser.ru_maxrss / 1024}
    cpu = {
        "importer": me.ru_utime + me.ru_stime,
        "parser": parser.ru_utime + parser.ru_stime,
    }
    print(json.dumps({"seconds": seconds, "report": counts, "rss": rss, "cpu": cpu}))
    db.dispose()


def measure(engine: str, phase: str, url: str, file: Path, now: datetime) -> Measure:
    args = [sys.executable, "-m", "bench.import", "--child", url, str(file), now.isoformat()]
    done = subprocess.run(args, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{engine} {phase}: import failed ({done.returncode})")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    rss, cpu = result["rss"], result["cpu"]
    return Measure(
        engine,
        phase,
        result["seconds"],
        rss["importer_mb"],
        rss["parser_mb"],
        cpu["importer"],
        cpu["parser"],
        # The 1-minute load average at the end: the machine is shared.
        os.getloadavg()[0],
        result["report"],
    )


def postgres_database(admin_url: str, name: str) -> str:
    admin = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return (
        make_url(normalise_url(admin_url)).set(database=name).render_as_string(hide_password=False)
    )


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(*sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "BOT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:54329/postgres"
        ),
    )
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "bot-bench-import"
    )
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    first = args.workdir / f"bank-{args.rows}.csv"
    daily = args.workdir / f"bank-{args.rows}-daily.csv"
    for path, is_daily in ((first, False), (daily, True)):
        if not path.exists():
            started = time.perf_counter()
            generate(path, args.rows, daily=is_daily)
            print(f"generated {path.name}: {path.stat().st_size / 1e6:.0f} MB in "
                  f"{time.perf_counter() - started:.1f} s", flush=True)  # fmt: skip
    results: list[Measure] = []
    for engine in args.engines.split(","):
        if engine == "sqlite":
            db_path = args.workdir / "bench.db"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db_path}{suffix}").unlink(missing_ok=True)
            url = f"sqlite:///{db_path}"
        else:
            url = postgres_database(args.postgres_url, "bot_bench_import")
        db = Database.from_url(url)
        prepare(db, args.rows)
        for run in range(args.runs):
            reset_profiles(db)
            for phase, path, now in (
                ("first", first, NOW),
                ("daily", daily, NOW + timedelta(days=1)),
                ("same", daily, NOW + timedelta(days=2)),
            ):
                m = measure(engine, phase, url, path, now)
                results.append(m)
                print(f"{engine} run {run + 1} {phase}: {m.seconds:.1f} s, importer "
                      f"{m.importer_mb:.0f} MB + parser {m.parser_mb:.0f} MB, CPU "
                      f"{m.importer_cpu:.0f} + {m.parser_cpu:.0f} s, load {m.load:.1f}, "
                      f"{json.dumps(m.report, ensure_ascii=False)}", flush=True)  # fmt: skip
        db.dispose()
    print_table(results, args.rows)


def print_table(results: list[Measure], rows: int) -> None:
    groups: dict[tuple[str, str], list[Measure]] = {}
    for m in results:
        groups.setdefault((m.engine, m.phase), []).append(m)
    runs = max(len(group) for group in groups.values())
    print(f"\n{rows:,}-row export, median of {runs} run(s)\n")
    print(
        "| engine | import | wall time (s) | rows/s | CPU importer + parser (s) "
        "| peak RSS importer + parser (MB) | load avg | inserted | updated | unchanged "
        "| history rows |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (engine, phase), group in groups.items():
        seconds = statistics.median(m.seconds for m in group)
        cpu = statistics.median(m.importer_cpu for m in group)
        parse_cpu = statistics.median(m.parser_cpu for m in group)
        importer = statistics.median(m.importer_mb for m in group)
        parser = statistics.median(m.parser_mb for m in group)
        loads = [m.load for m in group]
        r = group[-1].report
        print(
            f"| {engine} | {phase} | {seconds:.1f} | {rows / seconds:,.0f} | "
            f"{cpu:.0f} + {parse_cpu:.0f} | "
            f"{importer:.0f} + {parser:.0f} = {importer + parser:.0f} | "
            f"{min(loads):.1f}–{max(loads):.1f} | {r['inserted']:,} | "
            f"{r['updated']:,} | {r['unchanged']:,} | {r['history_rows']:,} |"
        )
    sample = results[0].report
    print(
        f"\nmatching (first import): by id {sample['matched_by_id']:,}, by mobile "
        f"{sample['matched_by_mobile']:,}, ambiguous {sample['ambiguous']:,}, "
        f"unmatched {sample['unmatched']:,}, forgotten {sample['forgotten']:,}"
    )


if __name__ == "__main__":
    main()
