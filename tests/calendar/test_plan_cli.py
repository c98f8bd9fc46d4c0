"""`bot plan --date D` previews without writing; `bot report` shows what slot runs did."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from bot.calendar.due import run_due
from bot.cli import app
from bot.clock import FrozenClock
from bot.store.db import Database
from bot.store.migrate import upgrade
from tests.calendar.planner_world import (
    add_branch,
    branch_settings,
    load,
    outbox_rows,
    runs,
    write_branch_files,
)
from tests.calendar.test_planner import TEN

runner = CliRunner()


def setup(tmp_path: Path, clock: FrozenClock) -> tuple[Database, dict[str, str]]:
    write_branch_files(tmp_path)
    (tmp_path / "config.yaml").write_text(
        f"database:\n  url: sqlite:///{tmp_path / 'bot.db'}\n", encoding="utf-8"
    )
    db = Database.from_url(f"sqlite:///{tmp_path / 'bot.db'}")
    upgrade(db.engine)
    add_branch(db, clock.now())
    return db, {"BOT_CONFIG": str(tmp_path / "config.yaml")}


def test_plan_previews_a_day_without_writing(tmp_path: Path, clock: FrozenClock) -> None:
    db, env = setup(tmp_path, clock)
    result = runner.invoke(app, ["plan", "--date", "2026-11-23", "--show", "5"], env=env)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "2026-11-23 周一: 2 slot(s)" in out
    assert "10:00 mon-vip" in out
    # 7 matched; c5 opted out and c6 at the cap are dropped and counted.
    assert "matched 7 customer(s) → 5 in 2 task(s)" in out
    assert "opted_out 1, capped 1" in out
    assert "张经理 (m1)" in out
    assert "李经理 (m2)" in out
    # Customers only masked: the name is 王小明 for everyone here.
    assert "王**#" in out
    assert "王小明" not in out
    assert "10:00 mon-groups" in out
    assert "no_owner 1" in out
    assert "理财交流一群" in out
    # A preview writes nothing.
    assert runs(db) == []
    assert outbox_rows(db) == []
    db.dispose()


def test_plan_rejects_a_bad_date_and_a_broken_calendar(tmp_path: Path, clock: FrozenClock) -> None:
    db, env = setup(tmp_path, clock)
    db.dispose()
    result = runner.invoke(app, ["plan", "--date", "23/11/2026"], env=env)
    assert result.exit_code == 2
    (tmp_path / "schedules" / "branch.yaml").write_text(
        "name: x\nslots:\n  - id: bad\n    days: [mon]\n", encoding="utf-8"
    )
    result = runner.invoke(app, ["plan", "--date", "2026-11-23"], env=env)
    assert result.exit_code == 1
    assert "branch.yaml:3" in result.output


def test_report_shows_each_run_and_what_was_held_back(tmp_path: Path, clock: FrozenClock) -> None:
    db, env = setup(tmp_path, clock)
    settings = branch_settings(tmp_path)
    calendar, content = load(settings)
    late = TEN.replace(hour=11, minute=40)
    run_due(db, calendar, settings=settings, content=content, now=late)
    db.dispose()
    result = runner.invoke(app, ["report", "--from", "2026-11-23", "--to", "2026-11-23"], env=env)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "4 slot run(s)" in out  # two main runs, two deferred parts
    assert "mon-vip (window-1400)" in out
    assert "周一财富早班车" in out


def test_report_rejects_a_bad_date_naming_the_option(tmp_path: Path, clock: FrozenClock) -> None:
    db, env = setup(tmp_path, clock)
    db.dispose()
    result = runner.invoke(app, ["report", "--from", "2026-13-01"], env=env)
    assert result.exit_code == 2
    assert "--from: not a date" in result.output
