"""SQL building blocks shared by the terms and the compiler (Core, both engines)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    FromClause,
    Numeric,
    Select,
    String,
    and_,
    bindparam,
    select,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import BigInteger, TypeEngine

from bot.store.models import (
    CorpTagHolder,
    Customer,
    CustomerProfile,
    CustomerTag,
    FollowRelation,
    GroupMember,
    GroupSegment,
)

customers: FromClause = Customer.__table__
profiles: FromClause = CustomerProfile.__table__
relations: FromClause = FollowRelation.__table__
customer_tags: FromClause = CustomerTag.__table__
corp_holders: FromClause = CorpTagHolder.__table__
group_members: FromClause = GroupMember.__table__
group_segments: FromClause = GroupSegment.__table__

ACTIVE = "active"


def value_param(value: str | int | float | bool) -> ColumnElement[Any]:
    """A bound literal typed by its own value, not by the column it meets.

    PostgreSQL binds get an explicit cast from the column type, which would round 30.5 to
    31 against an integer column (`age <= 30.5` would then admit 31) or to two places
    against numeric(18,2); whole numbers bind as BIGINT so btree indexes still apply.
    """
    type_: TypeEngine[Any]
    if isinstance(value, bool):
        type_ = Boolean()
    elif isinstance(value, int):
        type_ = BigInteger()
    elif isinstance(value, float):
        type_ = Numeric()
    else:
        type_ = String()
    return bindparam(None, value, type_=type_)


def active_relation_numbers(*conditions: ColumnElement[bool]) -> Select[int]:
    """Numbers of the customers with an active follow relation meeting `conditions`."""
    return select(relations.c.cid).where(relations.c.status == ACTIVE, *conditions)


def profile_numbers(clause: ColumnElement[bool]) -> Select[int]:
    """Numbers of the customers whose profile row meets `clause` (profiles not matched to
    WeCom skipped)."""
    return select(profiles.c.cid).where(profiles.c.cid.is_not(None), clause)


def numbers_of(query: Select[Any]) -> Select[int]:
    """The customer numbers of a SELECT of external_userids (ids of non-customers, such as
    a member in a group, drop out). Its own alias of customers, so it never correlates
    with an outer query over customers.

    Written as IN rather than a join: both engines then run `query` as written (once, or
    as a hashed set) and look each id up in customers' primary key; as a join, SQLite
    flattened it and drove a corp-tag lookup from every follow relation."""
    numbered = customers.alias()
    return select(numbered.c.cid).where(numbered.c.external_userid.in_(query))


def tagged_numbers(name: str) -> tuple[Select[int], Select[int]]:
    """Numbers of the customers carrying tag `name`: a rule tag, or a live corp tag of that
    name on an active relation (a tag a manager set by hand in WeCom counts too)."""
    rule = select(customer_tags.c.cid).where(customer_tags.c.tag == name)
    # Kept by triggers from follow_tags, follow_relations and corp_tags (migration 0011).
    corp = select(corp_holders.c.cid).where(corp_holders.c.name == name)
    return rule, corp


def not_null_and(column: ColumnElement[Any], clause: ColumnElement[bool]) -> ColumnElement[bool]:
    """`column IS NOT NULL AND clause`: FALSE rather than NULL when the value is missing, so
    the condition stays two-valued under NOT."""
    return and_(column.is_not(None), clause)


class by_dialect(FunctionElement[bool]):
    """`by_dialect(for_sqlite, otherwise)`: the same condition written two ways, rendered
    as the first on SQLite and as the second everywhere else."""

    # No Boolean type on purpose: SQLite would then compare the whole thing to 1.
    name = "by_dialect"
    inherit_cache = True


@compiles(by_dialect)
def _by_dialect_default(element: by_dialect, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(list(element.clauses)[1], **kw)


@compiles(by_dialect, "sqlite")
def _by_dialect_sqlite(element: by_dialect, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(next(iter(element.clauses)), **kw)


class json_list_contains(FunctionElement[bool]):
    """`json_list_contains(column, value)`: the JSON array in `column` holds text `value`."""

    type = Boolean()
    name = "json_list_contains"
    inherit_cache = True


@compiles(json_list_contains)
def _contains_generic(element: json_list_contains, compiler: SQLCompiler, **kw: Any) -> str:
    # Only for printing a statement without a dialect; never executed.
    return f"json_list_contains({compiler.process(element.clauses, **kw)})"


@compiles(json_list_contains, "sqlite")
def _contains_sqlite(element: json_list_contains, compiler: SQLCompiler, **kw: Any) -> str:
    column, value = list(element.clauses)
    return (
        f"EXISTS (SELECT 1 FROM json_each({compiler.process(column, **kw)}) AS je "
        f"WHERE je.value = {compiler.process(value, **kw)})"
    )


@compiles(json_list_contains, "postgresql")
def _contains_postgresql(element: json_list_contains, compiler: SQLCompiler, **kw: Any) -> str:
    column, value = list(element.clauses)
    return (
        f"(CAST({compiler.process(column, **kw)} AS JSONB) "
        f"@> jsonb_build_array(CAST({compiler.process(value, **kw)} AS TEXT)))"
    )


class among(FunctionElement[bool]):
    """`among(column, query)`: column is one of the values `query` selects. PostgreSQL gets
    `column = ANY(ARRAY(query))`, which builds the set once and walks the index on
    `column` key by key, where IN or a join hashed the set and read the whole table;
    elsewhere `column IN (query)`. Pass the query as `.scalar_subquery()`."""

    type = Boolean()
    name = "among"
    inherit_cache = True


@compiles(among)
def _among_default(element: among, compiler: SQLCompiler, **kw: Any) -> str:
    # The query arrives as a scalar subquery, which renders in its own parentheses.
    column, query = list(element.clauses)
    return f"{compiler.process(column, **kw)} IN {compiler.process(query, **kw)}"


@compiles(among, "postgresql")
def _among_postgresql(element: among, compiler: SQLCompiler, **kw: Any) -> str:
    column, query = list(element.clauses)
    return f"{compiler.process(column, **kw)} = ANY(ARRAY{compiler.process(query, **kw)})"
