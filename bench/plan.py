"""Planning one day's calendar posts: 10,000 groups and 1,000,000 customers.

The dataset (built once per database and reused; `--rebuild` forces it): 500 managers;
10,000 customer groups, each owned by one of them (1 % without an owner), about a third in
a segment (银发群, 理财交流群, 代发群); 1,000,000 customers, each followed by one manager and
~5 % by a second one, all carrying the rule tag 代发客户, ~15 % also 老年客户 (seniors, held
to their contact windows), ~1 % opted out, ~3 % of customers and 1 % of groups already at
the month's receive cap (receive_counts rows).

The calendar (written to a temporary folder, as the planner tests do) has three Monday
08:30 slots for 2026-11-23: two group posts to every group, one with the same copy for all
of an owner's groups (rendered per sender: one task per owner) and one naming each group
(rendered per group: one task per group), and a 1:1 post to `tag("代发客户")`, its copy
naming the sending manager (rendered per sender). 08:30 is before the seniors' first
window (09:00), so the seniors and the 银发群 groups are deferred to a 09:00 part.

Measured, each in a child process of its own (peak RSS from `resource.getrusage`), after
the run's planning state was deleted (slot runs, targets, outbox rows and receive counts
the previous run wrote): `compute_plan` + `commit_plan` of each slot, the split between
the two, and for the shared-copy group slot and the 1:1 slot a re-run right after (a
second instance or a restart: it must find the run and write nothing).

    .venv/bin/python -m bench.plan [--engines sqlite,postgresql] [--runs 3]
        [--customers 1000000] [--groups 10000] [--rebuild] [--profile] [--docs]
        [--sqlite PATH] [--postgres URL]

`--profile` adds one run of each slot under cProfile per engine (top entries printed, the
full profiles saved under bench/out/); `--docs` writes the report into its section of
docs/benchmarks.md, replacing the whole section (notes added to it by hand included).
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import os
import pstats
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from itertools import chain
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from bench.audience import (
    CUSTOMER_COLUMNS,
    POSTGRES_FORMAT,
    SQLITE_FORMAT,
    Format,
    migrate,
    open_database,
)
from bench.docs_page import DOCS, write_section
from bench.loading import Rows, load_rows
from bot.calendar.content import ContentLibrary
from bot.calendar.occurrences import Occurrence, occurrences_on
from bot.calendar.planner import DROP_REASONS, commit_plan, compute_plan
from bot.calendar.records import task_targets
from bot.calendar.schedule import load_calendar
from bot.config import Settings, build_settings
from bot.store.db import Database
from bot.store.migrate import upgrade
from bot.store.models import OutboxItem, SlotRun

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
SECTION = "## Planning a day (bench/plan.py)"
DEFAULT_SQLITE = OUT / "plan.db"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:54329/bot_bench_plan"
DATASET_VERSION = "plan-v3"
SEED = 20261123
SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 11, 23)  # a Monday, and a workday
NOW = datetime(2026, 11, 23, 8, 30, tzinfo=SHANGHAI)
PART_AT, PART = datetime(2026, 11, 23, 9, 0, 30, tzinfo=SHANGHAI), "window-0900"
# What a measurement does: plan the slot, plan it again, or plan its 09:00 part.
FIRST, RERUN, PART_STEP = "first", "re-run", "part"
PERIOD, CAP = "2026-11", 30  # month_days: November allows 30 mass-sends
MANAGERS = [f"m{i:04d}" for i in range(1, 501)]
CHUNK = 50_000

GROUP_SLOT = "bench-groups"
NAMED_SLOT = "bench-groups-named"
SINGLE_SLOT = "bench-payroll"
SLOTS = (GROUP_SLOT, NAMED_SLOT, SINGLE_SLOT)
PAYROLL, SENIOR = "代发客户", "老年客户"
OTHER_TAGS = ["资产5万+", "资产10万+", "资产50万+", "成熟客户", "成长客户", "兴趣-理财"]
SEGMENTS = [("银发群", 0.10), ("理财交流群", 0.15), ("代发群", 0.10)]
_PLACES = ["城南", "城北", "城东", "城西", "高新", "滨江", "开发区", "大学城", "老城"]
_KINDS = ["理财交流", "社区福利", "代发工资", "银发俱乐部", "亲子", "邻里"]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂"

CALENDAR = f"""\
name: 基准日历
slots:
  - id: {GROUP_SLOT}
    theme: 周一群早报
    days: [mon]
    time: "08:30"
    channel: group
    template: calendar/bench_group.md.j2
  - id: {NAMED_SLOT}
    theme: 周一群早报
    days: [mon]
    time: "08:30"
    channel: group
    template: calendar/bench_group_named.md.j2
  - id: {SINGLE_SLOT}
    theme: 周一工资理财
    days: [mon]
    time: "08:30"
    channel: single
    audience: 'tag("{PAYROLL}")'
    template: calendar/bench_single.md.j2
"""
GROUP_POST = """\
---
title: 群早报
---
各位朋友，{{ date }}{{ weekday }}早上好！
本周主题：{{ theme }}。
本周活动看这里：{{ activity_link }}
有问题随时群里@{{ manager }}。
"""
GROUP_NAMED_POST = """\
---
title: 群早报
---
{{ group_name }}的朋友们，{{ date }}{{ weekday }}早上好！
本周主题：{{ theme }}。
本周活动看这里：{{ activity_link }}
有问题随时群里@{{ manager }}。
"""
SINGLE_POST = """\
---
title: 工资理财小课堂
product: 天天盈现金管理
wealth: true
---
您好，我是{{ branch }}的{{ manager }}。
工资到账后，零钱怎么打理更省心？
可以看看天天盈现金管理：申赎灵活，适合日常备用金。
想设置工资到账自动转入，回复“设置”我来协助。
{% include "calendar/_risk_notice.txt.j2" %}
"""
RISK_NOTICE = "理财非存款，产品有风险，投资须谨慎。\n"

TABLES: dict[str, list[str]] = {
    "members": ["userid", "name", "follow_enabled", "updated_at"],
    "groups": ["chat_id", "name", "owner", "status", "updated_at"],
    "group_segments": ["chat_id", "segment", "source", "reason", "since"],
    "customers": CUSTOMER_COLUMNS,
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
    "receive_counts": ["period", "target_kind", "target_id", "count"],
}
BIG_TABLES = ["customers", "follow_relations", "customer_tags", "receive_counts"]


# -- data ---------------------------------------------------------------------------------------


def customer_id(i: int) -> str:
    return f"wmPlan{i:026d}"


def group_id(g: int) -> str:
    return f"wrPlan{g:026d}"


def static_rows(groups: int, fmt: Format) -> Rows:
    """Managers, groups and their segments, and the groups already at the cap."""
    now = fmt.dt(NOW)
    rows: Rows = {name: [] for name in TABLES}
    rows["members"] = [(m, f"经理{m[1:]}", fmt.flag(True), now) for m in MANAGERS]
    rnd = random.Random(SEED + 1)
    for g in range(groups):
        chat = group_id(g)
        owner = None if rnd.random() < 0.01 else rnd.choice(MANAGERS)
        name = f"{rnd.choice(_PLACES)}{rnd.choice(_KINDS)}{g}群"
        rows["groups"].append((chat, name, owner, "active", now))
        for segment, share in SEGMENTS:
            if rnd.random() < share:
                rows["group_segments"].append((chat, segment, "rule", "bench", now))
        if rnd.random() < 0.01:
            rows["receive_counts"].append((PERIOD, "group", chat, CAP))
    return rows


def customer_rows(n: int, fmt: Format) -> Iterator[Rows]:
    """Chunks of rows for customers 0..n-1, their relations, tags and receive counts."""
    rnd = random.Random(SEED)
    now = fmt.dt(NOW)
    relation_id = 0
    rows: Rows = {name: [] for name in BIG_TABLES}
    for i in range(n):
        eid = customer_id(i)
        name = rnd.choice(SURNAMES) + "".join(rnd.choices(GIVEN, k=rnd.randint(1, 2)))
        # The loader bypasses the triggers on PostgreSQL, so rows carry what they would set
        # (every relation below is active: reachable unless opted out).
        cid = i + 1
        opted_out = rnd.random() < 0.01
        row = (eid, cid, name, 1, fmt.flag(opted_out), fmt.flag(not opted_out), now, now)
        rows["customers"].append(row)
        first = rnd.randrange(len(MANAGERS))
        added = NOW - timedelta(days=rnd.uniform(1, 1100))
        managers = [(MANAGERS[first], added)]
        if rnd.random() < 0.05:
            second = (first + 1 + rnd.randrange(len(MANAGERS) - 1)) % len(MANAGERS)
            managers.append((MANAGERS[second], NOW - timedelta(days=rnd.uniform(1, 1100))))
        for userid, at in managers:
            relation_id += 1
            rows["follow_relations"].append(
                (relation_id, eid, cid, userid, None, fmt.dt(at), "active", now)
            )
        tags = [(PAYROLL, "payroll")]
        if rnd.random() < 0.15:
            tags.append((SENIOR, "senior"))
        tags += [(t, "bench") for t in rnd.sample(OTHER_TAGS, rnd.randint(0, 2))]
        rows["customer_tags"] += [(eid, cid, t, fam, fam, "bench", now) for t, fam in tags]
        if rnd.random() < 0.03:
            rows["receive_counts"].append((PERIOD, "customer", eid, CAP))
        if (i + 1) % CHUNK == 0 or i == n - 1:
            yield rows
            rows = {name: [] for name in BIG_TABLES}


# -- loading ------------------------------------------------------------------------------------


def dataset_key(customers: int, groups: int) -> str:
    return f"{DATASET_VERSION}:{customers}:{groups}"


def dataset_ready(db: Database, key: str) -> bool:
    if not db.has_table("bench_meta"):
        return False
    with db.engine.connect() as conn:
        value = conn.execute(text("SELECT value FROM bench_meta WHERE key = 'dataset'")).scalar()
    return value == key


def secondary_indexes(db: Database) -> list[tuple[str, str]]:
    """(name, CREATE statement) of the non-unique indexes on the big tables."""
    names = ", ".join(f"'{t}'" for t in BIG_TABLES)
    if db.is_postgres:
        sql = (
            f"SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN ({names})"
            " AND indexdef NOT LIKE 'CREATE UNIQUE%'"
        )
    else:
        sql = (
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            f" AND tbl_name IN ({names}) AND sql NOT LIKE 'CREATE UNIQUE%'"
        )
    with db.engine.connect() as conn:
        return [(r[0], r[1]) for r in conn.execute(text(sql))]


def rebuild(db: Database, customers: int, groups: int) -> None:
    """Recreate the schema and bulk-load the dataset (secondary indexes built after it)."""
    started = time.perf_counter()
    if db.is_postgres:
        with db.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    else:
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
    chunks = chain([static_rows(groups, fmt)], customer_rows(customers, fmt))
    load_rows(db, chunks, TABLES, _progress)
    print()
    with db.engine.begin() as conn:
        for name, sql in indexes:
            print(f"  index {name}", flush=True)
            conn.execute(text(sql))
        conn.execute(text("CREATE TABLE bench_meta (key VARCHAR(32) PRIMARY KEY, value TEXT)"))
        conn.execute(
            text("INSERT INTO bench_meta VALUES ('dataset', :v)"),
            {"v": dataset_key(customers, groups)},
        )
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE" if db.is_postgres else "ANALYZE"))
    print(f"  loaded in {time.perf_counter() - started:.0f} s")


def _progress(rows: Rows) -> None:
    if rows.get("customers"):
        print(f"\r  loaded up to {rows['customers'][-1][0]}", end="", flush=True)
    else:
        print(f"  {len(rows['groups']):,} groups, {len(rows['members'])} managers", flush=True)


def reset(db: Database) -> None:
    """Delete what planning the bench slots wrote: the day is unplanned again."""
    runs = "SELECT id FROM slot_runs WHERE day = :day AND slot_id IN (:a, :b, :c)"
    params = {"day": DAY, **dict(zip("abc", SLOTS, strict=True))}
    with db.engine.begin() as conn:
        conn.execute(text(f"DELETE FROM slot_targets WHERE run_id IN ({runs})"), params)
        # The bench's own database: every calendar outbox row is one of the bench's.
        conn.execute(text("DELETE FROM outbox WHERE idempotency_key LIKE 'cal:%'"))
        conn.execute(text(f"DELETE FROM slot_runs WHERE id IN ({runs})"), params)
        # The seeded rows sit at the cap; whatever a run counted is below it.
        conn.execute(
            text("DELETE FROM receive_counts WHERE period = :p AND count < :cap"),
            {"p": PERIOD, "cap": CAP},
        )
    if db.is_postgres:
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE slot_targets, slot_runs, outbox, receive_counts"))
        return
    # Outside any transaction (the engine begins every one IMMEDIATE): fold the deletes
    # into the database file, so each run starts with an empty write-ahead log.
    raw = db.engine.raw_connection()
    try:
        raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        raw.close()


# -- one measurement (in a child process) -------------------------------------------------------


@dataclass(frozen=True)
class Job:
    url: str
    slot_id: str
    step: str  # FIRST, RERUN or PART
    profile: str | None = None  # where to save a cProfile of the planning


@dataclass
class Sample:
    compute_s: float
    commit_s: float
    cpu_s: float  # this process's CPU time over both (on SQLite, the database's too)
    matched: int
    reached: int
    deferred: int
    tasks: int
    senders: int
    dropped: dict[str, int]
    new_outbox: int
    new_targets: int  # slot_targets rows: none (the queued wait in payloads)
    held: int  # targets the deferred part's run holds (bot.calendar.held)
    reserved: int  # targets the new task rows reserve (written when WeCom creates them)
    base_rss_mb: float
    peak_rss_mb: float
    code: str  # code_version() when the measurement started
    profile: str = ""

    @property
    def total_s(self) -> float:
        return self.compute_s + self.commit_s


def bench_calendar(root: Path, slot_id: str) -> tuple[Settings, Occurrence, ContentLibrary]:
    schedules, posts = root / "schedules", root / "content" / "calendar"
    schedules.mkdir(parents=True)
    posts.mkdir(parents=True)
    (schedules / "bench.yaml").write_text(CALENDAR, encoding="utf-8")
    (posts / "bench_group.md.j2").write_text(GROUP_POST, encoding="utf-8")
    (posts / "bench_group_named.md.j2").write_text(GROUP_NAMED_POST, encoding="utf-8")
    (posts / "bench_single.md.j2").write_text(SINGLE_POST, encoding="utf-8")
    (posts / "_risk_notice.txt.j2").write_text(RISK_NOTICE, encoding="utf-8")
    settings = build_settings({}, {}, base_dir=root)
    calendar = load_calendar(
        settings.schedules_dir(),
        settings.content_dir(),
        lateness_minutes=settings.calendar.lateness_minutes,
    )
    occ = next(o for o in occurrences_on(calendar, DAY, SHANGHAI) if o.slot_id == slot_id)
    return settings, occ, ContentLibrary(settings.content_dir())


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _counts(db: Database) -> tuple[int, int]:
    def read(session: Session) -> tuple[int, int]:
        outbox = session.execute(text("SELECT count(*) FROM outbox")).scalar_one()
        targets = session.execute(text("SELECT count(*) FROM slot_targets")).scalar_one()
        return int(outbox), int(targets)

    return db.call(read)


def _reserved(db: Database, after_id: int) -> int:
    """Targets reserved in the task rows written after outbox row `after_id`."""
    query = select(OutboxItem.payload).where(OutboxItem.id > after_id)
    return db.call(lambda s: sum(len(task_targets(p)) for p in s.execute(query).scalars()))


def _held(db: Database, slot_id: str) -> int:
    """Targets held by the slot's deferred parts today."""
    query = select(SlotRun.deferred_targets).where(
        SlotRun.slot_id == slot_id, SlotRun.day == DAY, SlotRun.deferred_targets.is_not(None)
    )
    return db.call(lambda s: sum(len(doc or {}) for doc in s.execute(query).scalars()))


def _part_run(db: Database, slot_id: str) -> int:
    """The id of the slot's pending 09:00 part (its first plan must have run)."""
    query = select(SlotRun.id).where(
        SlotRun.slot_id == slot_id, SlotRun.day == DAY, SlotRun.part == PART
    )
    return int(db.call(lambda s: s.execute(query).scalar_one()))


def _last_outbox_id(db: Database) -> int:
    return int(db.call(lambda s: s.execute(select(func.max(OutboxItem.id))).scalar() or 0))


def measure(job: Job) -> Sample:
    """Plan (and commit) one slot; check what was written."""
    slot_id, code = job.slot_id, code_version()
    with tempfile.TemporaryDirectory() as folder:
        settings, occ, content = bench_calendar(Path(folder), slot_id)
        db = Database.from_url(job.url)
        try:
            db.call(lambda s: s.execute(text("SELECT 1")).scalar_one())
            outbox_before, targets_before = _counts(db)
            last_outbox = _last_outbox_id(db)
            base_rss = _rss_mb()
            profiler = cProfile.Profile() if job.profile else None
            if profiler:
                profiler.enable()
            part_run = _part_run(db, slot_id) if job.step == PART_STEP else None
            at = PART_AT if part_run else NOW
            started, cpu = time.perf_counter(), time.process_time()
            if part_run:
                plan = compute_plan(
                    db, occ, settings=settings, content=content, at=at, part=PART, run_id=part_run
                )
            else:
                plan = compute_plan(db, occ, settings=settings, content=content)
            computed = time.perf_counter()
            run_id = commit_plan(db, plan, settings=settings, now=at)
            committed, cpu = time.perf_counter(), time.process_time() - cpu
            if profiler:
                profiler.disable()
            peak_rss = _peak_rss_mb()
            outbox_after, targets_after = _counts(db)
            reserved = _reserved(db, last_outbox)
            held = _held(db, slot_id)
        finally:
            db.dispose()
    assert plan.error is None, plan.error
    deferred = sum(len(t) for t in plan.deferred.values())
    sample = Sample(
        compute_s=computed - started,
        commit_s=committed - computed,
        cpu_s=cpu,
        matched=plan.matched,
        reached=plan.reached,
        deferred=deferred,
        tasks=len(plan.tasks),
        senders=len({t.sender for t in plan.tasks}),
        dropped={reason: plan.dropped[reason] for reason in DROP_REASONS},
        new_outbox=outbox_after - outbox_before,
        new_targets=targets_after - targets_before,
        held=held,
        reserved=reserved,
        base_rss_mb=base_rss,
        peak_rss_mb=peak_rss,
        code=code,
    )
    assert plan.matched == plan.reached + deferred + sum(plan.dropped.values()), sample
    if job.step == PART_STEP:
        # The deferred targets, re-checked: kept ones reserved in the part's tasks, the
        # others written as dropped rows; nothing stays held.
        assert run_id == part_run, f"{slot_id}'s part was planned already: reset failed"
        assert sample.new_outbox == sample.tasks, sample
        assert sample.reserved == sample.reached, sample
        assert sample.new_targets == sum(plan.dropped.values()), sample
        assert (sample.deferred, sample.held) == (0, 0), sample
    elif job.step == RERUN:
        # Planned already: everything is "already", and nothing new is written.
        assert run_id is None, f"re-run of {slot_id} claimed a new run {run_id}"
        assert (sample.reached, sample.deferred) == (0, 0), sample
        assert (sample.new_outbox, sample.new_targets, sample.reserved) == (0, 0, 0), sample
    else:
        assert run_id is not None, f"{slot_id} was planned already: reset failed"
        assert plan.dropped["already"] == 0, sample
        assert sample.new_outbox == sample.tasks, sample
        assert (sample.new_targets, sample.held) == (0, deferred), sample
        assert sample.reserved == sample.reached, sample
    if profiler and job.profile:
        profiler.dump_stats(job.profile)
        sample.profile = _profile_text(profiler)
    return sample


def _profile_text(profiler: cProfile.Profile) -> str:
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.strip_dirs().sort_stats("cumulative").print_stats(30)
    stats.sort_stats("tottime").print_stats(15)
    return out.getvalue()


def run_child(job: Job) -> Sample:
    """`measure` in a fresh interpreter, so each peak RSS is that measurement's alone."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.plan", "--child", json.dumps(asdict(job))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"measurement of {job.slot_id} ({job.step}) failed")
    return Sample(**json.loads(done.stdout.strip().splitlines()[-1]))


# -- reporting ----------------------------------------------------------------------------------

CASES = [  # (label, slot, step, time target in seconds), in this order
    ("groups", GROUP_SLOT, FIRST, 2.0),
    ("groups re-run", GROUP_SLOT, RERUN, None),
    ("groups, copy per group", NAMED_SLOT, FIRST, 2.0),
    ("1:1", SINGLE_SLOT, FIRST, 10.0),
    ("1:1 re-run", SINGLE_SLOT, RERUN, None),
    ("1:1, 09:00 part", SINGLE_SLOT, PART_STEP, None),
]
RSS_TARGET_MB = 500.0


@dataclass
class EngineResult:
    engine: str
    samples: dict[str, list[Sample]] = field(default_factory=dict)

    def median(self, key: str, attr: str) -> float:
        return statistics.median(float(getattr(s, attr)) for s in self.samples[key])


def _fmt_s(seconds: float) -> str:
    return f"{seconds:.2f}" if seconds < 10 else f"{seconds:.1f}"


# What planning runs through: a digest of these tells which version a table measured.
PLANNING_CODE = ["calendar", "outbox", "tagging", "store", "templates.py", "privacy.py"]


def code_version() -> str:
    """A digest of the planning code (PLANNING_CODE under bot/)."""
    digest = hashlib.sha256()
    paths = [p for name in PLANNING_CODE for p in (ROOT / "bot" / name).rglob("*.py")]
    paths += [ROOT / "bot" / name for name in PLANNING_CODE if name.endswith(".py")]
    for path in sorted(paths):
        digest.update(path.relative_to(ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def report(results: list[EngineResult], args: argparse.Namespace, load: str) -> str:
    runs = args.runs
    versions = sorted({s.code for r in results for ss in r.samples.values() for s in ss})
    code = f"planning code {versions[0]}"
    if len(versions) > 1:
        code = f"**the planning code changed during the run ({', '.join(versions)})**"
    lines = [
        _wrap(
            f"{args.groups:,} groups and {args.customers:,} customers (500 managers); median "
            f"of {runs} run{'s' if runs != 1 else ''}, each measurement in a fresh process; "
            f"1-minute load average {load} on {os.cpu_count()} cores (noisy); {code}."
        ),
        "",
        "| engine | slot | compute s | commit s | total s | target | × target | CPU s "
        "| peak RSS MB | × 500 MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        for key, _case, _step, target in CASES:
            compute, commit = r.median(key, "compute_s"), r.median(key, "commit_s")
            total, cpu = r.median(key, "total_s"), r.median(key, "cpu_s")
            peak = r.median(key, "peak_rss_mb")
            goal = f"< {target:.0f} s" if target else "—"
            ratio = f"{total / target:.2f}" if target else "—"
            lines.append(
                f"| {r.engine} | {key} | {_fmt_s(compute)} | {_fmt_s(commit)} | "
                f"{_fmt_s(total)} | {goal} | {ratio} | {_fmt_s(cpu)} | {peak:.0f} | "
                f"{peak / RSS_TARGET_MB:.2f} |"
            )
    lines += [
        "",
        "| engine | slot | matched | queued | deferred (09:00) | tasks | senders | dropped "
        "| new outbox rows | reserved in them | new target rows | held for 09:00 "
        "| RSS before planning MB |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        for key, *_ in CASES:
            s = r.samples[key][-1]
            dropped = ", ".join(f"{k} {v:,}" for k, v in s.dropped.items() if v) or "—"
            lines.append(
                f"| {r.engine} | {key} | {s.matched:,} | {s.reached:,} | {s.deferred:,} | "
                f"{s.tasks:,} | {s.senders:,} | {dropped} | {s.new_outbox:,} | "
                f"{s.reserved:,} | {s.new_targets:,} | {s.held:,} | "
                f"{r.median(key, 'base_rss_mb'):.0f} |"
            )
    spread = [
        f"{r.engine} {key}: "
        + " / ".join(_fmt_s(s.total_s) for s in r.samples[key])
        + f" s, peak {max(s.peak_rss_mb for s in r.samples[key]):.0f} MB"
        for r in results
        for key, *_ in CASES
    ]
    lines += ["", _wrap("Every run (total s): " + "; ".join(spread) + ".")]
    return "\n".join(lines)


def _wrap(paragraph: str, indent: str = "") -> str:
    """Prose at the page's width (tables stay on one line each)."""
    return textwrap.fill(paragraph, width=92, subsequent_indent=indent, break_on_hyphens=False)


def write_docs(body: str) -> None:
    """Add or replace this benchmark's section of docs/benchmarks.md."""
    write_section(SECTION, body)


def docs_body(table: str, results: list[EngineResult]) -> str:
    """The section: what was measured, the table, and the targets met or not."""
    verdicts = []
    for key, _case, _step, target in CASES:
        if target is None:
            continue
        parts = []
        for r in results:
            total = r.median(key, "total_s")
            met = "met" if total < target else "**not met**"
            parts.append(f"{r.engine} {_fmt_s(total)} s ({total / target:.2f}×, {met})")
        verdicts.append(f"- {key} under {target:.0f} s: " + "; ".join(parts) + ".")
    peaks = []
    for r in results:
        worst = max(s.peak_rss_mb for ss in r.samples.values() for s in ss)
        met = "met" if worst < RSS_TARGET_MB else "**not met**"
        peaks.append(f"{r.engine} {worst:.0f} MB ({worst / RSS_TARGET_MB:.2f}×, {met})")
    verdicts.append("- Peak RSS under 500 MB (worst measurement): " + "; ".join(peaks) + ".")
    reruns = ", ".join(
        f"{r.engine} {key}: {sum(s.new_outbox for s in r.samples[key])} outbox rows"
        for r in results
        for key, _c, step, _t in CASES
        if step == RERUN
    )
    verdicts.append(f"- Re-runs wrote nothing ({reruns}).")
    intro = (
        "Two Monday 08:30 group slots to every active group, one with the same copy for all "
        "of an owner's groups (one task per owner), one whose copy names the group (rendered "
        "per group, hence one task per group), and a 1:1 slot to "
        '`tag("代发客户")`, a tag every customer holds (copy naming the sending manager, one '
        "task per manager). 08:30 is before the seniors' 09:00 window, so seniors and 银发群 "
        "groups are deferred to a 09:00 part. Each measurement is `compute_plan` + "
        "`commit_plan` in a fresh process (peak RSS from `getrusage`); each run starts from "
        "an unplanned day, the re-run plans the same slot again right after it, and the "
        "1:1 slot's 09:00 part is then planned at 09:00:30 (the seniors it holds, re-checked "
        'and sent). "held for 09:00" counts what the slot\'s pending part holds after each '
        "measurement. The "
        "machine: 2 cores, noisy (other work running), so medians and ratios matter more "
        "than absolutes."
    )
    return "\n".join([_wrap(intro), "", table, "", *(_wrap(v, "  ") for v in verdicts)])


# -- main ---------------------------------------------------------------------------------------


def bench_engine(engine: str, args: argparse.Namespace) -> EngineResult | None:
    db = open_database(engine, args)
    try:
        key = dataset_key(args.customers, args.groups)
        if args.rebuild or not dataset_ready(db, key):
            print(f"{engine}: building the dataset ({args.customers:,} customers)", flush=True)
            rebuild(db, args.customers, args.groups)
            db.dispose()
        else:
            migrate(db)
        if args.build_only:
            return None
        url = db.engine.url.render_as_string(hide_password=False)
        result = EngineResult("SQLite" if engine == "sqlite" else "PostgreSQL")
        for run in range(1, args.runs + 1):
            reset(db)
            for label, slot_id, step, _target in CASES:
                sample = run_child(Job(url, slot_id, step))
                result.samples.setdefault(label, []).append(sample)
                print(
                    f"{engine} run {run} {label:<22} compute {sample.compute_s:6.2f} s  "
                    f"commit {sample.commit_s:6.2f} s  CPU {sample.cpu_s:6.2f} s  "
                    f"peak {sample.peak_rss_mb:5.0f} MB  code {sample.code}  "
                    f"{sample.reached:,} queued in {sample.tasks} tasks, "
                    f"{sample.deferred:,} deferred",
                    flush=True,
                )
        if args.profile:
            reset(db)
            for label, slot_id, step, _target in CASES:
                if step == RERUN:
                    continue
                path = OUT / f"plan-{engine}-{slot_id}-{step}.prof"
                sample = run_child(Job(url, slot_id, step, profile=str(path)))
                print(f"\n{engine} {label} under cProfile ({sample.total_s:.1f} s), in {path}")
                print(sample.profile)
        return result
    finally:
        db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--rebuild", action="store_true", help="regenerate the dataset")
    parser.add_argument("--build-only", action="store_true", help="build the dataset and stop")
    parser.add_argument("--profile", action="store_true", help="profile the 1:1 slot once")
    parser.add_argument("--docs", action="store_true", help=f"write {DOCS.name}'s section")
    parser.add_argument("--sqlite", default=str(DEFAULT_SQLITE))
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sample = measure(Job(**json.loads(args.child)))
        print(json.dumps(asdict(sample)))
        return
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    for engine in engines:
        if engine not in ("sqlite", "postgresql"):
            parser.error(f"unknown engine {engine!r}: sqlite or postgresql")
    OUT.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    results = [r for e in engines if (r := bench_engine(e, args)) is not None]
    if not results:
        return
    load = f"{load_before:.1f} → {os.getloadavg()[0]:.1f}"
    table = report(results, args, load)
    print()
    print(table)
    if args.docs:
        write_docs(docs_body(table, results))
        print(f"\nwrote the section {SECTION!r} of {DOCS}")


if __name__ == "__main__":
    main()
