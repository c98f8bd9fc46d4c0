"""The reference meaning of an expression, over plain Python data: slow, obvious, and the
oracle the SQL compiler is tested against."""

from __future__ import annotations

from collections.abc import Iterable

from bot.tagging.audience.nodes import (
    OPERATORS,
    And,
    Call,
    Compare,
    Expr,
    Flag,
    Member,
    Not,
    Or,
    flatten,
)
from bot.tagging.audience.terms import Context, RefCustomer, active_relations
from bot.tagging.audience.vocabulary import ATTRIBUTES, FUNCTIONS


def evaluate(tree: Expr, customers: Iterable[RefCustomer], ctx: Context) -> set[str]:
    """The audience: customers for whom `tree` holds, who have not opted out and whom at
    least one member follows (an active relation)."""
    return {
        c["external_userid"]
        for c in customers
        if not c["opted_out"] and active_relations(c) and holds(tree, c, ctx)
    }


def holds(node: Expr, customer: RefCustomer, ctx: Context) -> bool:
    """Whether `node` is true of `customer` (two-valued: a missing value fails every
    comparison, so `not` of a failed comparison holds)."""
    if isinstance(node, Not):
        return not holds(node.operand, customer, ctx)
    if isinstance(node, And):
        return all(holds(item, customer, ctx) for item in flatten(node))
    if isinstance(node, Or):
        return any(holds(item, customer, ctx) for item in flatten(node))
    if isinstance(node, Call):
        function = FUNCTIONS[node.name]
        return function.reference(tuple(a.value for a in node.args), customer, ctx)
    attribute = ATTRIBUTES[node.name]
    values = attribute.values(customer)
    if isinstance(node, Flag):
        return any(v is True for v in values)
    if isinstance(node, Member):
        wanted = [v.value for v in node.values]
        if node.negated and attribute.many:
            return not any(v in wanted for v in values)
        if node.negated:
            return any(v not in wanted for v in values)
        return any(v in wanted for v in values)
    assert isinstance(node, Compare)
    if node.op == "!=" and attribute.many:
        return not any(v == node.value.value for v in values)
    compare = OPERATORS[node.op]
    return any(bool(compare(v, node.value.value)) for v in values)
