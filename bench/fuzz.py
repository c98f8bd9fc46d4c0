"""The fuzz properties of tests/fuzz, run for minutes instead of seconds.

Each target (the callback endpoint, the audience language, calendar files and posts, the
bank import) gets an equal share of the time and is run in rounds of fresh random examples
until its share is used; every example goes through the same check as in the test suite,
with the same per-input time bound. A failure is shrunk by hypothesis, printed, and the run
goes on with the next target; the exit status is 1 if any target failed.

Database-bound targets run on a fresh SQLite file each, and also on PostgreSQL with
--postgres (a database of this run's own is created there and dropped at the end).

    .venv/bin/python -m bench.fuzz [--minutes 5] [--targets gateway-sealed,import]
                                   [--postgres postgresql://postgres@127.0.0.1:54329/]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bot.clock import SHANGHAI, FrozenClock
from bot.store.db import Database, make_engine, normalise_url
from bot.store.migrate import upgrade
from bot.store.models import Base
from tests.fuzz.audience_cases import AudienceHarness, check_source, sources, trees
from tests.fuzz.calendar_cases import CalendarHarness, post_cases, schedule_cases
from tests.fuzz.gateway_harness import (
    CallbackHarness,
    random_deliveries,
    replays,
    sealed_strategy,
)
from tests.fuzz.import_cases import ImportHarness, import_cases
from tests.tagging.audience_data import WORLD, worlds

START = datetime(2026, 11, 23, 9, 0, tzinfo=SHANGHAI)
# A round is sized to last about this long, so the time shares are kept to within a round.
ROUND_SECONDS = 15.0


@dataclass(frozen=True)
class Target:
    """A property: its inputs, and a context giving the check for one database (or none)."""

    name: str
    strategy: Callable[[Any], st.SearchStrategy[Any]]
    open: Callable[[Database | None], AbstractContextManager[Any]]
    check: Callable[[Any, Any], str]
    needs_db: bool


def _check(harness: Any, case: Any) -> str:
    return str(harness.check(case))


def _nothing(db: Database | None) -> AbstractContextManager[None]:
    return nullcontext()


def _gateway(db: Database | None) -> AbstractContextManager[CallbackHarness]:
    assert db is not None
    return CallbackHarness(db, FrozenClock(START))


@contextmanager
def _world(db: Database | None) -> Iterator[AudienceHarness]:
    assert db is not None
    yield AudienceHarness(db, WORLD)


@contextmanager
def _database(db: Database | None) -> Iterator[Database]:
    assert db is not None
    yield db


def _random_worlds(db: Database, case: tuple[Any, list[Any]]) -> str:
    world, expressions = case
    harness = AudienceHarness(db, world)
    return ",".join(sorted({harness.check_tree(tree) for tree in expressions}))


def _importer(db: Database | None) -> AbstractContextManager[ImportHarness]:
    assert db is not None
    return ImportHarness(db, START)


TARGETS = [
    Target("gateway-random", lambda h: random_deliveries(), _gateway, _check, True),
    Target("gateway-sealed", sealed_strategy, _gateway, _check, True),
    Target(
        "gateway-replay",
        lambda h: replays(h.tolerance),
        _gateway,
        lambda h, c: h.check_replay(c),
        True,
    ),
    Target("audience-text", lambda h: sources, _nothing, lambda h, c: check_source(c), False),
    Target("audience-trees", lambda h: trees, _world, lambda h, c: h.check_tree(c), True),
    Target(
        "audience-worlds",
        lambda h: st.tuples(worlds(), st.lists(trees, min_size=1, max_size=4)),
        _database,
        _random_worlds,
        True,
    ),
    Target(
        "calendar-files",
        lambda h: schedule_cases(),
        lambda db: CalendarHarness(),
        lambda h, c: h.check_schedule(c),
        False,
    ),
    Target(
        "calendar-posts",
        lambda h: post_cases(),
        lambda db: CalendarHarness(),
        lambda h, c: h.check_post(c),
        False,
    ),
    Target("import", lambda h: import_cases(), _importer, _check, True),
]  # fmt: skip


# -- databases ------------------------------------------------------------------------------


class Databases:
    """A fresh, migrated database per target run: SQLite files copied from one migrated
    template, and (with --postgres) one PostgreSQL database truncated between targets."""

    def __init__(self, folder: Path, postgres: str | None) -> None:
        self.folder = folder
        self.template = folder / "template.db"
        engine = make_engine(f"sqlite:///{self.template}")
        upgrade(engine)
        engine.dispose()
        self.admin_url = postgres
        self.postgres_url: str | None = None
        self.count = 0
        if postgres:
            name = f"bot_fuzz_{os.getpid()}"
            admin = make_engine(postgres, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            admin.dispose()
            self.postgres_url = (
                make_url(normalise_url(postgres))
                .set(database=name)
                .render_as_string(hide_password=False)
            )
            engine = make_engine(self.postgres_url)
            upgrade(engine)
            engine.dispose()

    def engines(self) -> list[str]:
        return ["sqlite", "postgresql"] if self.postgres_url else ["sqlite"]

    @contextmanager
    def fresh(self, engine: str) -> Iterator[Database]:
        if engine == "sqlite":
            self.count += 1
            path = self.folder / f"run{self.count}.db"
            shutil.copy(self.template, path)
            db = Database.from_url(f"sqlite:///{path}")
        else:
            assert self.postgres_url is not None
            db = Database.from_url(self.postgres_url)
            names = ", ".join(t.name for t in reversed(Base.metadata.sorted_tables))
            with db.engine.begin() as conn:
                conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        try:
            yield db
        finally:
            db.dispose()

    def close(self) -> None:
        if self.admin_url and self.postgres_url:
            name = make_url(self.postgres_url).database
            admin = make_engine(self.admin_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


# -- running --------------------------------------------------------------------------------


@dataclass
class Outcome:
    label: str
    examples: int
    seconds: float
    counts: Counter[str]
    failure: str | None


def run_target(target: Target, harness: Any, budget: float, seed: int | None) -> Outcome:
    """Rounds of fresh examples until `budget` seconds are used, or the first failure."""
    strategy = target.strategy(harness)
    counts: Counter[str] = Counter()
    started = time.perf_counter()
    size, rounds = 20, 0
    while time.perf_counter() - started < budget:
        before, round_started = sum(counts.values()), time.perf_counter()

        @settings(
            max_examples=size,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def prop(case: Any) -> None:
            counts[target.check(harness, case)] += 1

        if seed is not None:
            prop = hypothesis_seed(seed + rounds)(prop)
        try:
            prop()
        except Exception:
            return Outcome(
                target.name,
                sum(counts.values()),
                time.perf_counter() - started,
                counts,
                traceback.format_exc(limit=-8),
            )
        rounds += 1
        done = sum(counts.values()) - before
        rate = done / max(time.perf_counter() - round_started, 1e-3)
        left = budget - (time.perf_counter() - started)
        size = max(5, min(int(rate * min(ROUND_SECONDS, left)), 5000))
    return Outcome(target.name, sum(counts.values()), time.perf_counter() - started, counts, None)


def report(outcome: Outcome) -> None:
    rate = outcome.examples / max(outcome.seconds, 1e-3)
    top = ", ".join(f"{label} {n}" for label, n in outcome.counts.most_common(6))
    more = len(outcome.counts) - 6
    tail = f" (+{more} more kinds)" if more > 0 else ""
    status = "FAILED" if outcome.failure else "ok"
    print(
        f"{outcome.label:<28} {outcome.examples:7,} examples {outcome.seconds:7.1f} s "
        f"{rate:7.1f}/s  {status}\n    {top}{tail}",
        flush=True,
    )
    if outcome.failure:
        print(outcome.failure, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="total time (default 5)")
    parser.add_argument(
        "--targets", help="comma-separated; default all: " + ", ".join(t.name for t in TARGETS)
    )
    parser.add_argument("--postgres", help="server URL: also run database targets there")
    parser.add_argument("--seed", type=int, help="reproduce a run (rounds use seed, seed+1, …)")
    args = parser.parse_args()
    # Every refused input is logged by the code under test; millions of lines say nothing.
    logging.disable(logging.CRITICAL)
    chosen = TARGETS
    if args.targets:
        wanted = set(args.targets.split(","))
        unknown = wanted - {t.name for t in TARGETS}
        if unknown:
            parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
        chosen = [t for t in TARGETS if t.name in wanted]
    with tempfile.TemporaryDirectory(prefix="bot-fuzz-") as folder:
        databases = Databases(Path(folder), args.postgres)
        runs = [
            (target, engine)
            for target in chosen
            for engine in (databases.engines() if target.needs_db else [None])
        ]
        budget = args.minutes * 60 / len(runs)
        print(f"{len(runs)} runs, {budget:.0f} s each", flush=True)
        failed = False
        total = 0
        try:
            for target, engine in runs:
                label = f"{target.name}[{engine}]" if engine else target.name
                database = databases.fresh(engine) if engine else nullcontext(None)
                with database as db, target.open(db) as harness:
                    outcome = run_target(target, harness, budget, args.seed)
                outcome.label = label
                report(outcome)
                failed |= outcome.failure is not None
                total += outcome.examples
        finally:
            databases.close()
    print(f"{total:,} examples in all; {'FAILURES' if failed else 'no failures'}")
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
