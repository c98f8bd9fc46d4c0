"""Group segments: rules on a group's name, owner or member tags, plus segments set in config.

A rule matches a group when any of its conditions does. Manual segments (source `config`)
win over rule segments of the same name. Only active groups get segments; a dismissed group
loses its rows. `recompute_segments` writes group_segments as a diff and keeps `since`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.config import SegmentRule, SegmentsConfig, Settings
from bot.mirror import EXTERNAL
from bot.store.db import Database
from bot.store.models import Base, CustomerTag, Group, GroupMember, GroupSegment
from bot.tagging.bulk import delete_rows, insert_rows, update_rows

RULE = "rule"
CONFIG = "config"
ACTIVE = "active"

SEGMENTS = Base.metadata.tables["group_segments"]


@dataclass(frozen=True, slots=True)
class GroupFacts:
    """What segment rules look at: the group, its current customers and their tag counts."""

    chat_id: str
    name: str
    owner: str | None
    customers: int = 0
    tagged: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SegmentDecision:
    """One segment a group is in, and why."""

    segment: str
    source: str
    reason: str


@dataclass
class SegmentsResult:
    """Groups per segment after the run, what changed per chat_id, and the manual chat_ids
    that name no active group (reported, not fatal: config may run ahead of the mirror)."""

    counts: Counter[str] = field(default_factory=Counter)
    added: dict[str, set[str]] = field(default_factory=dict)
    removed: dict[str, set[str]] = field(default_factory=dict)
    unknown_chat_ids: list[str] = field(default_factory=list)


def rule_segments(group: GroupFacts, rules: Iterable[SegmentRule]) -> list[SegmentDecision]:
    """The segments `rules` give a group, first reason per segment."""
    decisions: dict[str, SegmentDecision] = {}
    for rule in rules:
        reason = _match(group, rule)
        if reason is not None and rule.segment not in decisions:
            decisions[rule.segment] = SegmentDecision(rule.segment, RULE, reason)
    return list(decisions.values())


def _match(group: GroupFacts, rule: SegmentRule) -> str | None:
    word = next((w for w in rule.name_contains if w and w in group.name), None)
    if word is not None:
        return f"name 「{group.name}」 contains 「{word}」"
    if group.owner is not None and group.owner in rule.owners:
        return f"owned by manager {group.owner}"
    if rule.member_tag and group.customers:
        tagged = group.tagged.get(rule.member_tag, 0)
        share = tagged / group.customers
        if share >= rule.member_tag_share:
            return (
                f"{tagged} of {group.customers} customers ({share:.0%}) tagged "
                f"{rule.member_tag} (≥ {rule.member_tag_share:.0%})"
            )
    return None


def recompute_segments(db: Database, *, settings: Settings, now: datetime) -> SegmentsResult:
    """Recompute every group's segments in one transaction."""
    return db.call(lambda session: recompute_segments_session(session, settings.segments, now))


def recompute_segments_session(
    session: Session, config: SegmentsConfig, now: datetime
) -> SegmentsResult:
    """`recompute_segments` inside a transaction the caller holds."""
    groups = _load_groups(session, config)
    result = SegmentsResult()
    wanted: dict[str, dict[str, SegmentDecision]] = {}
    for group in groups.values():
        wanted[group.chat_id] = {d.segment: d for d in rule_segments(group, config.rules)}
    for chat_id, segments in config.manual.items():
        if chat_id not in groups:
            result.unknown_chat_ids.append(chat_id)
            continue
        for segment in segments:
            wanted[chat_id][segment] = SegmentDecision(segment, CONFIG, "set by hand in config")

    held: dict[str, dict[str, tuple[str, str]]] = {}
    for chat_id, segment, source, reason in session.execute(
        select(GroupSegment.chat_id, GroupSegment.segment, GroupSegment.source, GroupSegment.reason)
    ):
        held.setdefault(chat_id, {})[segment] = (source, reason)

    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    deletes: list[tuple[str, str]] = []
    for chat_id in sorted(wanted.keys() | held.keys()):
        want = wanted.get(chat_id, {})
        have = held.get(chat_id, {})
        result.counts.update(want.keys())
        deletes.extend((chat_id, segment) for segment in have.keys() - want.keys())
        for segment, decision in want.items():
            row = {
                "chat_id": chat_id,
                "segment": segment,
                "source": decision.source,
                "reason": decision.reason,
            }
            if segment not in have:
                inserts.append({**row, "since": now})
            elif have[segment] != (decision.source, decision.reason):
                updates.append(row)
        if added := want.keys() - have.keys():
            result.added[chat_id] = set(added)
        if removed := have.keys() - want.keys():
            result.removed[chat_id] = set(removed)
    keys = ("chat_id", "segment")
    delete_rows(session, SEGMENTS, keys, deletes)
    update_rows(session, SEGMENTS, keys, updates)
    insert_rows(session, SEGMENTS, inserts)
    return result


def _load_groups(session: Session, config: SegmentsConfig) -> dict[str, GroupFacts]:
    """Active groups with their current external members and, per member_tag the rules
    name, how many of those carry it (two grouped queries, whatever the group count)."""
    current = (GroupMember.type == EXTERNAL) & GroupMember.left_at.is_(None)
    totals: dict[str, int] = dict(
        session.execute(
            select(GroupMember.chat_id, func.count()).where(current).group_by(GroupMember.chat_id)
        ).all()
    )
    member_tags = sorted({rule.member_tag for rule in config.rules if rule.member_tag})
    tagged: dict[str, dict[str, int]] = {}
    if member_tags:
        rows = session.execute(
            select(GroupMember.chat_id, CustomerTag.tag, func.count())
            .join(CustomerTag, CustomerTag.external_userid == GroupMember.member_id)
            .where(current, CustomerTag.tag.in_(member_tags))
            .group_by(GroupMember.chat_id, CustomerTag.tag)
        )
        for chat_id, tag, count in rows:
            tagged.setdefault(chat_id, {})[tag] = count
    groups = session.execute(
        select(Group.chat_id, Group.name, Group.owner).where(Group.status == ACTIVE)
    )
    return {
        chat_id: GroupFacts(
            chat_id=chat_id,
            name=name or "",
            owner=owner,
            customers=totals.get(chat_id, 0),
            tagged=tagged.get(chat_id, {}),
        )
        for chat_id, name, owner in groups
    }


@dataclass(frozen=True, slots=True)
class SegmentRow:
    """A stored segment of a group, for listing."""

    segment: str
    chat_id: str
    group_name: str
    source: str
    reason: str


def list_segments(session: Session) -> list[SegmentRow]:
    """Every stored group segment, by segment then chat_id."""
    rows = session.execute(
        select(
            GroupSegment.segment,
            GroupSegment.chat_id,
            Group.name,
            GroupSegment.source,
            GroupSegment.reason,
        )
        .join(Group, Group.chat_id == GroupSegment.chat_id)
        .order_by(GroupSegment.segment, GroupSegment.chat_id)
    )
    return [
        SegmentRow(segment, chat_id, name or "", source, reason)
        for segment, chat_id, name, source, reason in rows
    ]
