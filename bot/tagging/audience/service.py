"""Audience queries against the store: count, ids, count per manager, a masked sample."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy import Select, func, select, text
from sqlalchemy.orm import Session

from bot.privacy import hash_id, mask_name
from bot.store.db import Database
from bot.tagging.audience.check import check
from bot.tagging.audience.compiler import (
    audience_count,
    audience_ids,
    audience_numbers,
    opted_out_ids,
)
from bot.tagging.audience.nodes import Expr
from bot.tagging.audience.parser import parse_syntax
from bot.tagging.audience.sqlparts import ACTIVE, customers, profiles, relations
from bot.tagging.audience.terms import Context

T = TypeVar("T")


@dataclass(frozen=True)
class Expression:
    """A parsed and checked expression, with the text it came from (for error columns)."""

    source: str
    tree: Expr


@dataclass(frozen=True)
class SampleRow:
    """One audience member as an operator may see them: never a full name or id."""

    customer: str  # hash_id of the external_userid
    name: str  # mask_name of the WeCom name
    managers: tuple[str, ...]
    asset_tier: str | None
    lifecycle: str | None
    branch: str | None


def parse(source: str) -> Expression:
    """Parse and check `source`; raise ExpressionError (with its column) if it is wrong."""
    tree = parse_syntax(source)
    check(tree, source)
    return Expression(source, tree)


def _expression(expr: str | Expression) -> Expression:
    return parse(expr) if isinstance(expr, str) else expr


# PostgreSQL's work_mem for audience queries (per sort or hash in the query, not a pool).
AUDIENCE_WORK_MEM = "64MB"


def run_query(db: Database, fn: Callable[[Session], T]) -> T:
    """Run `fn` in one transaction, with PostgreSQL's JIT off and more sort memory for it.

    The planner prices a million-row audience high enough to JIT-compile it, and the
    compilation alone took 6 s of a 12 s query in bench/audience.py; these queries never
    run long enough to win it back.
    """

    def run(session: Session) -> T:
        if db.is_postgres:
            session.execute(text("SET LOCAL jit = off"))
            # A million-customer audience sorts and de-duplicates more than the default
            # 4 MB holds, and spilled over 100 MB to disk in bench/plan.py.
            session.execute(text(f"SET LOCAL work_mem = '{AUDIENCE_WORK_MEM}'"))
        return fn(session)

    return db.call(run)


def ids_query(
    expr: str | Expression, *, now: datetime | None = None, postgres: bool = False
) -> Select[str]:
    """The audience as a SELECT of external_userid, for embedding in other queries; in the
    form that runs best on PostgreSQL when `postgres` (it runs on either engine)."""
    parsed = _expression(expr)
    return audience_ids(parsed.tree, Context(now), source=parsed.source, postgres=postgres)


def numbers_query(expr: str | Expression, *, now: datetime | None = None) -> Select[int]:
    """The audience as a SELECT of customer numbers (customers.cid, column `cid`): cheaper
    to join on than external_userids where the other side carries numbers too."""
    parsed = _expression(expr)
    return audience_numbers(parsed.tree, Context(now), source=parsed.source)


def opted_out_query(expr: str | Expression, *, now: datetime | None = None) -> Select[str]:
    """The followed customers the expression selects but who opted out (never reached)."""
    parsed = _expression(expr)
    return opted_out_ids(parsed.tree, Context(now), source=parsed.source)


def count(db: Database, expr: str | Expression, *, now: datetime | None = None) -> int:
    """How many customers the expression selects (opted-out and unfollowed never count)."""
    parsed = _expression(expr)
    query = audience_count(parsed.tree, Context(now), source=parsed.source)
    return run_query(db, lambda s: s.execute(query).scalar_one())


def ids(db: Database, expr: str | Expression, *, now: datetime | None = None) -> list[str]:
    """The audience's external_userids, in no particular order."""
    query = ids_query(expr, now=now, postgres=db.is_postgres)
    return run_query(db, lambda s: list(s.execute(query).scalars()))


def per_manager(
    db: Database, expr: str | Expression, *, now: datetime | None = None
) -> dict[str, int]:
    """Audience members per member (manager) who follows them, largest first. A customer
    followed by two managers counts for both, so the values can add up to more than
    `count`."""
    audience = numbers_query(expr, now=now).subquery()
    n = func.count().label("n")
    # A join, not IN: the audience holds each number once (see audience_numbers).
    query = (
        select(relations.c.userid, n)
        .join(audience, audience.c.cid == relations.c.cid)
        .where(relations.c.status == ACTIVE)
        .group_by(relations.c.userid)
        .order_by(n.desc(), relations.c.userid)
    )
    return run_query(db, lambda s: {str(u): int(c) for u, c in s.execute(query).all()})


def sample(
    db: Database, expr: str | Expression, n: int, *, now: datetime | None = None
) -> list[SampleRow]:
    """Up to `n` audience members, masked. Which ones is up to the database (no ORDER BY:
    sorting a large audience to show ten rows would cost more than counting it)."""
    if n <= 0:
        return []
    chosen = ids_query(expr, now=now, postgres=db.is_postgres).limit(n).subquery()

    def run(session: Session) -> list[SampleRow]:
        rows = session.execute(
            select(
                customers.c.external_userid,
                customers.c.name,
                profiles.c.asset_tier,
                profiles.c.lifecycle,
                profiles.c.branch,
            )
            .select_from(
                customers.outerjoin(
                    profiles, profiles.c.external_userid == customers.c.external_userid
                )
            )
            .where(customers.c.external_userid.in_(select(chosen.c.external_userid)))
        ).all()
        found = [r.external_userid for r in rows]
        managers: dict[str, list[str]] = {}
        for eid, userid in session.execute(
            select(relations.c.external_userid, relations.c.userid)
            .where(relations.c.status == ACTIVE, relations.c.external_userid.in_(found))
            .order_by(relations.c.userid)
        ):
            managers.setdefault(eid, []).append(userid)
        out = [
            SampleRow(
                customer=hash_id(r.external_userid),
                name=mask_name(r.name),
                managers=tuple(managers.get(r.external_userid, [])),
                asset_tier=r.asset_tier,
                lifecycle=r.lifecycle,
                branch=r.branch,
            )
            for r in rows
        ]
        return sorted(out, key=lambda row: row.customer)

    return run_query(db, run)
