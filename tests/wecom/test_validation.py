"""Requests that break WeCom's documented limits fail clearly, before any HTTP call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pydantic import ValidationError

from bot.wecom import InvalidRequest, WeComClient
from bot.wecom.models import MsgTemplate, RemarkRequest, TemplateCard
from bot.wecom.resource import describe
from tests.wecom.fake import FakeWeCom

IMAGE = {"msgtype": "image", "image": {"media_id": "MEDIA"}}
CARD = {"card_type": "button_interaction", "task_id": "task-1", "main_title": {"title": "t"}}

Call = Callable[[WeComClient], Awaitable[Any]]

CASES: list[tuple[str, Call, str]] = [
    (
        "11,000 customers",
        lambda c: c.groupmsg.add_msg_template(
            external_userid=[f"wm{n}" for n in range(11_000)], text="hi"
        ),
        "external_userid: List should have at most 10000 items",
    ),
    (
        "2,001 groups",
        lambda c: c.groupmsg.add_msg_template(
            chat_type="group",
            sender="zhangsan",
            chat_id_list=[f"wr{n}" for n in range(2001)],
            text="hi",
        ),
        "chat_id_list: List should have at most 2000 items",
    ),
    (
        "10 attachments",
        lambda c: c.groupmsg.add_msg_template(external_userid=["wm1"], attachments=[IMAGE] * 10),
        "attachments: List should have at most 9 items",
    ),
    (
        "4002-byte text",
        lambda c: c.groupmsg.add_msg_template(external_userid=["wm1"], text="理" * 1334),
        "text.content is 4002 bytes; WeCom allows at most 4000",
    ),
    (
        "group mass-send without sender",
        lambda c: c.groupmsg.add_msg_template(chat_type="group", chat_id_list=["wr1"], text="x"),
        "sender is required",
    ),
    (
        "corp-wide mass-send",
        lambda c: c.groupmsg.add_msg_template(text="to everyone?"),
        "refusing a corp-wide mass-send",
    ),
    (
        "empty customer list",
        lambda c: c.groupmsg.add_msg_template(external_userid=[], sender="zhangsan", text="x"),
        "external_userid is empty",
    ),
    (
        "mass-send with nothing to send",
        lambda c: c.groupmsg.add_msg_template(external_userid=["wm1"]),
        "needs text or at least one attachment",
    ),
    (
        "unknown attachment type",
        lambda c: c.groupmsg.add_msg_template(
            external_userid=["wm1"], attachments=[{"msgtype": "voice", "voice": {}}]
        ),
        "attachments.0",
    ),
    (
        "image with both sources",
        lambda c: c.groupmsg.add_msg_template(
            external_userid=["wm1"],
            attachments=[{"msgtype": "image", "image": {"media_id": "m", "pic_url": "u"}}],
        ),
        "exactly one of media_id or pic_url",
    ),
    (
        "welcome with 10 attachments",
        lambda c: c.externalcontact.send_welcome_msg("CODE", attachments=[IMAGE] * 10),
        "attachments: List should have at most 9 items",
    ),
    (
        "mark_tag with nothing to change",
        lambda c: c.tags.mark_tag("zhangsan", "wm1"),
        "add_tag and remove_tag cannot both be empty",
    ),
    (
        "del_corp_tag with nothing to delete",
        lambda c: c.tags.del_corp_tag(),
        "cannot both be empty",
    ),
    (
        "tag name over 30 characters",
        lambda c: c.tags.add_corp_tag(["标" * 31], group_name="资产"),
        "tag.0.name",
    ),
    (
        "remark over 20 characters",
        lambda c: c.externalcontact.remark("zhangsan", "wm1", remark="备" * 21),
        "remark: String should have at most 20 characters",
    ),
    (
        "101 members in batch/get_by_user",
        lambda c: c.externalcontact.batch_get_by_user([f"u{n}" for n in range(101)]),
        "userid_list: List should have at most 100 items",
    ),
    (
        "page limit 101 in batch/get_by_user",
        lambda c: c.externalcontact.batch_get_by_user(["u1"], limit=101),
        "limit: Input should be less than or equal to 100",
    ),
    (
        "groupchat/list limit 1001",
        lambda c: c.groupchat.list(limit=1001),
        "limit: Input should be less than or equal to 1000",
    ),
    (
        "groupchat/list with 101 owners",
        lambda c: c.groupchat.list(owner_userids=[f"u{n}" for n in range(101)]),
        "owner_filter.userid_list",
    ),
    (
        "empty external_userid",
        lambda c: c.externalcontact.get(""),
        "external_userid: must not be empty",
    ),
    (
        "app text over 2048 bytes",
        lambda c: c.message.send_text("zhangsan", "a" * 2049),
        "text.content is 2049 bytes; WeCom allows at most 2048",
    ),
    (
        "app message without recipients",
        lambda c: c.message.send("text", {"content": "x"}),
        "give at least one of touser, toparty, totag",
    ),
    (
        "1001 recipients",
        lambda c: c.message.send_text([f"u{n}" for n in range(1001)], "x"),
        "touser: List should have at most 1000 items",
    ),
    (
        "duplicate check over 4 h",
        lambda c: c.message.send_text("u1", "x", duplicate_check_interval=14_401),
        "duplicate_check_interval",
    ),
    (
        "text_notice card without card_action",
        lambda c: c.message.send_template_card("u1", {"card_type": "text_notice"}),
        "card_action (WeCom 42045)",
    ),
    (
        "button card with a bad task_id",
        lambda c: c.message.send_template_card("u1", {**CARD, "task_id": "has space"}),
        "task_id must be 1-128",
    ),
    (
        "card update with both button and card",
        lambda c: c.message.update_template_card(
            "RC", userids=["u1"], replace_name="done", template_card=CARD
        ),
        "exactly one of button",
    ),
    (
        "group-message span reversed",
        lambda c: c.groupmsg.get_groupmsg_list_v2(start_time=200, end_time=100),
        "end_time is before start_time",
    ),
    (
        "media too large",
        lambda c: c.media.upload("voice", b"x" * (2 * 1024 * 1024 + 1), filename="a.amr"),
        "voice is 2097153 bytes",
    ),
    (
        "media too small",
        lambda c: c.media.upload("image", b"abc", filename="a.png"),
        "image is 3 bytes",
    ),
]


@pytest.mark.parametrize(("call", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_invalid_request_fails_before_any_http_call(
    lite_client, fake: FakeWeCom, call: Call, message: str
):
    with pytest.raises(InvalidRequest) as caught:
        await call(lite_client)

    assert message in str(caught.value)
    assert caught.value.final
    assert fake.requests == []  # not even a token fetch


def test_validation_errors_do_not_echo_inputs():
    phone = "13800138000"
    with pytest.raises(ValidationError) as caught:
        RemarkRequest(userid="u", external_userid="wm", remark=phone * 2)

    assert "at most 20 characters" in describe(caught.value)
    assert phone not in describe(caught.value)  # inputs may be customers' data


def test_models_can_be_built_directly():
    template = MsgTemplate.model_validate(
        {"external_userid": ["wm1"], "text": {"content": "hi"}, "attachments": [IMAGE]}
    )
    card = TemplateCard.model_validate(CARD)

    assert template.to_body()["attachments"] == [IMAGE]
    assert card.to_body()["main_title"] == {"title": "t"}  # extra card fields pass through
