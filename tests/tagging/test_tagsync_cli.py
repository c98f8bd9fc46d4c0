"""`bot tag-sync`: dry run, send, and a second run with nothing to do, against the sandbox."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session
from typer.testing import CliRunner

import bot.app
from bot import mirror
from bot.cli import app as cli
from bot.clock import FrozenClock
from bot.sandbox.harness import Sandbox
from bot.store.db import Database
from bot.store.models import CustomerTag
from tests.integration.conftest import AES_KEY, AGENT_ID, CORP_ID, REPO_ROOT, SECRET, TOKEN, ZHANG

MARK = "externalcontact/mark_tag"


@pytest.fixture
def sandbox(clock: FrozenClock) -> Sandbox:
    sandbox = Sandbox.create(
        clock,
        token=TOKEN,
        encoding_aes_key=AES_KEY,
        corp_id=CORP_ID,
        agent_id=AGENT_ID,
        secret=SECRET,
    )
    sandbox.world.add_member(ZHANG, "张丽（客户经理）")
    return sandbox


@pytest.fixture
def wired(
    monkeypatch: pytest.MonkeyPatch, db: Database, clock: FrozenClock, sandbox: Sandbox
) -> None:
    """The command's own config loading, with the bot's WeCom traffic going to the sandbox."""
    env = {
        "BOT_CONFIG": str(REPO_ROOT / "config.yaml"),
        "BOT_DATABASE__URL": db.engine.url.render_as_string(hide_password=False),
        "BOT_WECOM__API_BASE": "http://sandbox/cgi-bin",
        "BOT_WECOM__CORP_ID": CORP_ID,
        "BOT_WECOM__AGENT_ID": str(AGENT_ID),
        "BOT_WECOM__SECRET": SECRET,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    real = bot.app.create_app
    transport: httpx.AsyncBaseTransport = sandbox.api_transport()

    def to_sandbox(settings: Any, **kwargs: Any) -> bot.app.BotApp:
        return real(settings, clock=clock, transport=transport, **kwargs)

    monkeypatch.setattr(bot.app, "create_app", to_sandbox)


def customer_with_tags(db: Database, clock: FrozenClock, sandbox: Sandbox) -> str:
    world = sandbox.world
    ext = world.add_customer("林平之").external_userid
    relation = world.add_follow(ZHANG, ext, at=clock.timestamp() - 3600)
    now = clock.now()

    def store(session: Session) -> None:
        follow = [{"userid": ZHANG, "createtime": relation.createtime}]
        mirror.apply_contact_detail(
            session, {"external_userid": ext, "name": "林平之"}, follow, now=now, complete=True
        )
        session.flush()
        for tag, family in (("代发客户", "payroll"), ("资产10万+", "asset")):
            session.add(
                CustomerTag(
                    external_userid=ext, tag=tag, family=family, rule="t", reason="t", since=now
                )
            )

    db.call(store)
    return ext


@pytest.mark.usefixtures("wired")
def test_dry_run_then_send_then_nothing_to_do(
    db: Database, clock: FrozenClock, sandbox: Sandbox
) -> None:
    ext = customer_with_tags(db, clock, sandbox)
    runner = CliRunner()

    dry = runner.invoke(cli, ["tag-sync", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would create 6 group(s)" in dry.output
    assert "would enqueue 0 mark_tag row(s)" in dry.output
    assert sandbox.world.tag_groups == {}

    sent = runner.invoke(cli, ["tag-sync", "--send"])
    assert sent.exit_code == 0, sent.output
    assert "created 6 group(s)" in sent.output
    assert "1 to change: +2 tag(s), -0 tag(s)" in sent.output
    assert "enqueued 1 mark_tag row(s)" in sent.output
    names = {sandbox.world.tags[t].name for t in sandbox.world.relations[(ZHANG, ext)].tag_ids}
    assert names == {"代发客户", "资产10万+"}

    again = runner.invoke(cli, ["tag-sync", "--send"])
    assert again.exit_code == 0, again.output
    assert "0 to change" in again.output
    assert "WeCom not asked" in again.output
    assert len(sandbox.world.calls(MARK)) == 1


@pytest.mark.usefixtures("wired")
def test_a_foreign_group_fails_the_command_with_the_reason(
    db: Database, clock: FrozenClock, sandbox: Sandbox
) -> None:
    sandbox.script.admin_creates_tag("代发", ["代发客户"])
    customer_with_tags(db, clock, sandbox)

    result = CliRunner().invoke(cli, ["tag-sync", "--send"])

    assert result.exit_code == 1
    assert "payroll (代发)" in result.output
    assert "not created by this app" in result.output
