"""The audience language under fuzzing: random text and random syntax trees (any names, any
literals) through parse, check and compile, and the properties they must keep."""

from __future__ import annotations

import re
from typing import TypeVar

from hypothesis import strategies as st

from bot.store.db import Database
from bot.tagging import audience
from bot.tagging.audience import Context, Expression, ExpressionError, evaluate, to_source
from bot.tagging.audience.lexer import KEYWORDS, MAX_NUMBER
from bot.tagging.audience.nodes import (
    COMPARE_OPS,
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
)
from bot.tagging.audience.parser import parse_syntax
from bot.tagging.audience.terms import Type
from bot.tagging.audience.vocabulary import ATTRIBUTES, FUNCTIONS
from tests.fuzz.bounds import bounded
from tests.tagging.audience_data import NOW, World, load

T = TypeVar("T")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_UNENCODABLE = re.compile("[\x00\ud800-\udfff]")
# Parsing is microseconds; compiling and running an expression a few milliseconds.
PARSE_SECONDS = 5.0
QUERY_SECONDS = 20.0

# -- random text ----------------------------------------------------------------------------

_WORDS = [
    *ATTRIBUTES, *FUNCTIONS, "and", "or", "not", "in", "true", "false", "AND", "Not", "x",
    "==", "!=", "<", "<=", ">", ">=", "=", "=>", "=<", "<>", "!", "&", "&&", "|", "||",
    "(", ")", ",", "（", "）", "，", "“", "”", "‘", "’", "＝", "！", "＜", "＞",
    '"', "'", '"a"', "'b'", '"资产50万+"', '"\\n"', '"\\q"', "\\", '"\\', "万", "亿",
    "0", "-1", "1_000", "1__0", "1.5", "1e9", "1e400", "1.2亿", "50万", "9" * 30, "-",
    "²", "١٢", "٣", "𝟙", "½", "1.", ".5", "1e", "0x10", "_", "城南", "\x00", "\ud800",
    "9" * 5000, "1e308", "-1e308", "9007199254740993",
    "\t", "\n", " ", "  ",
]  # fmt: skip

sources = st.one_of(
    st.text(max_size=60),
    # Token soup: pieces of the language in random order, so parsing gets past the first
    # character and into every rule.
    st.lists(st.sampled_from(_WORDS), max_size=25).map(" ".join),
    st.lists(st.sampled_from(_WORDS), max_size=25).map("".join),
    st.builds(
        lambda depth, core: "(" * depth + core + ")" * depth,
        st.integers(0, 80),
        st.sampled_from(["payroll", 'tag("a")', ""]),
    ),
    st.integers(0, 300).map(lambda n: " and ".join(["payroll"] * n)),
    st.integers(0, 80).map(lambda n: "not " * n + "payroll"),
)


def check_source(source: str) -> str:
    """parse() gives an Expression or an ExpressionError pointing inside the source; the
    error's own rendering never fails either."""
    with bounded(PARSE_SECONDS, "parsing an expression"):
        try:
            parsed = audience.parse(source)
        except ExpressionError as exc:
            _points_inside(exc, source)
            return "error"
    assert isinstance(parsed, Expression)
    # What parses prints back to text that parses to the same tree.
    assert audience.parse(to_source(parsed.tree)).tree == parsed.tree
    return "parsed"


def _points_inside(error: ExpressionError, source: str) -> None:
    # Column len + 1 is "the end of the expression" (a missing value, an unclosed bracket).
    assert 1 <= error.column <= len(source) + 1, (error.column, len(source))
    assert error.length >= 1
    assert error.message
    error.render()


# -- random well-formed trees ---------------------------------------------------------------

_NAMES = st.one_of(
    st.sampled_from(sorted(ATTRIBUTES)),
    st.sampled_from(sorted(FUNCTIONS)),
    st.sampled_from(["agee", "tagg", "x", "_", "and", "in", "true"]),
)
_TEXTS = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "\x00", "\ud800", "a\udcff", "资产50万+", "A", "m1", "wr1", "'\"\\"]),
)
_NUMBERS = st.one_of(
    st.integers(-1000, 1000),
    st.integers(-(10**30), 10**30),
    st.sampled_from([2**53, 2**53 + 1, 2**63, -(2**63) - 1, 10**15, 36_500, 10**6]),
    st.floats(allow_nan=False, allow_infinity=False),
)
literals = st.one_of(
    _TEXTS.map(lambda v: Lit(v, "text")),
    _NUMBERS.map(lambda v: Lit(v, "number")),
    st.booleans().map(lambda v: Lit(v, "bool")),
)
_UNTYPED = st.one_of(
    st.builds(Flag, _NAMES),
    st.builds(Compare, _NAMES, st.sampled_from(COMPARE_OPS), literals),
    st.builds(Member, _NAMES, st.lists(literals, min_size=1, max_size=3).map(tuple), st.booleans()),
    st.builds(Call, _NAMES, st.lists(literals, max_size=2).map(tuple)),
)
# Values of the right type: mostly ordinary ones (so whole trees get past the checker), now
# and then one the language must refuse (NUL, surrogates, out of range, negative days).
_SANE = {
    Type.TEXT: st.text(st.characters(exclude_characters="\x00"), max_size=12),
    Type.NUMBER: st.one_of(st.integers(-(10**6), 10**12), st.floats(-1e15, 1e15, allow_nan=False)),
    Type.BOOL: st.booleans(),
    Type.DAYS: st.integers(0, 400),
}
_WILD = {
    Type.TEXT: _TEXTS,
    Type.NUMBER: _NUMBERS,
    Type.BOOL: st.booleans(),
    Type.DAYS: st.one_of(st.integers(-2, 10**6), _NUMBERS),
}
_KIND = {Type.TEXT: "text", Type.NUMBER: "number", Type.BOOL: "bool", Type.DAYS: "number"}


def _rarely(common: st.SearchStrategy[T], rare: st.SearchStrategy[T]) -> st.SearchStrategy[T]:
    """`rare` about one time in ten (one_of would draw each branch about as often)."""
    return st.integers(0, 9).flatmap(lambda roll: rare if roll == 4 else common)


_OF_TYPE: dict[Type, st.SearchStrategy[Lit]] = {
    t: _rarely(_SANE[t], _WILD[t]).map(lambda v, kind=_KIND[t]: Lit(v, kind))  # type: ignore[misc]
    for t in Type
}


def _attribute_atoms(name: str) -> st.SearchStrategy[Expr]:
    """Terms the checker accepts for the attribute (unless a value is one of the wild ones)."""
    type_ = ATTRIBUTES[name].type
    value = _OF_TYPE[type_]
    if type_ is Type.BOOL:
        return st.one_of(
            st.just(Flag(name)),
            st.builds(Compare, st.just(name), st.sampled_from(["==", "!="]), value),
        )
    ops = COMPARE_OPS if type_ is Type.NUMBER else ("==", "!=")
    return st.one_of(
        st.builds(Compare, st.just(name), st.sampled_from(ops), value),
        st.builds(Member, st.just(name), st.lists(value, min_size=1, max_size=3).map(tuple),
                  st.booleans()),
    )  # fmt: skip


def _call_atoms(name: str) -> st.SearchStrategy[Expr]:
    params = FUNCTIONS[name].params
    return st.tuples(*(_OF_TYPE[p] for p in params)).map(lambda args: Call(name, args))


# Mostly terms whose values have the right type, so that most trees get past the checker
# into the compiler; now and then anything at all.
_TYPED = st.one_of(
    st.sampled_from(sorted(ATTRIBUTES)).flatmap(_attribute_atoms),
    st.sampled_from(sorted(FUNCTIONS)).flatmap(_call_atoms),
)
_ATOMS = _rarely(_TYPED, _UNTYPED)
trees: st.SearchStrategy[Expr] = st.recursive(
    _ATOMS,
    lambda children: st.one_of(
        st.builds(Not, children),
        st.builds(And, children, children),
        st.builds(Or, children, children),
    ),
    max_leaves=8,
)


def _printable(tree: Expr) -> bool:
    """Whether every name is an identifier and every value one the lexer can read back."""
    for atom in atoms(tree):
        if not _IDENTIFIER.fullmatch(atom.name) or atom.name.lower() in KEYWORDS:
            return False
        values = [atom.value] if isinstance(atom, Compare) else []
        values += list(atom.values) if isinstance(atom, Member) else []
        values += list(atom.args) if isinstance(atom, Call) else []
        for lit in values:
            if lit.kind == "text" and _UNENCODABLE.search(str(lit.value)):
                return False
            if isinstance(lit.value, int | float) and not abs(lit.value) <= MAX_NUMBER:
                return False
    return True


class AudienceHarness:
    """Random trees printed as source, parsed, checked, compiled and run on one database
    holding `world`; what runs must select what the reference evaluator selects."""

    def __init__(self, db: Database, world: World) -> None:
        self.db = db
        self.world = world
        load(db, world)

    def check_tree(self, tree: Expr) -> str:
        source = to_source(tree)
        outcome = check_source(source)
        if _printable(tree):
            # Names and values the language can write: the text reads back as the tree.
            assert parse_syntax(source) == tree, source
        if outcome == "error":
            return "error"
        parsed = audience.parse(source)
        with bounded(QUERY_SECONDS, "compiling and running an expression"):
            found = audience.ids(self.db, parsed, now=NOW)
            count = audience.count(self.db, parsed, now=NOW)
            audience.per_manager(self.db, parsed, now=NOW)
            audience.sample(self.db, parsed, 3, now=NOW)
        expected = evaluate(parsed.tree, self.world.customers, Context(NOW))
        assert sorted(found) == sorted(expected), source
        assert count == len(expected), source
        return "ran"
