"""change_external_chat end to end: member diffs by version, re-reads when a callback was missed."""

from __future__ import annotations

from sqlalchemy import select

from bot.sandbox.models import CustomerGroup
from bot.sandbox.script import NewCustomer
from bot.store.models import Group, GroupMember, InboxEvent
from bot.sync import run_sync
from tests.integration.conftest import WANG, ZHANG, World

GET = "externalcontact/groupchat/get"


def members(world: World, chat_id: str) -> dict[str, GroupMember]:
    return {m.member_id: m for m in world.rows(GroupMember, GroupMember.chat_id == chat_id)}


def current(world: World, chat_id: str) -> set[str]:
    return {m for m, row in members(world, chat_id).items() if row.left_at is None}


def group(world: World, chat_id: str) -> Group:
    found = world.q(lambda s: s.get(Group, chat_id))
    assert found is not None
    return found


def truth(chat: CustomerGroup) -> set[str]:
    return {m.userid for m in chat.members}


async def new_group(world: World, customers: int = 2) -> tuple[CustomerGroup, list[str]]:
    exts = [
        world.wecom.add_customer(f"客户{i}", unionid=f"oUnion{i:022d}").external_userid
        for i in range(customers)
    ]
    chat = world.script.create_group(
        ZHANG, "城南支行理财交流群", [WANG, *exts], notice="理财有风险"
    )
    await world.settle()
    world.clock.advance(10)
    return chat, exts


async def test_create_is_read_with_names(world: World) -> None:
    chat, exts = await new_group(world)
    [call] = world.calls(GET)
    assert call.body == {"chat_id": chat.chat_id, "need_name": 1}
    stored = group(world, chat.chat_id)
    assert (stored.name, stored.owner, stored.notice, stored.status) == (
        "城南支行理财交流群",
        ZHANG,
        "理财有风险",
        "active",
    )
    assert stored.member_version == chat.member_version
    rows = members(world, chat.chat_id)
    assert set(rows) == {ZHANG, WANG, *exts}
    assert (rows[ZHANG].type, rows[exts[0]].type) == (1, 2)
    assert rows[exts[0]].name == "客户0"
    assert rows[exts[0]].unionid == "oUnion" + "0" * 22
    assert rows[exts[1]].invitor == ZHANG


async def test_join_with_matching_version_applies_the_diff_without_a_read(world: World) -> None:
    chat, _ = await new_group(world)
    # A customer the mirror knows (they added a manager earlier) scans the group QR code.
    newcomer = world.script.customer_adds_member(
        NewCustomer("新客户", unionid="oNewcomer0000000000000000001"), WANG, welcome_code=False
    ).external_userid
    await world.settle()
    world.script.customer_joins_group(chat.chat_id, newcomer)
    await world.settle()
    assert len(world.calls(GET)) == 1  # only the create's
    row = members(world, chat.chat_id)[newcomer]
    assert (row.type, row.join_scene, row.left_at) == (2, 3, None)
    assert (row.name, row.unionid) == ("新客户", "oNewcomer0000000000000000001")
    assert row.join_time == world.wecom.now()
    assert group(world, chat.chat_id).member_version == chat.member_version
    assert current(world, chat.chat_id) == truth(chat)


async def test_missed_callback_means_a_full_read(world: World) -> None:
    chat, _ = await new_group(world)
    first = world.wecom.add_customer("甲").external_userid
    second = world.wecom.add_customer("乙").external_userid
    # WeCom changed the group without telling the bot (a lost callback) ...
    world.wecom.join_group(chat.chat_id, first, join_scene=2, invitor=WANG)
    # ... so the next event's LastMemVer is not the version the mirror holds.
    world.script.customer_joins_group(chat.chat_id, second)
    await world.settle()
    assert len(world.calls(GET)) == 2
    rows = members(world, chat.chat_id)
    assert (rows[first].join_scene, rows[first].invitor, rows[first].name) == (2, WANG, "甲")
    assert current(world, chat.chat_id) == truth(chat)
    assert group(world, chat.chat_id).member_version == chat.member_version


async def test_leave_closes_the_membership(world: World) -> None:
    chat, exts = await new_group(world)
    world.script.customer_leaves_group(chat.chat_id, exts[0], removed=True)
    await world.settle()
    assert len(world.calls(GET)) == 1
    row = members(world, chat.chat_id)[exts[0]]
    assert row.left_at == world.clock.now().replace(microsecond=0)
    assert row.quit_scene == 1
    assert current(world, chat.chat_id) == truth(chat)
    # Joining again reopens the same row.
    world.clock.advance(60)
    world.script.customer_joins_group(chat.chat_id, exts[0])
    await world.settle()
    again = members(world, chat.chat_id)[exts[0]]
    assert (again.left_at, again.quit_scene) == (None, None)
    assert len(world.calls(GET)) == 1


async def test_rename_is_read_again(world: World) -> None:
    chat, _ = await new_group(world)
    world.script.rename_group(chat.chat_id, "城南支行理财交流群（新）")
    world.script.change_group_notice(chat.chat_id, "周三五折日")
    await world.settle()
    stored = group(world, chat.chat_id)
    assert (stored.name, stored.notice) == ("城南支行理财交流群（新）", "周三五折日")
    assert len(world.calls(GET)) == 3


async def test_dismiss_closes_every_membership(world: World) -> None:
    chat, _ = await new_group(world)
    world.script.dismiss_group(chat.chat_id)
    await world.settle()
    stored = group(world, chat.chat_id)
    assert (stored.status, stored.dismissed_at) == ("dismissed", world.clock.now())
    assert current(world, chat.chat_id) == set()
    assert len(members(world, chat.chat_id)) == 4  # kept as history


async def test_rename_then_dismiss_handled_together(world: World) -> None:
    chat, _ = await new_group(world)
    world.script.rename_group(chat.chat_id, "即将解散")
    world.script.dismiss_group(chat.chat_id)
    # Both arrive before the bot reads the group: by then WeCom answers 40050.
    await world.settle()
    assert [c.errcode for c in world.calls(GET)][1:] == [40050]
    statuses = world.q(lambda s: s.scalars(select(InboxEvent.status).order_by(InboxEvent.id)).all())
    assert statuses == ["done", "done", "done"]
    assert group(world, chat.chat_id).status == "dismissed"


async def test_member_names_from_groups_sign_welcomes(world: World) -> None:
    await run_sync(world.bot)  # the mirror learns the members
    await new_group(world)  # groupchat/get names them
    world.script.customer_adds_member(NewCustomer("钱多多"), ZHANG, state="qr_branch_a")
    await world.settle()
    [message] = world.wecom.welcome_messages
    assert message.text.startswith("您好，欢迎来到本支行！我是客户经理张丽（客户经理）。")
