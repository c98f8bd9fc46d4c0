"""`bot forget` and `bot opt-out` as an operator runs them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from bot.privacy import hash_id
from bot.store.db import Database
from bot.store.migrate import upgrade
from bot.store.models import Customer
from tests.privacy.people import OUYANG, ZHOU, everything, seed

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "config.yaml")
T0 = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)
runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    db = Database.from_url(url)
    upgrade(db.engine)
    db.call(lambda s: seed(s, OUYANG, T0, run_id=1))
    db.call(lambda s: seed(s, ZHOU, T0, run_id=2))
    db.dispose()
    return {"BOT_DATABASE__URL": url}


def snapshot(env: dict[str, str]) -> str:
    db = Database.from_url(env["BOT_DATABASE__URL"])
    try:
        return db.call(everything)
    finally:
        db.dispose()


def stored(env: dict[str, str], external_userid: str) -> Customer:
    db = Database.from_url(env["BOT_DATABASE__URL"])
    try:
        found = db.call(lambda s: s.get(Customer, external_userid))
    finally:
        db.dispose()
    assert found is not None
    return found


def bot(env: dict[str, str], *args: str, answer: str | None = None) -> tuple[int, str]:
    result = runner.invoke(app, [*args, "--config", CONFIG], env=env, input=answer)
    return result.exit_code, result.output


def test_forget_asks_first_and_a_no_changes_nothing(env: dict[str, str]) -> None:
    before = snapshot(env)
    code, output = bot(env, "forget", OUYANG.customer_key, answer="n\n")
    assert code == 1
    assert "欧***" in output
    assert OUYANG.name not in output
    assert "nothing changed" in output
    assert snapshot(env) == before


def test_forget_with_yes_erases_and_reports_counts(env: dict[str, str]) -> None:
    code, output = bot(env, "forget", OUYANG.external_userid, "--yes")
    assert code == 0, output
    assert f"customer {hash_id(OUYANG.external_userid)} forgotten:" in output
    assert "follow_relations 1" in output
    assert "attribute_history 2" in output
    assert "opted out" in output
    assert "kept forgotten: callbacks, `bot sync` and bank imports" in output
    text = snapshot(env)
    assert [v for v in OUYANG.personal_values() if v in text] == []
    assert stored(env, OUYANG.external_userid).opted_out
    assert stored(env, OUYANG.external_userid).forgotten_at is not None
    assert stored(env, ZHOU.external_userid).forgotten_at is None
    # Confirmed at the prompt, the second time finds nothing left.
    code, output = bot(env, "forget", OUYANG.external_userid, answer="y\n")
    assert code == 0, output
    assert "nothing left to erase" in output


def test_forget_of_an_unknown_customer_fails_clearly(env: dict[str, str]) -> None:
    before = snapshot(env)
    code, output = bot(env, "forget", "wmNobody", "--yes")
    assert code == 1
    assert "no customer or bank customer key 'wmNobody'" in output
    assert snapshot(env) == before


def test_opt_out_and_undo(env: dict[str, str]) -> None:
    eid = ZHOU.external_userid
    who = hash_id(eid)
    code, output = bot(env, "opt-out", ZHOU.customer_key)
    assert code == 0
    assert f"customer {who} opted out" in output.splitlines()
    # The audit line in the log names the hashed id and who asked.
    assert f"privacy: customer {who} opted out by bot opt-out" in output
    assert eid not in output
    assert stored(env, eid).opted_out
    code, output = bot(env, "opt-out", eid)
    assert f"customer {who} was already opted out" in output.splitlines()
    code, output = bot(env, "opt-out", eid, "--undo")
    assert code == 0
    assert f"customer {who} opted back in" in output.splitlines()
    assert not stored(env, eid).opted_out
    code, output = bot(env, "opt-out", "nobody")
    assert code == 1
    assert "no customer or bank customer key 'nobody'" in output
