"""Callbacks: encrypted and signed so wechatpy and our crypto both open them, plaintext with
WeCom's documented elements, redelivery on failure, duplicates, and none for API changes."""

from __future__ import annotations

from typing import Any

import pytest
from wechatpy.work import parse_message

from bot.clock import FrozenClock
from bot.sandbox import CallbackDeliverer, NewCustomer, Sandbox
from tests.sandbox.conftest import WeCom
from tests.sandbox.receiver import Receiver

COMMON = {"FromUserName": "sys", "MsgType": "event"}


def head(sandbox: Sandbox, event: str) -> dict[str, Any]:
    world = sandbox.world
    return {"ToUserName": world.corp_id, **COMMON, "CreateTime": str(world.now()), "Event": event}


async def deliver(deliverer: CallbackDeliverer, receiver: Receiver) -> list[dict[str, Any]]:
    start = len(receiver.received)
    await deliverer.flush()
    return receiver.received[start:]


async def test_add_external_contact(
    sandbox: Sandbox, deliverer: CallbackDeliverer, receiver: Receiver
) -> None:
    result = sandbox.script.customer_adds_member(NewCustomer("李四"), "ZhangLi", state="qr_lobby")
    (event,) = await deliver(deliverer, receiver)
    assert event == {
        **head(sandbox, "change_external_contact"),
        "ChangeType": "add_external_contact",
        "UserID": "ZhangLi",
        "ExternalUserID": result.external_userid,
        "State": "qr_lobby",
        "WelcomeCode": result.welcome_code,
    }
    (attempt,) = deliverer.attempts
    assert attempt.ok
    assert attempt.status_code == 200
    assert attempt.attempt == 1
    envelope_parts = receiver.bodies[0]
    assert envelope_parts.startswith("<xml><ToUserName><![CDATA[" + sandbox.world.corp_id)
    assert "<AgentID><![CDATA[1000002]]></AgentID>" in envelope_parts


async def test_wechatpy_parses_contact_events(
    sandbox: Sandbox, deliverer: CallbackDeliverer, receiver: Receiver
) -> None:
    result = sandbox.script.customer_adds_member(NewCustomer("李四"), "ZhangLi", verified=False)
    sandbox.script.member_deletes_customer(
        "ZhangLi", result.external_userid, source="DELETE_BY_TRANSFER"
    )
    sandbox.script.transfer_fails("WangJianhua", result.external_userid, "customer_limit_exceed")
    await deliverer.flush()
    half, deleted, failed = (parse_message(p) for p in receiver.plaintexts)
    assert half.change_type == "add_half_external_contact"
    assert half.welcome_code == result.welcome_code
    assert half.state == "qr_branch_a"
    assert deleted.change_type == "del_external_contact"
    assert deleted.del_source == "DELETE_BY_TRANSFER"
    assert failed.fail_reason == "customer_limit_exceed"
    assert failed.user_id == "WangJianhua"


async def test_other_contact_events(
    sandbox: Sandbox, deliverer: CallbackDeliverer, receiver: Receiver
) -> None:
    world = sandbox.world
    _group, (tag,) = sandbox.script.admin_creates_tag("客户类型", ["代发工资"])
    ext = sandbox.script.customer_adds_member(NewCustomer("李四"), "ZhangLi").external_userid
    await deliverer.flush()
    receiver.received.clear()
    sandbox.script.member_edits_customer("ZhangLi", ext, remark="李总", add_tags=[tag.tag_id])
    assert (
        sandbox.script.member_edits_customer("ZhangLi", ext, remark_mobiles=["10000000001"]) is None
    )
    sandbox.script.customer_deletes_member(ext, "ZhangLi")
    edit, gone = await deliver(deliverer, receiver)
    assert edit == {
        **head(sandbox, "change_external_contact"),
        "ChangeType": "edit_external_contact",
        "UserID": "ZhangLi",
        "ExternalUserID": ext,
    }
    assert gone["ChangeType"] == "del_follow_user"
    assert world.relations[("ZhangLi", ext)].tag_ids == [tag.tag_id]


async def test_group_events(
    sandbox: Sandbox, deliverer: CallbackDeliverer, receiver: Receiver
) -> None:
    script = sandbox.script
    group = script.create_group("ZhangLi", "城南支行理财交流群", ["WangJianhua"])
    v0 = group.member_version
    ext = script.customer_joins_group(group.chat_id, NewCustomer("陈静"), join_scene=3)
    v1 = group.member_version
    script.customer_leaves_group(group.chat_id, ext, removed=True)
    v2 = group.member_version
    script.rename_group(group.chat_id, "理财交流群")
    script.change_group_notice(group.chat_id, "本周三直播")
    script.change_group_owner(group.chat_id, "WangJianhua")
    script.dismiss_group(group.chat_id)
    create, join, leave, rename, notice, owner, dismiss = await deliver(deliverer, receiver)
    base = {**head(sandbox, "change_external_chat"), "ChatId": group.chat_id}
    assert create == {**base, "ChangeType": "create"}
    assert join == {
        **base,
        "ChangeType": "update",
        "UpdateDetail": "add_member",
        "JoinScene": "3",
        "MemChangeCnt": "1",
        "MemChangeList": {"Item": ext},
        "LastMemVer": v0,
        "CurMemVer": v1,
    }
    assert leave["UpdateDetail"] == "del_member"
    assert leave["QuitScene"] == "1"
    assert "JoinScene" not in leave
    assert (leave["LastMemVer"], leave["CurMemVer"]) == (v1, v2)
    assert rename == {**base, "ChangeType": "update", "UpdateDetail": "change_name"}
    assert notice["UpdateDetail"] == "change_notice"
    assert owner["UpdateDetail"] == "change_owner"
    assert dismiss == {**base, "ChangeType": "dismiss"}


async def test_invited_join_scene_is_0(
    sandbox: Sandbox, deliverer: CallbackDeliverer, receiver: Receiver
) -> None:
    group = sandbox.world.create_group("ZhangLi", "银发生活群")
    sandbox.script.customer_joins_group(group.chat_id, NewCustomer("吴霞"), join_scene=2)
    (join,) = await deliver(deliverer, receiver)
    assert join["JoinScene"] == "0"


async def test_tag_events(
    sandbox: Sandbox, deliverer: CallbackDeliverer, receiver: Receiver
) -> None:
    script = sandbox.script
    group, (tag,) = script.admin_creates_tag("渠道", ["大堂扫码"])
    script.admin_edits_tag(tag.tag_id, name="大堂二维码")
    script.admin_shuffles_tags(group.group_id)
    script.admin_deletes_tag(group.group_id)
    events = await deliver(deliverer, receiver)
    base = head(sandbox, "change_external_tag")
    assert events == [
        {**base, "Id": group.group_id, "TagType": "tag_group", "ChangeType": "create"},
        {**base, "Id": tag.tag_id, "TagType": "tag", "ChangeType": "create"},
        {**base, "Id": tag.tag_id, "TagType": "tag", "ChangeType": "update"},
        {**base, "Id": group.group_id, "ChangeType": "shuffle"},
        {**base, "Id": group.group_id, "TagType": "tag_group", "ChangeType": "delete"},
    ]
    parsed = parse_message(receiver.plaintexts[1])
    assert parsed.tag_id == tag.tag_id
    assert parsed.tag_type == "tag"


async def test_template_card_event(
    wecom: WeCom, sandbox: Sandbox, deliverer: CallbackDeliverer, receiver: Receiver
) -> None:
    card = {
        "touser": "ZhangLi",
        "msgtype": "template_card",
        "agentid": 1000002,
        "template_card": {
            "card_type": "button_interaction",
            "main_title": {"title": "中奖客户王芳待联系"},
            "task_id": "winner_wangfang",
            "button_list": [{"text": "已联系", "key": "contacted"}],
        },
    }
    assert (await wecom.post("message/send", card))["errcode"] == 0
    code = sandbox.script.member_taps_card_button(
        "ZhangLi", "winner_wangfang", "contacted", selected=[("q1", ["a", "b"])]
    )
    (event,) = await deliver(deliverer, receiver)
    assert event == {
        "ToUserName": sandbox.world.corp_id,
        "FromUserName": "ZhangLi",
        "CreateTime": str(sandbox.world.now()),
        "MsgType": "event",
        "Event": "template_card_event",
        "EventKey": "contacted",
        "TaskId": "winner_wangfang",
        "CardType": "button_interaction",
        "ResponseCode": code,
        "AgentID": "1000002",
        "SelectedItems": {
            "SelectedItem": {"QuestionKey": "q1", "OptionIds": {"OptionId": ["a", "b"]}}
        },
    }
    with pytest.raises(ValueError, match="no button"):
        sandbox.script.member_taps_card_button("ZhangLi", "winner_wangfang", "nope")


async def test_api_changes_emit_no_callbacks(
    wecom: WeCom,
    sandbox: Sandbox,
    deliverer: CallbackDeliverer,
    receiver: Receiver,
    clock: FrozenClock,
) -> None:
    ext = sandbox.script.customer_adds_member(NewCustomer("李四"), "ZhangLi").external_userid
    await deliverer.flush()
    clock.advance(1)
    added = await wecom.post(
        "externalcontact/add_corp_tag", {"group_name": "活动", "tag": [{"name": "问答"}]}
    )
    tag_id = added["tag_group"]["tag"][0]["id"]
    calls: list[tuple[str, dict[str, Any]]] = [
        (
            "externalcontact/mark_tag",
            {"userid": "ZhangLi", "external_userid": ext, "add_tag": [tag_id]},
        ),
        ("externalcontact/remark", {"userid": "ZhangLi", "external_userid": ext, "remark": "李总"}),
        ("externalcontact/edit_corp_tag", {"id": tag_id, "name": "知识问答"}),
        ("externalcontact/del_corp_tag", {"tag_id": [tag_id]}),
    ]
    for path, body in calls:
        assert (await wecom.post(path, body))["errcode"] == 0, path
    assert len(sandbox.world.ledger.pending_callbacks) == 0
    assert await deliverer.flush() == []
    assert len(receiver.received) == 1


async def test_redelivery_until_success(
    sandbox: Sandbox, deliverer: CallbackDeliverer, receiver: Receiver
) -> None:
    receiver.fail_first = 2
    sandbox.script.customer_adds_member(NewCustomer("李四"), "ZhangLi")
    attempts = await deliverer.flush()
    assert [(a.attempt, a.status_code, a.ok) for a in attempts] == [
        (1, 500, False),
        (2, 500, False),
        (3, 200, True),
    ]
    assert len(deliverer.delivered) == 1
    # Every attempt carried the same event.
    assert len({r["ExternalUserID"] for r in receiver.received}) == 1


async def test_three_attempts_in_total(
    sandbox: Sandbox, deliverer: CallbackDeliverer, receiver: Receiver
) -> None:
    receiver.fail_first = 99
    sandbox.script.customer_adds_member(NewCustomer("李四"), "ZhangLi")
    attempts = await deliverer.flush()
    assert len(attempts) == 3
    assert deliverer.delivered == []
    assert len(deliverer.undelivered) == 1


async def test_status_retry_can_be_switched_off(sandbox: Sandbox, receiver: Receiver) -> None:
    receiver.fail_first = 99
    deliverer = sandbox.deliverer_to(receiver.app, retry_on_status=False)
    sandbox.script.customer_adds_member(NewCustomer("李四"), "ZhangLi")
    assert len(await deliverer.flush()) == 1
    await deliverer.aclose()


async def test_slow_answer_counts_as_timeout(
    sandbox: Sandbox, deliverer: CallbackDeliverer, receiver: Receiver
) -> None:
    receiver.sleep_first = 1  # sleeps 6 s on the frozen clock: past WeCom's 5 s
    sandbox.script.customer_adds_member(NewCustomer("李四"), "ZhangLi")
    first, second = await deliverer.flush()
    assert first.status_code == 200
    assert not first.ok
    assert first.latency == pytest.approx(6.0)
    assert "5 s" in (first.error or "")
    assert second.ok


async def test_crashing_bot_is_retried(
    sandbox: Sandbox, deliverer: CallbackDeliverer, receiver: Receiver
) -> None:
    receiver.raise_first = 1
    sandbox.script.customer_adds_member(NewCustomer("李四"), "ZhangLi")
    first, second = await deliverer.flush()
    assert first.status_code is None
    assert "RuntimeError" in (first.error or "")
    assert second.ok


async def test_deliver_twice_fault(
    sandbox: Sandbox, deliverer: CallbackDeliverer, receiver: Receiver
) -> None:
    deliverer.duplicate_next()
    sandbox.script.customer_adds_member(NewCustomer("李四"), "ZhangLi")
    sandbox.script.customer_adds_member(NewCustomer("王五"), "ZhangLi")
    attempts = await deliverer.flush()
    assert [a.duplicate for a in attempts] == [False, True, False]
    first, again, other = receiver.received
    assert first == again
    assert other != first


async def test_flush_is_ordered_and_empties_the_queue(
    sandbox: Sandbox, deliverer: CallbackDeliverer, receiver: Receiver
) -> None:
    for name in ("甲", "乙", "丙"):
        sandbox.script.customer_adds_member(NewCustomer(name), "ZhangLi")
    assert deliverer.pending == 3
    await deliverer.flush()
    assert deliverer.pending == 0
    assert [a.seq for a in deliverer.attempts] == sorted(a.seq for a in deliverer.attempts)
    names = [sandbox.world.customers[r["ExternalUserID"]].name for r in receiver.received]
    assert names == ["甲", "乙", "丙"]


async def test_url_verification(deliverer: CallbackDeliverer) -> None:
    assert await deliverer.verify_url()
