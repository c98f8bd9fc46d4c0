"""The words of the language: built-in attributes and functions, and the registry that
lets other parts of the bot add terms.

Extension point: a new kind of condition is one `register_function` call, giving the SQL
(an IdSet or a ProfileFilter) and the reference meaning side by side. When activities
exist, participation becomes::

    register_function(Function(
        name="participated",
        params=(Type.TEXT,),
        sql=lambda args, ctx: IdSet(
            select(participations.c.external_userid)
            .where(participations.c.activity_id == value_param(args[0]))
        ),
        reference=lambda args, customer, ctx: args[0] in customer.get("activities", []),
        doc="took part in activity ACTIVITY_ID",
    ))

with `activities` filled in the reference data (RefCustomer already has the key). Nothing in
the parser, the checker, the compiler or the CLI changes; tests/tagging/
test_audience_extension.py does exactly this. Wrap a query in `Branch(query, small=True)`
when its set stays small (one activity's entrants), so SQLite tests membership against the
set built once instead of probing the index per candidate. A query of external_userids is
numbered by the compiler; a table that carries `cid` can select it directly with
`Branch(query, numbered=True)`, which saves that lookup on large sets.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, bindparam, select

from bot.tagging.audience.nodes import Value
from bot.tagging.audience.sqlparts import (
    active_relation_numbers,
    customers,
    group_members,
    group_segments,
    json_list_contains,
    not_null_and,
    profiles,
    relations,
    tagged_numbers,
    value_param,
)
from bot.tagging.audience.terms import (
    Args,
    Attribute,
    Branch,
    Context,
    Function,
    IdSet,
    ProfileFilter,
    RefCustomer,
    Selection,
    Type,
    active_relations,
)

ATTRIBUTES: dict[str, Attribute] = {}
FUNCTIONS: dict[str, Function] = {}


def register_attribute(attribute: Attribute) -> None:
    """Add an attribute; names are unique across attributes and functions."""
    _claim(attribute.name)
    ATTRIBUTES[attribute.name] = attribute


def register_function(function: Function) -> None:
    """Add a function term; names are unique across attributes and functions."""
    _claim(function.name)
    FUNCTIONS[function.name] = function


def _claim(name: str) -> None:
    if name in ATTRIBUTES or name in FUNCTIONS:
        raise ValueError(f"audience term {name!r} is already defined")


# -- attributes -----------------------------------------------------------------------------


def _profile_attribute(name: str, type_: Type, doc: str) -> Attribute:
    def values(customer: RefCustomer) -> list[Value]:
        profile = cast("Mapping[str, Value | None] | None", customer["profile"])
        value = None if profile is None else profile.get(name)
        return [] if value is None else [value]

    return Attribute(name, type_, "profile", profiles.c[name], values, doc)


for _name, _type, _doc in (
    ("aum", Type.NUMBER, "assets under management, yuan"),
    ("age", Type.NUMBER, "age in years"),
    ("asset_tier", Type.TEXT, "asset tier code, e.g. T3"),
    ("payroll", Type.BOOL, "payroll (代发) customer"),
    ("branch", Type.TEXT, "branch (网点) name"),
    ("occupation", Type.TEXT, "occupation"),
    ("district", Type.TEXT, "business district (商圈)"),
    ("lifecycle", Type.TEXT, "potential / new / growth / mature / churning"),
):
    register_attribute(_profile_attribute(_name, _type, _doc))

register_attribute(
    Attribute(
        "opted_out",
        Type.BOOL,
        "customer",
        customers.c.opted_out,
        lambda c: [c["opted_out"]],
        "refused marketing (always excluded from audiences)",
    )
)
register_attribute(
    Attribute(
        "manager",
        Type.TEXT,
        "relation",
        relations.c.userid,
        lambda c: [r["userid"] for r in active_relations(c)],
        "userid of a member with an active relation to the customer",
    )
)
register_attribute(
    Attribute(
        "channel",
        Type.TEXT,
        "relation",
        relations.c.state,
        lambda c: [r["state"] for r in active_relations(c) if r["state"] is not None],
        "State of the QR code or link an active relation came through",
    )
)

# -- functions ------------------------------------------------------------------------------


def _text(args: Args) -> str:
    value = args[0]
    assert isinstance(value, str)  # the checker guarantees it
    return value


def _days(args: Args) -> int:
    value = args[0]
    assert isinstance(value, int)
    assert not isinstance(value, bool)
    return value


def _since(column: ColumnElement[Any], ctx: Context, args: Args) -> ColumnElement[bool]:
    """`column >= now - N days`, bound with the column's type (UTC handling included)."""
    assert ctx.now is not None  # the compiler refuses needs_now terms without a time
    since = ctx.now - timedelta(days=_days(args))
    return not_null_and(column, column >= bindparam(None, since, type_=column.type))


def _tag_sql(args: Args, ctx: Context) -> Selection:
    rule, corp = tagged_numbers(_text(args))
    # Hand-set corp tags are few next to the rule tags the bot computes.
    return IdSet(Branch(rule, numbered=True), Branch(corp, small=True, numbered=True))


def _tag_ref(args: Args, c: RefCustomer, ctx: Context) -> bool:
    name = _text(args)
    if name in c["tags"]:
        return True
    return any(
        t["name"] == name and not t["deleted"] for r in active_relations(c) for t in r["corp_tags"]
    )


def _product_sql(args: Args, ctx: Context) -> Selection:
    column = profiles.c.products
    return ProfileFilter(not_null_and(column, json_list_contains(column, value_param(_text(args)))))


def _product_ref(args: Args, c: RefCustomer, ctx: Context) -> bool:
    profile = c["profile"]
    return profile is not None and _text(args) in (profile["products"] or [])


def _in_group_sql(args: Args, ctx: Context) -> Selection:
    query = select(group_members.c.member_id).where(
        group_members.c.chat_id == value_param(_text(args)), group_members.c.left_at.is_(None)
    )
    return IdSet(Branch(query, small=True))  # a group has at most a few hundred members


def _in_group_ref(args: Args, c: RefCustomer, ctx: Context) -> bool:
    return any(g["chat_id"] == _text(args) and not g["left"] for g in c["groups"])


def _in_segment_sql(args: Args, ctx: Context) -> Selection:
    query = (
        select(group_members.c.member_id)
        .select_from(
            group_members.join(group_segments, group_segments.c.chat_id == group_members.c.chat_id)
        )
        .where(
            group_segments.c.segment == value_param(_text(args)), group_members.c.left_at.is_(None)
        )
    )
    return IdSet(Branch(query, small=True))


def _in_segment_ref(args: Args, c: RefCustomer, ctx: Context) -> bool:
    return any(_text(args) in g["segments"] and not g["left"] for g in c["groups"])


def _joined_within_sql(args: Args, ctx: Context) -> Selection:
    relation_numbers = active_relation_numbers(_since(relations.c.added_at, ctx, args))
    return IdSet(Branch(relation_numbers, numbered=True))


def _joined_within_ref(args: Args, c: RefCustomer, ctx: Context) -> bool:
    assert ctx.now is not None
    since = ctx.now - timedelta(days=_days(args))
    return any(r["added_at"] is not None and r["added_at"] >= since for r in active_relations(c))


def _login_within_sql(args: Args, ctx: Context) -> Selection:
    return ProfileFilter(_since(profiles.c.last_login_at, ctx, args))


def _login_within_ref(args: Args, c: RefCustomer, ctx: Context) -> bool:
    assert ctx.now is not None
    profile = c["profile"]
    if profile is None or profile["last_login_at"] is None:
        return False
    return profile["last_login_at"] >= ctx.now - timedelta(days=_days(args))


for _function in (
    Function(
        "tag",
        (Type.TEXT,),
        _tag_sql,
        _tag_ref,
        "has the tag: a rule tag, or a corp tag of that name on an active relation",
    ),
    Function("product", (Type.TEXT,), _product_sql, _product_ref, "holds the product"),
    Function("in_group", (Type.TEXT,), _in_group_sql, _in_group_ref, "is in the group (chat_id)"),
    Function(
        "in_segment",
        (Type.TEXT,),
        _in_segment_sql,
        _in_segment_ref,
        "is in any group of the segment",
    ),
    Function(
        "joined_within",
        (Type.DAYS,),
        _joined_within_sql,
        _joined_within_ref,
        "an active relation was added in the last N days",
        needs_now=True,
    ),
    Function(
        "login_within",
        (Type.DAYS,),
        _login_within_sql,
        _login_within_ref,
        "logged in to mobile banking in the last N days",
        needs_now=True,
    ),
):
    register_function(_function)
