"""Erasing one customer's personal data (PIPL Art. 47), and opting customers out (Art. 24).

`forget_customer` erases what identifies or describes the person and keeps what the counts
are made of, so every report's totals stay what they were. Table by table:

- customers: name, avatar, unionid, corp_name and gender are erased. Kept: the row and its
  external_userid (WeCom's pseudonymous id for this corp; without the row the opt-out could
  not hold, since `bot sync` would bring the customer back as new), type, created_at, and
  opted_out and forgotten_at, which are set.
- follow_relations: remark, description, remark_corp_name and remark_mobiles are erased.
  Kept: who follows whom, since when, status, end and reason, channel State and add_way
  (per-manager and per-channel counts).
- follow_tags, pushed_tags: kept; corp tag ids only. pushed_tags is what lets the bot
  remove only the tags it put on itself, never a manager's own.
- customer_profiles: aum, aum_trend, birth_date, age, products, occupation, interests,
  district, last_login_at and opened_at are erased. Kept: customer_key and the link to the
  WeCom customer (the mobile a link was matched by is never stored here, and the remark
  mobiles it came from are erased above), asset_tier, lifecycle and payroll (the coarse
  codes the tier and stage counts are made of), and branch (an outlet shared by thousands of
  customers: per-branch counts).
- attribute_history: the customer's rows are deleted (balances and stages over time).
- customer_tags: kept (tag counts); each reason is replaced by `ERASED_REASON`, since
  reasons quote balances, ages and account dates. The next full retag recomputes the
  customer's tags, tier and stage from what is left, so those that needed the erased data
  go then.
- group_members: name, group_nickname and unionid are erased; kept: the membership, join
  and leave times and scenes, and the inviting member (group sizes).
- slot_runs, slot_targets, mass_tasks: kept as they are. They hold ids, statuses and
  counts only; slot_targets are what `bot report` counts reach and delivery from, and what
  the results of a task still open are matched to.
- receive_counts: the customer's rows are deleted; only the receive cap reads them, and an
  opted-out customer is never planned again.
- outbox: rows that name the customer (a mass-send rendered with customer_name, should a
  payload ever hold the name unmasked) get the name masked in their payload.
- inbox: app text messages quoting the customer (an opt-out command naming them, say) get
  those words masked.
- While such an outbox or inbox row is still being worked, the forget changes nothing and
  raises `MessagesInFlight`: masking a message on its way out would change what is sent.
- members, groups and the bot's bookkeeping hold no customer's personal data.

What the bot holds is erased; the sources are not, so forgotten_at marks the customer as
erased for good. WeCom still lists them for their managers, but the mirror (contact
callbacks, group reads and `bot sync`) stores for a forgotten customer only what is kept
above: ids, statuses, who follows whom since when, channel state, add_way, tags, and group
memberships with their times; none of the fields erased above is stored again. A customer
a manager deletes and adds back keeps their external_userid, so stays forgotten. A bank
export that still carries them does not refill the profile on import either. Neither the
mirror nor the import ever undoes the opt-out; only `bot opt-out --undo` does.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Text, cast, delete, select
from sqlalchemy.orm import Session

from bot.calendar.caps import CUSTOMER
from bot.gateway.inbox import FINISHED
from bot.outbox.queue import OPEN_STATUSES
from bot.privacy import hash_id, mask_mobile, mask_name
from bot.store.db import Database
from bot.store.models import (
    AttributeChange,
    Customer,
    CustomerProfile,
    CustomerTag,
    FollowRelation,
    GroupMember,
    InboxEvent,
    OutboxItem,
    ReceiveCount,
)
from bot.tagging.explain import resolve

log = logging.getLogger("bot.privacy")

ERASED_REASON = "reason erased with the customer's personal data"
CUSTOMER_FIELDS = ("name", "avatar", "unionid", "corp_name", "gender")
RELATION_FIELDS = ("remark", "description", "remark_corp_name", "remark_mobiles")
PROFILE_FIELDS = (
    "aum",
    "aum_trend",
    "birth_date",
    "age",
    "products",
    "occupation",
    "interests",
    "district",
    "last_login_at",
    "opened_at",
)
GROUP_MEMBER_FIELDS = ("name", "group_nickname", "unionid")
# Shorter words (a one-character remark) would mask unrelated text in other messages.
MIN_WORD_CHARS = 2
MIN_MOBILE_CHARS = 7


class UnknownCustomer(LookupError):
    """Neither a WeCom customer's external_userid nor a bank customer key."""

    def __init__(self, customer: str) -> None:
        super().__init__(f"no customer or bank customer key {customer!r}")
        self.customer = customer


class MessagesInFlight(RuntimeError):
    """Messages naming the customer are still being sent or handled: try again shortly."""

    def __init__(self, count: int) -> None:
        super().__init__(
            f"{count} message(s) naming the customer are still being sent or handled; "
            "nothing was changed: try again once they are done"
        )
        self.count = count


class NotAWeComCustomer(LookupError):
    """A bank customer key not matched to any WeCom customer (nobody to opt out)."""


@dataclass
class ForgetResult:
    """What one forget changed: rows per table, and whether it opted the customer out."""

    external_userid: str | None
    customer_key: str | None
    erased: dict[str, int] = field(default_factory=dict)
    opted_out_now: bool = False
    forgotten_now: bool = False

    @property
    def changed(self) -> bool:
        return self.opted_out_now or self.forgotten_now or any(self.erased.values())

    def summary(self) -> str:
        parts = [f"{table} {count}" for table, count in self.erased.items() if count]
        return ", ".join(parts) or "nothing left to erase"


def find(session: Session, customer: str) -> tuple[str | None, str | None]:
    """(external_userid, customer_key) for an external_userid or a bank customer key."""
    found = resolve(session, customer)
    if found is None:
        raise UnknownCustomer(customer)
    return found


def forget_customer(session: Session, customer: str, *, now: datetime) -> ForgetResult:
    """Erase one customer's personal data in `session`'s transaction (see the module
    docstring for what is kept); raises `UnknownCustomer` or `MessagesInFlight` having
    changed nothing."""
    external_userid, customer_key = find(session, customer)
    result = ForgetResult(external_userid, customer_key)
    if external_userid is not None:
        # Collected before erasing: these are the words to look for in stored messages.
        words = _identifying_words(session, external_userid)
        outbox, inbox = _messages_naming(session, external_userid, words)
        result.opted_out_now = _erase_customer(session, external_userid, now, result)
        _erase_relations(session, external_userid, now, result)
        _erase_group_members(session, external_userid, now, result)
        _erase_tag_reasons(session, external_userid, result)
        result.erased["receive_counts"] = _deleted(
            session,
            delete(ReceiveCount).where(
                ReceiveCount.target_kind == CUSTOMER, ReceiveCount.target_id == external_userid
            ),
        )
        for item in outbox:
            item.payload = _mask_json(item.payload, words)
        for event in inbox:
            event.payload = _mask_text(event.payload.decode("utf-8", "replace"), words).encode()
        result.erased["outbox"], result.erased["inbox"] = len(outbox), len(inbox)
    if customer_key is not None:
        _erase_profile(session, customer_key, now, result)
        result.erased["attribute_history"] = _deleted(
            session, delete(AttributeChange).where(AttributeChange.customer_key == customer_key)
        )
    return result


def forget(db: Database, customer: str, *, now: datetime) -> ForgetResult:
    """`forget_customer` in a transaction of its own, then the audit line."""
    result = db.call(lambda s: forget_customer(s, customer, now=now))
    # WARNING, so the audit line survives the log levels production runs at; ids hashed.
    log.warning(
        "privacy: forgot customer %s (bank key %s): %s%s",
        hash_id(result.external_userid),
        hash_id(result.customer_key),
        result.summary(),
        "; opted out" if result.opted_out_now else "",
    )
    return result


# -- opt-out ------------------------------------------------------------------------------


def set_opted_out(
    session: Session, external_userid: str, *, opted_out: bool, now: datetime
) -> bool:
    """Opt a customer out (or back in); True if that changed anything."""
    customer = session.get(Customer, external_userid)
    if customer is None:
        raise UnknownCustomer(external_userid)
    if customer.opted_out == opted_out:
        return False
    customer.opted_out = opted_out
    customer.opted_out_at = now if opted_out else None
    customer.updated_at = now
    return True


def opt_out(
    db: Database, customer: str, *, now: datetime, undo: bool = False, source: str
) -> tuple[str, bool]:
    """Opt a customer (external_userid or bank key) out, or back in with `undo`; returns
    (external_userid, changed). `source` says who asked, for the log line."""

    def run(session: Session) -> tuple[str, bool]:
        external_userid, _key = find(session, customer)
        if external_userid is None:
            raise NotAWeComCustomer(f"bank customer key {customer!r} has no WeCom customer")
        return external_userid, set_opted_out(session, external_userid, opted_out=not undo, now=now)

    external_userid, changed = db.call(run)
    if changed:
        log.warning(
            "privacy: customer %s %s by %s",
            hash_id(external_userid),
            "opted back in" if undo else "opted out",
            source,
        )
    return external_userid, changed


# -- the erasure, table by table ----------------------------------------------------------


def _identifying_words(session: Session, external_userid: str) -> dict[str, str]:
    """Each word that names the customer → its masked form: the name, the managers'
    remarks, group names and nicknames, and remark mobiles (each spelling as entered)."""
    words: dict[str, str] = {}
    customer = session.get(Customer, external_userid)
    names = [customer.name] if customer is not None else []
    relations = session.scalars(
        select(FollowRelation).where(FollowRelation.external_userid == external_userid)
    ).all()
    for relation in relations:
        names.append(relation.remark)
        for mobile in relation.remark_mobiles or []:
            if not isinstance(mobile, str):
                continue
            # As typed ("138-1234-5678") and as digits, the way a message may quote it.
            for spelling in {mobile.strip(), re.sub(r"\D", "", mobile)}:
                if len(spelling) >= MIN_MOBILE_CHARS:
                    words[spelling] = mask_mobile(mobile)
    for name, nickname in session.execute(
        select(GroupMember.name, GroupMember.group_nickname).where(
            GroupMember.member_id == external_userid
        )
    ):
        names.extend((name, nickname))
    for name in names:
        if name and len(name.strip()) >= MIN_WORD_CHARS:
            words[name.strip()] = mask_name(name.strip())
    return words


def _erase_customer(
    session: Session, external_userid: str, now: datetime, result: ForgetResult
) -> bool:
    customer = session.get(Customer, external_userid)
    if customer is None:
        # A bank key whose profile names an external_userid the mirror never stored.
        result.erased["customers"] = 0
        return False
    result.erased["customers"] = int(_blank(customer, CUSTOMER_FIELDS))
    opted_now = set_opted_out(session, external_userid, opted_out=True, now=now)
    # The mirror reads this (bot.mirror.forgotten_among), so what WeCom still lists about
    # the customer is not stored again.
    result.forgotten_now = customer.forgotten_at is None
    if result.forgotten_now:
        customer.forgotten_at = now
    if result.erased["customers"] or result.forgotten_now:
        customer.updated_at = now
    return opted_now


def _erase_relations(
    session: Session, external_userid: str, now: datetime, result: ForgetResult
) -> None:
    changed = 0
    for relation in session.scalars(
        select(FollowRelation).where(FollowRelation.external_userid == external_userid)
    ):
        if _blank(relation, RELATION_FIELDS):
            relation.updated_at = now
            changed += 1
    result.erased["follow_relations"] = changed


def _erase_group_members(
    session: Session, external_userid: str, now: datetime, result: ForgetResult
) -> None:
    changed = 0
    for row in session.scalars(select(GroupMember).where(GroupMember.member_id == external_userid)):
        if _blank(row, GROUP_MEMBER_FIELDS):
            row.updated_at = now
            changed += 1
    result.erased["group_members"] = changed


def _erase_tag_reasons(session: Session, external_userid: str, result: ForgetResult) -> None:
    changed = 0
    for tag in session.scalars(
        select(CustomerTag).where(CustomerTag.external_userid == external_userid)
    ):
        if tag.reason != ERASED_REASON:
            tag.reason = ERASED_REASON
            changed += 1
    result.erased["customer_tags"] = changed


def _erase_profile(
    session: Session, customer_key: str, now: datetime, result: ForgetResult
) -> None:
    profile = session.get(CustomerProfile, customer_key)
    changed = profile is not None and _blank(profile, PROFILE_FIELDS)
    if profile is not None and changed:
        profile.updated_at = now
    result.erased["customer_profiles"] = int(changed)


def _messages_naming(
    session: Session, external_userid: str, words: dict[str, str]
) -> tuple[list[OutboxItem], list[InboxEvent]]:
    """Outbox rows listing the customer whose payload quotes them (a mass-send rendered
    per customer), and app text messages quoting them; raises `MessagesInFlight` if any
    is still being worked."""
    if not words:
        return [], []
    outbox = [
        row
        for row in session.scalars(
            select(OutboxItem).where(
                cast(OutboxItem.payload, Text).contains(external_userid, autoescape=True)
            )
        )
        if _mask_json(row.payload, words) != row.payload
    ]
    inbox = [
        row
        for row in session.scalars(select(InboxEvent).where(InboxEvent.msg_type == "text"))
        if _mask_text(row.payload.decode("utf-8", "replace"), words)
        != row.payload.decode("utf-8", "replace")
    ]
    busy = sum(row.status in OPEN_STATUSES for row in outbox)
    busy += sum(row.status not in FINISHED for row in inbox)
    if busy:
        raise MessagesInFlight(busy)
    return outbox, inbox


# -- helpers ------------------------------------------------------------------------------


def _blank(row: Any, fields: Iterable[str]) -> bool:
    """Set each field to None; True if any held a value (an empty list counts as none)."""
    had_value = False
    for name in fields:
        value = getattr(row, name)
        if value is not None:
            had_value = had_value or value not in ("", [])
            setattr(row, name, None)
    return had_value


def _mask_text(text: str, words: dict[str, str]) -> str:
    # Longest first, so "欧阳娜娜" is masked whole before "欧阳" could be.
    for word in sorted(words, key=len, reverse=True):
        text = text.replace(word, words[word])
    return text


def _mask_json(value: Any, words: dict[str, str]) -> Any:
    if isinstance(value, str):
        return _mask_text(value, words)
    if isinstance(value, list):
        return [_mask_json(v, words) for v in value]
    if isinstance(value, dict):
        return {k: _mask_json(v, words) for k, v in value.items()}
    return value


def _deleted(session: Session, statement: Any) -> int:
    return int(getattr(session.execute(statement), "rowcount", 0) or 0)
