"""A manager opts a customer out by writing "退订 <备注名或ID>" to the bot's WeCom app."""

from __future__ import annotations

import logging

import pytest

from bot.outbox.kinds import APP_MESSAGE
from bot.privacy import hash_id
from bot.sandbox.script import NewCustomer
from bot.store.models import Customer
from tests.integration.conftest import WANG, ZHANG, World


def cdata(value: str) -> str:
    return f"<![CDATA[{value}]]>"


def member_writes_to_the_app(world: World, userid: str, text: str) -> None:
    """The text message WeCom forwards when a member writes to the app (doc 90239)."""
    wecom = world.wecom
    msg_id = str(7_000_000_000_000_000 + wecom.next_seq())
    xml = (
        f"<xml><ToUserName>{cdata(wecom.corp_id)}</ToUserName>"
        f"<FromUserName>{cdata(userid)}</FromUserName>"
        f"<CreateTime>{wecom.now()}</CreateTime><MsgType>{cdata('text')}</MsgType>"
        f"<Content>{cdata(text)}</Content><MsgId>{msg_id}</MsgId>"
        f"<AgentID>{wecom.agent_id}</AgentID></xml>"
    )
    wecom.enqueue_callback(xml, event="text")


def replies(world: World, userid: str) -> list[str]:
    return [m.content["content"] for m in world.wecom.inbox.get(userid, []) if m.msgtype == "text"]


def opted_out(world: World) -> set[str]:
    return {c.external_userid for c in world.rows(Customer, Customer.opted_out.is_(True))}


async def customer_of(world: World, userid: str, name: str, *, remark: str | None = None) -> str:
    result = world.script.customer_adds_member(NewCustomer(name), userid, state="qr_lobby")
    if remark is not None:
        world.wecom.relations[(userid, result.external_userid)].remark = remark
    await world.settle()
    return result.external_userid


async def test_a_customer_named_by_remark_is_opted_out_and_the_manager_told(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    eid = await customer_of(world, ZHANG, "李秀英", remark="李阿姨")
    other = await customer_of(world, ZHANG, "李建华", remark="李叔")

    with caplog.at_level(logging.DEBUG):
        member_writes_to_the_app(world, ZHANG, "退订 李阿姨")
        await world.settle()

    assert opted_out(world) == {eid}
    assert other not in opted_out(world)
    [reply] = replies(world, ZHANG)
    assert "李**" in reply
    assert "李阿姨" not in reply
    assert reply.startswith("已为客户")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert f"privacy: customer {hash_id(eid)} opted out by {ZHANG} via the app" in logged
    assert eid not in logged
    assert "李阿姨" not in logged


@pytest.mark.parametrize("separator", [" ", "：", "\u3000", ""])
async def test_by_external_userid_with_any_separator(world: World, separator: str) -> None:
    eid = await customer_of(world, WANG, "周杰", remark="周总")
    member_writes_to_the_app(world, WANG, f"拒收{separator}{eid}")
    await world.settle()
    assert opted_out(world) == {eid}
    assert replies(world, WANG) == ["已为客户「周*」退订：今后不会再收到群发和营销消息。"]


async def test_by_the_customers_own_name_when_the_manager_gave_no_remark(world: World) -> None:
    eid = await customer_of(world, ZHANG, "王建国")
    member_writes_to_the_app(world, ZHANG, "勿扰 王建国")
    await world.settle()
    assert opted_out(world) == {eid}
    assert "王**" in replies(world, ZHANG)[0]


async def test_no_match_changes_nothing_and_says_so(world: World) -> None:
    await customer_of(world, ZHANG, "孙丽", remark="孙姐")
    # Another manager's customer is not this manager's to opt out.
    await customer_of(world, WANG, "刘芳", remark="刘姐")
    member_writes_to_the_app(world, ZHANG, "退订 刘姐")
    await world.settle()
    assert opted_out(world) == set()
    [reply] = replies(world, ZHANG)
    assert reply.startswith("没有找到备注或 ID 为「刘*」的客户，未做任何退订。")
    assert "刘姐" not in reply
    assert replies(world, WANG) == []


async def test_several_matches_change_nothing_and_are_listed_by_id(world: World) -> None:
    first = await customer_of(world, ZHANG, "张伟", remark="张总")
    second = await customer_of(world, ZHANG, "张强", remark="张总")
    member_writes_to_the_app(world, ZHANG, "退订 张总")
    await world.settle()
    assert opted_out(world) == set()
    [reply] = replies(world, ZHANG)
    assert reply.startswith("「张*」对应 2 位客户，未做任何退订。")
    assert first in reply
    assert second in reply
    assert "张总" not in reply
    # The manager picks one by id.
    world.clock.advance(5)
    member_writes_to_the_app(world, ZHANG, f"退订 {second}")
    await world.settle()
    assert opted_out(world) == {second}


async def test_asking_twice_and_a_redelivered_message_each_answer_once(world: World) -> None:
    eid = await customer_of(world, ZHANG, "陈静", remark="陈老师")
    member_writes_to_the_app(world, ZHANG, "退订 陈老师")
    world.deliverer.duplicate_next()
    await world.settle()
    first = world.q(lambda s: s.get(Customer, eid))
    assert first is not None
    assert len(replies(world, ZHANG)) == 1
    world.clock.advance(60)
    member_writes_to_the_app(world, ZHANG, "退订 陈老师")
    await world.settle()
    again = world.q(lambda s: s.get(Customer, eid))
    assert again is not None
    assert again.opted_out_at == first.opted_out_at
    assert replies(world, ZHANG)[1] == "客户「陈**」此前已退订，不会再收到群发。"


async def test_other_text_is_left_alone_and_the_keyword_alone_gets_the_usage(
    world: World,
) -> None:
    await customer_of(world, ZHANG, "赵磊", remark="赵哥")
    member_writes_to_the_app(world, ZHANG, "今天的群发我确认过了")
    await world.settle()
    assert world.outbox(APP_MESSAGE) == []
    member_writes_to_the_app(world, ZHANG, " 退订 ")
    await world.settle()
    assert opted_out(world) == set()
    assert replies(world, ZHANG) == ["请发送「退订 客户备注名」或「退订 external_userid」。"]
