"""Targets deferred to a later contact window: held on the part's run, then kept, dropped
or expired when the part comes due."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from alembic import command
from sqlalchemy import select, text, update

from bot.calendar.due import run_due
from bot.clock import FrozenClock
from bot.store.db import Database, make_engine
from bot.store.migrate import alembic_config, upgrade
from bot.store.models import Customer, SlotRun
from tests.calendar.planner_world import (
    SENIOR,
    SHANGHAI,
    add_branch,
    branch_settings,
    held,
    load,
    outbox_rows,
    runs,
    targets,
    write_branch_files,
)
from tests.tagging.rules_world import add_tag

TEN = datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI)
LATE = TEN + timedelta(minutes=100)  # 11:40: the seniors are outside 9-11 until 14:00
AT_TWO = TEN.replace(hour=14, minute=0, second=30)


def planned_late(
    db: Database, clock: FrozenClock, tmp_path: Path, *, seniors: Sequence[str] = ()
) -> Callable[[datetime], Any]:
    """The branch's Monday slots planned at 11:40 (the senior c4, any more `seniors`, and
    the seniors' group g4 deferred to 14:00); runs what is due at a later time."""
    write_branch_files(tmp_path)
    settings = branch_settings(tmp_path)
    calendar, content = load(settings)
    add_branch(db, clock.now())
    with db.session() as s:
        for eid in seniors:
            add_tag(s, eid, SENIOR, "senior", clock.now())
    due = partial(run_due, db, calendar, settings=settings, content=content)
    due(now=LATE)
    return lambda at: due(now=at)


def part_stats(db: Database, slot_id: str) -> tuple[int, int, dict[str, int]]:
    """The 14:00 part's matched, reached and drops (non-zero), as the run records them."""
    query = select(SlotRun.stats).where(SlotRun.slot_id == slot_id, SlotRun.part == "window-1400")
    stats = db.call(lambda s: s.execute(query).scalar_one())
    dropped = {reason: n for reason, n in stats["dropped"].items() if n}
    return stats["matched"], stats["reached"], dropped


def test_a_target_gone_by_its_window_is_dropped_and_written(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    due = planned_late(db, clock, tmp_path, seniors=["c1"])
    assert held(db) == {"c1": "m1", "c4": "m2", "g4": "m1"}
    db.call(
        lambda s: s.execute(
            update(Customer).where(Customer.external_userid == "c4").values(opted_out=True)
        )
    )
    before = len(outbox_rows(db))
    report = due(AT_TWO)
    assert sorted((o.slot_id, o.part, o.reached) for o in report.outcomes) == [
        ("mon-groups", "window-1400", 1),
        ("mon-vip", "window-1400", 1),
    ]
    # Opted out since: not sent, and a row says so; nothing stays held.
    assert part_stats(db, "mon-vip") == (2, 1, {"unreachable": 1})
    assert targets(db)["c4"] == ("m2", "dropped")
    assert held(db) == {}
    sent = [r.payload.get("external_userid") or r.payload["chat_id_list"] for r in outbox_rows(db)]
    assert sorted(sent[before:]) == [["c1"], ["g4"]]


def test_a_part_missed_beyond_its_lateness_writes_its_targets_as_expired(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    due = planned_late(db, clock, tmp_path)
    before = len(outbox_rows(db))
    due(AT_TWO + timedelta(minutes=121))
    assert ("mon-vip", "window-1400", "expired") in runs(db)
    assert (targets(db)["c4"], targets(db)["g4"]) == (("m2", "expired"), ("m1", "expired"))
    assert held(db) == {}
    assert len(outbox_rows(db)) == before


def test_the_migration_moves_deferred_rows_onto_their_runs_and_back(empty_url: str) -> None:
    engine = make_engine(empty_url)
    run = {
        "slot_id": "s",
        "day": date(2026, 11, 23),
        "part": "window-1400",
        "channel": "single",
        "theme": "t",
        "template": "p.md.j2",
        "fire_at": "2026-11-23 06:00:00",
        "status": "pending",
        "stats": "{}",
    }
    try:
        command.upgrade(alembic_config(engine), "0009")
        with engine.begin() as conn:
            run_id = conn.execute(
                text(
                    "INSERT INTO slot_runs (slot_id, day, part, channel, theme, template,"
                    " fire_at, status, stats) VALUES (:slot_id, :day, :part, :channel,"
                    " :theme, :template, :fire_at, :status, :stats) RETURNING id"
                ),
                run,
            ).scalar_one()
            for target, sender, status in (("c1", "m1", "deferred"), ("c2", "m2", "deferred")):
                conn.execute(
                    text(
                        "INSERT INTO slot_targets (run_id, target_id, target_kind, sender,"
                        " status) VALUES (:r, :t, 'customer', :s, :st)"
                    ),
                    {"r": run_id, "t": target, "s": sender, "st": status},
                )
        upgrade(engine)
        with engine.connect() as conn:
            doc = conn.execute(text("SELECT deferred_targets FROM slot_runs")).scalar_one()
            rows = conn.execute(text("SELECT count(*) FROM slot_targets")).scalar_one()
        assert (json.loads(doc) if isinstance(doc, str) else doc) == {"c1": "m1", "c2": "m2"}
        assert rows == 0
        command.downgrade(alembic_config(engine), "0009")
        with engine.connect() as conn:
            back = conn.execute(
                text("SELECT target_id, sender, status, target_kind FROM slot_targets")
            ).all()
        assert sorted(tuple(r) for r in back) == [
            ("c1", "m1", "deferred", "customer"),
            ("c2", "m2", "deferred", "customer"),
        ]
    finally:
        engine.dispose()
