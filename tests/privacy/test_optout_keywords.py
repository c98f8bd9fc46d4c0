"""A manager writing an opt-out keyword into a customer's remark or description opts the
customer out, whether the bot learns it from a callback or from `bot sync`."""

from __future__ import annotations

import logging
import random

import pytest

from bot.config import ConfigError, build_settings
from bot.privacy import hash_id
from bot.sandbox.branch import build_branch
from bot.sandbox.script import NewCustomer
from bot.store.models import Customer
from bot.sync import run_sync
from tests.integration.conftest import WANG, ZHANG, World


def customer(world: World, external_userid: str) -> Customer:
    found = world.q(lambda s: s.get(Customer, external_userid))
    assert found is not None
    return found


async def added(world: World, name: str, userid: str = ZHANG) -> str:
    result = world.script.customer_adds_member(NewCustomer(name), userid, state="qr_lobby")
    await world.settle()
    return result.external_userid


async def test_an_edited_remark_with_a_keyword_opts_the_customer_out(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    eid = await added(world, "李秀英")
    assert not customer(world, eid).opted_out
    world.clock.advance(60)
    when = world.clock.now()

    with caplog.at_level(logging.INFO, logger="bot"):
        world.script.member_edits_customer(ZHANG, eid, remark="李阿姨 勿扰")
        await world.settle()

    mirrored = customer(world, eid)
    assert mirrored.opted_out
    assert mirrored.opted_out_at is not None
    assert when <= mirrored.opted_out_at <= world.clock.now()
    lines = [r.getMessage() for r in caplog.records if "opted out" in r.getMessage()]
    assert lines == [f"customer {hash_id(eid)} opted out: keyword in {ZHANG}'s remark"]
    assert not any(eid in r.getMessage() or "李阿姨" in r.getMessage() for r in caplog.records)


async def test_a_new_customer_whose_description_has_a_keyword_is_opted_out(world: World) -> None:
    result = world.script.customer_adds_member(NewCustomer("王建国"), WANG, state="qr_lobby")
    # What the manager filled in on the add screen.
    world.wecom.relations[(WANG, result.external_userid)].description = "客户说：拒收营销消息"
    await world.settle()
    assert customer(world, result.external_userid).opted_out


async def test_the_opt_out_stays_when_the_keyword_is_removed(world: World) -> None:
    eid = await added(world, "赵敏")
    world.clock.advance(60)
    world.script.member_edits_customer(ZHANG, eid, description="电话回访时要求退订")
    await world.settle()
    first = customer(world, eid).opted_out_at
    world.clock.advance(60)
    world.script.member_edits_customer(ZHANG, eid, description="", remark="赵女士")
    await world.settle()
    mirrored = customer(world, eid)
    assert mirrored.opted_out
    assert mirrored.opted_out_at == first


async def test_a_remark_without_a_keyword_changes_nothing(world: World) -> None:
    eid = await added(world, "孙丽")
    world.clock.advance(60)
    world.script.member_edits_customer(
        ZHANG, eid, remark="孙姐 理财偏好稳健", description="订了周刊"
    )
    await world.settle()
    mirrored = customer(world, eid)
    assert not mirrored.opted_out
    assert mirrored.opted_out_at is None


async def test_sync_applies_keywords_written_before_the_bot_ran(world: World) -> None:
    branch = build_branch(world.wecom, managers=2, customers=12, groups=0, rng=random.Random(3))
    first, second = branch.customers[0], branch.customers[1]
    # Written in the client before the bot was connected: no callback ever told it.
    world.wecom.followers(first)[0].remark = "退订 王先生"
    world.wecom.followers(second)[0].description = "勿扰"

    await run_sync(world.bot)

    opted = {c.external_userid for c in world.rows(Customer, Customer.opted_out.is_(True))}
    assert opted == {first, second}
    assert customer(world, first).opted_out_at == world.clock.now()


def test_keywords_are_configured_under_privacy() -> None:
    settings = build_settings({"privacy": {"opt_out_keywords": ["停发"]}}, {})
    assert settings.privacy.opt_out_keywords == ["停发"]
    assert build_settings({}, {}).privacy.opt_out_keywords == ["退订", "勿扰", "拒收"]
    with pytest.raises(ConfigError, match=r"privacy\.opt_out_keywords"):
        build_settings({"privacy": {"opt_out_keywords": [" 退订"]}}, {})
