"""App messages, template cards, welcome messages and media uploads."""

from __future__ import annotations

from typing import Any

from bot.clock import FrozenClock
from bot.sandbox import NewCustomer, Sandbox
from tests.sandbox.conftest import WeCom

AGENT = 1000002


def text(touser: str, content: str = "今日任务：确认周三五折群发", **extra: Any) -> dict[str, Any]:
    return {
        "touser": touser,
        "msgtype": "text",
        "agentid": AGENT,
        "text": {"content": content},
        **extra,
    }


def button_card(task_id: str, touser: str = "ZhangLi") -> dict[str, Any]:
    return {
        "touser": touser,
        "msgtype": "template_card",
        "agentid": AGENT,
        "template_card": {
            "card_type": "button_interaction",
            "main_title": {"title": "提醒客户李四参加问答"},
            "task_id": task_id,
            "button_list": [
                {"text": "完成", "style": 1, "key": "done"},
                {"text": "稍后", "key": "later"},
            ],
        },
    }


async def test_send_text_shape(wecom: WeCom, sandbox: Sandbox) -> None:
    answer = await wecom.post("message/send", text("ZhangLi|Nobody"))
    assert answer["errcode"] == 0
    assert answer["invaliduser"] == "nobody"
    assert answer["msgid"]
    assert "response_code" not in answer
    (message,) = sandbox.world.inbox["ZhangLi"]
    assert message.content == {"content": "今日任务：确认周三五折群发"}


async def test_send_errors(wecom: WeCom) -> None:
    assert (await wecom.post("message/send", text("Nobody|Ghost")))["errcode"] == 81013
    assert (await wecom.post("message/send", text("ZhangLi", agentid=1)))["errcode"] == 40056
    assert (await wecom.post("message/send", text("ZhangLi", msgtype="hologram")))[
        "errcode"
    ] == 40008
    assert (await wecom.post("message/send", text("ZhangLi", content="")))["errcode"] == 44004


async def test_long_text_is_truncated_not_rejected(wecom: WeCom, sandbox: Sandbox) -> None:
    answer = await wecom.post("message/send", text("ZhangLi", content="字" * 700))
    assert answer["errcode"] == 0
    (message,) = sandbox.world.inbox["ZhangLi"]
    assert len(message.content["content"].encode()) == 2046


async def test_per_member_minute_cap_drops_silently(
    wecom: WeCom, sandbox: Sandbox, clock: FrozenClock
) -> None:
    answers = [
        await wecom.post("message/send", text("ZhangLi", content=f"任务{i}")) for i in range(31)
    ]
    assert {a["errcode"] for a in answers} == {0}
    world = sandbox.world
    assert len(world.inbox["ZhangLi"]) == 30
    assert world.app_messages[-1].dropped_for == ["ZhangLi"]
    (breach,) = world.breaches("member_message_rate")
    assert breach.detail["userid"] == "ZhangLi"
    # Another member is not affected, and the window slides.
    await wecom.post("message/send", text("WangJianhua"))
    assert len(world.inbox["WangJianhua"]) == 1
    clock.advance(60)
    await wecom.post("message/send", text("ZhangLi", content="再来一条"))
    assert len(world.inbox["ZhangLi"]) == 31


async def test_per_member_hour_cap(wecom: WeCom, sandbox: Sandbox, clock: FrozenClock) -> None:
    for i in range(1001):
        await wecom.post("message/send", text("ZhangLi", content=f"任务{i}"))
        clock.advance(2.5)  # 24 a minute: under the minute cap, 1001 inside the hour
    assert len(sandbox.world.inbox["ZhangLi"]) == 1000
    assert len(sandbox.world.breaches("member_message_rate")) == 1


async def test_duplicate_check(wecom: WeCom, sandbox: Sandbox, clock: FrozenClock) -> None:
    body = text("ZhangLi", enable_duplicate_check=1, duplicate_check_interval=600)
    await wecom.post("message/send", body)
    await wecom.post("message/send", body)
    assert len(sandbox.world.inbox["ZhangLi"]) == 1
    assert sandbox.world.app_messages[-1].duplicate_for == ["ZhangLi"]
    clock.advance(600)
    await wecom.post("message/send", body)
    assert len(sandbox.world.inbox["ZhangLi"]) == 2


async def test_template_card_and_update(wecom: WeCom, sandbox: Sandbox, clock: FrozenClock) -> None:
    sent = await wecom.post("message/send", button_card("remind_20261123_lisi"))
    assert sent["errcode"] == 0
    send_code = sent["response_code"]
    click_code = sandbox.script.member_taps_card_button("ZhangLi", "remind_20261123_lisi", "done")
    assert click_code != send_code
    update = {"agentid": AGENT, "response_code": click_code, "button": {"replace_name": "已完成"}}
    assert (await wecom.post("message/update_template_card", update))["errcode"] == 0
    assert sandbox.world.cards["remind_20261123_lisi"].replaced_name == "已完成"
    # Each code works once.
    assert (await wecom.post("message/update_template_card", update))["errcode"] == 40058
    # And only for 72 hours.
    clock.advance(72 * 3600)
    await wecom.login()
    late = {**update, "response_code": send_code}
    assert (await wecom.post("message/update_template_card", late))["errcode"] == 40058


async def test_card_validation(wecom: WeCom) -> None:
    notice = {
        "touser": "ZhangLi",
        "msgtype": "template_card",
        "agentid": AGENT,
        "template_card": {"card_type": "text_notice", "main_title": {"title": "本周主题"}},
    }
    assert (await wecom.post("message/send", notice))["errcode"] == 42045
    assert (await wecom.post("message/send", button_card("dup_1")))["errcode"] == 0
    assert (await wecom.post("message/send", button_card("dup_1")))["errcode"] == 40058
    assert (await wecom.post("message/send", button_card("bad id!")))["errcode"] == 40058


async def test_welcome_code_once_within_20s(
    wecom: WeCom, sandbox: Sandbox, clock: FrozenClock
) -> None:
    first = sandbox.script.customer_adds_member(NewCustomer("王芳"), "ZhangLi")
    second = sandbox.script.customer_adds_member(NewCustomer("赵敏"), "ZhangLi")
    clock.advance(20)
    body = {"welcome_code": first.welcome_code, "text": {"content": "您好，我是您的客户经理张丽"}}
    assert (await wecom.post("externalcontact/send_welcome_msg", body))["errcode"] == 0
    assert (await wecom.post("externalcontact/send_welcome_msg", body))["errcode"] == 41051
    clock.advance(1)
    late = {**body, "welcome_code": second.welcome_code}
    assert (await wecom.post("externalcontact/send_welcome_msg", late))["errcode"] == 41051
    world = sandbox.world
    assert [m.external_userid for m in world.welcome_messages] == [first.external_userid]
    assert [b.kind for b in world.breaches()] == ["welcome_code_reused", "welcome_code_late"]
    unknown = {**body, "welcome_code": "never-issued"}
    assert (await wecom.post("externalcontact/send_welcome_msg", unknown))["errcode"] == 40058


async def test_no_welcome_code_when_admin_configured_one(sandbox: Sandbox) -> None:
    result = sandbox.script.customer_adds_member(NewCustomer("钱七"), "ZhangLi", welcome_code=False)
    assert result.welcome_code is None
    assert "WelcomeCode" not in result.callback.xml


async def upload(
    wecom: WeCom, filename: str, data: bytes, media_type: str = "image"
) -> dict[str, Any]:
    response = await wecom.client.post(
        "/cgi-bin/media/upload",
        params={"access_token": wecom.token, "type": media_type},
        files={"media": (filename, data, "application/octet-stream")},
    )
    return dict(response.json())


async def test_media_upload_and_expiry(wecom: WeCom, sandbox: Sandbox, clock: FrozenClock) -> None:
    answer = await upload(wecom, "poster.png", b"\x89PNG" + b"0" * 100)
    assert answer["errcode"] == 0
    assert answer["type"] == "image"
    assert answer["created_at"] == str(int(clock.timestamp()))
    media_id = answer["media_id"]
    sandbox.script.customer_adds_member(NewCustomer("孙丽"), "ZhangLi")
    body = {
        "chat_type": "single",
        "sender": "ZhangLi",
        "text": {"content": "活动海报"},
        "attachments": [{"msgtype": "image", "image": {"media_id": media_id}}],
    }
    assert (await wecom.post("externalcontact/add_msg_template", body))["errcode"] == 0
    clock.advance(3 * 86400)
    await wecom.login()
    assert (await wecom.post("externalcontact/add_msg_template", body))["errcode"] == 40007
    call = sandbox.world.calls("media/upload")[0]
    assert call.body == {"files": [{"name": "media", "filename": "poster.png", "size": 104}]}


async def test_media_upload_errors(wecom: WeCom) -> None:
    assert (await upload(wecom, "virus.exe", b"MZ" * 10))["errcode"] == 40004
    assert (await upload(wecom, "a.png", b"1234"))["errcode"] == 40006
    assert (await upload(wecom, "a.txt", b"hello", media_type="sticker"))["errcode"] == 40005
    assert (await upload(wecom, "report.pdf", b"%PDF-1.7", media_type="file"))["errcode"] == 0
