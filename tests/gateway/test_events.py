"""Every fixture callback parses into its typed model; anything else becomes UnknownEvent."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bot.gateway.events import (
    EVENT_MODELS,
    AddExternalContact,
    AddHalfExternalContact,
    CallbackEvent,
    DelExternalContact,
    DelFollowUser,
    EditExternalContact,
    EventKey,
    ExternalChatCreate,
    ExternalChatDismiss,
    ExternalChatUpdate,
    ExternalTagCreate,
    ExternalTagDelete,
    ExternalTagShuffle,
    ExternalTagUpdate,
    ImageMessage,
    SelectedItem,
    TemplateCardEvent,
    TemplateCardMenuEvent,
    TextMessage,
    TransferFail,
    UnknownEvent,
)
from bot.gateway.parse import event_key_of, model_for, parse_event
from bot.gateway.xmlsafe import XmlRejected
from tests.gateway.conftest import CORP_ID, FIXTURES, fixture_xml

EXPECTED: dict[str, type[CallbackEvent]] = {
    "add_external_contact": AddExternalContact,
    "add_half_external_contact": AddHalfExternalContact,
    "edit_external_contact": EditExternalContact,
    "del_external_contact": DelExternalContact,
    "del_follow_user": DelFollowUser,
    "transfer_fail": TransferFail,
    "external_chat_create": ExternalChatCreate,
    "external_chat_update": ExternalChatUpdate,
    "external_chat_dismiss": ExternalChatDismiss,
    "external_tag_create": ExternalTagCreate,
    "external_tag_update": ExternalTagUpdate,
    "external_tag_delete": ExternalTagDelete,
    "external_tag_shuffle": ExternalTagShuffle,
    "text_message": TextMessage,
    "image_message": ImageMessage,
    "template_card_event": TemplateCardEvent,
    "template_card_menu_event": TemplateCardMenuEvent,
    "unknown_event": UnknownEvent,
    "unknown_change_type": UnknownEvent,
}


def test_every_fixture_has_an_expectation() -> None:
    assert {path.stem for path in FIXTURES.glob("*.xml")} == set(EXPECTED)


@pytest.mark.parametrize(("name", "model"), sorted(EXPECTED.items()))
def test_fixture_parses_to_its_model(name: str, model: type[CallbackEvent]) -> None:
    event = parse_event(fixture_xml(name))
    assert type(event) is model
    assert event.to_user_name == CORP_ID
    assert isinstance(event.create_time, int)
    assert event.create_time > 1_700_000_000
    if model is not UnknownEvent:
        assert event.routing_key == model.key
        assert model_for(event.routing_key) is model


def test_add_external_contact_fields() -> None:
    event = parse_event(fixture_xml("add_external_contact"))
    assert isinstance(event, AddExternalContact)
    assert event.from_user_name == "sys"
    assert event.create_time == 1795395581
    assert event.msg_type == "event"
    assert event.event == "change_external_contact"
    assert event.change_type == "add_external_contact"
    assert event.user_id == "zhangwei"
    assert event.external_user_id == "wmAJ2GCAAAXtWyujaWJHDDGi0mACH71w"
    assert event.state == "branch-poster-0931"
    assert event.welcome_code == "CALLBACK_WELCOME_CODE_8f3a"
    assert event.agent_id is None


def test_add_half_external_contact_with_empty_state() -> None:
    event = parse_event(fixture_xml("add_half_external_contact"))
    assert isinstance(event, AddHalfExternalContact)
    assert event.state is None
    assert event.welcome_code == "CALLBACK_WELCOME_CODE_1b2c"


def test_add_without_welcome_code() -> None:
    body = fixture_xml("add_external_contact").replace(
        b"<WelcomeCode><![CDATA[CALLBACK_WELCOME_CODE_8f3a]]></WelcomeCode>\n", b""
    )
    event = parse_event(body)
    assert isinstance(event, AddExternalContact)
    assert event.welcome_code is None


def test_del_external_contact_source() -> None:
    event = parse_event(fixture_xml("del_external_contact"))
    assert isinstance(event, DelExternalContact)
    assert (event.user_id, event.source) == ("lina", "DELETE_BY_TRANSFER")


def test_transfer_fail_reason() -> None:
    event = parse_event(fixture_xml("transfer_fail"))
    assert isinstance(event, TransferFail)
    assert event.fail_reason == "customer_refused"
    assert event.external_user_id == "wmAJ2GCAAAq8cWb0bXlJmGDxq9DcJ3QA"


def test_external_chat_update_fields() -> None:
    event = parse_event(fixture_xml("external_chat_update"))
    assert isinstance(event, ExternalChatUpdate)
    assert event.chat_id == "wrOgQhDgAAMYQiS5ol9G7gK9JVAAAA"
    assert event.update_detail == "add_member"
    assert event.join_scene == 3
    assert event.quit_scene is None
    assert event.mem_change_cnt == 2
    assert event.mem_change_list == (
        "wmAJ2GCAAAXtWyujaWJHDDGi0mACH71w",
        "wmAJ2GCAAAq8cWb0bXlJmGDxq9DcJ3QA",
    )
    assert event.last_mem_ver == "9c3f97c2ada667dfb5f6d03308d963e1"
    assert event.cur_mem_ver == "71217227bbd112ecfe3a49c482195cb4"


def test_external_chat_update_quit_with_one_member_and_no_versions() -> None:
    body = (
        b"<xml><ToUserName>c</ToUserName><FromUserName>sys</FromUserName>"
        b"<CreateTime>1795395600</CreateTime><MsgType>event</MsgType>"
        b"<Event>change_external_chat</Event><ChatId>wr1</ChatId><ChangeType>update</ChangeType>"
        b"<UpdateDetail>del_member</UpdateDetail><QuitScene>1</QuitScene><JoinScene></JoinScene>"
        b"<MemChangeCnt>1</MemChangeCnt><MemChangeList><Item>wm1</Item></MemChangeList></xml>"
    )
    event = parse_event(body)
    assert isinstance(event, ExternalChatUpdate)
    assert (event.quit_scene, event.join_scene) == (1, None)
    assert event.mem_change_list == ("wm1",)
    assert event.last_mem_ver is None
    assert event.cur_mem_ver is None


def test_external_chat_update_without_member_list() -> None:
    body = fixture_xml("external_chat_create").replace(b"create", b"update")
    event = parse_event(body)
    assert isinstance(event, ExternalChatUpdate)
    assert event.mem_change_list == ()


@pytest.mark.parametrize(
    ("name", "tag_id", "tag_type", "strategy_id"),
    [
        ("external_tag_create", "etJ2GCAAAAtWyujaWJHDDGi0mACHABCD", "tag", None),
        ("external_tag_update", "etJ2GCAAAAtWyujaWJHDDGi0mACHABCD", "tag", None),
        ("external_tag_delete", "etJ2GCAAAAgrpAAAAtWyujaWJHDDGi0m", "tag_group", 7),
        ("external_tag_shuffle", "etJ2GCAAAAgrpAAAAtWyujaWJHDDGi0m", None, 7),
    ],
)
def test_tag_events(name: str, tag_id: str, tag_type: str | None, strategy_id: int | None) -> None:
    event = parse_event(fixture_xml(name))
    assert isinstance(
        event, ExternalTagCreate | ExternalTagUpdate | ExternalTagDelete | ExternalTagShuffle
    )
    assert (event.id, event.tag_type, event.strategy_id) == (tag_id, tag_type, strategy_id)


def test_shuffle_of_all_groups_has_an_empty_id() -> None:
    body = fixture_xml("external_tag_shuffle").replace(
        b"<Id><![CDATA[etJ2GCAAAAgrpAAAAtWyujaWJHDDGi0m]]></Id>\n", b""
    )
    event = parse_event(body)
    assert isinstance(event, ExternalTagShuffle)
    assert event.id == ""


def test_text_message_fields() -> None:
    event = parse_event(fixture_xml("text_message"))
    assert isinstance(event, TextMessage)
    assert event.from_user_name == "zhangwei"
    assert event.content == "今天的群发已确认 ok"
    assert event.msg_id == "7301823490125867009"
    assert event.agent_id == "1000002"
    assert event.routing_key == EventKey("text")


def test_image_message_keeps_raw_fields() -> None:
    event = parse_event(fixture_xml("image_message"))
    assert isinstance(event, ImageMessage)
    assert event.msg_id == "7301823490125867010"
    assert event.fields["PicUrl"] == "https://wework.qpic.cn/wwpic/123456_abcdef/0"
    assert event.fields["MediaId"].startswith("1r3F8cQY")


@pytest.mark.parametrize("msg_type", ["voice", "video", "location", "link"])
def test_other_member_messages_have_models(msg_type: str) -> None:
    body = fixture_xml("image_message").replace(b"[image]", f"[{msg_type}]".encode())
    event = parse_event(body)
    assert event.routing_key == EventKey(msg_type)
    assert type(event).__name__.lower() == f"{msg_type}message"


def test_template_card_event_fields() -> None:
    event = parse_event(fixture_xml("template_card_event"))
    assert isinstance(event, TemplateCardEvent)
    assert event.event_key == "task:done"
    assert event.task_id == "remind-20261123-zhangwei-0001"
    assert event.card_type == "vote_interaction"
    assert event.response_code == "allFpbVbJvQ8hRUO2lD0YOr8ZxqDiPQkf8eNmzb0_8sM"
    assert event.agent_id == "1000002"
    assert event.selected_items == (
        SelectedItem(question_key="outcome", option_ids=("reached", "booked_visit")),
        SelectedItem(question_key="next_step", option_ids=("later",)),
    )


def test_template_card_event_without_selection() -> None:
    body = fixture_xml("template_card_menu_event").replace(
        b"template_card_menu_event", b"template_card_event"
    )
    event = parse_event(body)
    assert isinstance(event, TemplateCardEvent)
    assert event.selected_items == ()


def test_template_card_menu_event_fields() -> None:
    event = parse_event(fixture_xml("template_card_menu_event"))
    assert isinstance(event, TemplateCardMenuEvent)
    assert (event.event_key, event.card_type) == ("menu:mute_today", "button_interaction")
    assert event.task_id == "remind-20261123-zhangwei-0001"


def test_unknown_event_keeps_its_key_and_fields() -> None:
    event = parse_event(fixture_xml("unknown_event"))
    assert isinstance(event, UnknownEvent)
    assert event.routing_key == EventKey("event", "enter_agent")
    assert event.fields["AgentID"] == "1000002"
    assert event.agent_id == "1000002"
    assert event.error is None


def test_unknown_change_type_is_not_forced_into_a_model() -> None:
    event = parse_event(fixture_xml("unknown_change_type"))
    assert isinstance(event, UnknownEvent)
    assert event.routing_key == EventKey(
        "event", "change_external_contact", "customer_refused_future_type"
    )
    assert event.fields["UserID"] == "zhangwei"


def test_invalid_known_event_is_kept_as_unknown_with_the_reason() -> None:
    body = fixture_xml("add_external_contact").replace(b"1795395581", b"yesterday")
    event = parse_event(body)
    assert isinstance(event, UnknownEvent)
    assert event.create_time == 0
    assert event.error is not None
    assert "AddExternalContact" in event.error
    assert "CreateTime" in event.error
    assert "yesterday" not in event.error  # values are not echoed into logs


def test_missing_required_field_is_kept_as_unknown() -> None:
    body = fixture_xml("del_follow_user").replace(b"<UserID><![CDATA[zhangwei]]></UserID>\n", b"")
    event = parse_event(body)
    assert isinstance(event, UnknownEvent)
    assert event.error is not None
    assert "UserID" in event.error


def test_malformed_plaintext_raises() -> None:
    with pytest.raises(XmlRejected):
        parse_event(b"<xml><MsgType>event</MsgType>")


def test_event_key_is_normalised() -> None:
    fields = {
        "MsgType": " Event ",
        "Event": "Change_External_Contact",
        "ChangeType": "ADD_External_Contact",
    }
    assert event_key_of(fields) == EventKey(
        "event", "change_external_contact", "add_external_contact"
    )
    assert event_key_of({"MsgType": "text", "Event": "x", "ChangeType": "y"}) == EventKey("text")
    assert event_key_of({"MsgType": "event", "Event": "template_card_event", "ChangeType": ""}) == (
        EventKey("event", "template_card_event")
    )
    assert event_key_of({}) == EventKey("")


def test_upper_case_event_names_still_find_their_model() -> None:
    body = fixture_xml("del_follow_user").replace(b"del_follow_user", b"DEL_FOLLOW_USER")
    assert isinstance(parse_event(body), DelFollowUser)


def test_models_are_frozen() -> None:
    event = parse_event(fixture_xml("text_message"))
    assert isinstance(event, TextMessage)
    with pytest.raises(ValidationError):
        event.content = "changed"  # type: ignore[misc]


def test_models_can_be_built_by_field_name() -> None:
    event = DelFollowUser(
        to_user_name=CORP_ID,
        from_user_name="sys",
        create_time=1,
        msg_type="event",
        event="change_external_contact",
        change_type="del_follow_user",
        user_id="u",
        external_user_id="wm",
    )
    assert event.routing_key == DelFollowUser.key


def test_every_model_key_is_unique_and_lower_case() -> None:
    keys = list(EVENT_MODELS)
    assert len(keys) == len(set(keys))
    for key in keys:
        assert str(key) == str(key).lower()


def test_key_fallbacks_go_from_specific_to_general() -> None:
    key = EventKey("event", "change_external_chat", "update")
    assert key.fallbacks() == (
        key,
        EventKey("event", "change_external_chat"),
        EventKey("event"),
    )
    assert EventKey("text").fallbacks() == (EventKey("text"),)
    assert str(key) == "event/change_external_chat/update"
