"""Corp tag endpoints: list filters, add, edit and delete with the creator-only rule."""

from __future__ import annotations

from bot.sandbox import Sandbox
from tests.sandbox.conftest import WeCom


def admin_tags(sandbox: Sandbox) -> tuple[str, str, str]:
    group, tags = sandbox.script.admin_creates_tag("资产等级", ["5万+", "10万+"])
    sandbox.world.ledger.pending_callbacks.clear()
    return group.group_id, tags[0].tag_id, tags[1].tag_id


async def test_list_all_and_filters(wecom: WeCom, sandbox: Sandbox) -> None:
    group_id, small, _big = admin_tags(sandbox)
    everything = await wecom.post("externalcontact/get_corp_tag_list")
    assert everything["errcode"] == 0
    (group,) = everything["tag_group"]
    assert group["group_id"] == group_id
    assert group_id.startswith("et")
    assert group["group_name"] == "资产等级"
    assert group["deleted"] is False
    assert {"create_time", "order"} <= set(group)
    # Larger order first: admin_creates_tag numbers tags 1, 2.
    assert [t["name"] for t in group["tag"]] == ["10万+", "5万+"]
    assert set(group["tag"][0]) == {"id", "name", "create_time", "order", "deleted"}
    by_tag = await wecom.post("externalcontact/get_corp_tag_list", {"tag_id": [small]})
    assert [t["id"] for t in by_tag["tag_group"][0]["tag"]] == [small]
    both = await wecom.post(
        "externalcontact/get_corp_tag_list", {"tag_id": [small], "group_id": [group_id]}
    )
    assert len(both["tag_group"][0]["tag"]) == 2  # group_id wins
    none = await wecom.post("externalcontact/get_corp_tag_list", {"group_id": ["etnope"]})
    assert none["tag_group"] == []


async def test_add_corp_tag(wecom: WeCom, sandbox: Sandbox) -> None:
    body = {
        "group_name": "活动",
        "order": 3,
        "tag": [{"name": "问答"}, {"name": "抽奖", "order": 2}],
    }
    answer = await wecom.post("externalcontact/add_corp_tag", body)
    assert answer["errcode"] == 0
    group = answer["tag_group"]
    assert group["group_name"] == "活动"
    assert group["order"] == 3
    assert sorted(t["name"] for t in group["tag"]) == ["抽奖", "问答"]
    assert all(t["id"].startswith("et") for t in group["tag"])
    # The same group name adds to the existing group.
    more = await wecom.post(
        "externalcontact/add_corp_tag", {"group_name": "活动", "tag": [{"name": "签到"}]}
    )
    assert more["tag_group"]["group_id"] == group["group_id"]
    assert [t["name"] for t in more["tag_group"]["tag"]] == ["签到"]
    duplicate = await wecom.post(
        "externalcontact/add_corp_tag", {"group_id": group["group_id"], "tag": [{"name": "签到"}]}
    )
    assert duplicate["errcode"] == 40071
    too_long = await wecom.post(
        "externalcontact/add_corp_tag", {"group_name": "x", "tag": [{"name": "长" * 31}]}
    )
    assert too_long["errcode"] == 40072
    empty = await wecom.post("externalcontact/add_corp_tag", {"group_name": "空组", "tag": []})
    assert empty["errcode"] == 40058
    assert not sandbox.world.ledger.pending_callbacks


async def test_only_the_creating_app_may_edit_or_delete(wecom: WeCom, sandbox: Sandbox) -> None:
    group_id, small, _ = admin_tags(sandbox)
    edit = await wecom.post("externalcontact/edit_corp_tag", {"id": small, "name": "5万以上"})
    assert edit["errcode"] == 40068
    delete = await wecom.post("externalcontact/del_corp_tag", {"group_id": [group_id]})
    assert delete["errcode"] == 40068
    assert sandbox.world.live_tag(small) is not None
    mine = await wecom.post(
        "externalcontact/add_corp_tag", {"group_name": "活动", "tag": [{"name": "问答"}]}
    )
    tag_id = mine["tag_group"]["tag"][0]["id"]
    renamed = await wecom.post(
        "externalcontact/edit_corp_tag", {"id": tag_id, "name": "知识问答", "order": 9}
    )
    assert renamed["errcode"] == 0
    tag = sandbox.world.live_tag(tag_id)
    assert tag is not None
    assert tag.name == "知识问答"
    assert tag.order == 9
    gone = await wecom.post("externalcontact/del_corp_tag", {"tag_id": [tag_id]})
    assert gone["errcode"] == 0
    # The group's last tag went, so the group went too.
    listing = await wecom.post("externalcontact/get_corp_tag_list")
    assert [g["group_name"] for g in listing["tag_group"]] == ["资产等级"]
    assert (await wecom.post("externalcontact/del_corp_tag", {}))["errcode"] == 40058
    assert (await wecom.post("externalcontact/edit_corp_tag", {"id": "etnope", "name": "x"}))[
        "errcode"
    ] == 40068
    assert not sandbox.world.ledger.pending_callbacks
