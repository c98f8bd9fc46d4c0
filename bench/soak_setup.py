"""Setting up the soak: the sandbox branch, a PostgreSQL database with its mirror, the
queued 100,000-customer tag sync, and the calendar of the day.

The mirror is filled the way an operator fills it: `bot sync` against the sandbox, then
`bot import-customers` of the bank export the sandbox wrote (which retags everyone) and
`bot segments`. At 100,000 customers that takes a quarter of an hour, so the result is
kept as a template database (`<name>_mirror`) and copied for later runs: a sandbox started
with the same seed builds the same branch (same ids), so the copy matches it. The template
is rebuilt when the branch's size or seed, or the schema head, differs (or `--rebuild`).
`bot tag-sync` always runs against the fresh sandbox: it creates the bot's tag groups
there and queues one mark_tag row per relation whose rule tags WeCom lacks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from bench.callbacks import bot_env
from bot.store.db import normalise_url
from bot.store.migrate import head_revision
from tests.crash.procs import ROOT, Processes
from tests.crash.sandbox import SandboxServer, ready, start_sandbox

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:54329/bot_bench_soak"
DEFAULT_CALENDAR = ROOT / "schedules" / "default.yaml"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MIRROR_VERSION = "soak-mirror-v1"


@dataclass(frozen=True)
class Branch:
    """The sandbox branch: its size and the seed that makes it the same every time."""

    customers: int
    managers: int
    groups: int
    seed: int

    def key(self) -> str:
        return (
            f"{MIRROR_VERSION}:{self.customers}:{self.managers}:{self.groups}:{self.seed}:"
            f"{head_revision()}"
        )


@dataclass
class Prepared:
    """What setup produced: the sandbox, the database, and how long each step took."""

    sandbox: SandboxServer
    url: str
    steps: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    mirror_reused: bool = False


# The sandbox's branch already has tag groups named 资产等级 and 生命周期, made by "another
# app", which the bot may not edit: its own groups for those families get other names.
# Every family is named, so the run does not depend on the shipped defaults.
TAG_GROUP_NAMES = {
    "asset": "资产等级（规则）",
    "payroll": "代发",
    "senior": "年龄",
    "lifecycle": "生命周期（规则）",
    "channel": "来源渠道",
    "keyword": "兴趣标签",
}


def bot_command_env(
    url: str, api_port: int, *, log_level: str, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """bench.callbacks' environment (credentials, config.yaml) aimed at the sandbox, with
    the database and product defaults otherwise, and buckets shared in the database."""
    env = bot_env(url)
    env.update(
        {
            "BOT_WECOM__API_BASE": f"http://127.0.0.1:{api_port}/cgi-bin",
            "BOT_LOG_LEVEL": log_level,
            "BOT_WECOM__SHARED_RATE_LIMITS": "on",
        }
    )
    env.update({f"BOT_TAG_SYNC__GROUP_NAMES__{k.upper()}": v for k, v in TAG_GROUP_NAMES.items()})
    env.update(extra or {})
    return env


# -- databases ----------------------------------------------------------------------------------


def _admin_engine(url: str) -> Engine:
    admin = make_url(normalise_url(url)).set(database="postgres")
    return create_engine(
        admin.render_as_string(hide_password=False),
        isolation_level="AUTOCOMMIT",
        poolclass=NullPool,
    )


def _url_of(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def recreate_database(url: str, *, template: str | None = None) -> None:
    """Drop the database `url` names (closing its connections) and create it again."""
    name = make_url(url).database
    clause = f' TEMPLATE "{template}"' if template else ""
    engine = _admin_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"{clause}'))
    finally:
        engine.dispose()


def _stored_key(url: str) -> str | None:
    engine = _admin_engine(url)
    try:
        with engine.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"),
                {"n": make_url(url).database},
            ).scalar()
    finally:
        engine.dispose()
    if not exists:
        return None
    engine = create_engine(normalise_url(url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            present = conn.execute(text("SELECT to_regclass('bench_meta')")).scalar()
            if present is None:
                return None
            value = conn.execute(text("SELECT value FROM bench_meta WHERE key = 'mirror'")).scalar()
            return None if value is None else str(value)
    finally:
        engine.dispose()


def _store_key(url: str, key: str) -> None:
    engine = create_engine(normalise_url(url), poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE bench_meta (key VARCHAR(32) PRIMARY KEY, value TEXT)"))
            conn.execute(text("INSERT INTO bench_meta VALUES ('mirror', :v)"), {"v": key})
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    finally:
        engine.dispose()


# -- setup --------------------------------------------------------------------------------------


def _timed(steps: dict[str, float], name: str, work: Callable[[], Any]) -> Any:
    started = time.monotonic()
    print(f"setup: {name} …", flush=True)
    result = work()
    steps[name] = time.monotonic() - started
    print(f"setup: {name} done in {steps[name]:.0f} s", flush=True)
    return result


def _last_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def prepare(
    procs: Processes,
    branch: Branch,
    url: str,
    workdir: Path,
    *,
    log_level: str,
    rebuild: bool,
) -> Prepared:
    """Start the sandbox; give `url` a mirror of its branch and queue the tag sync."""
    steps: dict[str, float] = {}
    bank = workdir / "bank.csv"
    sandbox = start_sandbox(
        procs,
        managers=branch.managers,
        customers=branch.customers,
        groups=branch.groups,
        seed=branch.seed,
        bank_file=bank,
        wait=False,
    )
    prepared = Prepared(sandbox, url, steps)
    mirror_url = _url_of(url, f"{make_url(url).database}_mirror")
    key = branch.key()
    prepared.mirror_reused = not rebuild and _stored_key(mirror_url) == key
    if not prepared.mirror_reused:
        _timed(steps, "sandbox branch", lambda: ready(sandbox))
        env = bot_command_env(
            mirror_url,
            sandbox.port,
            log_level=log_level,
            # The sandbox lists a member's relations by scanning all of them, so one member
            # per batch/get_by_user page keeps the sync linear in the branch's size.
            extra={"BOT_SYNC__BATCH_USERIDS": "1"},
        )
        recreate_database(mirror_url)
        procs.run_bot("migrate-mirror", ["db", "upgrade"], env, timeout=300)
        out = _timed(steps, "bot sync", lambda: procs.run_bot("sync", ["sync"], env, timeout=3600))
        prepared.notes["sync"] = _last_line(out)
        out = _timed(
            steps,
            "bot import-customers",
            lambda: procs.run_bot("import", ["import-customers", str(bank)], env, timeout=3600),
        )
        prepared.notes["import"] = _last_line(out)
        _timed(
            steps,
            "bot segments",
            lambda: procs.run_bot("segments", ["segments"], env, timeout=1800),
        )
        _store_key(mirror_url, key)
    _timed(
        steps,
        "copy the mirror",
        lambda: recreate_database(url, template=str(make_url(mirror_url).database)),
    )
    env = bot_command_env(url, sandbox.port, log_level=log_level)
    procs.run_bot("migrate", ["db", "upgrade"], env, timeout=300)
    if prepared.mirror_reused:
        _timed(steps, "sandbox branch", lambda: ready(sandbox))
    out = _timed(
        steps, "bot tag-sync", lambda: procs.run_bot("tag-sync", ["tag-sync"], env, timeout=3600)
    )
    prepared.notes["tag-sync"] = _last_line(out)
    return prepared


# -- the calendar of the day --------------------------------------------------------------------


@dataclass(frozen=True)
class SlotTime:
    slot_id: str
    channel: str
    fire_at: datetime


def soak_calendar(
    folder: Path, *, first: datetime, spread_minutes: int, source: Path = DEFAULT_CALENDAR
) -> list[SlotTime]:
    """Write every regular slot of `source` into `folder`/soak.yaml, moved to today.

    Slot i of n fires at `first` + (i × spread_minutes // n) minutes, on that time's own
    weekday (so no other day's occurrence falls in the planner's look-back); everything
    else — channel, audience, groups, template, attachments, priority, holiday policy,
    contact-window policy — is the default calendar's. Overrides (dated campaigns) are
    left out."""
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    slots: list[dict[str, Any]] = list(data["slots"])
    times: list[SlotTime] = []
    for index, slot in enumerate(slots):
        fire = first + timedelta(minutes=index * spread_minutes // max(len(slots), 1))
        slot["days"] = [WEEKDAYS[fire.weekday()]]
        slot["time"] = f"{fire:%H:%M}"
        times.append(SlotTime(str(slot["id"]), str(slot["channel"]), fire))
    folder.mkdir(parents=True, exist_ok=True)
    document = {"name": f"{data['name']}（压测）", "slots": slots}
    (folder / "soak.yaml").write_text(
        yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8"
    )
    return times


__all__ = [
    "DEFAULT_POSTGRES",
    "Branch",
    "Prepared",
    "SlotTime",
    "bot_command_env",
    "prepare",
    "recreate_database",
    "soak_calendar",
]
