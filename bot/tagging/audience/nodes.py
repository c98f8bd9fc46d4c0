"""The syntax tree of an audience expression, and printing it back as source."""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

Value = str | int | float | bool
LitKind = Literal["text", "number", "bool"]
CompareOp = Literal["==", "!=", "<", "<=", ">", ">="]
COMPARE_OPS: tuple[CompareOp, ...] = ("==", "!=", "<", "<=", ">", ">=")
# What each comparison means; works on Python values and on SQLAlchemy columns alike.
OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


@dataclass(frozen=True)
class Lit:
    """A literal. `kind` is kept because True == 1 in Python, and the language keeps them
    apart. Columns never take part in equality, so trees compare by meaning."""

    value: Value
    kind: LitKind
    col: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Flag:
    """A boolean attribute on its own: `payroll`."""

    name: str
    col: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Compare:
    """`attribute op literal`: `aum >= 100000`."""

    name: str
    op: CompareOp
    value: Lit
    col: int = field(default=0, compare=False)
    op_col: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Member:
    """`attribute [not] in (literal, ...)`."""

    name: str
    values: tuple[Lit, ...]
    negated: bool = False
    col: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Call:
    """A function term: `tag("资产50万+")`, `in_group("wr…")`."""

    name: str
    args: tuple[Lit, ...]
    col: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Not:
    operand: Expr
    col: int = field(default=0, compare=False)


@dataclass(frozen=True)
class And:
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Or:
    left: Expr
    right: Expr


Atom = Flag | Compare | Member | Call
Expr = Atom | Not | And | Or


def flatten(node: And | Or) -> list[Expr]:
    """The operands of a chain of the same operator, left to right: `a and (b and c)` and
    `(a and b) and c` both give [a, b, c]. Iterative, so long chains cannot overflow."""
    kind = type(node)
    out: list[Expr] = []
    stack: list[Expr] = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, And | Or) and type(item) is kind:
            stack.append(item.right)
            stack.append(item.left)
        else:
            out.append(item)
    return out


def atoms(node: Expr) -> list[Atom]:
    """Every term of the tree, left to right."""
    out: list[Atom] = []
    stack: list[Expr] = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, And | Or):
            stack.append(item.right)
            stack.append(item.left)
        elif isinstance(item, Not):
            stack.append(item.operand)
        else:
            out.append(item)
    return out


def lit(value: Value) -> Lit:
    """A literal of the kind its Python value implies (for building trees in code)."""
    if isinstance(value, bool):
        return Lit(value, "bool")
    if isinstance(value, str):
        return Lit(value, "text")
    return Lit(value, "number")


def format_literal(value: Lit) -> str:
    if value.kind == "bool":
        return "true" if value.value else "false"
    if value.kind == "text":
        # JSON string syntax is a subset of what the lexer reads back.
        return json.dumps(value.value, ensure_ascii=False)
    return repr(value.value)


def _atom_source(node: Atom) -> str:
    if isinstance(node, Flag):
        return node.name
    if isinstance(node, Compare):
        return f"{node.name} {node.op} {format_literal(node.value)}"
    if isinstance(node, Member):
        keyword = "not in" if node.negated else "in"
        return f"{node.name} {keyword} ({', '.join(format_literal(v) for v in node.values)})"
    return f"{node.name}({', '.join(format_literal(a) for a in node.args)})"


_LEVEL = {Or: 1, And: 2, Not: 3}


def to_source(node: Expr, *, parens: Literal["minimal", "all"] = "minimal") -> str:
    """Print a tree as an expression that parses back to the same tree.

    `parens="all"` brackets every operator, which shows how a text was grouped; "minimal"
    brackets only where precedence or left-association requires it.
    """
    full = parens == "all"

    def show(n: Expr, context: int, right_operand: bool = False) -> str:
        if isinstance(n, Flag | Compare | Member | Call):
            return _atom_source(n)
        level = _LEVEL[type(n)]
        if isinstance(n, Not):
            text = f"not {show(n.operand, level)}"
        else:
            word = "and" if isinstance(n, And) else "or"
            # Chains associate to the left, so a right operand of the same operator needs
            # brackets to keep its own grouping.
            text = f"{show(n.left, level)} {word} {show(n.right, level, right_operand=True)}"
        needs = full or level < context or (right_operand and level == context and level < 3)
        return f"({text})" if needs else text

    return show(node, 0)
