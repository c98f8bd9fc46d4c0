"""The mirror of WeCom (members, customers, follow relations, groups, tags) and the
bot's own bookkeeping (inbox, outbox, token cache, sync checkpoints)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    FetchedValue,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bot.store.types import UTCDateTime

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with stable constraint names (Alembic needs them)."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
    }


class Member(Base):
    """A WeCom member (customer manager) with customer-contact enabled."""

    __tablename__ = "members"

    userid: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(128))
    follow_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime]


class Customer(Base):
    """An external contact, as `externalcontact/get` describes them."""

    __tablename__ = "customers"
    __table_args__ = (
        # Audience queries probe "has this customer opted out?" once per member: a partial
        # index of the few opted-out customers answers that from a handful of cached pages.
        Index(
            "ix_customers_opted_out_id",
            "external_userid",
            sqlite_where=text("opted_out = 1"),
            postgresql_where=text("opted_out"),
        ),
        # Audiences exclude the few customers nobody can reach (see `reachable`).
        Index(
            "ix_customers_unreachable",
            "cid",
            sqlite_where=text("reachable = 0"),
            postgresql_where=text("NOT reachable"),
        ),
    )

    external_userid: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The customer's number: audiences are computed on it rather than on the text id (the
    # indexes are a fifth of the size). Assigned by the database (an identity column on
    # PostgreSQL, a trigger on SQLite: migration 0007), like `reachable` below.
    cid: Mapped[int] = mapped_column(BigInteger, Identity(), unique=True)
    name: Mapped[str | None] = mapped_column(String(128))
    type: Mapped[int | None] = mapped_column(Integer)
    gender: Mapped[int | None] = mapped_column(Integer)
    unionid: Mapped[str | None] = mapped_column(String(64), index=True)
    corp_name: Mapped[str | None] = mapped_column(String(128))
    avatar: Mapped[str | None] = mapped_column(Text)
    opted_out: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false(), index=True
    )
    opted_out_at: Mapped[datetime | None]
    # An active follow relation and not opted out, kept by triggers on follow_relations
    # and on opted_out: who an audience may include.
    reachable: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false(), server_onupdate=FetchedValue()
    )
    # Set by `bot forget`: from then on the mirror and the importer keep ids, statuses and
    # counts for this customer but never store their personal data again.
    forgotten_at: Mapped[datetime | None]
    fetched_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class FollowRelation(Base):
    """A member ↔ customer relation: remark, how they met, channel state, and its end."""

    __tablename__ = "follow_relations"
    __table_args__ = (
        UniqueConstraint("external_userid", "userid"),
        # Covers "does anyone actively follow this customer?" (reachability, planning).
        Index("ix_follow_relations_customer_status", "external_userid", "status"),
        # The same by customer number, for audience terms on relations.
        Index("ix_follow_relations_cid_status", "cid", "status"),
        # A tagged relation's status and customer number without reading its row (the
        # corp tags a tag() term includes; migration 0008).
        Index("ix_follow_relations_id_status_cid", "id", "status", "cid"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    external_userid: Mapped[str] = mapped_column(
        ForeignKey("customers.external_userid", ondelete="CASCADE"), index=True
    )
    # customers.cid of external_userid, kept by a trigger (migration 0007).
    cid: Mapped[int | None] = mapped_column(BigInteger, server_default=FetchedValue())
    userid: Mapped[str] = mapped_column(String(64), index=True)
    remark: Mapped[str | None] = mapped_column(String(128))
    description: Mapped[str | None] = mapped_column(Text)
    remark_corp_name: Mapped[str | None] = mapped_column(String(128))
    remark_mobiles: Mapped[list[str] | None] = mapped_column(JSON)
    add_way: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[str | None] = mapped_column(String(64), index=True)
    oper_userid: Mapped[str | None] = mapped_column(String(64))
    added_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16), default="active")
    ended_at: Mapped[datetime | None]
    ended_reason: Mapped[str | None] = mapped_column(String(64))
    transfer_fail_reason: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime]


class FollowTag(Base):
    """A corp tag a member has put on a customer (tags are per follow relation)."""

    __tablename__ = "follow_tags"
    # The relations carrying a tag, from the index alone (migration 0008).
    __table_args__ = (Index("ix_follow_tags_tag_follow", "tag_id", "follow_id"),)

    follow_id: Mapped[int] = mapped_column(
        ForeignKey("follow_relations.id", ondelete="CASCADE"), primary_key=True
    )
    tag_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tag_type: Mapped[int | None] = mapped_column(Integer)


class CorpTagHolder(Base):
    """A customer (by number) carrying a live corp tag of this name on an active relation:
    an audience's `tag(name)` reads its hand-set part here, one index range, instead of
    joining follow_tags, follow_relations and corp_tags. Written only by the triggers of
    migration 0011, whoever changes those three tables."""

    __tablename__ = "corp_tag_holders"
    __table_args__ = (Index("ix_corp_tag_holders_cid", "cid"), {"sqlite_with_rowid": False})

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    cid: Mapped[int] = mapped_column(BigInteger, primary_key=True)


class TagGroup(Base):
    """A corp tag group."""

    __tablename__ = "tag_groups"

    group_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    order: Mapped[int] = mapped_column(BigInteger, default=0)
    create_time: Mapped[int | None] = mapped_column(BigInteger)
    strategy_id: Mapped[int | None] = mapped_column(Integer)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime]


class CorpTag(Base):
    """A corp tag."""

    __tablename__ = "corp_tags"

    tag_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    group_id: Mapped[str] = mapped_column(ForeignKey("tag_groups.group_id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    order: Mapped[int] = mapped_column(BigInteger, default=0)
    create_time: Mapped[int | None] = mapped_column(BigInteger)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime]


class Group(Base):
    """A customer group (客户群)."""

    __tablename__ = "groups"

    chat_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(128))
    owner: Mapped[str | None] = mapped_column(String(64), index=True)
    notice: Mapped[str | None] = mapped_column(Text)
    create_time: Mapped[int | None] = mapped_column(BigInteger)
    member_version: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="active")
    dismissed_at: Mapped[datetime | None]
    fetched_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]


class GroupMember(Base):
    """Someone in a customer group: a member (type 1) or an external contact (type 2)."""

    __tablename__ = "group_members"

    chat_id: Mapped[str] = mapped_column(
        ForeignKey("groups.chat_id", ondelete="CASCADE"), primary_key=True
    )
    member_id: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    type: Mapped[int] = mapped_column(Integer, default=2)
    unionid: Mapped[str | None] = mapped_column(String(64))
    join_time: Mapped[int | None] = mapped_column(BigInteger)
    join_scene: Mapped[int | None] = mapped_column(Integer)
    invitor: Mapped[str | None] = mapped_column(String(64))
    group_nickname: Mapped[str | None] = mapped_column(String(128))
    name: Mapped[str | None] = mapped_column(String(128))
    left_at: Mapped[datetime | None]
    quit_scene: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime]


class InboxEvent(Base):
    """One accepted callback, stored before it is acknowledged."""

    __tablename__ = "inbox"
    __table_args__ = (Index("ix_inbox_status_next", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(64), unique=True)
    received_at: Mapped[datetime]
    msg_type: Mapped[str] = mapped_column(String(32))
    event: Mapped[str | None] = mapped_column(String(64))
    change_type: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    lease_until: Mapped[datetime | None]
    leased_by: Mapped[str | None] = mapped_column(String(64))
    processed_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)


class OutboxItem(Base):
    """One intended effect on WeCom, unique by its idempotency key."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "lane", "due_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(191), unique=True)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    lane: Mapped[str] = mapped_column(String(16), default="normal")
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    lease_until: Mapped[datetime | None]
    leased_by: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(Text)
    last_errcode: Mapped[int | None] = mapped_column(Integer)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    done_at: Mapped[datetime | None]


class TokenCache(Base):
    """The access token, shared by every process; `refresh_lease_until` makes refresh
    single-flight across processes."""

    __tablename__ = "token_cache"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    access_token: Mapped[str | None] = mapped_column(String(512))
    expires_at: Mapped[datetime | None]
    refresh_lease_until: Mapped[datetime | None]
    refresh_owner: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime]


class SyncCheckpoint(Base):
    """Progress of a `bot sync` step, so an interrupted sync resumes where it stopped."""

    __tablename__ = "sync_checkpoints"

    step: Mapped[str] = mapped_column(String(128), primary_key=True)
    cursor: Mapped[str | None] = mapped_column(Text)
    done: Mapped[bool] = mapped_column(Boolean, default=False)
    run_id: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime]


# -- bank data and tagging ----------------------------------------------------------------


class CustomerProfile(Base):
    """Attributes the bank exports for one of its customers, matched to a WeCom customer
    when possible (by external_userid, or by mobile against managers' remark mobiles)."""

    __tablename__ = "customer_profiles"
    __table_args__ = (
        # The usual segment (lifecycle stage by AUM), answered from the index alone.
        Index("ix_customer_profiles_lifecycle_aum", "lifecycle", "aum", "cid"),
    )

    customer_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    external_userid: Mapped[str | None] = mapped_column(String(64), unique=True)
    # customers.cid of external_userid, kept by a trigger (migration 0007).
    cid: Mapped[int | None] = mapped_column(BigInteger, server_default=FetchedValue(), unique=True)
    match_method: Mapped[str | None] = mapped_column(String(16))
    aum: Mapped[float | None] = mapped_column(Numeric(18, 2, asdecimal=False), index=True)
    asset_tier: Mapped[str | None] = mapped_column(String(16), index=True)
    payroll: Mapped[bool | None] = mapped_column(Boolean, index=True)
    birth_date: Mapped[date | None] = mapped_column(Date)
    age: Mapped[int | None] = mapped_column(Integer, index=True)
    products: Mapped[list[str] | None] = mapped_column(JSON)
    branch: Mapped[str | None] = mapped_column(String(64), index=True)
    occupation: Mapped[str | None] = mapped_column(String(64))
    interests: Mapped[str | None] = mapped_column(Text)
    district: Mapped[str | None] = mapped_column(String(64))
    last_login_at: Mapped[datetime | None]
    opened_at: Mapped[date | None] = mapped_column(Date)
    lifecycle: Mapped[str | None] = mapped_column(String(16), index=True)
    aum_trend: Mapped[float | None] = mapped_column(Numeric(8, 4, asdecimal=False))
    imported_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class AttributeChange(Base):
    """One attribute of one bank customer changing (value from → to), for history views."""

    __tablename__ = "attribute_history"
    __table_args__ = (Index("ix_attribute_history_key_attr", "customer_key", "attribute"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    customer_key: Mapped[str] = mapped_column(String(64))
    attribute: Mapped[str] = mapped_column(String(32))
    old_value: Mapped[str | None] = mapped_column(Text)
    new_value: Mapped[str | None] = mapped_column(Text)
    changed_at: Mapped[datetime]
    import_id: Mapped[int | None] = mapped_column(Integer)


class ImportRun(Base):
    """One `bot import-customers` run and its outcome."""

    __tablename__ = "import_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    file_name: Mapped[str] = mapped_column(String(255))
    file_sha256: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16))
    rows: Mapped[int] = mapped_column(Integer, default=0)
    matched: Mapped[int] = mapped_column(Integer, default=0)
    unmatched: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    changed: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str | None] = mapped_column(Text)


class CustomerTag(Base):
    """A tag a rule set on a customer, with the reason shown by `bot explain`."""

    __tablename__ = "customer_tags"
    __table_args__ = (Index("ix_customer_tags_tag_cid", "tag", "cid"),)

    external_userid: Mapped[str] = mapped_column(
        ForeignKey("customers.external_userid", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(64), primary_key=True)
    # customers.cid of external_userid, filled by a trigger when a writer leaves it out.
    cid: Mapped[int | None] = mapped_column(BigInteger, server_default=FetchedValue())
    family: Mapped[str] = mapped_column(String(32))
    rule: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    since: Mapped[datetime]


class GroupSegment(Base):
    """A segment a customer group belongs to (by rule on name, owner or members, or by hand)."""

    __tablename__ = "group_segments"

    chat_id: Mapped[str] = mapped_column(
        ForeignKey("groups.chat_id", ondelete="CASCADE"), primary_key=True
    )
    segment: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    source: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    since: Mapped[datetime]


class RuleTagMapping(Base):
    """Which WeCom corp tag stands for a rule tag (the bot creates its own tag groups, since
    an app may only edit tags it created)."""

    __tablename__ = "rule_tag_map"

    tag: Mapped[str] = mapped_column(String(64), primary_key=True)
    family: Mapped[str] = mapped_column(String(32))
    wecom_group_id: Mapped[str | None] = mapped_column(String(64))
    wecom_tag_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    updated_at: Mapped[datetime]


class PushedTag(Base):
    """A corp tag the bot itself put on a (member, customer) through mark_tag. Only these
    may ever be removed by the bot: tags managers set by hand are theirs."""

    __tablename__ = "pushed_tags"

    userid: Mapped[str] = mapped_column(String(64), primary_key=True)
    external_userid: Mapped[str] = mapped_column(String(64), primary_key=True)
    wecom_tag_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    pushed_at: Mapped[datetime]


class SlotRun(Base):
    """One calendar slot on one day (and, for customers deferred to a later contact window,
    one part of it): planned once, unique by (slot_id, day, part), so a restart or a second
    instance never plans it twice."""

    __tablename__ = "slot_runs"
    __table_args__ = (UniqueConstraint("slot_id", "day", "part"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    slot_id: Mapped[str] = mapped_column(String(64))
    day: Mapped[date] = mapped_column(Date, index=True)
    part: Mapped[str] = mapped_column(String(32), default="main")
    channel: Mapped[str] = mapped_column(String(16))
    theme: Mapped[str] = mapped_column(String(128))
    template: Mapped[str] = mapped_column(String(255))
    fire_at: Mapped[datetime]
    # pending (a deferred part waiting for its window) → planned | expired | skipped
    status: Mapped[str] = mapped_column(String(16), index=True)
    planned_at: Mapped[datetime | None]
    # Audience size, targets, tasks and the drops per reason, as `bot plan` shows them.
    stats: Mapped[dict[str, Any]] = mapped_column(JSON)
    note: Mapped[str | None] = mapped_column(Text)
    notified_at: Mapped[datetime | None]
    # A pending part's deferred targets, {target: sender}, until it is planned or expires
    # (bot.calendar.held); SQL NULL otherwise.
    deferred_targets: Mapped[dict[str, str] | None] = mapped_column(JSON(none_as_null=True))


class SlotTarget(Base):
    """A customer or group a slot run reaches (or defers): what "already sent this slot"
    and the per-slot results are counted from."""

    __tablename__ = "slot_targets"
    __table_args__ = (Index("ix_slot_targets_task_key", "task_key"),)

    run_id: Mapped[int] = mapped_column(
        ForeignKey("slot_runs.id", ondelete="CASCADE"), primary_key=True
    )
    target_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    target_kind: Mapped[str] = mapped_column(String(8))
    sender: Mapped[str | None] = mapped_column(String(64))
    task_key: Mapped[str | None] = mapped_column(String(191))
    # queued | deferred | delivered | not_friend | already_received | unsent | failed
    status: Mapped[str] = mapped_column(String(16))
    # The receive-cap period this target was counted in (given back if it never arrives).
    period: Mapped[str | None] = mapped_column(String(16))


class MassTask(Base):
    """A WeCom mass-send (or moments) task the bot created, with its confirmation,
    reminders and pulled results."""

    __tablename__ = "mass_tasks"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("slot_runs.id", ondelete="CASCADE"), index=True)
    outbox_key: Mapped[str] = mapped_column(String(191), unique=True)
    chat_type: Mapped[str] = mapped_column(String(8))  # single | group | moment
    sender: Mapped[str | None] = mapped_column(String(64), index=True)
    msgid: Mapped[str | None] = mapped_column(String(128), unique=True)
    targets: Mapped[int] = mapped_column(Integer, default=0)
    # created → confirmed (the member sent it) → final (results pulled for good) | cancelled
    status: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime]
    confirmed_at: Mapped[datetime | None]
    reminded_at: Mapped[list[str]] = mapped_column(JSON, default=list)
    results_at: Mapped[datetime | None]
    final_at: Mapped[datetime | None]
    delivered: Mapped[int] = mapped_column(Integer, default=0)
    not_friend: Mapped[int] = mapped_column(Integer, default=0)
    already_received: Mapped[int] = mapped_column(Integer, default=0)
    unsent: Mapped[int] = mapped_column(Integer, default=0)


class ReceiveCount(Base):
    """Mass-sends counted against a customer's or group's receive cap in one period
    (a month, ISO week or day, as the corp's cap is set)."""

    __tablename__ = "receive_counts"

    period: Mapped[str] = mapped_column(String(16), primary_key=True)
    target_kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    target_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


# -- several instances on one database ----------------------------------------------------


class RateBucket(Base):
    """A rate-limit bucket shared by every process: an API path, or one member's app
    messages. Reservations lock this row first, so they are serialised per bucket; it
    also carries WeCom's 45009 pause."""

    __tablename__ = "rate_buckets"

    key: Mapped[str] = mapped_column(String(191), primary_key=True)
    paused_until: Mapped[float] = mapped_column(Float, default=0.0)  # epoch seconds


class RateSlice(Base):
    """Calls reserved against a bucket in one fixed slice of time: 1 s slices for the
    minute windows, 60 s slices for the hour windows (epoch seconds)."""

    __tablename__ = "rate_slices"

    bucket: Mapped[str] = mapped_column(String(191), primary_key=True)
    resolution: Mapped[int] = mapped_column(Integer, primary_key=True)
    start: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    used: Mapped[int] = mapped_column(Integer)


class LeaderLease(Base):
    """Who runs the scheduler's leader-only jobs, until when. `term` goes up by one each
    time the lease changes hands, so a log line or a row can say which leadership wrote it."""

    __tablename__ = "leader_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    lease_until: Mapped[datetime]
    term: Mapped[int] = mapped_column(BigInteger)
    acquired_at: Mapped[datetime]
    renewed_at: Mapped[datetime]
