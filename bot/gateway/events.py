"""Typed, frozen models of the WeCom callbacks the bot handles (wecom-platform.md §2)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)


@dataclass(frozen=True)
class EventKey:
    """What a callback is: (MsgType, Event, ChangeType), lower case, None where absent."""

    msg_type: str
    event: str | None = None
    change_type: str | None = None

    def fallbacks(self) -> tuple[EventKey, ...]:
        """This key, then with ChangeType dropped, then with Event dropped (most specific first)."""
        keys = [self]
        if self.change_type is not None:
            keys.append(EventKey(self.msg_type, self.event))
        if self.event is not None:
            keys.append(EventKey(self.msg_type))
        return tuple(keys)

    def __str__(self) -> str:
        return "/".join(part for part in (self.msg_type, self.event, self.change_type) if part)


def _blank_to_none(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        return None
    return value


# XML has no null: an absent element and an empty one both mean "not given".
OptStr = Annotated[str | None, BeforeValidator(_blank_to_none)]
OptInt = Annotated[int | None, BeforeValidator(_blank_to_none)]


def _items(value: Any, tag: str) -> list[Any]:
    """The repeated `<tag>` children of a nested element as parsed by `xmlsafe`."""
    if isinstance(value, Mapping):
        found = value.get(tag, [])
        return list(found) if isinstance(found, list) else [found]
    return []


class CallbackEvent(BaseModel):
    """Fields every self-built-app callback carries; the base of all event models."""

    model_config = ConfigDict(
        frozen=True, extra="ignore", validate_by_alias=True, validate_by_name=True
    )

    key: ClassVar[EventKey]

    to_user_name: str = Field(alias="ToUserName")
    from_user_name: str = Field(alias="FromUserName")
    create_time: int = Field(alias="CreateTime")
    msg_type: str = Field(alias="MsgType")
    agent_id: OptStr = Field(None, alias="AgentID")

    @property
    def routing_key(self) -> EventKey:
        """The key this callback is stored and dispatched under."""
        return type(self).key


class _Event(CallbackEvent):
    event: str = Field(alias="Event")


# --- change_external_contact (doc 92130) -------------------------------------------------


class _ContactChange(_Event):
    change_type: str = Field(alias="ChangeType")
    user_id: str = Field(alias="UserID")
    external_user_id: str = Field(alias="ExternalUserID")


class AddExternalContact(_ContactChange):
    """A member added a customer; `welcome_code` is usable once, within 20 s."""

    key = EventKey("event", "change_external_contact", "add_external_contact")

    state: OptStr = Field(None, alias="State")
    welcome_code: OptStr = Field(None, alias="WelcomeCode")


class AddHalfExternalContact(_ContactChange):
    """The customer added the member without verification."""

    key = EventKey("event", "change_external_contact", "add_half_external_contact")

    state: OptStr = Field(None, alias="State")
    welcome_code: OptStr = Field(None, alias="WelcomeCode")


class EditExternalContact(_ContactChange):
    """A member edited a customer's remark or corp tags in the client (not via the API)."""

    key = EventKey("event", "change_external_contact", "edit_external_contact")


class DelExternalContact(_ContactChange):
    """The member deleted the customer (`source` DELETE_BY_TRANSFER: 在职继承)."""

    key = EventKey("event", "change_external_contact", "del_external_contact")

    source: OptStr = Field(None, alias="Source")


class DelFollowUser(_ContactChange):
    """The customer deleted the member."""

    key = EventKey("event", "change_external_contact", "del_follow_user")


class TransferFail(_ContactChange):
    """A customer transfer failed: customer_refused or customer_limit_exceed."""

    key = EventKey("event", "change_external_contact", "transfer_fail")

    fail_reason: OptStr = Field(None, alias="FailReason")


# --- change_external_chat ----------------------------------------------------------------


class _ChatChange(_Event):
    change_type: str = Field(alias="ChangeType")
    chat_id: str = Field(alias="ChatId")


class ExternalChatCreate(_ChatChange):
    """A customer group was created."""

    key = EventKey("event", "change_external_chat", "create")


class ExternalChatUpdate(_ChatChange):
    """A customer group changed; compare `last_mem_ver` with the stored version."""

    key = EventKey("event", "change_external_chat", "update")

    update_detail: OptStr = Field(None, alias="UpdateDetail")
    join_scene: OptInt = Field(None, alias="JoinScene")
    quit_scene: OptInt = Field(None, alias="QuitScene")
    mem_change_cnt: OptInt = Field(None, alias="MemChangeCnt")
    mem_change_list: tuple[str, ...] = Field((), alias="MemChangeList")
    last_mem_ver: OptStr = Field(None, alias="LastMemVer")
    cur_mem_ver: OptStr = Field(None, alias="CurMemVer")

    @field_validator("mem_change_list", mode="before")
    @classmethod
    def _member_ids(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return tuple(item.strip() for item in _items(value, "Item") if isinstance(item, str))
        if isinstance(value, str):
            # Tolerate a flat, comma-separated list as well as the `<Item>` form.
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value


class ExternalChatDismiss(_ChatChange):
    """A customer group was dismissed."""

    key = EventKey("event", "change_external_chat", "dismiss")


# --- change_external_tag -----------------------------------------------------------------


class _TagChange(_Event):
    change_type: str = Field(alias="ChangeType")
    id: str = Field("", alias="Id")
    tag_type: OptStr = Field(None, alias="TagType")
    strategy_id: OptInt = Field(None, alias="StrategyId")


class ExternalTagCreate(_TagChange):
    """A corp tag or tag group was created in the admin console."""

    key = EventKey("event", "change_external_tag", "create")


class ExternalTagUpdate(_TagChange):
    """A corp tag or tag group was renamed or reordered."""

    key = EventKey("event", "change_external_tag", "update")


class ExternalTagDelete(_TagChange):
    """A corp tag or tag group was deleted."""

    key = EventKey("event", "change_external_tag", "delete")


class ExternalTagShuffle(_TagChange):
    """Tags were reordered; `id` is a group id, or empty for all groups."""

    key = EventKey("event", "change_external_tag", "shuffle")


# --- employee → app messages (doc 90239) -------------------------------------------------


class TextMessage(CallbackEvent):
    """A member wrote text to the app."""

    key = EventKey("text")

    content: str = Field("", alias="Content")
    msg_id: str = Field(alias="MsgId")


class MemberMessage(CallbackEvent):
    """A non-text message from a member to the app; type-specific fields stay raw.

    The base of the per-type models below; it claims no key itself.
    """

    msg_id: OptStr = Field(None, alias="MsgId")
    fields: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _keep_raw(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "fields" not in data:
            leaves = {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}
            return {**data, "fields": leaves}
        return data


class ImageMessage(MemberMessage):
    """A member sent an image to the app."""

    key = EventKey("image")


class VoiceMessage(MemberMessage):
    """A member sent a voice message to the app."""

    key = EventKey("voice")


class VideoMessage(MemberMessage):
    """A member sent a video to the app."""

    key = EventKey("video")


class LocationMessage(MemberMessage):
    """A member sent a location to the app."""

    key = EventKey("location")


class LinkMessage(MemberMessage):
    """A member sent a link to the app."""

    key = EventKey("link")


# --- template cards (doc 90240) ----------------------------------------------------------


class SelectedItem(BaseModel):
    """One answered question of a vote or multiple-interaction card."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    question_key: str
    option_ids: tuple[str, ...] = ()


class TemplateCardMenuEvent(_Event):
    """A member used the menu in the top-right corner of a template card."""

    key = EventKey("event", "template_card_menu_event")

    event_key: str = Field("", alias="EventKey")
    task_id: str = Field("", alias="TaskId")
    card_type: OptStr = Field(None, alias="CardType")
    response_code: OptStr = Field(None, alias="ResponseCode")


class TemplateCardEvent(_Event):
    """A member clicked a template-card button; `response_code` updates the card once."""

    key = EventKey("event", "template_card_event")

    event_key: str = Field("", alias="EventKey")
    task_id: str = Field("", alias="TaskId")
    card_type: OptStr = Field(None, alias="CardType")
    response_code: OptStr = Field(None, alias="ResponseCode")
    selected_items: tuple[SelectedItem, ...] = Field((), alias="SelectedItems")

    @field_validator("selected_items", mode="before")
    @classmethod
    def _selected(cls, value: Any) -> Any:
        if isinstance(value, str):
            return ()
        if not isinstance(value, Mapping):
            return value
        selected = []
        for item in _items(value, "SelectedItem"):
            question = _items(item, "QuestionKey")
            options = [
                option.strip()
                for ids in _items(item, "OptionIds")
                for option in _items(ids, "OptionId")
                if isinstance(option, str)
            ]
            selected.append(
                SelectedItem(
                    question_key=question[0] if question and isinstance(question[0], str) else "",
                    option_ids=tuple(options),
                )
            )
        return tuple(selected)


# --- anything else -----------------------------------------------------------------------


class UnknownEvent(CallbackEvent):
    """A callback with no model (or one that failed validation): stored, logged, acknowledged.

    It is never routed to a handler; observers still see it.
    """

    key = EventKey("unknown")

    to_user_name: str = Field("", alias="ToUserName")
    from_user_name: str = Field("", alias="FromUserName")
    create_time: int = Field(0, alias="CreateTime")
    msg_type: str = Field("", alias="MsgType")
    event: str | None = None
    change_type: str | None = None
    fields: dict[str, str] = Field(default_factory=dict)
    error: str | None = None

    @property
    def routing_key(self) -> EventKey:
        """The key the callback carried, which no model claims (or whose model refused it)."""
        return EventKey(self.msg_type, self.event, self.change_type)


# The one explicit table of models, looked up by `bot.gateway.parse` (no import side effects).
EVENT_MODELS: Mapping[EventKey, type[CallbackEvent]] = {
    model.key: model
    for model in (
        AddExternalContact,
        AddHalfExternalContact,
        EditExternalContact,
        DelExternalContact,
        DelFollowUser,
        TransferFail,
        ExternalChatCreate,
        ExternalChatUpdate,
        ExternalChatDismiss,
        ExternalTagCreate,
        ExternalTagUpdate,
        ExternalTagDelete,
        ExternalTagShuffle,
        TextMessage,
        ImageMessage,
        VoiceMessage,
        VideoMessage,
        LocationMessage,
        LinkMessage,
        TemplateCardEvent,
        TemplateCardMenuEvent,
    )
}


__all__ = [
    "EVENT_MODELS",
    "AddExternalContact",
    "AddHalfExternalContact",
    "CallbackEvent",
    "DelExternalContact",
    "DelFollowUser",
    "EditExternalContact",
    "EventKey",
    "ExternalChatCreate",
    "ExternalChatDismiss",
    "ExternalChatUpdate",
    "ExternalTagCreate",
    "ExternalTagDelete",
    "ExternalTagShuffle",
    "ExternalTagUpdate",
    "ImageMessage",
    "LinkMessage",
    "LocationMessage",
    "MemberMessage",
    "SelectedItem",
    "TemplateCardEvent",
    "TemplateCardMenuEvent",
    "TextMessage",
    "TransferFail",
    "UnknownEvent",
    "VideoMessage",
    "VoiceMessage",
]
