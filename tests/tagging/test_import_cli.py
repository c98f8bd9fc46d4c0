"""`bot import-customers` as an operator runs it: output, exit codes, re-tagging hand-off."""

from __future__ import annotations

import importlib
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

import bot.clock
from bot.cli import app
from bot.clock import FrozenClock
from bot.store.db import Database
from bot.store.migrate import upgrade
from bot.store.models import CustomerTag
from bot.tagging.import_cli import RETAG_PROVIDERS
from tests.tagging.import_world import HEADER, add_world, profiles, sample_rows, snapshot, write_csv

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    db = Database.from_url(url)
    upgrade(db.engine)
    add_world(db, clock.now())
    db.dispose()
    # The command reads the wall clock through SystemClock; here it reads the frozen one.
    monkeypatch.setattr(bot.clock, "SystemClock", lambda tz: FrozenClock(clock.now(), tz))
    return {"BOT_DATABASE__URL": url}


def invoke(env: dict[str, str], *args: str) -> Any:
    return runner.invoke(
        app, ["import-customers", "--config", str(ROOT / "config.yaml"), *args], env=env
    )


def database(env: dict[str, str]) -> Database:
    return Database.from_url(env["BOT_DATABASE__URL"])


def without_retag(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if the tag rules offered no incremental run."""
    for module in RETAG_PROVIDERS:
        monkeypatch.delattr(importlib.import_module(module), "retag_customers", raising=False)


def test_import_prints_counts_and_masked_samples_only(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    without_retag(monkeypatch)
    path = write_csv(tmp_path / "bank.csv", sample_rows())
    result = invoke(env, str(path))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "imported bank.csv (run 1)" in out
    assert "matched by mobile" in out
    assert "139****2222" in out
    assert "C0*03" in out
    for secret in ("13900002222", "139 0000 2222", "13900003333", "张三", "C0003"):
        assert secret not in out
    assert "run `bot retag`" in out  # no retag_customers to call
    db = database(env)
    assert len(profiles(db)) == 5
    db.dispose()


def test_changed_customers_are_handed_to_the_tag_rules(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bot.tagging.engine as engine

    calls: list[tuple[set[str], datetime]] = []

    def retag_customers(db: Database, ids: set[str], *, settings: Any, now: datetime) -> None:
        calls.append((set(ids), now))

    monkeypatch.setattr(engine, "retag_customers", retag_customers)
    path = write_csv(tmp_path / "bank.csv", sample_rows())
    result = invoke(env, str(path))
    assert result.exit_code == 0, result.output
    assert [ids for ids, _ in calls] == [{"wm_alice", "wm_bob", "wm_erin"}]
    assert "re-tagged 3 changed customer(s)" in result.output
    calls.clear()
    assert invoke(env, str(path)).exit_code == 0
    assert calls == []  # nothing changed, nothing to re-tag


def test_an_import_leaves_the_changed_customers_tagged(env: dict[str, str], tmp_path: Path) -> None:
    path = write_csv(tmp_path / "bank.csv", sample_rows())
    result = invoke(env, str(path))
    assert result.exit_code == 0, result.output
    assert "re-tagged 3 changed customer(s)" in result.output
    db = database(env)
    with db.session() as s:
        tags = set(
            s.scalars(select(CustomerTag.tag).where(CustomerTag.external_userid == "wm_alice"))
        )
    db.dispose()
    # 1,234,567.89 yuan, payroll, 66 years old (the rules' own tests cover the thresholds).
    assert {"资产50万+", "代发客户", "老年客户"} <= tags


def test_too_many_bad_rows_exit_1_and_write_nothing(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    without_retag(monkeypatch)
    rows = sample_rows()
    rows[1][3] = "lots"
    path = write_csv(tmp_path / "bank.csv", rows)
    db = database(env)
    before = snapshot(db)
    result = invoke(env, str(path))
    assert result.exit_code == 1
    assert "refused" in result.output
    assert "1 of 5 rows (20.00%) were rejected" in result.output
    assert "line 2: AUM: not an amount: 'lots'" in result.output
    assert snapshot(db) == before
    assert (tmp_path / "bank.csv.rejects.csv").exists()
    result = invoke(env, str(path), "--max-reject-ratio", "0.2")
    assert result.exit_code == 0, result.output
    assert len(profiles(db)) == 4
    db.dispose()


def test_a_structural_problem_exits_2(env: dict[str, str], tmp_path: Path) -> None:
    path = write_csv(tmp_path / "bank.csv", [["客户编号", "AUM"], ["C1", "5"]])
    result = invoke(env, str(path))
    assert result.exit_code == 2
    assert "cannot import" in result.output
    assert "nothing was written" in result.output


def test_dry_run_writes_nothing_but_the_reject_file(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    without_retag(monkeypatch)
    rows = [*sample_rows(), ["C0001", *[""] * (len(HEADER) - 1)]]
    path = write_csv(tmp_path / "bank.csv", rows)
    rejects = tmp_path / "checked.csv"
    db = database(env)
    before = snapshot(db)
    result = invoke(
        env, str(path), "--dry-run", "--reject-file", str(rejects), "--max-reject-ratio", "0.5"
    )
    assert result.exit_code == 0, result.output
    assert "dry run of bank.csv: nothing written" in result.output
    assert "bot retag" not in result.output
    assert snapshot(db) == before
    assert "duplicate customer key, first on line 2" in rejects.read_text(encoding="utf-8-sig")
    db.dispose()


def test_an_unmigrated_database_is_refused(tmp_path: Path) -> None:
    env = {"BOT_DATABASE__URL": f"sqlite:///{tmp_path / 'empty.db'}"}
    path = write_csv(tmp_path / "bank.csv", sample_rows())
    result = invoke(env, str(path))
    assert result.exit_code == 2
    assert "bot db upgrade" in result.output
