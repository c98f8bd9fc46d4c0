"""Audience expressions: a small, safe language for choosing customers, compiled to SQL.

    tag("资产50万+") and not tag("老年客户") or (aum >= 100000 and lifecycle in ("new", "growth"))

Terms (see `vocabulary` for the full list, and for how to add one):
- attributes of the bank profile: aum, age (numbers); asset_tier, branch, occupation,
  district, lifecycle (text); payroll (yes/no); of the customer: opted_out (yes/no); of the
  active follow relations: manager, channel (text, many-valued);
- functions: tag(text), product(text), in_group(chat_id), in_segment(text),
  joined_within(days), login_within(days).

Operators: `not` binds tighter than `and`, which binds tighter than `or`; comparisons
== != < <= > >= (ordering on numbers only), `in (…)` and `not in (…)`; literals are
"text" or 'text', numbers (1_000_000, 0.5, 50万, 1.2亿) and true/false. A comparison with a
missing value is false. Whatever the expression says, opted-out customers and customers no
member follows are never in an audience.
"""

from __future__ import annotations

from bot.tagging.audience.errors import ExpressionError
from bot.tagging.audience.nodes import Expr, to_source
from bot.tagging.audience.reference import evaluate
from bot.tagging.audience.service import (
    Expression,
    SampleRow,
    count,
    ids,
    ids_query,
    numbers_query,
    parse,
    per_manager,
    sample,
)
from bot.tagging.audience.terms import (
    Attribute,
    Branch,
    Context,
    Function,
    IdSet,
    ProfileFilter,
    RefCustomer,
    Type,
)
from bot.tagging.audience.vocabulary import register_attribute, register_function

__all__ = [
    "Attribute",
    "Branch",
    "Context",
    "Expr",
    "Expression",
    "ExpressionError",
    "Function",
    "IdSet",
    "ProfileFilter",
    "RefCustomer",
    "SampleRow",
    "Type",
    "count",
    "evaluate",
    "ids",
    "ids_query",
    "numbers_query",
    "parse",
    "per_manager",
    "register_attribute",
    "register_function",
    "sample",
    "to_source",
]
