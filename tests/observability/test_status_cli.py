"""`bot status` on a migrated database with queued work, as text and as JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from bot.clock import FrozenClock
from bot.observability.status_cli import duration
from bot.store.db import Database
from tests.observability.conftest import preserved_logging, seed_operations

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    with preserved_logging():
        yield


def run_status(db: Database, *args: str) -> str:
    env = {"BOT_DATABASE__URL": db.engine.url.render_as_string(hide_password=False)}
    result = runner.invoke(
        app,
        ["status", "--config", str(ROOT / "config.yaml"), "--at", "2026-11-23T09:00:00", *args],
        env=env,
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_duration_shows_the_two_largest_units() -> None:
    assert duration(None) == "-"
    assert duration(0) == "0s"
    assert duration(90) == "1m 30s"
    assert duration(5400) == "1h 30m"
    assert duration(90061) == "1d 1h"
    assert duration(-30) == "-30s"


def test_status_json_has_the_figures(db: Database, clock: FrozenClock) -> None:
    seeded = seed_operations(db, clock.now())
    output = run_status(db, "--json")
    assert seeded.external_userid not in output
    assert seeded.token not in output
    status = json.loads(output)
    assert status["now"] == "2026-11-23T09:00:00+08:00"
    assert status["outbox"] == {
        "mark_tag": {"open": 2, "oldest_age_seconds": 90.0},
        "welcome_msg": {"open": 1, "oldest_age_seconds": 30.0},
    }
    inbox = status["inbox"]
    assert inbox["backlog"] == 2
    assert inbox["by_status"] == {"done": 1, "failed": 1, "pending": 2}
    assert inbox["oldest_pending_age_seconds"] == 300.0
    assert inbox["last_received_at"] == "2026-11-23T08:59:00+08:00"
    assert [(c["event_type"], c["status"]) for c in inbox["recent"]] == [
        ("event/change_external_contact/edit_external_contact", "pending"),
        ("event/change_external_contact/add_external_contact", "pending"),
        ("event/change_external_chat/update", "done"),
        ("event/change_external_contact/transfer_fail", "failed"),
    ]
    assert {"received_at", "event_type", "status", "attempts"} == set(inbox["recent"][0])
    tasks = status["mass_tasks"]
    assert tasks["today"] == {"created": 3, "confirmed": 1}
    assert tasks["total"] == {"created": 4, "confirmed": 2}
    assert tasks["by_status"] == {"confirmed": 1, "created": 2, "final": 1}
    assert status["slot_runs_today"] == {"expired": 1, "planned": 1}
    [token] = status["tokens"]
    assert token["expires_at"] == "2026-11-23T10:30:00+08:00"
    assert token["expires_in_seconds"] == 5400.0


def test_status_text_shows_tables(db: Database, clock: FrozenClock) -> None:
    seeded = seed_operations(db, clock.now())
    output = run_status(db)
    assert seeded.external_userid not in output
    assert seeded.token not in output
    lines = output.splitlines()

    def row(first: str) -> list[str]:
        found = [line.split() for line in lines if line.split()[:1] == [first]]
        assert len(found) == 1, (first, output)
        return found[0]

    assert "status at 2026-11-23T09:00:00+08:00" in output
    assert row("mark_tag") == ["mark_tag", "2", "1m", "30s"]
    assert row("welcome_msg") == ["welcome_msg", "1", "30s"]
    assert row("pending") == ["pending", "2"]
    assert row("backlog") == ["backlog", "2"]
    assert "oldest unprocessed" in output
    assert row("created") == ["created", "3", "4"]
    assert row("confirmed") == ["confirmed", "1", "2"]
    assert row("planned") == ["planned", "1"]
    assert row("expired") == ["expired", "1"]
    recent = [line.split() for line in lines if line.startswith("11-23 ")]
    assert [r[1:] for r in recent] == [
        ["08:59:00", "change_external_contact/edit_external_contact", "pending", "0"],
        ["08:55:00", "change_external_contact/add_external_contact", "pending", "0"],
        ["08:40:00", "change_external_chat/update", "done", "0"],
        ["08:30:00", "change_external_contact/transfer_fail", "failed", "0"],
    ]
    assert "10:30:00" in output
    assert "1h 30m" in output


def test_status_on_an_empty_database(db: Database) -> None:
    status = json.loads(run_status(db, "--json"))
    assert status["outbox"] == {}
    assert status["inbox"]["backlog"] == 0
    assert status["inbox"]["last_received_at"] is None
    assert status["tokens"] == []
    text = run_status(db)
    assert "(none yet)" in text
    assert "(none cached)" in text


def test_status_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    env = {"BOT_DATABASE__URL": f"sqlite:///{tmp_path / 'fresh.db'}"}
    result = runner.invoke(app, ["status", "--config", str(ROOT / "config.yaml")], env=env)
    assert result.exit_code == 2
    assert "bot db upgrade" in result.output
