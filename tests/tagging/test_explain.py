"""`bot retag`, `bot explain` and `bot segments` as an operator runs them."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from bot.cli import app
from bot.store.db import Database
from bot.store.migrate import upgrade
from tests.tagging.rules_world import (
    add_aum_change,
    add_customer,
    add_group,
    add_member,
    add_profile,
    add_relation,
)

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "config.yaml")
runner = CliRunner()
T0 = datetime(2026, 9, 1, 2, 0, tzinfo=UTC)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    db = Database.from_url(url)
    upgrade(db.engine)

    def seed(s: Session) -> None:
        add_customer(s, "wm1", T0, name="张三丰")
        add_profile(
            s,
            "C1",
            "wm1",
            T0,
            aum=523_000,
            payroll=True,
            birth_date=date(1950, 1, 1),
            opened_at=date(2015, 1, 1),
        )
        add_aum_change(s, "C1", None, 480_000, T0)
        add_aum_change(s, "C1", 480_000, 523_000, datetime(2026, 10, 15, 2, 0, tzinfo=UTC))
        add_relation(
            s, "wm1", "li", T0, state="qr_lobby", remark="张三丰 老板 13812345678", added_at=T0
        )
        add_group(s, "wr1", "XX公司代发群", T0, owner="li")
        add_member(s, "wr1", "wm1", T0)
        add_profile(s, "C2", None, T0, aum=80_000, opened_at=date(2020, 1, 1))

    db.call(seed)
    db.dispose()
    return {"BOT_DATABASE__URL": url}


def invoke(env: dict[str, str], *args: str) -> str:
    result = runner.invoke(app, [*args, "--config", CONFIG], env=env)
    assert result.exit_code == 0, result.output
    return result.output


def test_retag_then_explain_shows_reasons_history_and_segments(env: dict[str, str]) -> None:
    retagged = invoke(env, "retag")
    assert "1 customer(s) evaluated, 1 with changed tags" in retagged
    assert "资产50万+" in retagged
    listed = invoke(env, "segments")
    assert "代发工资群 (1 group(s))" in listed
    assert "XX公司代发群 (wr1) rule: name 「XX公司代发群」 contains 「代发」" in listed

    shown = invoke(env, "explain", "wm1")
    assert "customer 张** (wm1, bank key C1)" in shown
    assert "张三丰" not in shown
    assert "13812345678" not in shown
    assert "  资产50万+  [asset, asset_tier:T3]  since " in shown
    assert "      AUM 523,000 ≥ 500,000 (资产50万+)" in shown
    assert "      代发 (payroll) flag set in bank data" in shown
    assert "(from birth date) ≥ 60 (老年客户)" in shown
    assert "      came through channel State qr_lobby (manager li on 2026-09-01)" in shown
    assert "      「老板」 in manager li's remark" in shown
    # Tier codes over time, never the balances: the raw AUM history feeds the trend only.
    assert "asset tier and lifecycle history:" in shown
    assert "asset_tier  - → T3" in shown
    assert "480,000" not in shown
    assert (
        "  XX公司代发群 (wr1): 代发工资群 (rule: name 「XX公司代发群」 contains 「代发」)" in shown
    )


def test_explain_by_bank_customer_key_and_an_unmatched_profile(env: dict[str, str]) -> None:
    invoke(env, "retag", "--customer", "C1")
    by_key = invoke(env, "explain", "C1")
    assert "customer 张** (wm1, bank key C1)" in by_key
    assert "AUM 523,000 ≥ 500,000 (资产50万+)" in by_key
    unmatched = invoke(env, "explain", "C2")
    assert "(not matched to a WeCom customer, bank key C2)" in unmatched
    assert "tags: none (run `bot retag`)" in unmatched


def test_unknown_customer_is_a_clear_error(env: dict[str, str]) -> None:
    result = runner.invoke(app, ["explain", "nobody", "--config", CONFIG], env=env)
    assert result.exit_code == 1
    assert "no customer or bank customer key 'nobody'" in result.output
    retag = runner.invoke(app, ["retag", "--customer", "C2", "--config", CONFIG], env=env)
    assert retag.exit_code == 1
    assert "no WeCom customer for 'C2'" in retag.output


def test_commands_refuse_an_unmigrated_database(tmp_path: Path) -> None:
    env = {"BOT_DATABASE__URL": f"sqlite:///{tmp_path / 'empty.db'}"}
    result = runner.invoke(app, ["explain", "wm1", "--config", CONFIG], env=env)
    assert result.exit_code == 2
    assert "bot db upgrade" in result.output
