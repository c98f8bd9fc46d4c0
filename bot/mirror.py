"""The local mirror of WeCom: upserts from API responses (WeCom's JSON shapes, as dicts).

Callbacks and `bot sync` both land here, so a customer fetched either way is stored the
same way. API-made changes produce no callback, so services that change WeCom through the
API also call these functions on their own success path.

A customer `bot forget` erased (customers.forgotten_at) is still listed by WeCom; for them
the mirror stores ids, statuses and structure only, never the personal fields again: every
write of such a field goes through `_set_personal`, told by one `forgotten_among` lookup
per batch stored.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, true, update
from sqlalchemy.orm import Session

from bot.clock import utc_from_timestamp
from bot.privacy import hash_id
from bot.store.inserts import insert_new
from bot.store.models import (
    Base,
    CorpTag,
    Customer,
    FollowRelation,
    FollowTag,
    Group,
    GroupMember,
    Member,
    TagGroup,
)

ACTIVE = "active"
ENDED = "ended"
CUSTOMER_DELETED = "deleted_by_customer"
TRANSFER_FAILED = "transfer_failed"
# groupchat/get's member types.
INTERNAL = 1
EXTERNAL = 2

# Ids per `forgotten_among` query: well under either engine's bound-parameter limit.
LOOKUP_CHUNK = 1000

_RELATIONS = Base.metadata.tables[FollowRelation.__tablename__]
_FOLLOW_TAGS = Base.metadata.tables[FollowTag.__tablename__]

log = logging.getLogger("bot.mirror")


def forgotten_among(session: Session, external_userids: Iterable[str]) -> frozenset[str]:
    """Those of `external_userids` whose personal data `bot forget` erased. Asked once for
    a whole batch (one query per `LOOKUP_CHUNK` ids), never once per row."""
    ids = sorted(set(external_userids))
    found: set[str] = set()
    for start in range(0, len(ids), LOOKUP_CHUNK):
        found.update(
            session.scalars(
                select(Customer.external_userid).where(
                    Customer.external_userid.in_(ids[start : start + LOOKUP_CHUNK]),
                    Customer.forgotten_at.is_not(None),
                )
            )
        )
    return frozenset(found)


def _set_personal(row: object, values: Mapping[str, Any], *, forgotten: bool) -> None:
    """Write a row's personal fields (those `bot forget` erases); for a forgotten customer
    they stay empty, whatever WeCom still says."""
    for name, value in values.items():
        setattr(row, name, None if forgotten else value)


def upsert_member(
    session: Session, userid: str, *, now: datetime, name: str | None = None
) -> Member:
    member = session.get(Member, userid)
    if member is None:
        member = Member(userid=userid, name=name, follow_enabled=True, updated_at=now)
        session.add(member)
    else:
        if name:
            member.name = name
        member.follow_enabled = True
        member.updated_at = now
    return member


def set_follow_users(session: Session, userids: Iterable[str], *, now: datetime) -> int:
    """Record the members with customer contact enabled; others lose the flag."""
    wanted = set(userids)
    for userid in sorted(wanted):
        upsert_member(session, userid, now=now)
    session.execute(
        update(Member)
        .where(Member.userid.not_in(wanted) if wanted else Member.userid.is_not(None))
        .values(follow_enabled=False, updated_at=now)
    )
    return len(wanted)


def _upsert_customer(
    session: Session, contact: Mapping[str, Any], now: datetime, *, forgotten: bool
) -> Customer:
    external_userid = str(contact["external_userid"])
    customer = session.get(Customer, external_userid)
    if customer is None:
        customer = Customer(external_userid=external_userid, created_at=now, updated_at=now)
        session.add(customer)
    customer.type = contact.get("type")
    _set_personal(
        customer,
        {
            "name": contact.get("name"),
            "gender": contact.get("gender"),
            "unionid": contact.get("unionid") or customer.unionid,
            "corp_name": contact.get("corp_name") or contact.get("corp_full_name"),
            "avatar": contact.get("avatar"),
        },
        forgotten=forgotten,
    )
    customer.fetched_at = now
    customer.updated_at = now
    return customer


def _upsert_follow(
    session: Session,
    external_userid: str,
    info: Mapping[str, Any],
    now: datetime,
    opt_out_keywords: Collection[str],
    *,
    forgotten: bool,
) -> FollowRelation:
    userid = str(info["userid"])
    relation = session.scalar(
        select(FollowRelation).where(
            FollowRelation.external_userid == external_userid, FollowRelation.userid == userid
        )
    )
    if relation is None:
        relation = FollowRelation(external_userid=external_userid, userid=userid, updated_at=now)
        session.add(relation)
    mobiles = info.get("remark_mobiles")
    _set_personal(
        relation,
        {
            "remark": info.get("remark"),
            "description": info.get("description"),
            "remark_corp_name": info.get("remark_corp_name"),
            "remark_mobiles": list(mobiles) if mobiles else [],
        },
        forgotten=forgotten,
    )
    relation.add_way = info.get("add_way")
    relation.state = info.get("state") or relation.state
    relation.oper_userid = info.get("oper_userid")
    created = info.get("createtime")
    added_at = utc_from_timestamp(int(created)) if created else relation.added_at
    # A customer who deleted the member is still listed for that member, so being listed
    # revives a relation only when it was ended otherwise, or the customer added the member
    # anew (an add time after the deletion).
    deleted_by_customer = (
        relation.status == ENDED
        and relation.ended_reason == CUSTOMER_DELETED
        and not (added_at and relation.ended_at and added_at > relation.ended_at)
    )
    relation.added_at = added_at
    if not deleted_by_customer:
        relation.status = ACTIVE
        relation.ended_at = None
        relation.ended_reason = None
    relation.updated_at = now
    session.flush()
    _replace_follow_tags(session, relation.id, _tag_ids(info))
    _opt_out_on_keyword(session, relation, info, opt_out_keywords, now)
    return relation


def _opt_out_on_keyword(
    session: Session,
    relation: FollowRelation,
    info: Mapping[str, Any],
    keywords: Collection[str],
    now: datetime,
) -> None:
    """A manager who writes an opt-out keyword (privacy.opt_out_keywords) into the remark
    or description opts the customer out. For good: deleting the word later does not opt
    them back in; only `bot opt-out --undo` does. Read from WeCom's answer, not the stored
    row, so the words opt out a forgotten customer too (stored for nobody)."""
    field = next(
        (
            name
            for name in ("remark", "description")
            if (text := info.get(name))
            and any(word.casefold() in str(text).casefold() for word in keywords)
        ),
        None,
    )
    if field is None:
        return
    customer = session.get(Customer, relation.external_userid)
    if customer is None or customer.opted_out:
        return
    customer.opted_out = True
    customer.opted_out_at = now
    customer.updated_at = now
    log.info(
        "customer %s opted out: keyword in %s's %s",
        hash_id(relation.external_userid),
        relation.userid,
        field,
    )


def _tag_ids(info: Mapping[str, Any]) -> list[tuple[str, int | None]]:
    if "tags" in info:  # externalcontact/get: tags[{tag_id, type, ...}]
        return [
            (str(t["tag_id"]), t.get("type")) for t in info.get("tags") or [] if t.get("tag_id")
        ]
    return [(str(t), None) for t in info.get("tag_id") or []]  # batch/get_by_user: tag_id[]


def _replace_follow_tags(
    session: Session, follow_id: int, tags: list[tuple[str, int | None]]
) -> None:
    existing = set(
        session.scalars(select(FollowTag.tag_id).where(FollowTag.follow_id == follow_id))
    )
    wanted = dict(tags)
    gone = existing - set(wanted)
    if gone:
        session.execute(
            delete(FollowTag).where(FollowTag.follow_id == follow_id, FollowTag.tag_id.in_(gone))
        )
    for tag_id, tag_type in wanted.items():
        if tag_id not in existing:
            session.add(FollowTag(follow_id=follow_id, tag_id=tag_id, tag_type=tag_type))


def apply_contact_detail(
    session: Session,
    external_contact: Mapping[str, Any],
    follow_users: Iterable[Mapping[str, Any]],
    *,
    now: datetime,
    complete: bool,
    opt_out_keywords: Collection[str] = (),
) -> Customer:
    """Store `externalcontact/get`'s answer. With `complete` (every follow user was read),
    relations WeCom no longer lists are marked ended. A remark or description holding one
    of `opt_out_keywords` opts the customer out."""
    external_userid = str(external_contact["external_userid"])
    forgotten = external_userid in forgotten_among(session, [external_userid])
    customer = _upsert_customer(session, external_contact, now, forgotten=forgotten)
    seen: set[str] = set()
    for info in follow_users:
        _upsert_follow(session, external_userid, info, now, opt_out_keywords, forgotten=forgotten)
        seen.add(str(info["userid"]))
    if complete:
        session.execute(
            update(FollowRelation)
            .where(
                FollowRelation.external_userid == customer.external_userid,
                FollowRelation.status == ACTIVE,
                FollowRelation.userid.not_in(seen) if seen else FollowRelation.userid.is_not(None),
            )
            .values(status=ENDED, ended_at=now, ended_reason="not_listed", updated_at=now)
        )
    return customer


def apply_batch_items(
    session: Session,
    items: Sequence[Mapping[str, Any]],
    *,
    now: datetime,
    opt_out_keywords: Collection[str] = (),
) -> None:
    """Store a page of `batch/get_by_user`: each entry a customer and one member's follow
    info (opting the customer out on a keyword, as `apply_contact_detail` does)."""
    forgotten = forgotten_among(
        session, (str(item["external_contact"]["external_userid"]) for item in items)
    )
    for item in items:
        external_userid = str(item["external_contact"]["external_userid"])
        is_forgotten = external_userid in forgotten
        _upsert_customer(session, item["external_contact"], now, forgotten=is_forgotten)
        _upsert_follow(
            session,
            external_userid,
            item["follow_info"],
            now,
            opt_out_keywords,
            forgotten=is_forgotten,
        )


def end_relation(
    session: Session,
    external_userid: str,
    userid: str,
    *,
    reason: str,
    now: datetime,
    at: datetime | None = None,
) -> bool:
    """Mark a relation ended at `at` (the event's time; default `now`), keeping the row as
    history; True if one was active.

    A customer's deletion of a relation the mirror has not seen yet (its add is still being
    fetched, or the first sync has not run) is recorded too: WeCom keeps listing such a
    customer for the member, and the record stops a later listing from reviving them.
    """
    ended_at = at or now
    result = session.execute(
        update(FollowRelation)
        .where(
            FollowRelation.external_userid == external_userid,
            FollowRelation.userid == userid,
            FollowRelation.status == ACTIVE,
        )
        .values(status=ENDED, ended_at=ended_at, ended_reason=reason, updated_at=now)
    )
    if getattr(result, "rowcount", 0):
        return True
    if reason == CUSTOMER_DELETED:
        known = session.scalar(
            select(FollowRelation.id).where(
                FollowRelation.external_userid == external_userid, FollowRelation.userid == userid
            )
        )
        if known is None:
            if session.get(Customer, external_userid) is None:
                session.add(
                    Customer(external_userid=external_userid, created_at=now, updated_at=now)
                )
                session.flush()
            session.add(
                FollowRelation(
                    external_userid=external_userid,
                    userid=userid,
                    status=ENDED,
                    ended_at=ended_at,
                    ended_reason=reason,
                    updated_at=now,
                )
            )
    return False


def record_transfer_fail(
    session: Session, external_userid: str, userid: str, *, reason: str, now: datetime
) -> None:
    """在职继承 to `userid` (the member who was to take over) failed: the customer stays
    with their old member, so the takeover is kept as an ended relation with the reason."""
    relation = session.scalar(
        select(FollowRelation).where(
            FollowRelation.external_userid == external_userid, FollowRelation.userid == userid
        )
    )
    if relation is None:
        if session.get(Customer, external_userid) is None:
            session.add(Customer(external_userid=external_userid, created_at=now, updated_at=now))
            session.flush()
        relation = FollowRelation(
            external_userid=external_userid,
            userid=userid,
            status=ENDED,
            ended_at=now,
            ended_reason=TRANSFER_FAILED,
            updated_at=now,
        )
        session.add(relation)
    relation.transfer_fail_reason = reason
    relation.updated_at = now


# -- groups -------------------------------------------------------------------------------


def apply_group_detail(session: Session, chat: Mapping[str, Any], *, now: datetime) -> Group:
    """Store `groupchat/get`'s group_chat: the group and its whole membership."""
    [group] = apply_group_details(session, [chat], now=now)
    return group


def apply_group_details(
    session: Session, chats: Sequence[Mapping[str, Any]], *, now: datetime
) -> list[Group]:
    """Store several `groupchat/get` answers (a page of `bot sync`), asking once which of
    their external members are forgotten."""
    forgotten = forgotten_among(
        session,
        (
            str(entry["userid"])
            for chat in chats
            for entry in chat.get("member_list") or []
            if _member_type(entry) == EXTERNAL
        ),
    )
    return [_apply_group(session, chat, now, forgotten) for chat in chats]


def _member_type(entry: Mapping[str, Any]) -> int:
    return int(entry.get("type") or EXTERNAL)


def _apply_group(
    session: Session, chat: Mapping[str, Any], now: datetime, forgotten: Collection[str]
) -> Group:
    chat_id = str(chat["chat_id"])
    group = session.get(Group, chat_id)
    if group is None:
        group = Group(chat_id=chat_id, updated_at=now)
        session.add(group)
    group.name = chat.get("name")
    group.owner = chat.get("owner")
    group.notice = chat.get("notice")
    group.create_time = chat.get("create_time")
    group.member_version = chat.get("member_version")
    group.status = ACTIVE
    group.dismissed_at = None
    group.fetched_at = now
    group.updated_at = now
    session.flush()
    current = {
        m.member_id: m
        for m in session.scalars(select(GroupMember).where(GroupMember.chat_id == chat_id))
    }
    listed: set[str] = set()
    for entry in chat.get("member_list") or []:
        member_id = str(entry["userid"])
        listed.add(member_id)
        if _member_type(entry) == INTERNAL and entry.get("name"):
            _learn_member_name(session, member_id, str(entry["name"]), now)
        row = current.get(member_id)
        if row is None:
            row = GroupMember(chat_id=chat_id, member_id=member_id, updated_at=now)
            session.add(row)
        row.type = _member_type(entry)
        row.join_time = entry.get("join_time")
        row.join_scene = entry.get("join_scene")
        invitor = entry.get("invitor") or {}
        row.invitor = invitor.get("userid") if isinstance(invitor, Mapping) else None
        _set_personal(
            row,
            {
                "unionid": entry.get("unionid"),
                "group_nickname": entry.get("group_nickname"),
                "name": entry.get("name") or row.name,
            },
            forgotten=member_id in forgotten,
        )
        row.left_at = None
        row.quit_scene = None
        row.updated_at = now
    for member_id, row in current.items():
        if member_id not in listed and row.left_at is None:
            row.left_at = now
            row.updated_at = now
    return group


def _learn_member_name(session: Session, userid: str, name: str, now: datetime) -> None:
    """groupchat/get (need_name) is the one read that names members: keep the names of the
    members the mirror knows (welcome messages sign with them)."""
    member = session.get(Member, userid)
    if member is not None and member.name != name:
        member.name = name
        member.updated_at = now


def stored_member_version(session: Session, chat_id: str) -> str | None:
    return session.scalar(select(Group.member_version).where(Group.chat_id == chat_id))


def apply_member_change(
    session: Session,
    chat_id: str,
    *,
    joined: Iterable[str] = (),
    left: Iterable[str] = (),
    join_scene: int | None = None,
    quit_scene: int | None = None,
    member_version: str | None,
    at: datetime,
    now: datetime,
) -> None:
    """Apply a callback's MemChangeList to a group whose version matched LastMemVer.

    `join_scene` is the callback's JoinScene (0 invited, 3 QR code), coarser than
    groupchat/get's; the next full read of the group replaces it.
    """
    joined = list(joined)
    forgotten = forgotten_among(session, joined)
    for member_id in joined:
        row = session.get(GroupMember, (chat_id, member_id))
        if row is None:
            row = GroupMember(chat_id=chat_id, member_id=member_id, updated_at=now)
            session.add(row)
        member = session.get(Member, member_id)
        customer = None if member is not None else session.get(Customer, member_id)
        if member is not None:
            row.type, row.name = INTERNAL, member.name or row.name
        elif customer is not None:
            row.type = EXTERNAL
            _set_personal(
                row,
                {
                    "name": customer.name or row.name,
                    "unionid": customer.unionid or row.unionid,
                },
                forgotten=member_id in forgotten,
            )
        else:
            # Unknown to the mirror: WeCom's external ids start with wm/wo.
            row.type = EXTERNAL if member_id.startswith(("wm", "wo")) else INTERNAL
        row.join_time = int(at.timestamp())
        row.join_scene = join_scene
        row.left_at = None
        row.quit_scene = None
        row.updated_at = now
    for member_id in left:
        session.execute(
            update(GroupMember)
            .where(GroupMember.chat_id == chat_id, GroupMember.member_id == member_id)
            .values(left_at=at, quit_scene=quit_scene, updated_at=now)
        )
    session.execute(
        update(Group)
        .where(Group.chat_id == chat_id)
        .values(member_version=member_version, updated_at=now)
    )


def dismiss_group(session: Session, chat_id: str, *, now: datetime) -> None:
    group = session.get(Group, chat_id)
    if group is None:
        group = Group(chat_id=chat_id, updated_at=now)
        session.add(group)
    group.status = "dismissed"
    group.dismissed_at = now
    group.updated_at = now
    session.execute(
        update(GroupMember)
        .where(GroupMember.chat_id == chat_id, GroupMember.left_at.is_(None))
        .values(left_at=now, updated_at=now)
    )


# -- tags ---------------------------------------------------------------------------------


def apply_tag_groups(
    session: Session,
    groups: Iterable[Mapping[str, Any]],
    *,
    now: datetime,
    complete_scope: set[str] | None,
) -> int:
    """Store `get_corp_tag_list`'s tag_group list.

    `complete_scope` names the groups the answer is complete for: tags of those groups
    that are missing from the answer are marked deleted. Pass None for a partial answer.
    Returns how many tags were stored.
    """
    count = 0
    seen_tags: set[str] = set()
    seen_groups: set[str] = set()
    for g in groups:
        group_id = str(g["group_id"])
        seen_groups.add(group_id)
        row = session.get(TagGroup, group_id)
        if row is None:
            row = TagGroup(group_id=group_id, name=str(g.get("group_name", "")), updated_at=now)
            session.add(row)
        row.name = str(g.get("group_name", row.name))
        row.order = int(g.get("order") or 0)
        row.create_time = g.get("create_time")
        row.strategy_id = g.get("strategy_id")
        row.deleted = bool(g.get("deleted", False))
        row.updated_at = now
        session.flush()
        for t in g.get("tag") or []:
            tag_id = str(t["id"])
            seen_tags.add(tag_id)
            tag = session.get(CorpTag, tag_id)
            if tag is None:
                tag = CorpTag(tag_id=tag_id, group_id=group_id, name=str(t["name"]), updated_at=now)
                session.add(tag)
            tag.group_id = group_id
            tag.name = str(t["name"])
            tag.order = int(t.get("order") or 0)
            tag.create_time = t.get("create_time")
            tag.deleted = bool(t.get("deleted", False))
            tag.updated_at = now
            count += 1
    if complete_scope is not None:
        scope_filter = (
            CorpTag.group_id.in_(complete_scope)
            if complete_scope
            else CorpTag.group_id.is_not(None)
        )
        session.execute(
            update(CorpTag)
            .where(scope_filter, CorpTag.tag_id.not_in(seen_tags) if seen_tags else true())
            .values(deleted=True, updated_at=now)
        )
        group_filter = (
            TagGroup.group_id.in_(complete_scope)
            if complete_scope
            else TagGroup.group_id.is_not(None)
        )
        session.execute(
            update(TagGroup)
            .where(group_filter, TagGroup.group_id.not_in(seen_groups) if seen_groups else true())
            .values(deleted=True, updated_at=now)
        )
    return count


def delete_tag_or_group(
    session: Session, ident: str, *, tag_type: str, now: datetime
) -> str | None:
    """Mark a tag, or a group and its tags, deleted; returns the group id of a known tag."""
    if tag_type == "tag_group":
        session.execute(
            update(TagGroup).where(TagGroup.group_id == ident).values(deleted=True, updated_at=now)
        )
        session.execute(
            update(CorpTag).where(CorpTag.group_id == ident).values(deleted=True, updated_at=now)
        )
        return ident
    session.execute(
        update(CorpTag).where(CorpTag.tag_id == ident).values(deleted=True, updated_at=now)
    )
    return session.scalar(select(CorpTag.group_id).where(CorpTag.tag_id == ident))


def apply_mark_tag(
    session: Session,
    userid: str,
    external_userid: str,
    *,
    add: Iterable[str] = (),
    remove: Iterable[str] = (),
) -> bool:
    """Record a successful `externalcontact/mark_tag` (WeCom sends no callback for changes
    made through the API); False when the mirror has no such relation.

    Core statements on the tables: a 100,000-customer tag sync records one of these per
    relation, and loading and flushing ORM objects for each cost more than its SQL."""
    follow_id = session.execute(
        select(_RELATIONS.c.id).where(
            _RELATIONS.c.external_userid == external_userid, _RELATIONS.c.userid == userid
        )
    ).scalar_one_or_none()
    if follow_id is None:
        return False
    added = list(dict.fromkeys(add))
    # A tag both added and removed stays as it was, as WeCom applies add_tag last.
    gone = set(remove) - set(added)
    if gone:
        session.execute(
            delete(_FOLLOW_TAGS).where(
                _FOLLOW_TAGS.c.follow_id == follow_id, _FOLLOW_TAGS.c.tag_id.in_(gone)
            )
        )
    if added:
        # A tag the relation has keeps its row (and its type); type 1 is a corp tag.
        session.execute(
            insert_new(session.get_bind().dialect.name, _FOLLOW_TAGS, ["follow_id", "tag_id"]),
            [{"follow_id": follow_id, "tag_id": t, "tag_type": 1} for t in added],
        )
    return True
