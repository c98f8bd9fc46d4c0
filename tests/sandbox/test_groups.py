"""Customer-group endpoints: groupchat/list filters, limits and 81017; groupchat/get shape."""

from __future__ import annotations

from bot.sandbox import NewCustomer, Sandbox
from tests.sandbox.conftest import WeCom


def make_groups(sandbox: Sandbox) -> tuple[str, str, str]:
    script = sandbox.script
    first = script.create_group("ZhangLi", "城南支行理财交流群", ["WangJianhua"], notice="文明交流")
    second = script.create_group("WangJianhua", "代发工资客户群")
    ext = script.customer_joins_group(first.chat_id, NewCustomer("陈静"), join_scene=1)
    sandbox.world.ledger.pending_callbacks.clear()
    return first.chat_id, second.chat_id, ext


async def test_list_filters_and_pages(wecom: WeCom, sandbox: Sandbox) -> None:
    first, second, _ = make_groups(sandbox)
    page1 = await wecom.post("externalcontact/groupchat/list", {"limit": 1})
    assert page1["errcode"] == 0
    assert page1["group_chat_list"] == [{"chat_id": first, "status": 0}]
    page2 = await wecom.post(
        "externalcontact/groupchat/list", {"limit": 1, "cursor": page1["next_cursor"]}
    )
    assert page2["group_chat_list"] == [{"chat_id": second, "status": 0}]
    assert page2["next_cursor"] == ""
    owned = await wecom.post(
        "externalcontact/groupchat/list",
        {"limit": 10, "owner_filter": {"userid_list": ["WangJianhua"]}},
    )
    assert [g["chat_id"] for g in owned["group_chat_list"]] == [second]
    assert first.startswith("wr")


async def test_list_limits(wecom: WeCom, sandbox: Sandbox) -> None:
    assert (await wecom.post("externalcontact/groupchat/list", {}))["errcode"] == 40058
    assert (await wecom.post("externalcontact/groupchat/list", {"limit": 1001}))["errcode"] == 40058
    owners = {"limit": 10, "owner_filter": {"userid_list": [f"u{i}" for i in range(101)]}}
    assert (await wecom.post("externalcontact/groupchat/list", owners))["errcode"] == 40058


async def test_81017_without_owner_filter_in_a_big_scope(wecom: WeCom, sandbox: Sandbox) -> None:
    make_groups(sandbox)
    sandbox.world.limits.visible_member_count = 1001
    assert (await wecom.post("externalcontact/groupchat/list", {"limit": 10}))["errcode"] == 81017
    filtered = {"limit": 10, "owner_filter": {"userid_list": ["ZhangLi"]}}
    assert (await wecom.post("externalcontact/groupchat/list", filtered))["errcode"] == 0


async def test_get_shape_and_need_name(wecom: WeCom, sandbox: Sandbox) -> None:
    first, _, ext = make_groups(sandbox)
    answer = await wecom.post("externalcontact/groupchat/get", {"chat_id": first})
    assert answer["errcode"] == 0
    chat = answer["group_chat"]
    assert chat["chat_id"] == first
    assert chat["name"] == "城南支行理财交流群"
    assert chat["owner"] == "ZhangLi"
    assert chat["notice"] == "文明交流"
    assert isinstance(chat["create_time"], int)
    assert len(chat["member_version"]) == 32
    assert chat["admin_list"] == []
    by_id = {m["userid"]: m for m in chat["member_list"]}
    assert by_id["ZhangLi"]["type"] == 1
    assert by_id["WangJianhua"]["invitor"] == {"userid": "ZhangLi"}
    customer = by_id[ext]
    assert customer["type"] == 2
    assert customer["join_scene"] == 1
    assert customer["unionid"].startswith("o")
    assert customer["invitor"] == {"userid": "ZhangLi"}
    assert all("name" not in m for m in chat["member_list"])
    named = await wecom.post("externalcontact/groupchat/get", {"chat_id": first, "need_name": 1})
    names = {m["userid"]: m["name"] for m in named["group_chat"]["member_list"]}
    assert names[ext] == "陈静"
    assert names["ZhangLi"] == "张丽"


async def test_member_version_changes_with_membership(wecom: WeCom, sandbox: Sandbox) -> None:
    first, _, ext = make_groups(sandbox)
    before = (await wecom.post("externalcontact/groupchat/get", {"chat_id": first}))["group_chat"]
    sandbox.script.rename_group(first, "新群名")
    renamed = (await wecom.post("externalcontact/groupchat/get", {"chat_id": first}))["group_chat"]
    assert renamed["member_version"] == before["member_version"]
    sandbox.script.customer_leaves_group(first, ext)
    after = (await wecom.post("externalcontact/groupchat/get", {"chat_id": first}))["group_chat"]
    assert after["member_version"] != before["member_version"]
    assert ext not in {m["userid"] for m in after["member_list"]}


async def test_get_unknown_and_dismissed(wecom: WeCom, sandbox: Sandbox) -> None:
    first, _, _ = make_groups(sandbox)
    assert (await wecom.post("externalcontact/groupchat/get", {"chat_id": "wrnope"}))[
        "errcode"
    ] == 40050
    sandbox.script.dismiss_group(first)
    assert (await wecom.post("externalcontact/groupchat/get", {"chat_id": first}))[
        "errcode"
    ] == 40050
    listing = await wecom.post("externalcontact/groupchat/list", {"limit": 10})
    assert first not in {g["chat_id"] for g in listing["group_chat_list"]}
