"""What a term of the language is: its checked signature, its SQL and its Python meaning.

A term compiles to a `Selection`, either a condition on one customer_profiles row
(`ProfileFilter`, which the compiler merges with its neighbours into one scan) or a set of
customer ids (`IdSet`, SELECTs of one column), and has a reference meaning over plain
Python data (`RefCustomer`) that the SQL is tested against.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, NotRequired, TypedDict

from sqlalchemy import ColumnElement, Select

from bot.tagging.audience.nodes import Value


class Type(StrEnum):
    """Types of attributes and function parameters."""

    TEXT = "text"
    NUMBER = "number"
    BOOL = "bool"
    DAYS = "days"  # a whole number of days, zero or more (function parameters only)


# -- reference data: the plain-Python shape of one customer ---------------------------------


class RefProfile(TypedDict):
    """Bank attributes (customer_profiles); None where the bank sent nothing."""

    aum: float | None
    asset_tier: str | None
    payroll: bool | None
    age: int | None
    branch: str | None
    occupation: str | None
    district: str | None
    lifecycle: str | None
    products: list[str] | None
    last_login_at: datetime | None


class RefCorpTag(TypedDict):
    name: str
    deleted: bool


class RefRelation(TypedDict):
    """A follow relation (member ↔ customer) with the corp tags on it."""

    userid: str
    status: str  # "active" or "ended"
    state: str | None
    added_at: datetime | None
    corp_tags: list[RefCorpTag]


class RefMembership(TypedDict):
    """Membership of a customer group, with that group's segments."""

    chat_id: str
    left: bool
    segments: list[str]


class RefCustomer(TypedDict):
    """One customer as the reference evaluator sees them. A term that needs more data
    (activity participation, say) adds a NotRequired key here."""

    external_userid: str
    opted_out: bool
    profile: RefProfile | None
    tags: list[str]  # rule tags (customer_tags)
    relations: list[RefRelation]
    groups: list[RefMembership]
    activities: NotRequired[list[str]]


def active_relations(customer: RefCustomer) -> list[RefRelation]:
    return [r for r in customer["relations"] if r["status"] == "active"]


# -- compiled forms ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    """What evaluation may depend on besides the data: the current time, for terms such as
    login_within(30). None when the caller gave none; such terms then refuse to compile."""

    now: datetime | None = None


@dataclass(frozen=True)
class ProfileFilter:
    """A two-valued condition on a customer_profiles row (never NULL, so NOT is safe)."""

    clause: ColumnElement[bool]


@dataclass(frozen=True)
class Branch:
    """One SELECT of one column of external_userids, or of customer numbers
    (customers.cid) when `numbered`. The compiler works on numbers and looks up the number
    of an external_userid itself, so a term only numbers its rows where its table carries
    cid (customer_tags, customer_profiles, customers); that is where the large sets are.
    `small` says the set stays small (a few thousand: a group, a manager's book, hand-set
    corp tags): SQLite then tests membership against the set built once, instead of one
    index probe per candidate."""

    query: Select[Any]
    small: bool = False
    numbered: bool = False


@dataclass(frozen=True, init=False)
class IdSet:
    """Customers given as the union of one or more SELECTs of one column of
    external_userids (duplicates allowed), or `Branch`es. Each SELECT should be answerable
    from an index both ways: enumerated (the compiler may drive a query from it) and probed
    for one id (the compiler adds `column = <id>` and runs it as a correlated EXISTS)."""

    branches: tuple[Branch, ...]

    def __init__(self, *queries: Select[Any] | Branch) -> None:
        if not queries:
            raise ValueError("IdSet needs at least one query")
        branches = tuple(q if isinstance(q, Branch) else Branch(q) for q in queries)
        object.__setattr__(self, "branches", branches)


Selection = ProfileFilter | IdSet
Args = tuple[Value, ...]


@dataclass(frozen=True)
class Attribute:
    """A named value a customer has: `aum`, `branch`, `manager`.

    `values` gives the customer's values in the reference data ([] when missing). `source`
    says where the SQL column lives; "relation" attributes are many-valued (one value per
    active follow relation), and a comparison holds when any value satisfies it, except
    != and `not in`, which hold when none equals.
    """

    name: str
    type: Type
    source: Literal["profile", "customer", "relation"]
    column: ColumnElement[Any]
    values: Callable[[RefCustomer], list[Value]]
    doc: str

    @property
    def many(self) -> bool:
        return self.source == "relation"


@dataclass(frozen=True)
class Function:
    """A term written as a call: `tag("资产50万+")`, `in_group("wr…")`.

    `sql` and `reference` receive the checked argument values; `needs_now` marks terms that
    read Context.now.
    """

    name: str
    params: tuple[Type, ...]
    sql: Callable[[Args, Context], Selection]
    reference: Callable[[Args, RefCustomer, Context], bool]
    doc: str
    needs_now: bool = False

    def signature(self) -> str:
        return f"{self.name}({', '.join(p.value for p in self.params)})"
