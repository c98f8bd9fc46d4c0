"""One round trip per endpoint: HTTP method, path, query and body sent; model parsed."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from bot.clock import SHANGHAI
from bot.wecom.models import ImageAttachment, ImageRef, LinkAttachment, LinkRef, WeComResponse
from tests.wecom.conftest import AGENT_ID
from tests.wecom.fake import FakeWeCom, Recorded, ok

TOKEN = "TOKEN-1-" + "x" * 20


def only(fake: FakeWeCom, path: str) -> Recorded:
    calls = fake.calls(path)
    assert len(calls) == 1, f"{path}: {len(calls)} calls"
    assert calls[0].token == TOKEN
    return calls[0]


def post_body(fake: FakeWeCom, path: str) -> Any:
    call = only(fake, path)
    assert call.method == "POST"
    assert call.headers["content-type"] == "application/json"
    assert set(call.params) == {"access_token"}
    return call.json


CONTACT = {
    "external_userid": "wmABC",
    "name": "李四",
    "type": 1,
    "gender": 1,
    "avatar": "http://wx.qlogo.cn/x",
    "unionid": "ozynqsulJFCZ2z1aYeS8h-nuasdAAA",
    "some_new_field": {"from": "a future WeCom"},
}
FOLLOW = {
    "userid": "zhangsan",
    "remark": "李总",
    "description": "代发客户",
    "createtime": 1700000000,
    "tags": [{"group_name": "资产", "tag_name": "50万+", "type": 1, "tag_id": "et50"}],
    "remark_mobiles": ["13800000000"],
    "add_way": 1,
    "state": "branch-qr",
    "oper_userid": "zhangsan",
}


# --- externalcontact ---------------------------------------------------------------------


async def test_externalcontact_get(lite_client, fake):
    fake.reply("externalcontact/get", ok(external_contact=CONTACT, follow_user=[FOLLOW]))

    detail = await lite_client.externalcontact.get("wmABC", cursor="CUR")

    call = only(fake, "externalcontact/get")
    assert call.method == "GET"
    assert call.params == {"external_userid": "wmABC", "cursor": "CUR", "access_token": TOKEN}
    assert detail.external_contact.name == "李四"
    assert detail.external_contact.unionid == "ozynqsulJFCZ2z1aYeS8h-nuasdAAA"
    assert detail.external_contact.model_extra == {"some_new_field": {"from": "a future WeCom"}}
    follow = detail.follow_user[0]
    assert (follow.userid, follow.add_way, follow.state, follow.oper_userid) == (
        "zhangsan",
        1,
        "branch-qr",
        "zhangsan",
    )
    assert follow.tags[0].tag_id == "et50"
    assert follow.remark_mobiles == ["13800000000"]
    assert detail.next_cursor == ""


async def test_externalcontact_get_all_follows_the_cursor(lite_client, fake):
    second = {**FOLLOW, "userid": "wangwu"}
    fake.reply(
        "externalcontact/get",
        ok(external_contact=CONTACT, follow_user=[FOLLOW], next_cursor="P2"),
        ok(external_contact=CONTACT, follow_user=[second], next_cursor=""),
    )

    detail = await lite_client.externalcontact.get_all("wmABC")

    assert [f.userid for f in detail.follow_user] == ["zhangsan", "wangwu"]
    assert [c.params.get("cursor") for c in fake.calls("externalcontact/get")] == [None, "P2"]
    assert detail.next_cursor == ""


async def test_externalcontact_get_all_stops_on_a_repeating_cursor(lite_client, fake):
    fake.always(
        "externalcontact/get", ok(external_contact=CONTACT, follow_user=[], next_cursor="SAME")
    )

    with pytest.raises(Exception, match="next_cursor does not advance"):
        await lite_client.externalcontact.get_all("wmABC")

    assert len(fake.calls("externalcontact/get")) == 2


async def test_externalcontact_list(lite_client, fake):
    fake.reply("externalcontact/list", ok(external_userid=["wm1", "wm2"]))

    result = await lite_client.externalcontact.list("zhangsan")

    call = only(fake, "externalcontact/list")
    assert call.method == "GET"
    assert call.params["userid"] == "zhangsan"
    assert result.external_userid == ["wm1", "wm2"]


async def test_get_follow_user_list(lite_client, fake):
    fake.reply("externalcontact/get_follow_user_list", ok(follow_user=["zhangsan", "lisi"]))

    result = await lite_client.externalcontact.get_follow_user_list()

    call = only(fake, "externalcontact/get_follow_user_list")
    assert call.method == "GET"
    assert call.params == {"access_token": TOKEN}
    assert result.follow_user == ["zhangsan", "lisi"]


async def test_batch_get_by_user(lite_client, fake):
    follow_info = {**FOLLOW, "tag_id": ["et50", "etpay"]}
    del follow_info["tags"]
    fake.reply(
        "externalcontact/batch/get_by_user",
        ok(
            external_contact_list=[{"external_contact": CONTACT, "follow_info": follow_info}],
            next_cursor="NEXT",
            fail_info={"unlicensed_userid_list": []},
        ),
    )

    page = await lite_client.externalcontact.batch_get_by_user(
        ["zhangsan", "lisi"], cursor="C1", limit=100
    )

    assert post_body(fake, "externalcontact/batch/get_by_user") == {
        "userid_list": ["zhangsan", "lisi"],
        "cursor": "C1",
        "limit": 100,
    }
    row = page.external_contact_list[0]
    assert row.external_contact.external_userid == "wmABC"
    assert row.follow_info.tag_id == ["et50", "etpay"]
    assert page.next_cursor == "NEXT"


async def test_remark(lite_client, fake):
    fake.reply("externalcontact/remark", ok())

    result = await lite_client.externalcontact.remark(
        "zhangsan", "wmABC", remark="李总", description="代发", remark_mobiles=["13800000000"]
    )

    assert post_body(fake, "externalcontact/remark") == {
        "userid": "zhangsan",
        "external_userid": "wmABC",
        "remark": "李总",
        "description": "代发",
        "remark_mobiles": ["13800000000"],
    }
    assert isinstance(result, WeComResponse)
    assert result.errcode == 0


async def test_send_welcome_msg(lite_client, fake):
    fake.reply("externalcontact/send_welcome_msg", ok())

    await lite_client.externalcontact.send_welcome_msg(
        "WELCOMECODE",
        text="欢迎!",
        attachments=[
            LinkAttachment(link=LinkRef(title="活动", url="https://bank.example/h5/quiz")),
            {"msgtype": "image", "image": {"pic_url": "https://bank.example/p.png"}},
        ],
    )

    assert post_body(fake, "externalcontact/send_welcome_msg") == {
        "welcome_code": "WELCOMECODE",
        "text": {"content": "欢迎!"},
        "attachments": [
            {"msgtype": "link", "link": {"title": "活动", "url": "https://bank.example/h5/quiz"}},
            {"msgtype": "image", "image": {"pic_url": "https://bank.example/p.png"}},
        ],
    }


# --- tags --------------------------------------------------------------------------------

TAG_GROUP = {
    "group_id": "etGRP",
    "group_name": "资产",
    "create_time": 1700000000,
    "order": 1,
    "tag": [{"id": "et5", "name": "5万+", "create_time": 1700000000, "order": 1}],
}


async def test_get_corp_tag_list(lite_client, fake):
    fake.reply("externalcontact/get_corp_tag_list", ok(tag_group=[TAG_GROUP]))

    result = await lite_client.tags.get_corp_tag_list(group_id=["etGRP"])

    assert post_body(fake, "externalcontact/get_corp_tag_list") == {"group_id": ["etGRP"]}
    assert result.tag_group[0].tag[0].name == "5万+"
    assert result.tag_group[0].tag[0].deleted is False


async def test_get_corp_tag_list_all(lite_client, fake):
    fake.reply("externalcontact/get_corp_tag_list", ok(tag_group=[]))

    await lite_client.tags.get_corp_tag_list()

    assert post_body(fake, "externalcontact/get_corp_tag_list") == {}


async def test_add_corp_tag(lite_client, fake):
    fake.reply("externalcontact/add_corp_tag", ok(tag_group=TAG_GROUP))

    result = await lite_client.tags.add_corp_tag(
        ["5万+", {"name": "10万+", "order": 2}], group_name="资产", order=1
    )

    assert post_body(fake, "externalcontact/add_corp_tag") == {
        "group_name": "资产",
        "order": 1,
        "tag": [{"name": "5万+"}, {"name": "10万+", "order": 2}],
    }
    assert result.tag_group.group_id == "etGRP"


async def test_edit_corp_tag(lite_client, fake):
    fake.reply("externalcontact/edit_corp_tag", ok())

    await lite_client.tags.edit_corp_tag("et5", name="5万以上", order=3)

    assert post_body(fake, "externalcontact/edit_corp_tag") == {
        "id": "et5",
        "name": "5万以上",
        "order": 3,
    }


async def test_del_corp_tag(lite_client, fake):
    fake.reply("externalcontact/del_corp_tag", ok())

    await lite_client.tags.del_corp_tag(tag_id=["et5", "et10"])

    assert post_body(fake, "externalcontact/del_corp_tag") == {"tag_id": ["et5", "et10"]}


async def test_mark_tag(lite_client, fake):
    fake.reply("externalcontact/mark_tag", ok())

    await lite_client.tags.mark_tag("zhangsan", "wmABC", add_tag=["et50"], remove_tag=["et5"])

    assert post_body(fake, "externalcontact/mark_tag") == {
        "userid": "zhangsan",
        "external_userid": "wmABC",
        "add_tag": ["et50"],
        "remove_tag": ["et5"],
    }


# --- groupchat ---------------------------------------------------------------------------


async def test_groupchat_list(lite_client, fake):
    fake.reply(
        "externalcontact/groupchat/list",
        ok(group_chat_list=[{"chat_id": "wrA", "status": 0}], next_cursor="N"),
    )

    page = await lite_client.groupchat.list(owner_userids=["zhangsan"], cursor="C", limit=100)

    assert post_body(fake, "externalcontact/groupchat/list") == {
        "status_filter": 0,
        "owner_filter": {"userid_list": ["zhangsan"]},
        "cursor": "C",
        "limit": 100,
    }
    assert page.group_chat_list[0].chat_id == "wrA"
    assert page.next_cursor == "N"


async def test_groupchat_get(lite_client, fake):
    fake.reply(
        "externalcontact/groupchat/get",
        ok(
            group_chat={
                "chat_id": "wrA",
                "name": "周二半价群",
                "owner": "zhangsan",
                "create_time": 1700000000,
                "notice": "每周二",
                "member_list": [
                    {"userid": "zhangsan", "type": 1, "join_time": 1700000000, "join_scene": 1},
                    {
                        "userid": "wmABC",
                        "type": 2,
                        "unionid": "ozy",
                        "join_time": 1700000100,
                        "join_scene": 3,
                        "invitor": {"userid": "zhangsan"},
                        "group_nickname": "李",
                        "name": "李四",
                        "state": "qr-tue",
                    },
                ],
                "admin_list": [{"userid": "lisi"}],
                "member_version": "71217227bbd112ecfe3a49c482195cb4",
            }
        ),
    )

    chat = await lite_client.groupchat.get("wrA", need_name=True)

    assert post_body(fake, "externalcontact/groupchat/get") == {"chat_id": "wrA", "need_name": 1}
    assert chat.name == "周二半价群"
    assert chat.owner == "zhangsan"
    customer = chat.member_list[1]
    assert (customer.type, customer.invitor.userid, customer.state) == (2, "zhangsan", "qr-tue")
    assert [a.userid for a in chat.admin_list] == ["lisi"]
    assert chat.member_version == "71217227bbd112ecfe3a49c482195cb4"


# --- groupmsg ----------------------------------------------------------------------------


async def test_add_msg_template_single(lite_client, fake):
    fake.reply("externalcontact/add_msg_template", ok(fail_list=["wmGONE"], msgid="msgGZsRCQ"))

    result = await lite_client.groupmsg.add_msg_template(
        external_userid=["wmABC", "wmGONE"],
        sender="zhangsan",
        text="周三五折",
        attachments=[ImageAttachment(image=ImageRef(media_id="MEDIA"))],
    )

    assert post_body(fake, "externalcontact/add_msg_template") == {
        "chat_type": "single",
        "external_userid": ["wmABC", "wmGONE"],
        "sender": "zhangsan",
        "text": {"content": "周三五折"},
        "attachments": [{"msgtype": "image", "image": {"media_id": "MEDIA"}}],
    }
    assert result.msgid == "msgGZsRCQ"
    assert result.fail_list == ["wmGONE"]


async def test_add_msg_template_group(lite_client, fake):
    fake.reply("externalcontact/add_msg_template", ok(fail_list=[], msgid="msgG"))

    await lite_client.groupmsg.add_msg_template(
        chat_type="group",
        chat_id_list=["wrA", "wrB"],
        sender="zhangsan",
        allow_select=False,
        text="抽奖结果",
    )

    assert post_body(fake, "externalcontact/add_msg_template") == {
        "chat_type": "group",
        "chat_id_list": ["wrA", "wrB"],
        "sender": "zhangsan",
        "allow_select": False,
        "text": {"content": "抽奖结果"},
    }


@pytest.mark.parametrize("name", ["remind_groupmsg_send", "cancel_groupmsg_send"])
async def test_remind_and_cancel(lite_client, fake, name: str):
    fake.reply(f"externalcontact/{name}", ok())

    await getattr(lite_client.groupmsg, name)("msgG")

    assert post_body(fake, f"externalcontact/{name}") == {"msgid": "msgG"}


async def test_get_groupmsg_list_v2(lite_client, fake):
    fake.reply(
        "externalcontact/get_groupmsg_list_v2",
        ok(
            next_cursor="",
            group_msg_list=[
                {
                    "msgid": "msgG",
                    "creator": "zhangsan",
                    "create_time": "1700000000",
                    "create_type": 0,
                    "text": {"content": "周三五折"},
                    "attachments": [{"msgtype": "image", "image": {"media_id": "M"}}],
                }
            ],
        ),
    )
    start = datetime(2026, 11, 1, tzinfo=SHANGHAI)

    page = await lite_client.groupmsg.get_groupmsg_list_v2(
        start_time=start, end_time=1_795_000_000, creator="zhangsan", filter_type=0, limit=100
    )

    assert post_body(fake, "externalcontact/get_groupmsg_list_v2") == {
        "chat_type": "single",
        "start_time": int(start.timestamp()),
        "end_time": 1_795_000_000,
        "creator": "zhangsan",
        "filter_type": 0,
        "limit": 100,
    }
    record = page.group_msg_list[0]
    assert record.create_time == 1_700_000_000
    assert record.text.content == "周三五折"


async def test_get_groupmsg_task(lite_client, fake):
    fake.reply(
        "externalcontact/get_groupmsg_task",
        ok(next_cursor="N", task_list=[{"userid": "zhangsan", "status": 2, "send_time": 17}]),
    )

    page = await lite_client.groupmsg.get_groupmsg_task("msgG", limit=1000, cursor="C")

    assert post_body(fake, "externalcontact/get_groupmsg_task") == {
        "msgid": "msgG",
        "limit": 1000,
        "cursor": "C",
    }
    assert page.task_list[0].status == 2
    assert page.next_cursor == "N"


async def test_get_groupmsg_send_result(lite_client, fake):
    fake.reply(
        "externalcontact/get_groupmsg_send_result",
        ok(
            send_list=[
                {"external_userid": "wmABC", "userid": "zhangsan", "status": 1, "send_time": 17},
                {"external_userid": "wmCAP", "userid": "zhangsan", "status": 3},
            ]
        ),
    )

    page = await lite_client.groupmsg.get_groupmsg_send_result("msgG", "zhangsan")

    assert post_body(fake, "externalcontact/get_groupmsg_send_result") == {
        "msgid": "msgG",
        "userid": "zhangsan",
    }
    assert [(r.external_userid, r.status) for r in page.send_list] == [
        ("wmABC", 1),
        ("wmCAP", 3),
    ]


# --- message -----------------------------------------------------------------------------


async def test_send_text(lite_client, fake):
    fake.reply("message/send", ok(invaliduser="", msgid="MSG1"))

    result = await lite_client.message.send_text("zhangsan", "今天请确认群发")

    assert post_body(fake, "message/send") == {
        "touser": "zhangsan",
        "msgtype": "text",
        "agentid": AGENT_ID,
        "text": {"content": "今天请确认群发"},
    }
    assert result.msgid == "MSG1"
    # The recipient's own cap was charged: 29 more fit in this minute, not 30.
    for _ in range(29):
        assert lite_client.limiter.reserve("message/send", "zhangsan") == 0.0
    assert lite_client.limiter.reserve("message/send", "zhangsan") > 0


async def test_send_markdown_to_several_with_duplicate_check(lite_client, fake):
    fake.reply("message/send", ok(invaliduser="ghost", msgid="MSG2"))

    result = await lite_client.message.send_markdown(
        ["zhangsan", "ghost"],
        "**今日主题**",
        enable_duplicate_check=True,
        duplicate_check_interval=600,
    )

    assert post_body(fake, "message/send") == {
        "touser": "zhangsan|ghost",
        "msgtype": "markdown",
        "agentid": AGENT_ID,
        "enable_duplicate_check": 1,
        "duplicate_check_interval": 600,
        "markdown": {"content": "**今日主题**"},
    }
    assert result.invalid_users == ["ghost"]
    for member in ("zhangsan", "ghost"):  # each named recipient was counted
        for _ in range(29):
            lite_client.limiter.reserve("message/send", member)
        assert lite_client.limiter.reserve("message/send", member) > 0


async def test_send_template_card(lite_client, fake):
    fake.reply("message/send", ok(msgid="MSG3", response_code="RC-72h"))
    card = {
        "card_type": "button_interaction",
        "task_id": "remind-wmABC-20261123",
        "main_title": {"title": "提醒客户李四"},
        "button_list": [{"text": "完成", "key": "done"}, {"text": "稍后", "key": "later"}],
    }

    result = await lite_client.message.send_template_card("zhangsan", card)

    assert post_body(fake, "message/send") == {
        "touser": "zhangsan",
        "msgtype": "template_card",
        "agentid": AGENT_ID,
        "template_card": card,
    }
    assert result.response_code == "RC-72h"


async def test_send_to_everyone_does_not_charge_a_member(lite_client, fake):
    fake.reply("message/send", ok(msgid="M"))

    await lite_client.message.send_text("@all", "系统维护")

    assert post_body(fake, "message/send")["touser"] == "@all"
    assert [lite_client.limiter.reserve("message/send", "@all") for _ in range(30)] == [0.0] * 30


async def test_update_template_card(lite_client, fake):
    fake.reply("message/update_template_card", ok(invaliduser=[]))

    result = await lite_client.message.update_template_card(
        "RC-72h", userids=["zhangsan"], replace_name="已完成"
    )

    assert post_body(fake, "message/update_template_card") == {
        "userids": ["zhangsan"],
        "agentid": AGENT_ID,
        "response_code": "RC-72h",
        "button": {"replace_name": "已完成"},
    }
    assert result.invaliduser == []


# --- media -------------------------------------------------------------------------------


async def test_media_upload(lite_client, fake):
    fake.reply(
        "media/upload",
        ok(type="image", media_id="1G6nrLmr5EC3MMb_-zK1dDdzmd0p7", created_at="1380000000"),
    )
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 100

    result = await lite_client.media.upload(
        "image", png, filename="poster.png", content_type="image/png"
    )

    call = only(fake, "media/upload")
    assert call.method == "POST"
    assert call.params == {"type": "image", "access_token": TOKEN}
    assert call.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert b'name="media"; filename="poster.png"' in call.body
    assert b"Content-Type: image/png" in call.body
    assert png in call.body
    assert result.media_id == "1G6nrLmr5EC3MMb_-zK1dDdzmd0p7"
    assert result.created_at == 1_380_000_000


async def test_media_upload_resent_after_token_refusal(lite_client, fake):
    fake.reply("media/upload", {"errcode": 42001, "errmsg": "expired"}, ok(media_id="M2"))
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 100

    result = await lite_client.media.upload("image", png, filename="p.png")

    calls = fake.calls("media/upload")
    assert result.media_id == "M2"
    assert len(calls) == 2
    assert calls[0].body == calls[1].body


# --- escape hatch ------------------------------------------------------------------------


async def test_call_for_an_unwrapped_endpoint(lite_client, fake):
    fake.reply("externalcontact/get_contact_way", ok(contact_way={"config_id": "c1"}))

    result = await lite_client.call(
        "POST",
        "externalcontact/get_contact_way",
        WeComResponse,
        json={"config_id": "c1"},
        idempotent=True,
    )

    assert post_body(fake, "externalcontact/get_contact_way") == {"config_id": "c1"}
    assert result.model_extra == {"contact_way": {"config_id": "c1"}}
