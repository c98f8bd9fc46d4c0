"""From a checked tree to one SQL statement that selects the audience's customers.

The statement works on customer numbers (customers.cid, an integer per customer), and
maps them to external_userids only when the ids themselves are asked for: a count never
touches a text id. Terms whose tables carry cid give numbers directly; the compiler looks
up the number of any other term's external_userids.

Every node compiles to a `Plan` with two forms of the same set of customers:
- `driver`: branches of a UNION ALL that enumerate the set from indexes, when that is
  possible without visiting every customer (`not x` alone is not);
- `contains(id)`: a correlated, two-valued condition that tests one id (EXISTS probes, or
  IN for sets a term declares small).

`or` unions the drivers of its operands. `and` drives from its first operand that has a
driver and filters it with the others' `contains`, so `tag("a") and not tag("b")` reads
tag a's index entries and probes tag b's index once per entry, instead of building
either set in full (EXCEPT would materialise all of tag b). Conditions on the profile row
are merged into one WHERE, so a run of them is one index scan. Only the audience's own
rows are then checked for reachability (followed by someone, not opted out): a lookup in
the few unreachable customers, kept as `customers.reachable` by triggers.

Both engines get the same statement; PostgreSQL turns the EXISTS probes into semi and anti
joins and chooses hash or nested-loop itself, SQLite runs them as written (so on SQLite
the first condition of an `and` drives: put the most selective one first).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    FromClause,
    Select,
    and_,
    false,
    func,
    literal_column,
    not_,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy import union as union_

from bot.tagging.audience.errors import ExpressionError
from bot.tagging.audience.nodes import (
    OPERATORS,
    And,
    Atom,
    Call,
    Compare,
    Expr,
    Flag,
    Member,
    Not,
    Or,
    atoms,
    flatten,
)
from bot.tagging.audience.sqlparts import (
    ACTIVE,
    active_relation_numbers,
    among,
    by_dialect,
    customers,
    not_null_and,
    numbers_of,
    profile_numbers,
    profiles,
    relations,
    value_param,
)
from bot.tagging.audience.terms import (
    Attribute,
    Branch,
    Context,
    IdSet,
    ProfileFilter,
    Selection,
)
from bot.tagging.audience.vocabulary import ATTRIBUTES, FUNCTIONS

# (the outer FROM, its customer number column) -> a condition on that number.
Contains = Callable[[FromClause, ColumnElement[int]], ColumnElement[bool]]
# SQLite refuses a compound SELECT of more than 500 parts; unions nest beyond this.
MAX_UNION = 250


@dataclass(frozen=True, eq=False)
class Plan:
    """One node, compiled. `profile` is set when the node is a condition on the profile row
    alone (then its neighbours' profile conditions merge with it)."""

    contains: Contains
    driver: list[Select[int]] | None
    profile: ColumnElement[bool] | None = None
    negated_profile: ColumnElement[bool] | None = None  # set on `not <profile condition>`
    branches: tuple[Branch, ...] = ()  # set on a term's own id set (for De Morgan)


def audience_numbers(tree: Expr, ctx: Context, *, source: str = "") -> Select[int]:
    """SELECT cid of every customer in the audience of `tree` (checked), each once: callers
    may join on it."""
    _require_now(tree, ctx, source)
    plan = _plan(tree, ctx)
    rows: FromClause
    if plan.profile is not None:
        # Only profile conditions: one scan of the profile rows (and their indexes).
        rows, column = profiles, profiles.c.cid
        query = select(column).where(column.is_not(None), plan.profile)
    elif plan.driver is None:
        # Nothing to enumerate from (`not tag("x")`): every customer is a candidate.
        rows = customers.alias("c")
        column = rows.c.cid
        query = select(column).where(plan.contains(rows, column))
    else:
        branches = plan.driver
        distinct = union_(*branches) if len(branches) > 1 else branches[0].distinct()
        rows = _nest(distinct).subquery("u")
        column = next(iter(rows.c))
        # A copy whose number is missing is nobody's: NOT IN lets a NULL through when no
        # customer is unreachable (nothing to be unknown against).
        query = _non_null(select(column))
    labelled = query.with_only_columns(column.label("cid"))
    return labelled.where(reachable(rows, column))


def audience_ids(
    tree: Expr, ctx: Context, *, source: str = "", postgres: bool = False
) -> Select[str]:
    """SELECT external_userid of every customer in the audience of `tree` (checked).

    Each number is looked up in customers' index, never by reading all customers; the
    engines differ in which form does that. PostgreSQL (`postgres`) gets
    `cid = ANY(ARRAY(…))` (see `among`): as a join or a per-row lookup it hashed the
    audience against a scan of customers, 0.95–1.2 s for an 83,000-member audience
    against 0.65. SQLite gets a lookup per member in the select list: it planned `among`'s
    IN as a scan of customers (0.96 s against 0.57)."""
    numbers = audience_numbers(tree, ctx, source=source)
    named = customers.alias("ids")
    if postgres:
        return select(named.c.external_userid).where(among(named.c.cid, numbers.scalar_subquery()))
    members = numbers.subquery("a")
    external_userid = (
        select(named.c.external_userid)
        .where(named.c.cid == members.c.cid)
        .correlate(members)
        .scalar_subquery()
    )
    return select(external_userid.label("external_userid")).select_from(members)


def audience_count(tree: Expr, ctx: Context, *, source: str = "") -> Select[int]:
    """SELECT count(*) of the audience."""
    numbers = audience_numbers(tree, ctx, source=source).subquery()
    return select(func.count()).select_from(numbers)


def opted_out_ids(tree: Expr, ctx: Context, *, source: str = "") -> Select[str]:
    """SELECT external_userid of the followed customers the expression selects but opt-out
    excludes: what a planner reports as dropped for opting out. Driven by the few opted-out
    customers (partial index), each tested against the expression."""
    _require_now(tree, ctx, source)
    plan = _plan(tree, ctx)
    rows = customers.alias("o")
    column = rows.c.external_userid
    is_followed = (
        select(relations.c.external_userid)
        .where(relations.c.external_userid == column, relations.c.status == ACTIVE)
        .correlate(rows)
        .exists()
    )
    return select(column.label("external_userid")).where(
        rows.c.opted_out == true(), is_followed, plan.contains(rows, rows.c.cid)
    )


def reachable(outer: FromClause, x: ColumnElement[int]) -> ColumnElement[bool]:
    """Someone can reach the customer (an active follow relation) and they have not opted
    out: x is not among the few unreachable customers (the partial index
    ix_customers_unreachable, kept by triggers). Every number is a customer's, so no
    customer row is read for the others."""
    unreachable = customers.alias("unreachable")
    numbers = select(unreachable.c.cid).where(unreachable.c.reachable == false())
    return _absent(Branch(numbers, small=True, numbered=True), outer, x)


def _require_now(tree: Expr, ctx: Context, source: str) -> None:
    if ctx.now is not None:
        return
    for atom in atoms(tree):
        if isinstance(atom, Call) and FUNCTIONS[atom.name].needs_now:
            raise ExpressionError(
                f"{atom.name}() depends on the current time, and none was given",
                source,
                atom.col,
                len(atom.name),
            )


# -- plans ----------------------------------------------------------------------------------


def _plan(node: Expr, ctx: Context) -> Plan:
    if isinstance(node, Not):
        if isinstance(node.operand, Not):
            return _plan(node.operand.operand, ctx)
        return _negation(_plan(node.operand, ctx))
    if isinstance(node, And):
        return _conjunction([_plan(item, ctx) for item in flatten(node)])
    if isinstance(node, Or):
        return _disjunction([_plan(item, ctx) for item in flatten(node)])
    return _atom(node, ctx)


def _negation(inner: Plan) -> Plan:
    if inner.branches:
        # NOT EXISTS a AND NOT EXISTS b rather than NOT (EXISTS a OR EXISTS b): PostgreSQL
        # turns only the former into anti-joins.
        branches = inner.branches
        return Plan(lambda o, x: and_(*(_absent(b, o, x) for b in branches)), None)
    return Plan(lambda o, x: not_(inner.contains(o, x)), None, negated_profile=inner.profile)


def _selection_plan(selection: Selection) -> Plan:
    if isinstance(selection, ProfileFilter):
        return _profile_plan(selection.clause)
    branches = tuple(_numbered(b) for b in selection.branches)
    return Plan(
        lambda o, x: or_(*(_present(b, o, x) for b in branches)),
        [b.query for b in branches],
        branches=branches,
    )


def _numbered(branch: Branch) -> Branch:
    if branch.numbered:
        return branch
    return Branch(numbers_of(branch.query), small=branch.small, numbered=True)


def _profile_plan(clause: ColumnElement[bool]) -> Plan:
    probe = select(profiles.c.cid).where(clause)
    return Plan(lambda o, x: _probe(probe, o, x), [profile_numbers(clause)], clause)


def _present(branch: Branch, outer: FromClause, x: ColumnElement[int]) -> ColumnElement[bool]:
    """x is in the branch's set: probed per candidate, or for a small set, looked up in the
    set built once (both engines do that well for IN)."""
    if branch.small:
        return x.in_(_non_null(branch.query))
    return _probe(branch.query, outer, x)


def _absent(branch: Branch, outer: FromClause, x: ColumnElement[int]) -> ColumnElement[bool]:
    """x is not in the branch's set. NOT IN lets SQLite build a small set once; PostgreSQL
    gets NOT EXISTS, which it plans as an anti-join (NOT IN over a set too big for work_mem
    would rescan the set for every row)."""
    probe = not_(_probe(branch.query, outer, x))
    if branch.small:
        return by_dialect(not_(x.in_(_non_null(branch.query))), probe)
    return probe


def _non_null(query: Select[int]) -> Select[int]:
    # A NULL in the set would make NOT IN unknown for every id. Written `cid + 0 IS NOT
    # NULL` so SQLite cannot take it for an index range: as `cid IS NOT NULL` it drove a
    # hand-set tag's set from every follow relation (cid > NULL on the cid index) instead
    # of from the tag's name.
    column = query.selected_columns[0]
    return query.where((column + literal_column("0")).is_not(None))


def _probe(branch: Select[int], outer: FromClause, x: ColumnElement[int]) -> ColumnElement[bool]:
    """EXISTS (branch AND its number column = x). Only `outer` correlates, so a branch reading
    the same table as the outer query (tag a and tag b) keeps its own copy."""
    column = branch.selected_columns[0]
    return branch.where(column == x).correlate(outer).exists()


def _conjunction(plans: list[Plan]) -> Plan:
    profile = [p.profile for p in plans if p.profile is not None]
    if profile:
        # The first profile condition keeps its place and absorbs the others. A negated
        # profile condition cannot merge on its own (a customer without a profile satisfies
        # it), but next to a positive one the profile row exists, so it can.
        negated = [p.negated_profile for p in plans if p.negated_profile is not None]
        merged = _profile_plan(and_(*profile, *(not_(n) for n in negated)))
        kept: list[Plan] = []
        placed = False
        for p in plans:
            if p.profile is None and p.negated_profile is None:
                kept.append(p)
            elif p.profile is not None and not placed:
                kept.append(merged)
                placed = True
        plans = kept
    if len(plans) == 1:
        return plans[0]

    def contains(outer: FromClause, x: ColumnElement[int]) -> ColumnElement[bool]:
        return and_(*(p.contains(outer, x) for p in plans))

    lead = next((p for p in plans if p.driver is not None), None)
    if lead is None or lead.driver is None:
        return Plan(contains, None)
    others = [p for p in plans if p is not lead]
    driven = _union(lead.driver).subquery()
    column = next(iter(driven.c))
    branch = select(column).where(*(p.contains(driven, column) for p in others))
    return Plan(contains, [branch])


def _disjunction(plans: list[Plan]) -> Plan:
    profile = [p.profile for p in plans if p.profile is not None]
    if len(profile) > 1:
        merged = _profile_plan(or_(*profile))
        plans = [merged, *(p for p in plans if p.profile is None)]
    if len(plans) == 1:
        return plans[0]

    def contains(outer: FromClause, x: ColumnElement[int]) -> ColumnElement[bool]:
        return or_(*(p.contains(outer, x) for p in plans))

    if any(p.driver is None for p in plans):
        return Plan(contains, None)
    return Plan(contains, [b for p in plans for b in p.driver or []])


def _union(branches: list[Select[int]]) -> Select[int] | CompoundSelect[int]:
    """UNION ALL of the branches (duplicates are removed once, at the end)."""
    if len(branches) == 1:
        return branches[0]
    return _nest(union_all(*branches))


def _nest(compound: Select[int] | CompoundSelect[int]) -> Select[int] | CompoundSelect[int]:
    """Split a compound SELECT of more than MAX_UNION parts into nested ones."""
    if not isinstance(compound, CompoundSelect) or len(compound.selects) <= MAX_UNION:
        return compound
    parts = list(compound.selects)
    chunks = [parts[i : i + MAX_UNION] for i in range(0, len(parts), MAX_UNION)]
    nested = []
    for chunk in chunks:
        sub = CompoundSelect(compound.keyword, *chunk).subquery()
        nested.append(select(next(iter(sub.c))))
    return _nest(CompoundSelect(compound.keyword, *nested))


# -- terms ----------------------------------------------------------------------------------


def _atom(node: Atom, ctx: Context) -> Plan:
    if isinstance(node, Call):
        function = FUNCTIONS[node.name]
        return _selection_plan(function.sql(tuple(a.value for a in node.args), ctx))
    attribute = ATTRIBUTES[node.name]
    if isinstance(node, Flag):
        return _holds(attribute, attribute.column == value_param(True))
    if isinstance(node, Member):
        if node.negated and attribute.many:
            # Many-valued: `manager not in (…)` means no active relation with any of them.
            return _negation(_atom(Member(node.name, node.values), ctx))
        clause = attribute.column.in_([value_param(v.value) for v in node.values])
        return _holds(attribute, not_(clause) if node.negated else clause)
    if node.op == "!=" and attribute.many:
        return _negation(_atom(Compare(node.name, "==", node.value), ctx))
    compare = OPERATORS[node.op]
    return _holds(attribute, compare(attribute.column, value_param(node.value.value)))


def _holds(attribute: Attribute, clause: ColumnElement[bool]) -> Plan:
    """The customers for whom `clause` holds on a value of `attribute` (missing: never)."""
    guarded = not_null_and(attribute.column, clause)
    if attribute.source == "profile":
        return _profile_plan(guarded)
    if attribute.source == "customer":
        numbers = select(customers.c.cid).where(guarded)
        return _selection_plan(IdSet(Branch(numbers, numbered=True)))
    return _selection_plan(IdSet(Branch(active_relation_numbers(guarded), numbered=True)))
