"""Group expressions: which customer groups a group slot goes to, compiled to SQL.

Same surface syntax as audience expressions (and the same parser), over groups instead of
customers:

    segment("理财交流群") and not owner in ("li", "wang") or name_has("代发")

Terms: `segment(text)` (the group is in that segment, table group_segments),
`name_has(text)` (the group's name contains the text), and the text attributes `owner`,
`name` and `chat_id` with == != in, not in. Only active groups are ever chosen. As in
audience expressions, a comparison with a missing value (a group without an owner) is false.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, not_, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from bot.store.db import Database
from bot.store.models import Group, GroupSegment
from bot.tagging.audience.errors import ExpressionError
from bot.tagging.audience.nodes import (
    And,
    Call,
    Compare,
    Expr,
    Flag,
    Lit,
    Member,
    Not,
    Or,
    atoms,
    flatten,
    format_literal,
)
from bot.tagging.audience.parser import parse_syntax
from bot.tagging.audience.sqlparts import by_dialect, value_param

ACTIVE = "active"

ATTRIBUTES: dict[str, InstrumentedAttribute[Any]] = {
    "owner": Group.owner,
    "name": Group.name,
    "chat_id": Group.chat_id,
}


def _present(column: InstrumentedAttribute[Any], clause: Any) -> ColumnElement[bool]:
    """`column IS NOT NULL AND clause`: FALSE rather than NULL for a missing value, so every
    term stays two-valued under NOT (as in audience expressions)."""
    return and_(column.is_not(None), clause)


def _segment(value: str) -> ColumnElement[bool]:
    return Group.chat_id.in_(
        select(GroupSegment.chat_id).where(GroupSegment.segment == value_param(value))
    )


def _name_has(value: str) -> ColumnElement[bool]:
    # instr/strpos rather than LIKE: LIKE ignores ASCII case on SQLite only, and would
    # read % and _ in the text as wildcards.
    found = by_dialect(func.instr(Group.name, value) > 0, func.strpos(Group.name, value) > 0)
    return _present(Group.name, found)


FUNCTIONS: dict[str, Callable[[str], ColumnElement[bool]]] = {
    "segment": _segment,
    "name_has": _name_has,
}
_SIGNATURES = "segment(text), name_has(text)"
_EXAMPLE = 'segment("理财交流群")'


@dataclass(frozen=True)
class GroupExpression:
    """A parsed and checked group expression, with the text it came from."""

    source: str
    tree: Expr


def parse_groups(source: str) -> GroupExpression:
    """Parse and check `source`; raise ExpressionError (with its column) if it is wrong."""
    tree = parse_syntax(source)
    for atom in atoms(tree):
        _check(atom, source)
    return GroupExpression(source, tree)


def _fail(message: str, source: str, col: int, length: int = 1) -> ExpressionError:
    return ExpressionError(message, source, col, length)


def _suggest(name: str) -> str:
    close = difflib.get_close_matches(name, [*ATTRIBUTES, *FUNCTIONS], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _check(atom: Flag | Compare | Member | Call, source: str) -> None:
    name = atom.name
    if isinstance(atom, Call):
        if name in ATTRIBUTES:
            raise _fail(
                f"'{name}' is an attribute, not a function: e.g. {name} == \"…\"",
                source,
                atom.col,
                len(name),
            )
        if name not in FUNCTIONS:
            raise _fail(
                f"unknown function '{name}'{_suggest(name)}; group expressions choose groups "
                f"with {_SIGNATURES} and owner, name, chat_id",
                source,
                atom.col,
                len(name),
            )
        if len(atom.args) != 1:
            col = atom.args[1].col if len(atom.args) > 1 else atom.col
            raise _fail(f"{name}() takes one text argument, e.g. {_EXAMPLE}", source, col)
        _text(atom.args[0], f"{name}()", source)
        return
    if name in FUNCTIONS:
        raise _fail(
            f"'{name}' is a function: call it, e.g. {name}(\"…\")", source, atom.col, len(name)
        )
    if name not in ATTRIBUTES:
        raise _fail(
            f"unknown attribute '{name}'{_suggest(name)}; attributes are "
            f"{', '.join(ATTRIBUTES)}, functions are {_SIGNATURES}",
            source,
            atom.col,
            len(name),
        )
    if isinstance(atom, Flag):
        raise _fail(
            f"'{name}' is text, not a yes/no condition: compare it, e.g. {name} == \"…\"",
            source,
            atom.col,
            len(name),
        )
    if isinstance(atom, Compare):
        if atom.op not in ("==", "!="):
            raise _fail(
                f"'{atom.op}' compares numbers, but '{name}' is text: use == or !=",
                source,
                atom.op_col,
                len(atom.op),
            )
        _text(atom.value, f"'{name}'", source)
        return
    for value in atom.values:
        _text(value, f"'{name}'", source)


def _text(value: Lit, what: str, source: str) -> None:
    if value.kind != "text":
        raise _fail(f"{what} takes text, got {format_literal(value)}", source, value.col)


def _string(value: Lit) -> str:
    assert isinstance(value.value, str)  # the check guarantees it
    return value.value


def _condition(node: Expr) -> ColumnElement[bool]:
    if isinstance(node, And):
        return and_(*(_condition(n) for n in flatten(node)))
    if isinstance(node, Or):
        return or_(*(_condition(n) for n in flatten(node)))
    if isinstance(node, Not):
        # Every term is two-valued (never NULL), so NOT means "the other groups".
        return not_(_condition(node.operand))
    if isinstance(node, Call):
        return FUNCTIONS[node.name](_string(node.args[0]))
    column = ATTRIBUTES[node.name]
    if isinstance(node, Compare):
        value = value_param(_string(node.value))
        clause = column == value if node.op == "==" else column != value
        return _present(column, clause)
    if isinstance(node, Member):
        values = [_string(v) for v in node.values]
        return _present(column, column.not_in(values) if node.negated else column.in_(values))
    raise AssertionError(f"not a group term: {node!r}")  # Flag is refused by the check


def group_ids_query(expr: GroupExpression | str | None) -> Select[str, str | None]:
    """(chat_id, owner) of the active groups the expression chooses; None: every active
    group. Ordered by chat_id, so plans built from it are stable."""
    query = select(Group.chat_id, Group.owner).where(Group.status == ACTIVE)
    if expr is not None:
        parsed = parse_groups(expr) if isinstance(expr, str) else expr
        query = query.where(_condition(parsed.tree))
    return query.order_by(Group.chat_id)


def group_ids(db: Database, expr: GroupExpression | str | None) -> list[tuple[str, str | None]]:
    """Run `group_ids_query`: (chat_id, owner) pairs."""
    query = group_ids_query(expr)

    def run(session: Session) -> list[tuple[str, str | None]]:
        return [(chat_id, owner) for chat_id, owner in session.execute(query)]

    return db.call(run)
