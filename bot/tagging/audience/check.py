"""The meaning check: every name known, every value of the right type, every operator
valid for its operands. Errors point at the offending column."""

from __future__ import annotations

import difflib

from bot.tagging.audience.errors import ExpressionError
from bot.tagging.audience.nodes import (
    Atom,
    Call,
    Compare,
    Expr,
    Flag,
    Lit,
    Member,
    atoms,
    format_literal,
)
from bot.tagging.audience.terms import Attribute, Function, Type
from bot.tagging.audience.vocabulary import ATTRIBUTES, FUNCTIONS

_EXAMPLES = {
    Type.NUMBER: "{name} >= 100000",
    Type.TEXT: '{name} == "…"',
    Type.BOOL: "{name} == true",
}
_KIND_OF = {Type.TEXT: "text", Type.NUMBER: "number", Type.BOOL: "bool"}
# A hundred years: further back than any relation or login, and `now - days` must stay a date.
MAX_DAYS = 36_500


def check(tree: Expr, source: str) -> None:
    """Raise ExpressionError for the first term (left to right) that is not meaningful."""
    checker = _Checker(source)
    for atom in atoms(tree):
        checker.atom(atom)


class _Checker:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, message: str, col: int, length: int = 1) -> ExpressionError:
        return ExpressionError(message, self.source, col, length)

    def atom(self, node: Atom) -> None:
        if isinstance(node, Call):
            self.call(node)
            return
        attribute = self.attribute(node.name, node.col)
        if isinstance(node, Flag):
            if attribute.type is not Type.BOOL:
                example = _EXAMPLES[attribute.type].format(name=node.name)
                raise self.fail(
                    f"'{node.name}' is {_article(attribute.type)}, not a yes/no condition: "
                    f"compare it, e.g. {example}",
                    node.col,
                    len(node.name),
                )
        elif isinstance(node, Compare):
            self.value(attribute, node.value)
            if node.op not in ("==", "!=") and attribute.type is not Type.NUMBER:
                raise self.fail(
                    f"'{node.op}' compares numbers, but '{node.name}' is "
                    f"{_article(attribute.type)}: use == or !=",
                    node.op_col,
                    len(node.op),
                )
        else:
            self.member(attribute, node)

    def attribute(self, name: str, col: int) -> Attribute:
        if name in FUNCTIONS:
            function = FUNCTIONS[name]
            raise self.fail(
                f"'{name}' is a function: call it, e.g. {function.signature()}", col, len(name)
            )
        if name not in ATTRIBUTES:
            raise self.fail(
                f"unknown attribute '{name}'{_suggest(name)}; attributes are "
                f"{', '.join(sorted(ATTRIBUTES))}",
                col,
                len(name),
            )
        return ATTRIBUTES[name]

    def value(self, attribute: Attribute, value: Lit) -> None:
        wanted = _KIND_OF[attribute.type]
        if value.kind != wanted:
            raise self.fail(
                f"'{attribute.name}' is {_article(attribute.type)}, but "
                f"{_describe(value)} is {_article_kind(value.kind)}",
                value.col,
            )

    def member(self, attribute: Attribute, node: Member) -> None:
        if attribute.type is Type.BOOL:
            raise self.fail(
                f"'{node.name}' is yes/no: write {node.name} or not {node.name}",
                node.col,
                len(node.name),
            )
        for value in node.values:
            self.value(attribute, value)

    def call(self, node: Call) -> None:
        if node.name in ATTRIBUTES:
            attribute = ATTRIBUTES[node.name]
            example = _EXAMPLES[attribute.type].format(name=node.name)
            raise self.fail(
                f"'{node.name}' is an attribute, not a function: e.g. {example}",
                node.col,
                len(node.name),
            )
        function = FUNCTIONS.get(node.name)
        if function is None:
            raise self.fail(
                f"unknown function '{node.name}'{_suggest(node.name)}; functions are "
                f"{', '.join(f.signature() for f in sorted(FUNCTIONS.values(), key=_by_name))}",
                node.col,
                len(node.name),
            )
        wanted = len(function.params)
        if len(node.args) > wanted:
            extra = node.args[wanted]
            raise self.fail(f"too many arguments: {function.signature()} takes {wanted}", extra.col)
        if len(node.args) < wanted:
            raise self.fail(
                f"missing argument: {function.signature()} takes {wanted}, got {len(node.args)}",
                node.col,
                len(node.name),
            )
        for param, arg in zip(function.params, node.args, strict=True):
            self.argument(function.name, param, arg)

    def argument(self, function: str, param: Type, arg: Lit) -> None:
        if param is Type.DAYS:
            if (
                arg.kind != "number"
                or not isinstance(arg.value, int)
                or not 0 <= arg.value <= MAX_DAYS
            ):
                raise self.fail(
                    f"{function}() takes a whole number of days (0 to {MAX_DAYS}), "
                    f"got {_describe(arg)}",
                    arg.col,
                )
        elif arg.kind != _KIND_OF[param]:
            raise self.fail(f"{function}() takes {_article(param)}, got {_describe(arg)}", arg.col)


def _by_name(function: Function) -> str:
    return function.name


def _suggest(name: str) -> str:
    close = difflib.get_close_matches(name, [*ATTRIBUTES, *FUNCTIONS], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _article(type_: Type) -> str:
    return {
        Type.TEXT: "text",
        Type.NUMBER: "a number",
        Type.BOOL: "yes/no (true or false)",
        Type.DAYS: "a number of days",
    }[type_]


def _article_kind(kind: str) -> str:
    return {"text": "text", "number": "a number", "bool": "true/false"}[kind]


def _describe(value: Lit) -> str:
    return format_literal(value)
