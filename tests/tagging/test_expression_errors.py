"""Expression errors name the problem and point at its column."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.tagging.audience import ExpressionError, ids_query, parse


@pytest.mark.parametrize(
    ("source", "column", "message"),
    [
        ("", 1, "empty expression"),
        ("   ", 4, "empty expression"),
        ('tag("a") and agee > 5', 14, "unknown attribute 'agee' (did you mean 'age'?)"),
        ('tagg("a")', 1, "unknown function 'tagg' (did you mean 'tag'?)"),
        ('participated("quiz")', 1, "unknown function 'participated'"),
        ("tag(5)", 5, "tag() takes text, got 5"),
        ('tag("a", "b")', 10, "too many arguments: tag(text) takes 1"),
        ("tag()", 1, "missing argument: tag(text) takes 1, got 0"),
        ("login_within(1.5)", 14, "takes a whole number of days"),
        ("login_within(-1)", 14, "takes a whole number of days"),
        ('tag("资产50万+) and payroll', 5, 'unterminated text: no closing "'),
        ("tag('a) and payroll", 5, "unterminated text: no closing '"),
        ('aum >= 5 tag("a")', 10, "after a complete condition"),
        ("aum >= 5)", 9, "unbalanced ')'"),
        ('(tag("a") or payroll', 21, "expected ')' to close the '(' at column 1"),
        ("aum => 5", 5, "'=>' is not an operator: use '>='"),
        ("aum <> 5", 5, "'<>' is not an operator: use '!='"),
        ("aum = 5", 5, "use '==' to compare"),
        ('tag("a") && payroll', 10, "use 'and' instead of '&&'"),
        ('tag("a") || payroll', 10, "use 'or' instead of '||'"),
        ("!payroll", 1, "use 'not' instead of '!'"),
        ('branch > "城南支行"', 8, "'>' compares numbers, but 'branch' is text"),
        ('aum >= "10万"', 8, "'aum' is a number, but \"10万\" is text"),
        ("payroll == 1", 12, "'payroll' is yes/no (true or false), but 1 is a number"),
        ("aum", 1, "'aum' is a number, not a yes/no condition"),
        ("branch", 1, "'branch' is text, not a yes/no condition"),
        ('aum("x")', 1, "'aum' is an attribute, not a function"),
        ('tag == "a"', 1, "'tag' is a function: call it, e.g. tag(text)"),
        ("aum 5", 5, "expected an operator (==, !=, <, <=, >, >=, in) between 'aum' and number 5"),
        ("aum >=", 7, "expected a value after '>=', found the end of the expression"),
        (
            "branch == 城南",
            11,
            "unexpected character '城': text such as tag names must be in quotes",
        ),
        ("aum >= 5 and", 13, "expected a condition, but the expression ends here"),
        ("not", 4, "expected a condition, but the expression ends here"),
        ("5 < aum", 1, "put the attribute first"),
        ('lifecycle in "new"', 14, "expected '(' after 'in'"),
        ("lifecycle in ()", 14, "empty list: 'in' needs at least one value"),
        ('lifecycle in ("new" "growth")', 21, "expected ',' or ')' to continue the list"),
        ("payroll in (true)", 1, "'payroll' is yes/no: write payroll or not payroll"),
        ('tag（"a"）', 4, "full-width '（': use the ASCII '(' instead"),
        ("tag(“a”)", 5, "full-width '“'"),
        ('tag("a\\q")', 7, "unknown escape '\\q'"),
        ("aum >= 5x", 8, "malformed number '5x'"),
        ('tag("a") and and', 14, "expected a condition, found 'and'"),
        ("branch == name", 11, "expected a value after '==', found 'name': text needs quotes"),
    ],
)
def test_error_names_the_problem_and_its_column(source: str, column: int, message: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        parse(source)
    error = caught.value
    assert error.message.startswith(message) or message in error.message, error.message
    assert error.column == column, error.render()
    assert str(error).startswith(f"column {column}: ")


def test_render_puts_the_caret_under_the_problem() -> None:
    with pytest.raises(ExpressionError) as caught:
        parse('tag("a") and agee > 5')
    assert caught.value.render().splitlines() == [
        "column 14: unknown attribute 'agee' (did you mean 'age'?); attributes are age, "
        "asset_tier, aum, branch, channel, district, lifecycle, manager, occupation, "
        "opted_out, payroll",
        '  tag("a") and agee > 5',
        "               ^^^^",
    ]


def test_caret_allows_for_wide_chinese_characters() -> None:
    """Column counts characters; the caret line counts terminal cells (CJK are two)."""
    with pytest.raises(ExpressionError) as caught:
        parse('tag("资产") and agee > 5')
    error = caught.value
    assert error.column == 15
    source_line, caret_line = error.render().splitlines()[1:]
    assert caret_line == "  " + " " * 16 + "^^^^"
    assert source_line == '  tag("资产") and agee > 5'


def test_time_terms_need_a_time_and_say_where() -> None:
    expression = parse('tag("a") or login_within(30)')
    with pytest.raises(ExpressionError) as caught:
        ids_query(expression)
    assert caught.value.column == 13
    assert "login_within() depends on the current time" in caught.value.message
    ids_query(expression, now=datetime(2026, 11, 23, tzinfo=UTC))


def test_limits_protect_against_huge_or_deep_input() -> None:
    with pytest.raises(ExpressionError, match="nested too deeply"):
        parse("(" * 100 + "payroll" + ")" * 100)
    with pytest.raises(ExpressionError, match="too many conditions"):
        parse(" or ".join(["payroll"] * 300))
    with pytest.raises(ExpressionError, match="expression too long"):
        parse('tag("' + "x" * 20_000 + '")')
    with pytest.raises(ExpressionError, match="nested too deeply"):
        parse("not " * 100 + "payroll")
