"""Why a customer has the tags they have: tags with reasons, tier history, group segments."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.privacy import mask_name
from bot.store.models import (
    AttributeChange,
    Customer,
    CustomerProfile,
    CustomerTag,
    Group,
    GroupMember,
    GroupSegment,
)

# Tier codes and stages over time. The raw AUM rows the importer writes feed the 30-day AUM
# trend only (and are deleted past it): balances are not shown as history.
HISTORY_ATTRIBUTES = ("asset_tier", "lifecycle")


@dataclass(frozen=True, slots=True)
class TagLine:
    tag: str
    family: str
    rule: str
    reason: str
    since: datetime


@dataclass(frozen=True, slots=True)
class Change:
    at: datetime
    attribute: str
    old: str | None
    new: str | None


@dataclass(frozen=True, slots=True)
class SegmentLine:
    segment: str
    source: str
    reason: str


@dataclass(frozen=True, slots=True)
class GroupLine:
    chat_id: str
    name: str
    segments: tuple[SegmentLine, ...]


@dataclass(frozen=True, slots=True)
class Explanation:
    """One customer as `bot explain` shows them; the name is already masked."""

    external_userid: str | None
    customer_key: str | None
    masked_name: str
    profile: CustomerProfile | None
    tags: tuple[TagLine, ...]
    history: tuple[Change, ...]
    groups: tuple[GroupLine, ...]


def resolve(session: Session, customer: str) -> tuple[str | None, str | None] | None:
    """(external_userid, customer_key) for a WeCom external_userid or a bank customer key."""
    if session.get(Customer, customer) is not None:
        key = session.scalar(
            select(CustomerProfile.customer_key).where(CustomerProfile.external_userid == customer)
        )
        return customer, key
    profile = session.get(CustomerProfile, customer)
    if profile is not None:
        return profile.external_userid, profile.customer_key
    return None


def explain(session: Session, customer: str) -> Explanation | None:
    """Everything stored about why `customer` is tagged the way they are, or None."""
    found = resolve(session, customer)
    if found is None:
        return None
    external_userid, customer_key = found
    row = session.get(Customer, external_userid) if external_userid else None
    return Explanation(
        external_userid=external_userid,
        customer_key=customer_key,
        masked_name=mask_name(row.name if row else None),
        profile=session.get(CustomerProfile, customer_key) if customer_key else None,
        tags=_tags(session, external_userid),
        history=_history(session, customer_key),
        groups=_groups(session, external_userid),
    )


def _tags(session: Session, external_userid: str | None) -> tuple[TagLine, ...]:
    if external_userid is None:
        return ()
    rows = session.scalars(
        select(CustomerTag)
        .where(CustomerTag.external_userid == external_userid)
        .order_by(CustomerTag.family, CustomerTag.tag)
    )
    return tuple(TagLine(r.tag, r.family, r.rule, r.reason, r.since) for r in rows)


def _history(session: Session, customer_key: str | None) -> tuple[Change, ...]:
    if customer_key is None:
        return ()
    rows = session.scalars(
        select(AttributeChange)
        .where(
            AttributeChange.customer_key == customer_key,
            AttributeChange.attribute.in_(HISTORY_ATTRIBUTES),
        )
        .order_by(AttributeChange.changed_at, AttributeChange.id)
    )
    return tuple(Change(r.changed_at, r.attribute, r.old_value, r.new_value) for r in rows)


def _groups(session: Session, external_userid: str | None) -> tuple[GroupLine, ...]:
    if external_userid is None:
        return ()
    groups = session.execute(
        select(Group.chat_id, Group.name)
        .join(GroupMember, GroupMember.chat_id == Group.chat_id)
        .where(GroupMember.member_id == external_userid, GroupMember.left_at.is_(None))
        .order_by(Group.chat_id)
    ).all()
    segments: dict[str, list[SegmentLine]] = {}
    chat_ids = [chat_id for chat_id, _ in groups]
    for seg in session.scalars(
        select(GroupSegment)
        .where(GroupSegment.chat_id.in_(chat_ids))
        .order_by(GroupSegment.segment)
    ):
        segments.setdefault(seg.chat_id, []).append(
            SegmentLine(seg.segment, seg.source, seg.reason)
        )
    return tuple(
        GroupLine(chat_id, name or "", tuple(segments.get(chat_id, ()))) for chat_id, name in groups
    )
