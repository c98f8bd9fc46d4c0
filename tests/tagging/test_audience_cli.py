"""`bot audience "EXPR"` as an operator uses it: output, masking and exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from bot.privacy import hash_id
from bot.store.db import Database
from bot.store.migrate import upgrade
from tests.tagging.audience_data import WORLD, load

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A migrated SQLite database holding the hand-made world."""
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    db = Database.from_url(url)
    upgrade(db.engine)
    load(db, WORLD)
    db.dispose()
    return {"BOT_DATABASE__URL": url, "COLUMNS": "150"}


def run(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["audience", *args, "--config", str(ROOT / "config.yaml")], env=env)
    return result.exit_code, result.output


def test_prints_count_per_manager_and_a_masked_sample(env: dict[str, str]) -> None:
    code, out = run(env, 'tag("资产50万+")', "--sample", "5")
    assert code == 0, out
    assert "audience: 2 customers" in out
    assert 'tag("资产50万+")' in out
    assert "per manager" in out
    assert "m1" in out
    assert "m2" in out
    assert hash_id("rich") in out
    assert hash_id("senior") in out
    assert "张*" in out
    # Neither full names nor raw ids ever reach the screen.
    assert "张三" not in out
    assert "rich" not in out.replace(hash_id("rich"), "")


def test_time_terms_use_at(env: dict[str, str]) -> None:
    code, out = run(env, "login_within(2)", "--at", "2026-11-23T09:00:00")
    assert code == 0, out
    assert "audience: 1 customer\n" in out


def test_sample_zero_prints_no_sample(env: dict[str, str]) -> None:
    code, out = run(env, "not opted_out", "--sample", "0")
    assert code == 0, out
    assert "audience: 4 customers" in out
    assert "sample" not in out


def test_sql_flag_shows_the_compiled_query(env: dict[str, str]) -> None:
    code, out = run(env, 'aum >= 100000 or tag("A")', "--sql", "--sample", "0")
    assert code == 0, out
    assert "FROM customer_profiles" in out
    assert "FROM customer_tags" in out
    assert "UNION" in out


@pytest.mark.parametrize(
    ("expression", "column", "caret"),
    [
        ('tag("a") and agee > 5', 14, "               ^^^^"),
        ('tag("资产) or payroll', 5, "      ^"),
        ("aum >= 5 )", 10, "           ^"),
    ],
)
def test_expression_errors_show_the_column_and_exit_2(
    env: dict[str, str], expression: str, column: int, caret: str
) -> None:
    code, out = run(env, expression)
    assert code == 2
    lines = out.splitlines()
    assert lines[0].startswith(f"expression error at column {column}: ")
    assert lines[1] == f"  {expression}"
    assert lines[2] == caret


def test_an_unmigrated_database_exits_2(tmp_path: Path) -> None:
    env = {"BOT_DATABASE__URL": f"sqlite:///{tmp_path / 'empty.db'}"}
    code, out = run(env, "payroll")
    assert code == 2
    assert "bot db upgrade" in out
