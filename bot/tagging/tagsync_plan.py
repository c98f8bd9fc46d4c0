"""Planning tag sync: per active relation, the rule tags to add and the bot's pushes to remove.

The manual-tag rule lives in `relation_diff`: the bot adds a rule tag only when the
relation does not carry it yet, and removes only tags it pushed itself (pushed_tags) from
its own rule-tag groups. A tag a manager set by hand is never in pushed_tags, so the bot
never takes it off, and never adds it over.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence, Set
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, Final, TypeVar

from sqlalchemy import ColumnElement, Connection, String, cast, delete, false, or_, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from bot.config import Settings
from bot.mirror import ACTIVE
from bot.outbox import queue
from bot.outbox.kinds import MARK_TAG
from bot.store.db import Database
from bot.store.models import (
    CorpTag,
    CustomerTag,
    FollowRelation,
    FollowTag,
    OutboxItem,
    PushedTag,
    RuleTagMapping,
)
from bot.tagging.tagsync_outbox import enqueue_many
from bot.tagging.tagsync_push import (
    KEY_PREFIX,
    mark_tag_key,
    mark_tag_payload,
    relation_of_key,
)

T = TypeVar("T")

SAMPLE_SIZE: Final = 10
NONE: Final[frozenset[str]] = frozenset()
# Up to this many named customers, open rows are looked up per customer, not all read.
NAMED_LOOKUP_MAX: Final = 200
# Rows whose earlier attempt ended without success; `retry_failed` frees their keys.
FAILED_STATUSES: Final = (queue.FAILED, queue.DEAD, queue.EXPIRED)


@dataclass(frozen=True)
class Change:
    """One relation's mark_tag, with tag names for people to read."""

    userid: str
    external_userid: str
    add: tuple[str, ...]
    remove: tuple[str, ...]


@dataclass
class SyncPlan:
    """What one planning pass found and queued."""

    dry_run: bool = False
    customers: int = 0
    relations: int = 0
    changed: int = 0
    adds: int = 0
    removes: int = 0
    enqueued: int = 0
    existing: int = 0
    deferred: int = 0
    kept_by_hand: int = 0
    pruned: int = 0
    requeued_failed: int = 0
    unmapped: Counter[str] = field(default_factory=Counter)
    sample: list[Change] = field(default_factory=list)

    def summary(self) -> str:
        verb = "would enqueue" if self.dry_run else "enqueued"
        lines = [
            f"tag sync{' (dry run)' if self.dry_run else ''}: {self.customers:,} customer(s), "
            f"{self.relations:,} active relation(s); {self.changed:,} to change: "
            f"+{self.adds:,} tag(s), -{self.removes:,} tag(s)",
            f"  outbox: {verb} {self.enqueued:,} mark_tag row(s)"
            f"; {self.existing:,} already queued or failed before"
            f"; {self.deferred:,} wait for an earlier row of their relation",
            f"  {self.kept_by_hand:,} rule tag(s) already on the relation by hand: "
            "not added, never removed",
        ]
        if self.pruned:
            lines.append(f"  {self.pruned:,} record(s) of pushes of since-deleted tags dropped")
        if self.requeued_failed:
            lines.append(f"  {self.requeued_failed:,} failed change(s) released for a retry")
        if self.unmapped:
            top = ", ".join(f"{tag} ({n:,})" for tag, n in self.unmapped.most_common(5))
            lines.append(f"  rule tags with no WeCom tag yet (not pushed): {top}")
        return "\n".join(lines)


def relation_diff(
    desired: Set[str], pushed: Set[str], present: Set[str], managed: Set[str]
) -> tuple[list[str], list[str]]:
    """The mark_tag for one relation, as (add, remove) WeCom tag ids.

    `desired`: the customer's rule tags; `pushed`: what the bot put on this relation
    earlier; `present`: the relation's tags per the follow_tags mirror; `managed`: tags
    of the bot's own rule-tag groups.

    - add what the rules want and the relation lacks: a tag it already has, by hand or
      from an earlier push, is never added again;
    - remove only what the bot pushed itself, from its own groups, and the rules no longer
      want: a tag a manager set by hand is not in `pushed`, so it is never removed, even
      when it is a rule tag that the rules stop wanting.
    """
    add = sorted(desired - present)
    remove = sorted((pushed & managed) - desired)
    return add, remove


@dataclass(frozen=True)
class _Library:
    """Rule tag name → live WeCom tag id, and every tag of the bot's groups (id → name)."""

    ids: dict[str, str]
    names: dict[str, str]
    managed: frozenset[str]
    deleted: frozenset[str]  # tags of the bot's groups deleted in WeCom (gone everywhere)

    @classmethod
    def load(cls, session: Session) -> _Library:
        rows = session.execute(
            select(RuleTagMapping.tag, RuleTagMapping.wecom_tag_id)
            .join(CorpTag, CorpTag.tag_id == RuleTagMapping.wecom_tag_id)
            .where(CorpTag.deleted == false())
        )
        ids = {tag: tag_id for tag, tag_id in rows if tag_id}
        groups = select(RuleTagMapping.wecom_group_id).where(
            RuleTagMapping.wecom_group_id.is_not(None)
        )
        managed = session.execute(
            select(CorpTag.tag_id, CorpTag.name, CorpTag.deleted).where(
                or_(CorpTag.group_id.in_(groups), CorpTag.tag_id.in_(ids.values()))
            )
        ).all()
        names = {tag_id: name for tag_id, name, _ in managed}
        deleted = frozenset(tag_id for tag_id, _, gone in managed if gone)
        return cls(ids, names, frozenset(names), deleted)


def _open_relations(session: Session, named: Sequence[str] | None) -> set[tuple[str, str]]:
    """Relations with a mark_tag row still waiting or being sent: one at a time each, so
    two tag edits on one relation never race and no diff is computed against pushes that
    have not happened yet. For named customers, only theirs are looked up."""
    open_rows: tuple[ColumnElement[bool], ...] = (
        OutboxItem.kind == MARK_TAG,
        OutboxItem.status.in_(queue.OPEN_STATUSES),
    )
    others = ~OutboxItem.idempotency_key.startswith(f"{KEY_PREFIX}:")
    if named is not None and len(named) <= NAMED_LOOKUP_MAX:
        theirs = [OutboxItem.idempotency_key.like(f"{KEY_PREFIX}:%:{ext}:%") for ext in named]
        open_rows = (*open_rows, or_(others, *theirs))
    busy: set[tuple[str, str]] = set()
    foreign_rows = False
    # Tag sync's keys name the relation: no need to decode every payload.
    for key in session.scalars(select(OutboxItem.idempotency_key).where(*open_rows)):
        relation = relation_of_key(key)
        if relation is None:
            foreign_rows = True
        else:
            busy.add(relation)
    if foreign_rows:  # rows some other feature queued, under keys of its own
        for payload in session.scalars(select(OutboxItem.payload).where(*open_rows, others)):
            busy.add((str(payload.get("userid")), str(payload.get("external_userid"))))
    return busy


def _prune_deleted(session: Session) -> int:
    """Forget pushes of tags deleted in WeCom (WeCom took them off every customer)."""
    deleted = select(CorpTag.tag_id).where(CorpTag.deleted.is_(True))
    result = session.execute(
        delete(PushedTag)
        .where(PushedTag.wecom_tag_id.in_(deleted))
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def _candidates(session: Session) -> list[str]:
    """Customers with rule tags, or with pushes that may have to come off."""
    union = select(CustomerTag.external_userid).union(select(PushedTag.external_userid))
    return sorted(session.scalars(union))


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(frozen=True)
class _Chunk:
    """Some customers, selected by key range (a full run's sorted candidates: one index
    range scan per table) or by list (named customers)."""

    customers: frozenset[str]
    first: str
    last: str
    by_range: bool

    def where(self, column: InstrumentedAttribute[str]) -> ColumnElement[bool]:
        if self.by_range:
            return column.between(self.first, self.last)
        return column.in_(sorted(self.customers))


@dataclass
class _Planner:
    """Diffs a chunk of customers at a time with four bulk reads."""

    library: _Library
    busy: set[tuple[str, str]]
    plan: SyncPlan
    now: datetime
    retry_failed: bool = False
    later: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def chunk(self, session: Session, *, chunk: _Chunk) -> None:
        # Plain rows off the connection: ORM row handling would cost more than the SQL.
        conn = session.connection()
        relations, desired, present, pushed = self._read(conn, chunk)
        rank: Counter[str] = Counter()
        rows: list[tuple[str, dict[str, Any]]] = []
        managed = self.library.managed
        for follow_id, userid, ext in relations:
            if ext not in chunk.customers:  # in the key range, but nothing to sync
                continue
            self.plan.relations += 1
            want = desired.get(ext, NONE)
            have = present.get(follow_id, NONE)
            ours = pushed.get(follow_id, NONE)
            if ours and self.library.deleted:  # WeCom already took those off
                ours = ours - self.library.deleted
            self.plan.kept_by_hand += len((want & have) - ours)
            add, remove = relation_diff(want, ours, have, managed)
            if not add and not remove:
                continue
            if (userid, ext) in self.busy:
                self.plan.deferred += 1
                continue
            self.plan.changed += 1
            self.plan.adds += len(add)
            self.plan.removes += len(remove)
            if len(self.plan.sample) < SAMPLE_SIZE:
                self.plan.sample.append(self._readable(userid, ext, add, remove))
            row = (
                mark_tag_key(userid, ext, add, remove),
                mark_tag_payload(userid, ext, add, remove),
            )
            # A customer's second and later relations go after every first one, so the
            # sender rarely edits one customer's tags twice at once (45033).
            (rows if rank[ext] == 0 else self.later).append(row)
            rank[ext] += 1
        self.enqueue(session, rows=rows)

    def _read(
        self, conn: Connection, chunk: _Chunk
    ) -> tuple[
        list[tuple[int, str, str]],
        dict[str, set[str]],
        dict[int, set[str]],
        dict[int, set[str]],
    ]:
        # fetchall (`.all()`) rather than iterating: row-at-a-time fetches cost more here
        # than the queries themselves.
        active = (chunk.where(FollowRelation.external_userid), FollowRelation.status == ACTIVE)
        relations: list[tuple[int, str, str]] = [
            (follow_id, userid, ext)
            for follow_id, userid, ext in conn.execute(
                select(FollowRelation.id, FollowRelation.userid, FollowRelation.external_userid)
                .where(*active)
                .order_by(FollowRelation.external_userid, FollowRelation.userid)
            ).all()
        ]
        desired: dict[str, set[str]] = {}
        ids = self.library.ids
        held = select(CustomerTag.external_userid, CustomerTag.tag).where(
            chunk.where(CustomerTag.external_userid)
        )
        for ext, tag in conn.execute(held).all():
            tag_id = ids.get(tag)
            if tag_id is not None:
                desired.setdefault(ext, set()).add(tag_id)
            elif ext in chunk.customers:
                self.plan.unmapped[tag] += 1
        # All of the relation's tags, not only the bot's: filtering on tag_id in SQL makes
        # SQLite walk follow_tags by tag (every customer) instead of these relations.
        present: dict[int, set[str]] = {}
        tagged = (
            select(FollowTag.follow_id, FollowTag.tag_id)
            .join(FollowRelation, FollowRelation.id == FollowTag.follow_id)
            .where(*active)
        )
        for follow_id, tag_id in conn.execute(tagged).all():
            present.setdefault(follow_id, set()).add(tag_id)
        # pushed_tags by its own key (userid, external_userid), one manager at a time:
        # joined to follow_relations, SQLite re-scans the whole key range per relation.
        follow_ids = {(userid, ext): follow_id for follow_id, userid, ext in relations}
        pushed: dict[int, set[str]] = {}
        managers = sorted({userid for userid, _ in follow_ids})
        ours = select(PushedTag.userid, PushedTag.external_userid, PushedTag.wecom_tag_id).where(
            PushedTag.userid.in_(managers), chunk.where(PushedTag.external_userid)
        )
        for userid, ext, tag_id in conn.execute(ours).all() if managers else ():
            relation = follow_ids.get((userid, ext))
            if relation is not None:  # pushes to ended relations stay as they are
                pushed.setdefault(relation, set()).add(tag_id)
        return relations, desired, present, pushed

    def enqueue(self, session: Session, *, rows: Sequence[tuple[str, dict[str, Any]]]) -> None:
        if self.plan.dry_run:
            self.plan.enqueued += len(rows)
            return
        if self.retry_failed and rows:
            self._release_failed(session, [key for key, _ in rows])
        inserted = enqueue_many(session, rows, kind=MARK_TAG, now=self.now, lane=queue.BULK)
        self.plan.enqueued += len(inserted)
        self.plan.existing += len(rows) - len(inserted)

    def _release_failed(self, session: Session, keys: list[str]) -> None:
        """Let a change whose earlier row failed for good be queued again (by default
        it is not: a change WeCom refused is refused again until someone fixes the cause)."""
        result = session.execute(
            update(OutboxItem)
            .where(OutboxItem.idempotency_key.in_(keys), OutboxItem.status.in_(FAILED_STATUSES))
            .values(idempotency_key=OutboxItem.idempotency_key + "#" + cast(OutboxItem.id, String))
            .execution_options(synchronize_session=False)
        )
        self.plan.requeued_failed += int(getattr(result, "rowcount", 0) or 0)

    def _readable(self, userid: str, ext: str, add: list[str], remove: list[str]) -> Change:
        names = self.library.names
        return Change(
            userid,
            ext,
            tuple(names.get(t, t) for t in add),
            tuple(names.get(t, t) for t in remove),
        )


def plan_tag_sync(
    db: Database,
    *,
    settings: Settings,
    now: datetime,
    external_userids: Iterable[str] | None = None,
    dry_run: bool = False,
    retry_failed: bool = False,
) -> SyncPlan:
    """Queue one mark_tag per active relation whose rule tags differ from what the bot
    pushed (customer_tags is the desired state), for every customer or only those named.

    Each chunk of `tag_sync.batch_size` customers is diffed and queued in its own
    transaction; the client's quota and the sender set the pace of the calls themselves.
    """
    plan = SyncPlan(dry_run=dry_run)
    # Named customers (a RetagResult's, after a callback) are usually few: no table-wide
    # candidate scan or pruning then; pushes of deleted tags are skipped all the same.
    named = None if external_userids is None else sorted(set(external_userids))
    if named is None and not dry_run:
        plan.pruned = db.call(_prune_deleted)
    library = db.call(_Library.load)
    busy = db.call(partial(_open_relations, named=named))
    planner = _Planner(library, busy, plan, now, retry_failed)
    customers = db.call(_candidates) if named is None else named
    plan.customers = len(customers)
    size = settings.tag_sync.batch_size
    for batch in _chunks(customers, size):
        chunk = _Chunk(frozenset(batch), batch[0], batch[-1], by_range=named is None)
        db.call(partial(planner.chunk, chunk=chunk))
    for rows in _chunks(planner.later, size):
        db.call(partial(planner.enqueue, rows=rows))
    return plan
