"""Customer endpoints: get (with lag and follow_user paging), list, batch, remark, mark_tag."""

from __future__ import annotations

from bot.clock import FrozenClock
from bot.sandbox import Limits, NewCustomer, Sandbox
from tests.sandbox.conftest import WeCom


def add_customer(sandbox: Sandbox, userid: str = "ZhangLi", name: str = "李四") -> str:
    return sandbox.script.customer_adds_member(NewCustomer(name, gender=1), userid).external_userid


def settle(sandbox: Sandbox) -> None:
    """Let WeCom's read-after-add lag pass."""
    clock = sandbox.world.clock
    assert isinstance(clock, FrozenClock)
    clock.advance(sandbox.world.limits.contact_visibility_lag)


async def test_get_lags_then_shows_the_documented_shape(
    wecom: WeCom, sandbox: Sandbox, clock: FrozenClock
) -> None:
    ext = add_customer(sandbox)
    early = await wecom.get("externalcontact/get", external_userid=ext)
    assert early["errcode"] == 84061
    clock.advance(1)
    answer = await wecom.get("externalcontact/get", external_userid=ext)
    assert answer["errcode"] == 0
    contact = answer["external_contact"]
    assert contact["external_userid"] == ext
    assert ext.startswith("wm")
    assert len(ext) == 32
    assert contact["name"] == "李四"
    assert contact["type"] == 1
    assert contact["gender"] == 1
    assert contact["unionid"].startswith("o")
    (follow,) = answer["follow_user"]
    assert follow["userid"] == "ZhangLi"
    assert follow["createtime"] == int(clock.timestamp()) - 1
    assert follow["tags"] == []
    assert follow["remark_mobiles"] == []
    assert follow["add_way"] == 1
    assert follow["state"] == "qr_branch_a"
    assert follow["oper_userid"] == ext
    assert "next_cursor" not in answer


async def test_get_unknown_customer(wecom: WeCom) -> None:
    answer = await wecom.get("externalcontact/get", external_userid="wmnobody")
    assert answer["errcode"] == 40096


async def test_get_pages_follow_user(wecom: WeCom, sandbox: Sandbox) -> None:
    sandbox.world.limits = Limits(follow_user_page_size=2, contact_visibility_lag=0)
    sandbox.world.add_member("ZhaoLei", "赵磊")
    ext = add_customer(sandbox)
    for userid in ("WangJianhua", "ZhaoLei"):
        sandbox.script.customer_adds_member(ext, userid)
    first = await wecom.get("externalcontact/get", external_userid=ext)
    assert [f["userid"] for f in first["follow_user"]] == ["ZhangLi", "WangJianhua"]
    second = await wecom.get(
        "externalcontact/get", external_userid=ext, cursor=first["next_cursor"]
    )
    assert [f["userid"] for f in second["follow_user"]] == ["ZhaoLei"]
    assert "next_cursor" not in second


async def test_list_and_follow_user_list(wecom: WeCom, sandbox: Sandbox) -> None:
    exts = [add_customer(sandbox, name=f"客户{i}") for i in range(3)]
    settle(sandbox)
    answer = await wecom.get("externalcontact/list", userid="ZhangLi")
    assert answer["errcode"] == 0
    assert sorted(answer["external_userid"]) == sorted(exts)
    assert (await wecom.get("externalcontact/list", userid="nobody"))["errcode"] == 40003
    assert (await wecom.get("externalcontact/list", userid="LiuYang"))["errcode"] == 84074
    follow = await wecom.get("externalcontact/get_follow_user_list")
    assert follow["follow_user"] == ["ZhangLi", "WangJianhua"]


async def test_batch_get_by_user_shape_and_paging(wecom: WeCom, sandbox: Sandbox) -> None:
    exts = [add_customer(sandbox, name=f"客户{i}") for i in range(3)]
    settle(sandbox)
    body = {"userid_list": ["ZhangLi"], "limit": 2}
    first = await wecom.post("externalcontact/batch/get_by_user", body)
    assert first["errcode"] == 0
    assert len(first["external_contact_list"]) == 2
    item = first["external_contact_list"][0]
    assert set(item) == {"external_contact", "follow_info"}
    info = item["follow_info"]
    assert info["userid"] == "ZhangLi"
    assert info["tag_id"] == []
    assert {
        "remark",
        "description",
        "createtime",
        "remark_mobiles",
        "add_way",
        "oper_userid",
    } <= set(info)
    second = await wecom.post(
        "externalcontact/batch/get_by_user", {**body, "cursor": first["next_cursor"]}
    )
    assert second["next_cursor"] == ""
    seen = [i["external_contact"]["external_userid"] for i in first["external_contact_list"]]
    seen += [i["external_contact"]["external_userid"] for i in second["external_contact_list"]]
    assert sorted(seen) == sorted(exts)


async def test_batch_get_by_user_limits(wecom: WeCom) -> None:
    many = {"userid_list": [f"u{i}" for i in range(101)]}
    assert (await wecom.post("externalcontact/batch/get_by_user", many))["errcode"] == 40058
    big = {"userid_list": ["ZhangLi"], "limit": 101}
    assert (await wecom.post("externalcontact/batch/get_by_user", big))["errcode"] == 40058
    assert (await wecom.post("externalcontact/batch/get_by_user", {}))["errcode"] == 40058


async def test_remark_changes_state_without_callback(wecom: WeCom, sandbox: Sandbox) -> None:
    ext = add_customer(sandbox)
    settle(sandbox)
    sandbox.world.ledger.pending_callbacks.clear()
    body = {
        "userid": "ZhangLi",
        "external_userid": ext,
        "remark": "李总",
        "description": "代发客户",
        "remark_company": "城南五金店",
        "remark_mobiles": ["10012345678"],
    }
    assert (await wecom.post("externalcontact/remark", body))["errcode"] == 0
    follow = (await wecom.get("externalcontact/get", external_userid=ext))["follow_user"][0]
    assert follow["remark"] == "李总"
    assert follow["description"] == "代发客户"
    assert follow["remark_corp_name"] == "城南五金店"
    assert follow["remark_mobiles"] == ["10012345678"]
    clear = {"userid": "ZhangLi", "external_userid": ext, "remark_mobiles": [""]}
    assert (await wecom.post("externalcontact/remark", clear))["errcode"] == 0
    follow = (await wecom.get("externalcontact/get", external_userid=ext))["follow_user"][0]
    assert follow["remark_mobiles"] == []
    assert follow["remark"] == "李总"
    assert not sandbox.world.ledger.pending_callbacks


async def test_remark_errors(wecom: WeCom, sandbox: Sandbox) -> None:
    ext = add_customer(sandbox)
    too_long = {"userid": "ZhangLi", "external_userid": ext, "remark": "长" * 21}
    assert (await wecom.post("externalcontact/remark", too_long))["errcode"] == 40058
    stranger = {"userid": "WangJianhua", "external_userid": ext, "remark": "x"}
    assert (await wecom.post("externalcontact/remark", stranger))["errcode"] == 84061
    empty = {"userid": "ZhangLi", "external_userid": ext}
    assert (await wecom.post("externalcontact/remark", empty))["errcode"] == 40058


async def test_mark_tag(wecom: WeCom, sandbox: Sandbox) -> None:
    world = sandbox.world
    group = world.create_tag_group("资产等级")
    rich = world.create_tag(group.group_id, "50万+")
    ext = add_customer(sandbox)
    settle(sandbox)
    world.ledger.pending_callbacks.clear()
    base = {"userid": "ZhangLi", "external_userid": ext}
    ok = await wecom.post("externalcontact/mark_tag", {**base, "add_tag": [rich.tag_id]})
    assert ok["errcode"] == 0
    follow = (await wecom.get("externalcontact/get", external_userid=ext))["follow_user"][0]
    assert follow["tags"] == [
        {"group_name": "资产等级", "tag_name": "50万+", "type": 1, "tag_id": rich.tag_id}
    ]
    assert not world.ledger.pending_callbacks
    bad = await wecom.post("externalcontact/mark_tag", {**base, "add_tag": ["etnope"]})
    assert bad["errcode"] == 40068
    assert (await wecom.post("externalcontact/mark_tag", base))["errcode"] == 40058
    stranger = {"userid": "WangJianhua", "external_userid": ext, "add_tag": [rich.tag_id]}
    assert (await wecom.post("externalcontact/mark_tag", stranger))["errcode"] == 84061
    removed = await wecom.post("externalcontact/mark_tag", {**base, "remove_tag": [rich.tag_id]})
    assert removed["errcode"] == 0
    assert world.relation("ZhangLi", ext).tag_ids == []  # type: ignore[union-attr]
