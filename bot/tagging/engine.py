"""The tagging engine: load facts in bulk, run the rules, write customer_tags as a diff.

Incremental (`retag_customers`, `retag_session`) and full (`retag_all`) runs share one chunk
function, so they give the same result. Each chunk is one transaction: it locks its
customers, reads their profile, AUM history, follow relations and current rule tags with a
handful of queries, and writes only what changed. A tag that persists keeps its `since`; its
reason is refreshed. Only the rule families in `rules.FAMILIES` are touched: rows other code
writes under another family are left alone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import partial
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from rich.progress import Progress
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from bot.config import Settings
from bot.store.db import Database
from bot.store.models import Base
from bot.tagging import rules
from bot.tagging.bulk import delete_rows, insert_rows, update_rows
from bot.tagging.rules import Evaluation, Facts, Profile, Relation, RuleSet, TextSource

CHUNK_SIZE = 1000
ACTIVE = "active"
AUM = "aum"
TREND_LIMIT = 9999.9999  # customer_profiles.aum_trend is NUMERIC(8, 4)

# Core tables rather than ORM entities: a full retag reads every customer's rows, and Core
# rows skip the ORM's per-row bookkeeping.
CUSTOMERS = Base.metadata.tables["customers"]
RELATIONS = Base.metadata.tables["follow_relations"]
TAGS = Base.metadata.tables["customer_tags"]
PROFILES = Base.metadata.tables["customer_profiles"]
HISTORY = Base.metadata.tables["attribute_history"]

TextLoader = Callable[[Session, Sequence[str]], Mapping[str, Sequence[TextSource]]]
"""Extra free text per customer for keyword rules (e.g. answers typed into activity pages)."""


@dataclass(frozen=True, slots=True)
class TagDiff:
    """Rule tags a customer gained and lost in one run (what tag sync pushes to WeCom)."""

    added: set[str]
    removed: set[str]


@dataclass
class RetagResult:
    """What a run did: customers evaluated, per-customer tag diffs, customers per tag."""

    evaluated: int = 0
    changes: dict[str, TagDiff] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    unknown: list[str] = field(default_factory=list)
    profiles_updated: int = 0

    def merge(self, other: RetagResult) -> None:
        self.evaluated += other.evaluated
        self.changes.update(other.changes)
        self.counts.update(other.counts)
        self.unknown.extend(other.unknown)
        self.profiles_updated += other.profiles_updated


@dataclass(frozen=True, slots=True)
class _Run:
    rules: RuleSet
    now: datetime
    tz: ZoneInfo
    today: date
    trend_since: datetime
    text_loaders: tuple[TextLoader, ...]

    @classmethod
    def create(cls, settings: Settings, now: datetime, loaders: Iterable[TextLoader]) -> _Run:
        tz = ZoneInfo(settings.timezone)
        return cls(
            rules=RuleSet.compile(settings.tagging),
            now=now,
            tz=tz,
            today=now.astimezone(tz).date(),
            trend_since=now - timedelta(days=rules.AUM_TREND_DAYS),
            text_loaders=tuple(loaders),
        )

    def local_date(self, value: datetime | None) -> date | None:
        return value.astimezone(self.tz).date() if value is not None else None


class _Stored(NamedTuple):
    """A profile's derived columns as stored, to write only the ones that change."""

    customer_key: str
    asset_tier: str | None
    lifecycle: str | None
    aum_trend: float | None


Scope = Callable[[ColumnElement[str]], ColumnElement[bool]]
"""Which customers a chunk covers, as a condition on an external_userid column."""


def retag_customers(
    db: Database,
    external_userids: Iterable[str],
    *,
    settings: Settings,
    now: datetime,
    text_loaders: Iterable[TextLoader] = (),
) -> RetagResult:
    """Re-evaluate these customers, one transaction per chunk of `CHUNK_SIZE`."""
    run = _Run.create(settings, now, text_loaders)
    result = RetagResult()
    for chunk in _chunks(external_userids):
        result.merge(db.call(partial(_retag_listed, ids=chunk, run=run)))
    return result


def retag_session(
    session: Session,
    external_userids: Iterable[str],
    *,
    settings: Settings,
    now: datetime,
    text_loaders: Iterable[TextLoader] = (),
) -> RetagResult:
    """`retag_customers` inside a transaction the caller already holds (import, handlers)."""
    run = _Run.create(settings, now, text_loaders)
    result = RetagResult()
    for chunk in _chunks(external_userids):
        result.merge(_retag_listed(session, chunk, run))
    return result


def _chunks(external_userids: Iterable[str]) -> Iterator[list[str]]:
    ids = sorted(set(external_userids))
    for start in range(0, len(ids), CHUNK_SIZE):
        yield ids[start : start + CHUNK_SIZE]


def retag_all(
    db: Database,
    *,
    settings: Settings,
    now: datetime,
    progress: bool = False,
    text_loaders: Iterable[TextLoader] = (),
) -> RetagResult:
    """Re-evaluate every WeCom customer, in `external_userid` order, chunk by chunk."""
    run = _Run.create(settings, now, text_loaders)
    total = db.call(lambda s: s.scalar(select(func.count()).select_from(CUSTOMERS)) or 0)
    result = RetagResult()
    bar: AbstractContextManager[Any] = Progress(transient=False) if progress else nullcontext()
    with bar as shown:
        task = shown.add_task("retag", total=total) if isinstance(shown, Progress) else None
        after = ""
        while True:
            ids, part = db.call(partial(_retag_next, after=after, run=run))
            if not ids:
                break
            result.merge(part)
            after = ids[-1]
            if isinstance(shown, Progress) and task is not None:
                shown.advance(task, len(ids))
    return result


# Locking the chunk's customers (PostgreSQL; SQLite's write lock is already held) serialises
# two runs over the same customer, which would otherwise both insert the same new tag.


def _retag_listed(session: Session, ids: Sequence[str], run: _Run) -> RetagResult:
    known = list(
        session.scalars(
            select(CUSTOMERS.c.external_userid)
            .where(CUSTOMERS.c.external_userid.in_(ids))
            .order_by(CUSTOMERS.c.external_userid)
            .with_for_update()
        )
    )
    result = _retag_chunk(session, known, lambda column: column.in_(known), run)
    result.unknown = sorted(set(ids) - set(known))
    return result


def _retag_next(session: Session, after: str, run: _Run) -> tuple[list[str], RetagResult]:
    ids = list(
        session.scalars(
            select(CUSTOMERS.c.external_userid)
            .where(CUSTOMERS.c.external_userid > after)
            .order_by(CUSTOMERS.c.external_userid)
            .limit(CHUNK_SIZE)
            .with_for_update()
        )
    )
    if not ids:
        return ids, RetagResult()
    # A key range, not a list: the chunk is every customer in it, and a range costs the
    # queries nothing to bind.
    first, last = ids[0], ids[-1]
    return ids, _retag_chunk(session, ids, lambda column: column.between(first, last), run)


def _retag_chunk(session: Session, ids: Sequence[str], scope: Scope, run: _Run) -> RetagResult:
    """Evaluate the customers `ids` (which `scope` selects) and write what changed."""
    result = RetagResult()
    if not ids:
        return result
    profiles, stored = _load_profiles(session, scope, run)
    relations, texts = _load_relations(session, scope, run)
    for loader in run.text_loaders:
        for external_userid, extra in loader(session, ids).items():
            texts.setdefault(external_userid, []).extend(extra)
    current = _load_tags(session, scope)

    evaluate, today, ruleset = rules.evaluate, run.today, run.rules
    evaluations: dict[str, Evaluation] = {}
    for external_userid in ids:
        facts = Facts(
            external_userid,
            profiles.get(external_userid),
            tuple(relations.get(external_userid, ())),
            tuple(texts.get(external_userid, ())),
        )
        held = current.get(external_userid, {})
        evaluations[external_userid] = evaluate(facts, held.keys(), ruleset, today)

    _write_tags(session, evaluations, current, run, result)
    result.profiles_updated = _write_profiles(session, evaluations, profiles, stored, run)
    result.evaluated = len(ids)
    return result


def _load_profiles(
    session: Session, scope: Scope, run: _Run
) -> tuple[dict[str, Profile], dict[str, _Stored]]:
    c = PROFILES.c
    rows = session.execute(
        select(
            c.external_userid,
            c.customer_key,
            c.aum,
            c.payroll,
            c.age,
            c.birth_date,
            c.opened_at,
            c.last_login_at,
            c.asset_tier,
            c.lifecycle,
            c.aum_trend,
        ).where(scope(c.external_userid))
    ).all()
    baselines = _aum_baselines(session, scope, run)
    profiles: dict[str, Profile] = {}
    stored: dict[str, _Stored] = {}
    for eid, key, aum, payroll, age, born, opened, login, tier, stage, trend in rows:
        aum = float(aum) if aum is not None else None
        profiles[eid] = Profile(
            key,
            aum,
            payroll,
            age,
            born,
            opened,
            run.local_date(login),
            aum_trend(aum, baselines.get(key, aum)),
        )
        stored[eid] = _Stored(key, tier, stage, trend)
    return profiles, stored


def _aum_baselines(session: Session, scope: Scope, run: _Run) -> dict[str, float | None]:
    """AUM at the start of the trend window, for customers whose AUM changed since then.

    That is the `old_value` of the first `aum` change after the cut-off. The importer writes
    no row for a profile's first values, so for a customer first imported inside the window
    this is the first value the bank sent; an old value of NULL (AUM was blank) gives no
    trend. Customers with no change since the cut-off are absent: their AUM then was what it
    is now, a trend of 0.
    """
    h = HISTORY.c
    order = func.row_number().over(partition_by=h.customer_key, order_by=(h.changed_at, h.id))
    keys = select(PROFILES.c.customer_key).where(scope(PROFILES.c.external_userid))
    ranked = (
        select(h.customer_key, h.old_value, order.label("n"))
        .where(h.attribute == AUM, h.changed_at > run.trend_since, h.customer_key.in_(keys))
        .subquery()
    )
    rows = session.execute(
        select(ranked.c.customer_key, ranked.c.old_value).where(ranked.c.n == 1)
    ).all()
    return {key: parse_amount(old) for key, old in rows}


def parse_amount(value: str | None) -> float | None:
    """A stored AUM value ("523000.00", "523,000"), or None when absent or unreadable."""
    if value is None:
        return None
    try:
        return float(value.replace(",", "").strip())
    except ValueError:
        return None


def aum_trend(now: float | None, then: float | None) -> float | None:
    """Relative change, rounded as stored; None when either end is unknown or then ≤ 0."""
    if now is None or then is None or then <= 0:
        return None
    trend = round((now - then) / then, 4)
    return max(-TREND_LIMIT, min(TREND_LIMIT, trend))


def _load_relations(
    session: Session, scope: Scope, run: _Run
) -> tuple[dict[str, list[Relation]], dict[str, list[TextSource]]]:
    c = RELATIONS.c
    rows = session.execute(
        select(c.external_userid, c.userid, c.state, c.remark, c.description, c.status, c.added_at)
        .where(scope(c.external_userid))
        .order_by(c.external_userid, c.userid)
    ).all()
    relations: dict[str, list[Relation]] = {}
    texts: dict[str, list[TextSource]] = {}
    for eid, userid, state, remark, description, status, added_at in rows:
        relations.setdefault(eid, []).append(Relation(userid, state, run.local_date(added_at)))
        if status != ACTIVE or not (remark or description):
            continue
        own = texts.setdefault(eid, [])
        if remark:
            own.append(TextSource(f"manager {userid}'s remark", remark))
        if description:
            own.append(TextSource(f"manager {userid}'s description", description))
    return relations, texts


def _load_tags(session: Session, scope: Scope) -> dict[str, dict[str, tuple[str, str, str]]]:
    """Current rule tags: external_userid → tag → (family, rule, reason)."""
    c = TAGS.c
    rows = session.execute(
        select(c.external_userid, c.tag, c.family, c.rule, c.reason).where(
            scope(c.external_userid), c.family.in_(rules.FAMILIES)
        )
    ).all()
    current: dict[str, dict[str, tuple[str, str, str]]] = {}
    for eid, tag, family, rule, reason in rows:
        current.setdefault(eid, {})[tag] = (family, rule, reason)
    return current


def _write_tags(
    session: Session,
    evaluations: Mapping[str, Evaluation],
    current: Mapping[str, Mapping[str, tuple[str, str, str]]],
    run: _Run,
    result: RetagResult,
) -> None:
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    deletes: list[tuple[str, str]] = []
    for external_userid, evaluation in evaluations.items():
        held = current.get(external_userid, {})
        wanted = {decision.tag: decision for decision in evaluation.tags}
        result.counts.update(wanted.keys())
        added = wanted.keys() - held.keys()
        removed = held.keys() - wanted.keys()
        deletes.extend((external_userid, tag) for tag in removed)
        for tag, decision in wanted.items():
            if tag in added or held[tag] != (decision.family, decision.rule, decision.reason):
                row = {
                    "external_userid": external_userid,
                    "tag": tag,
                    "family": decision.family,
                    "rule": decision.rule,
                    "reason": decision.reason,
                }
                if tag in added:
                    inserts.append({**row, "since": run.now})
                else:
                    updates.append(row)
        if added or removed:
            result.changes[external_userid] = TagDiff(set(added), set(removed))
    keys = ("external_userid", "tag")
    delete_rows(session, TAGS, keys, deletes)
    update_rows(session, TAGS, keys, updates)
    insert_rows(session, TAGS, inserts)


def _write_profiles(
    session: Session,
    evaluations: Mapping[str, Evaluation],
    profiles: Mapping[str, Profile],
    stored: Mapping[str, _Stored],
    run: _Run,
) -> int:
    """Store the tier, stage and trend, and record tier and stage changes as history (the
    asset-tier timeline `bot explain` shows, hysteresis included)."""
    updates: list[dict[str, Any]] = []
    history: list[dict[str, Any]] = []
    for external_userid, evaluation in evaluations.items():
        before = stored.get(external_userid)
        if before is None:
            continue  # no bank profile
        trend = profiles[external_userid].aum_trend
        after = (evaluation.asset_tier, evaluation.lifecycle, trend)
        if after == (before.asset_tier, before.lifecycle, before.aum_trend):
            continue
        updates.append(
            {
                "customer_key": before.customer_key,
                "asset_tier": evaluation.asset_tier,
                "lifecycle": evaluation.lifecycle,
                "aum_trend": trend,
            }
        )
        for attribute, old, new in (
            ("asset_tier", before.asset_tier, evaluation.asset_tier),
            ("lifecycle", before.lifecycle, evaluation.lifecycle),
        ):
            if old != new:
                history.append(
                    {
                        "customer_key": before.customer_key,
                        "attribute": attribute,
                        "old_value": old,
                        "new_value": new,
                        "changed_at": run.now,
                    }
                )
    update_rows(session, PROFILES, ("customer_key",), updates)
    insert_rows(session, HISTORY, history)
    return len(updates)
