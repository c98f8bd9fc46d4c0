"""Rows for the tag-rule, engine, segment and explain tests (helpers, no tests)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.store.models import (
    AttributeChange,
    Customer,
    CustomerProfile,
    CustomerTag,
    FollowRelation,
    Group,
    GroupMember,
)


def add_customer(s: Session, eid: str, now: datetime, name: str | None = "张三") -> None:
    s.add(Customer(external_userid=eid, name=name, created_at=now, updated_at=now))


def add_profile(
    s: Session, key: str, eid: str | None, now: datetime, **fields: Any
) -> CustomerProfile:
    profile = CustomerProfile(
        customer_key=key, external_userid=eid, imported_at=now, updated_at=now, **fields
    )
    s.add(profile)
    return profile


def add_relation(
    s: Session,
    eid: str,
    userid: str,
    now: datetime,
    *,
    state: str | None = None,
    remark: str | None = None,
    description: str | None = None,
    status: str = "active",
    added_at: datetime | None = None,
) -> None:
    s.add(
        FollowRelation(
            external_userid=eid,
            userid=userid,
            state=state,
            remark=remark,
            description=description,
            status=status,
            added_at=added_at,
            updated_at=now,
        )
    )


def add_aum_change(s: Session, key: str, old: float | None, new: float, at: datetime) -> None:
    s.add(
        AttributeChange(
            customer_key=key,
            attribute="aum",
            old_value=None if old is None else f"{old:.2f}",
            new_value=f"{new:.2f}",
            changed_at=at,
        )
    )


def add_group(
    s: Session,
    chat_id: str,
    name: str,
    now: datetime,
    *,
    owner: str | None = None,
    status: str = "active",
) -> None:
    s.add(Group(chat_id=chat_id, name=name, owner=owner, status=status, updated_at=now))


def add_member(
    s: Session,
    chat_id: str,
    member_id: str,
    now: datetime,
    *,
    type: int = 2,
    left_at: datetime | None = None,
) -> None:
    s.add(
        GroupMember(
            chat_id=chat_id, member_id=member_id, type=type, left_at=left_at, updated_at=now
        )
    )


def add_tag(s: Session, eid: str, tag: str, family: str, since: datetime) -> None:
    s.add(
        CustomerTag(
            external_userid=eid, tag=tag, family=family, rule="test", reason="test", since=since
        )
    )


def tags_of(s: Session) -> dict[str, dict[str, tuple[str, str, str, datetime]]]:
    """external_userid → tag → (family, rule, reason, since)."""
    out: dict[str, dict[str, tuple[str, str, str, datetime]]] = {}
    for row in s.scalars(select(CustomerTag)):
        out.setdefault(row.external_userid, {})[row.tag] = (
            row.family,
            row.rule,
            row.reason,
            row.since,
        )
    return out


def profiles_of(s: Session) -> dict[str, tuple[str | None, str | None, float | None]]:
    """customer_key → (asset_tier, lifecycle, aum_trend)."""
    return {
        p.customer_key: (p.asset_tier, p.lifecycle, p.aum_trend)
        for p in s.scalars(select(CustomerProfile))
    }


def history_of(s: Session, *attributes: str) -> list[tuple[str, str, str | None, str | None]]:
    """Derived-attribute history rows, sorted, without ids or times."""
    rows = s.scalars(select(AttributeChange).where(AttributeChange.attribute.in_(attributes)))
    return sorted(
        ((r.customer_key, r.attribute, r.old_value, r.new_value) for r in rows),
        key=lambda r: tuple(v or "" for v in r),
    )
