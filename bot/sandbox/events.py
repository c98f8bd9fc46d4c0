"""Plaintext callback XML exactly as WeCom documents it (92130, 92277/96361, 90240)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

Field = tuple[str, "str | int | Sequence[str] | None"]


def _cdata(value: str) -> str:
    # "]]>" cannot appear inside CDATA; split it across two sections as XML allows.
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _element(name: str, value: str | int | Sequence[str]) -> str:
    if isinstance(value, int):
        return f"<{name}>{value}</{name}>"
    if isinstance(value, str):
        return f"<{name}>{_cdata(value)}</{name}>"
    items = "".join(f"<Item>{_cdata(v)}</Item>" for v in value)
    return f"<{name}>{items}</{name}>"


def _event_xml(
    corp_id: str, create_time: int, event: str, fields: Iterable[Field], *, sender: str = "sys"
) -> str:
    head = [
        _element("ToUserName", corp_id),
        _element("FromUserName", sender),
        _element("CreateTime", create_time),
        _element("MsgType", "event"),
        _element("Event", event),
    ]
    body = [_element(name, value) for name, value in fields if value is not None]
    return "<xml>" + "".join(head + body) + "</xml>"


def contact_event(
    corp_id: str,
    create_time: int,
    change_type: str,
    *,
    userid: str,
    external_userid: str,
    state: str | None = None,
    welcome_code: str | None = None,
    source: str | None = None,
    fail_reason: str | None = None,
) -> str:
    """change_external_contact: add/add_half/edit/del_external_contact, del_follow_user,
    transfer_fail."""
    return _event_xml(
        corp_id,
        create_time,
        "change_external_contact",
        [
            ("ChangeType", change_type),
            ("UserID", userid),
            ("ExternalUserID", external_userid),
            ("State", state),
            ("WelcomeCode", welcome_code),
            ("Source", source),
            ("FailReason", fail_reason),
        ],
    )


def chat_event(
    corp_id: str,
    create_time: int,
    change_type: str,
    chat_id: str,
    *,
    update_detail: str | None = None,
    join_scene: int | None = None,
    quit_scene: int | None = None,
    changed: Sequence[str] | None = None,
    last_mem_ver: str | None = None,
    cur_mem_ver: str | None = None,
) -> str:
    """change_external_chat: create, update (with UpdateDetail and member fields), dismiss."""
    return _event_xml(
        corp_id,
        create_time,
        "change_external_chat",
        [
            ("ChatId", chat_id),
            ("ChangeType", change_type),
            ("UpdateDetail", update_detail),
            ("JoinScene", join_scene),
            ("QuitScene", quit_scene),
            ("MemChangeCnt", len(changed) if changed is not None else None),
            ("MemChangeList", changed),
            ("LastMemVer", last_mem_ver),
            ("CurMemVer", cur_mem_ver),
        ],
    )


def tag_event(
    corp_id: str,
    create_time: int,
    change_type: str,
    tag_or_group_id: str,
    *,
    tag_type: str | None = None,
    strategy_id: int | None = None,
) -> str:
    """change_external_tag: create/update/delete (with TagType) and shuffle (group id only)."""
    return _event_xml(
        corp_id,
        create_time,
        "change_external_tag",
        [
            ("Id", tag_or_group_id),
            ("TagType", tag_type),
            ("ChangeType", change_type),
            ("StrategyId", strategy_id),
        ],
    )


def template_card_event(
    corp_id: str,
    create_time: int,
    *,
    userid: str,
    agent_id: int,
    event_key: str,
    task_id: str,
    card_type: str,
    response_code: str,
    selected: Sequence[tuple[str, Sequence[str]]] = (),
) -> str:
    """template_card_event: a member tapped a button (or submitted choices) on a card."""
    xml = _event_xml(
        corp_id,
        create_time,
        "template_card_event",
        [
            ("EventKey", event_key),
            ("TaskId", task_id),
            ("CardType", card_type),
            ("ResponseCode", response_code),
            ("AgentID", agent_id),
        ],
        sender=userid,
    )
    if not selected:
        return xml
    items = "".join(
        "<SelectedItem>"
        + _element("QuestionKey", key)
        + "<OptionIds>"
        + "".join(_element("OptionId", option) for option in options)
        + "</OptionIds></SelectedItem>"
        for key, options in selected
    )
    return xml.removesuffix("</xml>") + f"<SelectedItems>{items}</SelectedItems></xml>"
