"""Recursive-descent parser: tokens to a syntax tree (syntax only; `check` does meaning).

expr     := or_expr END
or_expr  := and_expr ("or" and_expr)*
and_expr := not_expr ("and" not_expr)*
not_expr := "not" not_expr | primary
primary  := "(" or_expr ")" | term
term     := NAME "(" [literal ("," literal)*] ")"
          | NAME ("=="|"!="|"<"|"<="|">"|">=") literal
          | NAME ["not"] "in" "(" literal ("," literal)* [","] ")"
          | NAME
literal  := STRING | NUMBER | "true" | "false"
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from bot.tagging.audience.errors import ExpressionError
from bot.tagging.audience.lexer import Token, TokenKind, tokenize
from bot.tagging.audience.nodes import (
    And,
    Call,
    Compare,
    CompareOp,
    Expr,
    Flag,
    Lit,
    Member,
    Not,
    Or,
)

# Deep enough for any expression a person writes; shallow enough that recursion is safe.
MAX_DEPTH = 64
# Bounds the SQL an expression can produce (and recursion over long and/or chains).
MAX_TERMS = 256


def parse_syntax(source: str) -> Expr:
    """Parse `source` into a tree, or raise ExpressionError pointing at the column."""
    return _Parser(source).parse()


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = tokenize(source)
        self.pos = 0
        self.depth = 0
        self.terms = 0

    # -- helpers ---------------------------------------------------------------------------

    @property
    def tok(self) -> Token:
        return self.tokens[self.pos]

    def peek(self, ahead: int = 1) -> Token:
        return self.tokens[min(self.pos + ahead, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.tok
        if token.kind != "end":
            self.pos += 1
        return token

    def at(self, kind: TokenKind) -> bool:
        return self.tok.kind == kind

    def at_keyword(self, word: str) -> bool:
        return self.at("keyword") and self.tok.text == word

    def error(self, message: str, token: Token | None = None) -> ExpressionError:
        token = token or self.tok
        return ExpressionError(message, self.source, token.col, token.length)

    # -- grammar ---------------------------------------------------------------------------

    def parse(self) -> Expr:
        if self.at("end"):
            raise self.error('empty expression: write a condition such as tag("代发客户")')
        node = self.or_expr()
        if not self.at("end"):
            raise self.trailing()
        return node

    def trailing(self) -> ExpressionError:
        token = self.tok
        if token.kind == "rparen":
            return self.error("unbalanced ')': no '(' to close")
        previous = self.tokens[self.pos - 1]
        if previous.kind == "ident" and token.kind in ("number", "string"):
            return self.error(
                f"expected an operator (==, !=, <, <=, >, >=, in) between "
                f"'{previous.text}' and {token.describe()}"
            )
        return self.error(
            f"unexpected {token.describe()} after a complete condition: "
            "join conditions with 'and' or 'or'"
        )

    def or_expr(self) -> Expr:
        node = self.and_expr()
        while self.at_keyword("or"):
            self.advance()
            node = Or(node, self.and_expr())
        return node

    def and_expr(self) -> Expr:
        node = self.not_expr()
        while self.at_keyword("and"):
            self.advance()
            node = And(node, self.not_expr())
        return node

    def not_expr(self) -> Expr:
        if self.at_keyword("not"):
            token = self.advance()
            return Not(self.nested(self.not_expr), token.col)
        return self.primary()

    def nested(self, rule: Callable[[], Expr]) -> Expr:
        """Run a recursive rule, refusing nesting deeper than MAX_DEPTH."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"expression nested too deeply (more than {MAX_DEPTH} levels)")
        try:
            return rule()
        finally:
            self.depth -= 1

    def primary(self) -> Expr:
        token = self.tok
        if token.kind == "lparen":
            self.advance()
            node = self.nested(self.or_expr)
            if not self.at("rparen"):
                raise self.error(
                    f"expected ')' to close the '(' at column {token.col}, "
                    f"found {self.tok.describe()}"
                )
            self.advance()
            return node
        if token.kind == "ident":
            return self.term()
        raise self.error(self.expected_condition(token))

    def expected_condition(self, token: Token) -> str:
        if token.kind == "end":
            return "expected a condition, but the expression ends here"
        if token.kind in ("number", "string") or token.text in ("true", "false"):
            return (
                f"expected a condition, found {token.describe()}: "
                "put the attribute first, e.g. aum >= 100000"
            )
        return f"expected a condition, found {token.describe()}"

    def term(self) -> Expr:
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise self.error(f"too many conditions (at most {MAX_TERMS})")
        name = self.advance()
        token = self.tok
        if token.kind == "lparen":
            return self.call(name)
        if token.kind == "op":
            self.advance()
            value = self.literal(f"after '{token.text}'")
            return Compare(name.text, cast("CompareOp", token.text), value, name.col, token.col)
        if self.at_keyword("in") or (self.at_keyword("not") and self.peek().text == "in"):
            negated = self.at_keyword("not")
            if negated:
                self.advance()
            self.advance()
            return Member(name.text, self.literal_list(), negated, name.col)
        return Flag(name.text, name.col)

    def call(self, name: Token) -> Call:
        self.advance()  # (
        args: list[Lit] = []
        if not self.at("rparen"):
            args.append(self.literal(f"as an argument of {name.text}()"))
            while self.at("comma"):
                self.advance()
                args.append(self.literal(f"as an argument of {name.text}()"))
        if not self.at("rparen"):
            raise self.error(
                f"expected ',' or ')' in the arguments of {name.text}(), "
                f"found {self.tok.describe()}"
            )
        self.advance()
        return Call(name.text, tuple(args), name.col)

    def literal_list(self) -> tuple[Lit, ...]:
        if not self.at("lparen"):
            raise self.error(f"expected '(' after 'in', found {self.tok.describe()}")
        opening = self.advance()
        if self.at("rparen"):
            raise self.error("empty list: 'in' needs at least one value", opening)
        values = [self.literal("in the list")]
        while self.at("comma"):
            self.advance()
            if self.at("rparen"):  # a trailing comma is allowed
                break
            values.append(self.literal("in the list"))
        if not self.at("rparen"):
            raise self.error(
                f"expected ',' or ')' to continue the list opened at column {opening.col}, "
                f"found {self.tok.describe()}"
            )
        self.advance()
        return tuple(values)

    def literal(self, where: str) -> Lit:
        token = self.tok
        if token.kind == "string":
            self.advance()
            return Lit(cast("str", token.value), "text", token.col)
        if token.kind == "number":
            self.advance()
            return Lit(cast("int | float", token.value), "number", token.col)
        if token.kind == "keyword" and token.text in ("true", "false"):
            self.advance()
            return Lit(token.text == "true", "bool", token.col)
        hint = ": text needs quotes" if token.kind == "ident" else ""
        raise self.error(f"expected a value {where}, found {token.describe()}{hint}")
