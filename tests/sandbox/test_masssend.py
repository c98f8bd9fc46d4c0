"""Mass-send: add_msg_template validation, member confirmation, receive cap, records, remind."""

from __future__ import annotations

from typing import Any

import pytest

from bot.clock import FrozenClock
from bot.sandbox import NewCustomer, ReceiveCap, Sandbox
from tests.sandbox.conftest import WeCom


def customers(sandbox: Sandbox, n: int, userid: str = "ZhangLi") -> list[str]:
    script = sandbox.script
    exts = [
        script.customer_adds_member(NewCustomer(f"客户{i}"), userid).external_userid
        for i in range(n)
    ]
    sandbox.world.ledger.pending_callbacks.clear()
    return exts


def single(exts: list[str], text: str = "周三五折，理财专享", **extra: Any) -> dict[str, Any]:
    return {"chat_type": "single", "external_userid": exts, "text": {"content": text}, **extra}


async def test_task_waits_for_the_member(
    wecom: WeCom, sandbox: Sandbox, clock: FrozenClock
) -> None:
    exts = customers(sandbox, 2)
    answer = await wecom.post("externalcontact/add_msg_template", single([*exts, "wmstranger"]))
    assert answer["errcode"] == 0
    msgid = answer["msgid"]
    assert msgid.startswith("msg")
    assert answer["fail_list"] == ["wmstranger"]
    tasks = await wecom.post("externalcontact/get_groupmsg_task", {"msgid": msgid})
    assert tasks["task_list"] == [{"userid": "ZhangLi", "status": 0}]
    result = await wecom.post(
        "externalcontact/get_groupmsg_send_result", {"msgid": msgid, "userid": "ZhangLi"}
    )
    assert {r["status"] for r in result["send_list"]} == {0}
    clock.advance(600)
    recipients = sandbox.script.member_confirms_task(msgid, "ZhangLi")
    assert [r.status for r in recipients] == [1, 1]
    tasks = await wecom.post("externalcontact/get_groupmsg_task", {"msgid": msgid})
    assert tasks["task_list"] == [
        {"userid": "ZhangLi", "status": 2, "send_time": int(clock.timestamp())}
    ]
    result = await wecom.post(
        "externalcontact/get_groupmsg_send_result", {"msgid": msgid, "userid": "ZhangLi"}
    )
    assert sorted(r["external_userid"] for r in result["send_list"]) == sorted(exts)
    assert all(
        r["status"] == 1 and r["userid"] == "ZhangLi" and "send_time" in r
        for r in result["send_list"]
    )


async def test_task_goes_to_the_member_who_last_interacted(
    wecom: WeCom, sandbox: Sandbox, clock: FrozenClock
) -> None:
    (ext,) = customers(sandbox, 1)
    clock.advance(60)
    sandbox.script.customer_adds_member(ext, "WangJianhua")
    answer = await wecom.post("externalcontact/add_msg_template", single([ext]))
    tasks = await wecom.post("externalcontact/get_groupmsg_task", {"msgid": answer["msgid"]})
    assert [t["userid"] for t in tasks["task_list"]] == ["WangJianhua"]
    clock.advance(60)
    sandbox.script.customer_starts_chatting(ext, "ZhangLi")
    again = await wecom.post("externalcontact/add_msg_template", single([ext]))
    tasks = await wecom.post("externalcontact/get_groupmsg_task", {"msgid": again["msgid"]})
    assert [t["userid"] for t in tasks["task_list"]] == ["ZhangLi"]


async def test_tag_filter_and_sender(wecom: WeCom, sandbox: Sandbox) -> None:
    world = sandbox.world
    group = world.create_tag_group("客户类型")
    payroll = world.create_tag(group.group_id, "代发工资")
    exts = customers(sandbox, 3)
    world.retag(world.relations[("ZhangLi", exts[0])], [payroll.tag_id], [])
    body = {
        "chat_type": "single",
        "sender": "ZhangLi",
        "tag_filter": {"group_list": [{"tag_list": [payroll.tag_id]}]},
        "text": {"content": "代发客户专享"},
    }
    answer = await wecom.post("externalcontact/add_msg_template", body)
    assert answer["errcode"] == 0
    task = world.tasks[answer["msgid"]]
    assert [r.target for r in task.recipients] == [exts[0]]


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        (single([f"wm{i}" for i in range(10_001)]), 40058),
        (
            single(
                ["wm1"],
                attachments=[{"msgtype": "link", "link": {"title": "t", "url": "https://x"}}] * 10,
            ),
            40058,
        ),
        (single(["wm1"], text="字" * 1334), 45002),
        ({"chat_type": "group", "text": {"content": "hi"}}, 40058),
        (
            {
                "chat_type": "group",
                "sender": "ZhangLi",
                "chat_id_list": [f"wr{i}" for i in range(2001)],
                "text": {"content": "hi"},
            },
            40058,
        ),
        ({"chat_type": "single", "text": {"content": "hi"}}, 40058),
        ({"chat_type": "broadcast", "external_userid": ["wm1"], "text": {"content": "hi"}}, 40058),
        ({"chat_type": "single", "external_userid": ["wm1"]}, 44004),
        (single(["wm1"], attachments=[{"msgtype": "image", "image": {"media_id": "nope"}}]), 40007),
        (single(["wm1"], sender="nobody"), 40003),
    ],
)
async def test_add_msg_template_limits(wecom: WeCom, body: dict[str, Any], errcode: int) -> None:
    answer = await wecom.post("externalcontact/add_msg_template", body)
    assert answer["errcode"] == errcode, answer["errmsg"]
    assert "msgid" not in answer


async def test_limits_are_exact(wecom: WeCom, sandbox: Sandbox) -> None:
    exts = customers(sandbox, 1)
    link = {"msgtype": "link", "link": {"title": "本周活动", "url": "https://example.com/h5/quiz"}}
    # 1333 CJK characters are 3999 bytes; the limit is 4000 bytes.
    ok = single(exts, text="字" * 1333 + "a", attachments=[link] * 9)
    assert (await wecom.post("externalcontact/add_msg_template", ok))["errcode"] == 0
    many = single([*exts, *[f"wm{i}" for i in range(9_999)]])
    answer = await wecom.post("externalcontact/add_msg_template", many)
    assert answer["errcode"] == 0
    assert len(answer["fail_list"]) == 9_999


async def test_group_task_targets_owned_chats(wecom: WeCom, sandbox: Sandbox) -> None:
    mine = sandbox.script.create_group("ZhangLi", "银发生活群")
    theirs = sandbox.script.create_group("WangJianhua", "代发工资客户群")
    body = {
        "chat_type": "group",
        "sender": "ZhangLi",
        "chat_id_list": [mine.chat_id, theirs.chat_id],
        "text": {"content": "今晚八点直播"},
    }
    answer = await wecom.post("externalcontact/add_msg_template", body)
    assert answer["fail_list"] == [theirs.chat_id]
    sandbox.script.member_confirms_task(answer["msgid"], "ZhangLi")
    result = await wecom.post(
        "externalcontact/get_groupmsg_send_result", {"msgid": answer["msgid"], "userid": "ZhangLi"}
    )
    (row,) = result["send_list"]
    assert row["chat_id"] == mine.chat_id
    assert row["status"] == 1
    assert "external_userid" not in row


async def test_monthly_cap_is_days_of_the_month(
    wecom: WeCom, sandbox: Sandbox, clock: FrozenClock
) -> None:
    (ext,) = customers(sandbox, 1)
    statuses = []
    # November has 30 days: the 31st mass-send this month fails with status 3.
    for _ in range(31):
        answer = await wecom.post("externalcontact/add_msg_template", single([ext]))
        (recipient,) = sandbox.script.member_confirms_task(answer["msgid"], "ZhangLi")
        statuses.append(recipient.status)
        clock.advance(60)
    assert statuses == [1] * 30 + [3]
    assert len(sandbox.world.breaches("receive_cap")) == 1
    clock.set(clock.now().replace(year=2026, month=12, day=1, hour=9))
    await wecom.login()
    answer = await wecom.post("externalcontact/add_msg_template", single([ext]))
    (recipient,) = sandbox.script.member_confirms_task(answer["msgid"], "ZhangLi")
    assert recipient.status == 1


async def test_daily_cap_gives_status_3(wecom: WeCom, sandbox: Sandbox, clock: FrozenClock) -> None:
    sandbox.world.limits.receive_cap = ReceiveCap.daily()
    exts = customers(sandbox, 2)
    first = await wecom.post("externalcontact/add_msg_template", single(exts[:1]))
    second = await wecom.post("externalcontact/add_msg_template", single(exts))
    sandbox.script.member_confirms_task(first["msgid"], "ZhangLi")
    sandbox.script.member_confirms_task(second["msgid"], "ZhangLi")
    result = await wecom.post(
        "externalcontact/get_groupmsg_send_result", {"msgid": second["msgid"], "userid": "ZhangLi"}
    )
    statuses = {r["external_userid"]: r["status"] for r in result["send_list"]}
    assert statuses == {exts[0]: 3, exts[1]: 1}
    clock.advance(86400)
    await wecom.login()
    third = await wecom.post("externalcontact/add_msg_template", single(exts[:1]))
    assert [r.status for r in sandbox.script.member_confirms_task(third["msgid"], "ZhangLi")] == [1]


async def test_not_a_friend_gives_status_2(wecom: WeCom, sandbox: Sandbox) -> None:
    exts = customers(sandbox, 2)
    answer = await wecom.post("externalcontact/add_msg_template", single(exts))
    sandbox.script.customer_deletes_member(exts[0], "ZhangLi")
    recipients = sandbox.script.member_confirms_task(answer["msgid"], "ZhangLi")
    assert {r.target: r.status for r in recipients} == {exts[0]: 2, exts[1]: 1}


async def test_remind_three_times_a_day(wecom: WeCom, sandbox: Sandbox, clock: FrozenClock) -> None:
    answer = await wecom.post("externalcontact/add_msg_template", single(customers(sandbox, 1)))
    body = {"msgid": answer["msgid"]}
    for _ in range(3):
        assert (await wecom.post("externalcontact/remind_groupmsg_send", body))["errcode"] == 0
        clock.advance(1800)
    fourth = await wecom.post("externalcontact/remind_groupmsg_send", body)
    assert fourth["errcode"] != 0
    assert sandbox.world.breaches("remind_limit")
    clock.advance(86400 - 3 * 1800 + 1)
    await wecom.login()
    assert (await wecom.post("externalcontact/remind_groupmsg_send", body))["errcode"] == 0


async def test_cancel_stops_the_task(wecom: WeCom, sandbox: Sandbox) -> None:
    answer = await wecom.post("externalcontact/add_msg_template", single(customers(sandbox, 1)))
    assert (await wecom.post("externalcontact/cancel_groupmsg_send", {"msgid": answer["msgid"]}))[
        "errcode"
    ] == 0
    with pytest.raises(ValueError, match="cancelled"):
        sandbox.script.member_confirms_task(answer["msgid"], "ZhangLi")
    assert (await wecom.post("externalcontact/cancel_groupmsg_send", {"msgid": "msgnope"}))[
        "errcode"
    ] == 40058


async def test_groupmsg_list_v2(wecom: WeCom, sandbox: Sandbox, clock: FrozenClock) -> None:
    exts = customers(sandbox, 1)
    start = int(clock.timestamp())
    answer = await wecom.post("externalcontact/add_msg_template", single(exts, text="周二预购半价"))
    clock.advance(10)
    span = {"chat_type": "single", "start_time": start - 10, "end_time": start + 100}
    listing = await wecom.post("externalcontact/get_groupmsg_list_v2", span)
    assert listing["errcode"] == 0
    (record,) = listing["group_msg_list"]
    assert record == {
        "msgid": answer["msgid"],
        "create_time": start,
        "create_type": 0,
        "text": {"content": "周二预购半价"},
    }
    personal = await wecom.post("externalcontact/get_groupmsg_list_v2", {**span, "filter_type": 1})
    assert personal["group_msg_list"] == []
    groups = await wecom.post(
        "externalcontact/get_groupmsg_list_v2", {**span, "chat_type": "group"}
    )
    assert groups["group_msg_list"] == []
    too_long = {**span, "end_time": start + 32 * 86400}
    assert (await wecom.post("externalcontact/get_groupmsg_list_v2", too_long))["errcode"] == 40058
    assert (await wecom.post("externalcontact/get_groupmsg_list_v2", {**span, "limit": 101}))[
        "errcode"
    ] == 40058
