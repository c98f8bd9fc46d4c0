"""`bot demo` end to end on a small branch: the mirror, tagging, and a week of the calendar."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy import select

from bot.demo import DemoRun, run_demo
from bot.store.db import Database
from bot.store.models import MassTask, SlotRun, SlotTarget


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoRun, str, Path]:
    folder = tmp_path_factory.mktemp("demo")
    out = io.StringIO()
    console = Console(file=out, width=160, force_terminal=False)
    run = run_demo_sync(folder, console)
    return run, out.getvalue(), folder


def run_demo_sync(folder: Path, console: Console) -> DemoRun:
    import asyncio

    return asyncio.run(
        run_demo(customers=80, managers=3, groups=8, folder=folder, seed=11, console=console)
    )


def test_the_week_runs_every_day_and_reports(demo: tuple[DemoRun, str, Path]) -> None:
    run, output, folder = demo
    db = Database.from_url(f"sqlite:///{folder / 'bot.db'}")
    try:
        runs = db.call(lambda s: s.execute(select(SlotRun.day, SlotRun.status)).all())
        week = {day for day, status in runs if status == "planned"}
        # Every day of the simulated week has at least one planned slot.
        assert len({d.weekday() for d in week}) == 7
        tasks = db.call(lambda s: list(s.scalars(select(MassTask)).all()))
        msgids = {t.msgid for t in tasks if t.chat_type != "moment"}
        world = run.sandbox.world
        # Every WeCom task the sandbox holds is one the bot recorded, and the reverse.
        assert msgids == set(world.tasks)
        # No customer or group got two tasks for the same slot run.
        per_target = Counter(
            (run_id, target)
            for run_id, target in db.call(
                lambda s: s.execute(select(SlotTarget.run_id, SlotTarget.target_id)).all()
            )
        )
        assert max(per_target.values()) == 1
        recipients = Counter(
            (msgid, r.target) for msgid, task in world.tasks.items() for r in task.recipients
        )
        assert max(recipients.values()) == 1
        # Reminders stayed within WeCom's 3 per 24 h, and no other limit was breached.
        assert world.breaches() == []
        assert sum(len(t.reminders) for t in world.tasks.values()) > 0
        assert any(t.confirmed_at is not None for t in tasks)
    finally:
        db.dispose()
    assert "Per theme" in output
    assert "周一财富早班车" in output


def test_the_report_shows_cap_drops_and_deferrals(demo: tuple[DemoRun, str, Path]) -> None:
    _run, output, folder = demo
    db = Database.from_url(f"sqlite:///{folder / 'bot.db'}")
    try:
        stats = db.call(lambda s: list(s.scalars(select(SlotRun.stats)).all()))
    finally:
        db.dispose()
    capped = sum((st.get("dropped") or {}).get("capped", 0) for st in stats)
    deferred = sum(sum((st.get("deferred") or {}).values()) for st in stats)
    assert capped > 0
    assert deferred > 0
    assert "the planner skips and reports them" in output
