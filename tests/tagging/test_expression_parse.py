"""Parsing audience expressions: precedence, grouping, literals, and printing back."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from bot.tagging.audience import parse, to_source
from bot.tagging.audience.nodes import And, Call, Compare, Expr, Flag, Member, Not, Or, lit
from tests.tagging.audience_data import expressions

A = Call("tag", (lit("a"),))
B = Call("tag", (lit("b"),))
C = Call("tag", (lit("c"),))
D = Call("tag", (lit("d"),))


@pytest.mark.parametrize(
    ("source", "grouped"),
    [
        ('tag("a") or tag("b") and tag("c")', 'tag("a") or (tag("b") and tag("c"))'),
        ('tag("a") and tag("b") or tag("c")', '(tag("a") and tag("b")) or tag("c")'),
        ('not tag("a") and tag("b")', '(not tag("a")) and tag("b")'),
        ('not tag("a") or tag("b")', '(not tag("a")) or tag("b")'),
        ('not (tag("a") or tag("b"))', 'not (tag("a") or tag("b"))'),
        ('not not tag("a")', 'not (not tag("a"))'),
        ('tag("a") and tag("b") and tag("c")', '(tag("a") and tag("b")) and tag("c")'),
        ('tag("a") or tag("b") or tag("c")', '(tag("a") or tag("b")) or tag("c")'),
        ('tag("a") and (tag("b") or tag("c"))', 'tag("a") and (tag("b") or tag("c"))'),
        (
            'tag("a") or not tag("b") and tag("c") or tag("d")',
            '(tag("a") or ((not tag("b")) and tag("c"))) or tag("d")',
        ),
        ("not aum >= 5 and payroll", "(not aum >= 5) and payroll"),
        ('((tag("a")))', 'tag("a")'),
    ],
)
def test_precedence_is_not_over_and_over_or(source: str, grouped: str) -> None:
    explicit = parse(grouped).tree
    assert parse(source).tree == explicit
    assert to_source(explicit, parens="all") == to_source(parse(source).tree, parens="all")


def test_keywords_are_case_insensitive_but_names_are_not() -> None:
    assert parse('tag("a") AND NOT tag("b") Or tag("c")').tree == Or(And(A, Not(B)), C)
    with pytest.raises(ValueError, match="unknown function 'TAG'"):
        parse('TAG("a")')


@pytest.mark.parametrize(
    ("source", "tree"),
    [
        ('tag("a") or tag("b") and tag("c")', Or(A, And(B, C))),
        ('(tag("a") or tag("b")) and tag("c")', And(Or(A, B), C)),
        ('tag("a") and not tag("b") or tag("c")', Or(And(A, Not(B)), C)),
        ('tag("a") or tag("b") or tag("c") or tag("d")', Or(Or(Or(A, B), C), D)),
        ('tag("a") or (tag("b") or tag("c"))', Or(A, Or(B, C))),
        ("aum >= 100000", Compare("aum", ">=", lit(100000))),
        ("aum>=100_000", Compare("aum", ">=", lit(100000))),
        ("aum >= 50万", Compare("aum", ">=", lit(500000))),
        ("aum >= 1.2亿", Compare("aum", ">=", lit(120000000))),
        ("aum < 0.5", Compare("aum", "<", lit(0.5))),
        ("age != -1", Compare("age", "!=", lit(-1))),
        ("payroll", Flag("payroll")),
        ("payroll == false", Compare("payroll", "==", lit(False))),
        ('branch == "城南支行"', Compare("branch", "==", lit("城南支行"))),
        ("branch == '城南支行'", Compare("branch", "==", lit("城南支行"))),
        ('asset_tier in ("T3", "T4")', Member("asset_tier", (lit("T3"), lit("T4")))),
        ('asset_tier in ("T3", "T4",)', Member("asset_tier", (lit("T3"), lit("T4")))),
        ('lifecycle not in ("new")', Member("lifecycle", (lit("new"),), negated=True)),
        ('manager in ("zhangwei", "lina")', Member("manager", (lit("zhangwei"), lit("lina")))),
        ('tag("say \\"hi\\" \\\\ now")', Call("tag", (lit('say "hi" \\ now'),))),
        ("tag('it\\'s')", Call("tag", (lit("it's"),))),
        ("login_within(30)", Call("login_within", (lit(30),))),
        ('in_group("wrOAbc-123")', Call("in_group", (lit("wrOAbc-123"),))),
    ],
)
def test_parses_to_the_tree(source: str, tree: object) -> None:
    assert parse(source).tree == tree


def test_true_and_one_are_different_literals() -> None:
    assert lit(True) != lit(1)
    assert parse("payroll == true").tree != Compare("payroll", "==", lit(1))


def test_columns_are_recorded_but_do_not_affect_equality() -> None:
    tree = parse('tag("a") and  aum >= 5').tree
    assert isinstance(tree, And)
    assert isinstance(tree.right, Compare)
    assert (tree.right.col, tree.right.op_col, tree.right.value.col) == (15, 19, 22)
    assert tree == parse('tag("a") and aum >= 5').tree


def test_long_chains_do_not_overflow() -> None:
    source = " or ".join(f'tag("t{i}")' for i in range(256))
    tree = parse(source).tree
    assert parse(to_source(tree)).tree == tree


@settings(max_examples=200, deadline=None)
@given(expressions())
def test_printing_and_parsing_round_trip(tree: Expr) -> None:
    """Minimal brackets keep the grouping: what precedence and left-association imply."""
    assert parse(to_source(tree)).tree == tree
    assert parse(to_source(tree, parens="all")).tree == tree
