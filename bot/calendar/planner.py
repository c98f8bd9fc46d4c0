"""Planning one calendar slot: from an occurrence to the mass-send tasks it asks managers
to confirm.

`compute_plan` only reads: it resolves the audience (customers, or groups for the group
channel), drops whoever is opted out, already reached by this slot today, at the receive
cap or outside their contact window (deferred to a later window the same day, or skipped,
as the slot says), picks each target's sender (the group owner; for a customer, the manager
who added them last) and renders the copy once per sender, or once per target when the
template names the group or the customer. `bot plan` shows that result as it is.

`commit_plan` writes it in one transaction: the slot run (unique per slot, day and part: a
second instance or a re-run finds it and writes nothing), one outbox row per task, whose
payload reserves its targets, and the deferred targets. WeCom is called later, by the
outbox sender; the targets' rows and receive-cap units are written when WeCom creates each
task (bot.calendar.records), and planning counts open reservations as sent.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from bot.calendar import caps
from bot.calendar.content import ContentLibrary, base_variables
from bot.calendar.group_audience import group_ids_query, parse_groups
from bot.calendar.held import held_pairs, held_targets, release_held
from bot.calendar.occurrences import Occurrence
from bot.calendar.records import (
    MASS_TASK,
    MOMENT_TASK,
    Reservation,
    open_reservations,
    pending_units,
    reserved_for,
)
from bot.calendar.windows import Span, inside, next_opening, parse_spans
from bot.config import Settings
from bot.outbox.queue import enqueue_many
from bot.privacy import mask_name
from bot.store.db import Database
from bot.store.inserts import insert_new
from bot.store.models import (
    CorpTag,
    Customer,
    CustomerTag,
    FollowRelation,
    Group,
    GroupSegment,
    Member,
    RuleTagMapping,
    SlotRun,
    SlotTarget,
)
from bot.store.plain_rows import plain_chunks
from bot.tagging.audience.service import ids_query, numbers_query, opted_out_query, run_query
from bot.templates import RenderError

MAIN = "main"
PLANNED = "planned"
PENDING = "pending"
EXPIRED = "expired"
FAILED = "failed"

# Why a target was not sent to, in the order they are applied.
DROP_REASONS = ("opted_out", "no_owner", "already", "capped", "window", "unreachable")


@dataclass(frozen=True)
class TaskPlan:
    """One task for one sender: the targets and the rendered text."""

    sender: str
    targets: tuple[str, ...]
    text: str


@dataclass
class SlotPlan:
    """What a slot would do at `at` (nothing is written until `commit_plan`)."""

    occurrence: Occurrence
    part: str
    at: datetime
    target_kind: str  # customer | group | moment
    matched: int = 0
    tasks: list[TaskPlan] = field(default_factory=list)
    deferred: dict[datetime, dict[str, str]] = field(default_factory=dict)
    dropped: Counter[str] = field(default_factory=Counter)
    moment_tags: tuple[str, ...] = ()
    error: str | None = None

    @property
    def reached(self) -> int:
        return sum(len(t.targets) for t in self.tasks)

    def per_sender(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for task in self.tasks:
            counts[task.sender] += len(task.targets)
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def stats(self) -> dict[str, Any]:
        return {
            "kind": self.target_kind,
            "matched": self.matched,
            "reached": self.reached,
            "tasks": len(self.tasks),
            "senders": len({t.sender for t in self.tasks}),
            "deferred": {at.strftime("%H:%M"): len(t) for at, t in sorted(self.deferred.items())},
            "dropped": {reason: self.dropped[reason] for reason in DROP_REASONS},
            "error": self.error,
        }


@dataclass(frozen=True)
class Targets:
    """Candidates, each with its sender, before the drops."""

    senders: dict[str, str]
    matched: int
    dropped: Counter[str]
    # The members among them of each contact window closed at planning time (by its index
    # in the config), where the audience query found them itself; others are looked up.
    bound: dict[int, set[str]] = field(default_factory=dict)


def part_name(opening: datetime) -> str:
    return f"window-{opening:%H%M}"


# -- computing --------------------------------------------------------------------------------


def compute_plan(
    db: Database,
    occ: Occurrence,
    *,
    settings: Settings,
    content: ContentLibrary,
    at: datetime | None = None,
    part: str = MAIN,
    run_id: int | None = None,
) -> SlotPlan:
    """The plan of one occurrence (or of one of its deferred parts, given its run id)."""
    at = at or occ.fire_at
    kind = {"single": caps.CUSTOMER, "group": caps.GROUP}.get(occ.channel, "moment")
    plan = SlotPlan(occurrence=occ, part=part, at=at, target_kind=kind)
    try:
        if occ.channel == "moments":
            return _moment_plan(db, plan, settings=settings, content=content)
        if run_id is None and part == MAIN and _planned_already(db, plan):
            return plan
        if run_id is None:
            targets = _fresh_targets(db, occ, kind, at, _closed_windows(settings, at))
        else:
            targets = _deferred_targets(db, run_id, kind)
        plan.matched = targets.matched
        plan.dropped.update(targets.dropped)
        senders = _apply_drops(db, plan, targets, settings=settings, run_id=run_id)
        plan.tasks = _render_tasks(db, plan, senders, settings=settings, content=content)
    except RenderError as exc:
        plan.error = str(exc)
        plan.tasks = []
        plan.deferred = {}
    return plan


def _planned_already(db: Database, plan: SlotPlan) -> bool:
    """Whether this slot ran today already; if so, say how many it reached (and skip the
    audience: a million customers are not worth reading to learn that all are done)."""
    occ = plan.occurrence

    def read(session: Session) -> int | None:
        run = session.execute(
            select(SlotRun.id).where(
                SlotRun.slot_id == occ.slot_id, SlotRun.day == occ.day, SlotRun.part == MAIN
            )
        ).scalar_one_or_none()
        if run is None:
            return None
        written = session.execute(
            select(func.count())
            .select_from(SlotTarget)
            .join(SlotRun, SlotRun.id == SlotTarget.run_id)
            .where(SlotRun.slot_id == occ.slot_id, SlotRun.day == occ.day)
        ).scalar_one()
        kind = caps.GROUP if occ.channel == "group" else caps.CUSTOMER
        runs = _runs_of(session, occ)
        return int(written) + len(_unwritten(session, open_reservations(session, kind), runs))

    reached = db.call(read)
    if reached is None:
        return False
    plan.matched = reached
    plan.dropped["already"] = reached
    return True


def _closed_windows(settings: Settings, at: datetime) -> dict[int, str]:
    """The audiences of the contact windows closed at `at`, by index in the config."""
    return {
        index: window.audience
        for index, window in enumerate(settings.calendar.contact_windows)
        if window.audience and not inside(parse_spans(window.hours), at)
    }


def _fresh_targets(
    db: Database, occ: Occurrence, kind: str, at: datetime, closed: dict[int, str]
) -> Targets:
    if kind == caps.CUSTOMER:
        return _customer_targets(db, occ, at, closed)
    return _group_targets(db, occ)


def _customer_targets(
    db: Database, occ: Occurrence, at: datetime, closed: dict[int, str]
) -> Targets:
    """The audience with, per customer, the manager who added them last (WeCom gives a
    1:1 task to the member who last dealt with the customer; the latest add is the best
    local guess, and the task names that sender), and who of them each closed contact
    window holds (in the same query: looked up apart, a window's 150,000 seniors cost
    another audience and a transfer of their ids, about 1 s at a million customers)."""
    source = occ.audience or "true"
    # A join, not IN: the audience holds each number once, and PostgreSQL estimated an
    # IN over it at 200 rows and probed the relations a million times (11 s against 5 s).
    audience = numbers_query(source, now=occ.fire_at).subquery()
    pairs = (
        select(FollowRelation.external_userid, FollowRelation.userid)
        .join(audience, audience.c.cid == FollowRelation.cid)
        .where(FollowRelation.status == "active", ~_added_later().exists())
    )
    flags = []
    for index, window_audience in closed.items():
        # Each number once in a window's audience too: an outer join adds no rows.
        members = numbers_query(window_audience, now=at).subquery(f"window_{index}")
        pairs = pairs.outerjoin(members, members.c.cid == FollowRelation.cid)
        flags.append(members.c.cid.is_not(None))
    pairs = pairs.add_columns(*flags)
    opted = select(opted_out_query(source, now=occ.fire_at).subquery().c.external_userid)

    def read(session: Session) -> Targets:
        senders: dict[str, str] = {}
        bound: dict[int, set[str]] = {index: set() for index in closed}
        for chunk in plain_chunks(session, pairs):
            if not closed:
                senders.update(chunk)
                continue
            senders.update((row[0], row[1]) for row in chunk)
            for column, index in enumerate(closed, start=2):
                bound[index].update(row[0] for row in chunk if row[column])
        opted_out = session.execute(select(func.count()).select_from(opted.subquery()))
        dropped = int(opted_out.scalar_one())
        return Targets(senders, len(senders) + dropped, Counter(opted_out=dropped), bound)

    return run_query(db, read)


def _added_later() -> Select[int]:
    """Another active relation of the same customer added after this one: an unknown add
    time counts as the oldest, and equal times go to the greater userid, so exactly one
    relation per customer has none (the few customers with two managers are sorted out
    inside the database, by a probe of the relations index)."""
    mine, other = FollowRelation.__table__, aliased(FollowRelation, name="other")
    same_time = or_(
        other.added_at == mine.c.added_at,
        and_(other.added_at.is_(None), mine.c.added_at.is_(None)),
    )
    return select(other.id).where(
        other.cid == mine.c.cid,
        other.status == "active",
        other.id != mine.c.id,
        or_(
            other.added_at > mine.c.added_at,
            and_(other.added_at.is_not(None), mine.c.added_at.is_(None)),
            and_(same_time, other.userid > mine.c.userid),
        ),
    )


def _group_targets(db: Database, occ: Occurrence) -> Targets:
    expr = parse_groups(occ.groups) if occ.groups else None
    query = group_ids_query(expr)
    rows = db.call(lambda s: s.execute(query).all())
    senders = {str(chat_id): str(owner) for chat_id, owner in rows if owner}
    return Targets(senders, len(rows), Counter(no_owner=len(rows) - len(senders)))


def _deferred_targets(db: Database, run_id: int, kind: str) -> Targets:
    """A deferred part's targets, re-checked now: still followed by the same manager and
    not opted out since (customers), or still active under the same owner (groups)."""
    held, pair = held_pairs(run_id, postgres=db.is_postgres)
    # The relation (customers) or the group (groups) that must still be active, under the
    # same sender.
    entity: type[FollowRelation | Group] = FollowRelation if kind == caps.CUSTOMER else Group
    target, sender = (
        (FollowRelation.external_userid, FollowRelation.userid)
        if kind == caps.CUSTOMER
        else (Group.chat_id, Group.owner)
    )
    live = held.join(
        entity,
        and_(target == pair.c.key, sender == pair.c.value, entity.status == "active"),
    )
    if kind == caps.CUSTOMER:
        live = live.join(
            Customer,
            and_(Customer.external_userid == pair.c.key, Customer.opted_out.is_(False)),
        )

    def read(session: Session) -> Targets:
        wanted = session.execute(select(func.count()).select_from(pair)).scalar_one()
        kept: dict[str, str] = {}
        for chunk in plain_chunks(session, live):
            kept.update(chunk)
        return Targets(kept, int(wanted), Counter(unreachable=int(wanted) - len(kept)))

    return db.call(read)


def _apply_drops(
    db: Database,
    plan: SlotPlan,
    targets: Targets,
    *,
    settings: Settings,
    run_id: int | None,
) -> dict[str, str]:
    occ = plan.occurrence
    senders = targets.senders
    kind = plan.target_kind
    mode = settings.calendar.receive_cap
    period = caps.period_of(occ.day, mode)
    cap = caps.cap_of(occ.day, mode)

    def read(session: Session) -> tuple[set[str], set[str]]:
        reservations = open_reservations(session, kind)
        already = _already(session, occ, reservations, exclude_run=run_id)
        pending = pending_units(reservations, period)
        return already, caps.at_cap(session, kind, period, cap, pending)

    already, capped = db.call(read)
    # In place, by the (small) excluded sets: not a pass over a million candidates each.
    for reason, excluded in (("already", already), ("capped", capped)):
        for target in excluded:
            if senders.pop(target, None) is not None:
                plan.dropped[reason] += 1
    return _apply_windows(db, plan, senders, settings=settings, bound=targets.bound)


def _already(
    session: Session,
    occ: Occurrence,
    reservations: Sequence[Reservation],
    *,
    exclude_run: int | None,
) -> set[str]:
    """Targets this slot already reached, queued, reserved or deferred today (any part)."""
    runs = [r for r in _runs_of(session, occ) if r != exclude_run]
    if not runs:
        return set()
    query = select(SlotTarget.target_id).where(SlotTarget.run_id.in_(runs))
    return set(session.execute(query).scalars()) | _unwritten(session, reservations, runs)


def _unwritten(session: Session, reservations: Sequence[Reservation], runs: list[int]) -> set[str]:
    """The runs' targets with no slot_targets row yet: reserved in an open task row, or
    held by a pending part."""
    return reserved_for(reservations, runs) | held_targets(session, runs)


def _runs_of(session: Session, occ: Occurrence) -> list[int]:
    """The ids of this slot's runs today (every part)."""
    query = select(SlotRun.id).where(SlotRun.slot_id == occ.slot_id, SlotRun.day == occ.day)
    return [int(r) for r in session.execute(query).scalars()]


def _apply_windows(
    db: Database,
    plan: SlotPlan,
    senders: dict[str, str],
    *,
    settings: Settings,
    bound: dict[int, set[str]],
) -> dict[str, str]:
    """Keep targets inside their window now; defer or skip the others."""
    for index, window in enumerate(settings.calendar.contact_windows):
        spans = parse_spans(window.hours)
        if inside(spans, plan.at) or not senders:
            continue
        members = bound.get(index)
        if members is None:
            members = _window_members(db, plan, window.audience, window.segments)
        outside = [t for t in members if t in senders]
        if not outside:
            continue
        opening = next_opening(spans, plan.at) if plan.occurrence.window_policy == "defer" else None
        _move_out(plan, senders, outside, opening, spans)
    return senders


def _window_members(
    db: Database, plan: SlotPlan, audience: str | None, segments: Sequence[str]
) -> set[str]:
    if plan.target_kind == caps.CUSTOMER:
        if not audience:
            return set()
        query = ids_query(audience, now=plan.at, postgres=db.is_postgres)
        return run_query(db, lambda s: {t for chunk in plain_chunks(s, query) for (t,) in chunk})
    if not segments:
        return set()
    rows = select(GroupSegment.chat_id).where(GroupSegment.segment.in_(list(segments)))
    return set(db.call(lambda s: list(s.execute(rows).scalars())))


def _move_out(
    plan: SlotPlan,
    senders: dict[str, str],
    outside: Iterable[str],
    opening: datetime | None,
    spans: Sequence[Span],
) -> None:
    for target in outside:
        sender = senders.pop(target)
        if opening is None:
            plan.dropped["window"] += 1
        else:
            plan.deferred.setdefault(opening, {})[target] = sender


def _render_tasks(
    db: Database,
    plan: SlotPlan,
    senders: dict[str, str],
    *,
    settings: Settings,
    content: ContentLibrary,
) -> list[TaskPlan]:
    occ = plan.occurrence
    if not senders:
        return []
    names = member_names(db, set(senders.values()))
    per_target = content.per_target(occ.template)
    named = target_names(db, plan.target_kind, list(senders)) if per_target else {}
    limit = (
        settings.calendar.max_single_recipients
        if plan.target_kind == caps.CUSTOMER
        else settings.calendar.max_group_chats
    )
    by_sender: dict[str, list[str]] = defaultdict(list)
    for target, sender in senders.items():
        by_sender[sender].append(target)
    by_text: dict[tuple[str, str], list[str]] = defaultdict(list)
    render = content.renderer(occ.template)
    key = "customer_name" if plan.target_kind == caps.CUSTOMER else "group_name"
    for sender, targets in by_sender.items():
        variables = _variables(settings, occ, names.get(sender, sender))
        if not per_target:
            by_text[(sender, render(**variables))] = targets
            continue
        for target in targets:
            text = render(**{**variables, key: named.get(target, "")})
            by_text[(sender, text)].append(target)
    tasks: list[TaskPlan] = []
    for (sender, text), targets in sorted(by_text.items(), key=lambda kv: kv[0][0]):
        for start in range(0, len(targets), limit):
            tasks.append(TaskPlan(sender, tuple(targets[start : start + limit]), text))
    return tasks


def _variables(settings: Settings, occ: Occurrence, manager: str) -> dict[str, Any]:
    return dict(base_variables(settings, theme=occ.theme, day=occ.day, manager_name=manager))


def member_names(db: Database, userids: Iterable[str]) -> dict[str, str]:
    """Managers' names by userid (the userid where the name is unknown)."""
    query = select(Member.userid, Member.name).where(Member.userid.in_(sorted(userids)))
    return {u: n or u for u, n in db.call(lambda s: s.execute(query).all())}


def target_names(db: Database, kind: str, targets: list[str]) -> dict[str, str]:
    """Groups' names, or customers' masked names (never a full name)."""

    def read(session: Session) -> dict[str, str]:
        out: dict[str, str] = {}
        step = 5000
        for start in range(0, len(targets), step):
            chunk = targets[start : start + step]
            if kind == caps.CUSTOMER:
                rows = session.execute(
                    select(Customer.external_userid, Customer.name).where(
                        Customer.external_userid.in_(chunk)
                    )
                )
                out.update({t: mask_name(n) for t, n in rows})
            else:
                rows = session.execute(
                    select(Group.chat_id, Group.name).where(Group.chat_id.in_(chunk))
                )
                out.update({t: n or "" for t, n in rows})
        return out

    return db.call(read)


def _moment_plan(
    db: Database, plan: SlotPlan, *, settings: Settings, content: ContentLibrary
) -> SlotPlan:
    """Moments are shown to customers carrying the slot's tags, posted by the managers who
    have such customers; they do not count against the mass-send receive cap."""
    occ = plan.occurrence
    tags = list(occ.tags)

    def read(session: Session) -> tuple[dict[str, str], list[str], int]:
        mapped = {
            tag: str(tag_id)
            for tag, tag_id in session.execute(
                select(RuleTagMapping.tag, RuleTagMapping.wecom_tag_id).where(
                    RuleTagMapping.tag.in_(tags), RuleTagMapping.wecom_tag_id.is_not(None)
                )
            )
        }
        for name, tag_id in session.execute(
            select(CorpTag.name, CorpTag.tag_id).where(
                CorpTag.name.in_(tags), CorpTag.deleted.is_(False)
            )
        ):
            mapped.setdefault(name, tag_id)
        holders = (
            select(FollowRelation.userid, CustomerTag.external_userid)
            .join(CustomerTag, CustomerTag.external_userid == FollowRelation.external_userid)
            .where(FollowRelation.status == "active", CustomerTag.tag.in_(tags))
        )
        senders: set[str] = set()
        customers: set[str] = set()
        for userid, external_userid in session.execute(holders):
            senders.add(userid)
            customers.add(external_userid)
        return mapped, sorted(senders), len(customers)

    mapped, senders, matched = db.call(read)
    plan.matched = matched
    missing = [t for t in tags if t not in mapped]
    if missing:
        plan.error = f"{occ.source}: tags not in WeCom yet (run `bot tag-sync`): " + ", ".join(
            missing
        )
        return plan
    plan.moment_tags = tuple(str(mapped[t]) for t in tags)
    if senders:
        text = content.render(occ.template, _variables(settings, occ, settings.branch_name))
        plan.tasks = [TaskPlan(",".join(senders), tuple(senders), text)]
    return plan


# -- committing -------------------------------------------------------------------------------


def commit_plan(db: Database, plan: SlotPlan, *, settings: Settings, now: datetime) -> int | None:
    """Write the plan; the run's id, or None when this slot part was planned already."""
    return db.call(lambda s: commit_plan_session(s, plan, settings=settings, now=now))


def commit_plan_session(
    session: Session, plan: SlotPlan, *, settings: Settings, now: datetime
) -> int | None:
    occ = plan.occurrence
    status = FAILED if plan.error else PLANNED
    run_id = _claim_run(session, plan, status=status, now=now)
    if run_id is None or plan.error:
        return run_id
    mode = settings.calendar.receive_cap
    period = caps.period_of(occ.day, mode)
    expires = plan.at + occ.lateness
    rows: list[dict[str, Any]] = []
    keys: list[str] = []
    for index, task in enumerate(plan.tasks):
        key = f"cal:{run_id}:{index}:{task.sender}"[:191]
        kind = MOMENT_TASK if plan.target_kind == "moment" else MASS_TASK
        payload = _payload(plan, task, key=key, run_id=run_id, period=period)
        rows.append({"key": key, "kind": kind, "payload": payload, "expires_at": expires})
        keys.append(key)
    enqueue_many(session, rows, now=now)
    if plan.target_kind != "moment" and plan.part != MAIN:
        # The kept targets are in the tasks' payloads now; the others say why not.
        kept = {target for task in plan.tasks for target in task.targets}
        release_held(session, run_id, status="dropped", kind=plan.target_kind, keep=kept)
    for opening, targets in plan.deferred.items():
        _defer(session, plan, opening, targets)
    return run_id


def _claim_run(session: Session, plan: SlotPlan, *, status: str, now: datetime) -> int | None:
    occ = plan.occurrence
    if plan.part != MAIN:
        # A deferred part exists already (pending); planning it is taking it over.
        res = session.execute(
            update(SlotRun)
            .where(
                SlotRun.slot_id == occ.slot_id,
                SlotRun.day == occ.day,
                SlotRun.part == plan.part,
                SlotRun.status == PENDING,
            )
            .values(status=status, planned_at=now, stats=plan.stats(), note=plan.error)
            .returning(SlotRun.id)
        )
        found = res.scalar_one_or_none()
        return int(found) if found is not None else None
    values = {
        "slot_id": occ.slot_id,
        "day": occ.day,
        "part": MAIN,
        "channel": occ.channel,
        "theme": occ.theme,
        "template": occ.template,
        "fire_at": occ.fire_at,
        "status": status,
        "planned_at": now,
        "stats": plan.stats(),
        "note": plan.error or occ.note,
    }
    return insert_run(session, values)


def insert_run(session: Session, values: dict[str, Any]) -> int | None:
    stmt = (
        insert_new(session.get_bind().dialect.name, SlotRun, ["slot_id", "day", "part"])
        .values(**values)
        .returning(SlotRun.id)
    )
    found = session.execute(stmt).scalar_one_or_none()
    return int(found) if found is not None else None


def _payload(
    plan: SlotPlan, task: TaskPlan, *, key: str, run_id: int, period: str
) -> dict[str, Any]:
    occ = plan.occurrence
    attachments = [a.to_wecom() for a in occ.attachments]
    if plan.target_kind == "moment":
        return {
            "key": key,
            "run_id": run_id,
            "chat_type": "moment",
            "senders": list(task.targets),
            "tag_ids": list(plan.moment_tags),
            "text": task.text,
            "attachments": attachments,
        }
    payload: dict[str, Any] = {
        "key": key,
        "run_id": run_id,
        "chat_type": "single" if plan.target_kind == caps.CUSTOMER else "group",
        "sender": task.sender,
        "text": task.text,
        "attachments": attachments,
    }
    field_name = "external_userid" if plan.target_kind == caps.CUSTOMER else "chat_id_list"
    payload[field_name] = list(task.targets)
    # The targets are reserved here: written, and their cap units counted, in this
    # period, when WeCom creates the task (bot.calendar.records).
    payload["target_kind"] = plan.target_kind
    payload["period"] = period
    return payload


def _defer(session: Session, plan: SlotPlan, opening: datetime, targets: dict[str, str]) -> None:
    occ = plan.occurrence
    values = {
        "slot_id": occ.slot_id,
        "day": occ.day,
        "part": part_name(opening),
        "channel": occ.channel,
        "theme": occ.theme,
        "template": occ.template,
        "fire_at": opening,
        "status": PENDING,
        "planned_at": None,
        "stats": {"deferred_from": plan.at.strftime("%H:%M"), "targets": len(targets)},
        "note": f"deferred to the {opening:%H:%M} contact window",
    }
    insert_run(session, {**values, "deferred_targets": targets})
