"""Group expressions: the same syntax as audiences, over active groups, on both engines."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy.orm import Session

from bot.calendar.group_audience import group_ids, group_ids_query, parse_groups
from bot.clock import FrozenClock
from bot.store.db import Database
from bot.store.models import Group, GroupSegment
from bot.tagging.audience import ExpressionError

GROUPS = [
    # chat_id, name, owner, status, segments
    ("wr1", "理财交流群A", "li", "active", ["理财交流群"]),
    ("wr2", "银发课堂", "wang", "active", ["银发群"]),
    ("wr3", "代发工资群", "li", "active", ["代发工资群", "理财交流群"]),
    ("wr4", "周末亲子群", None, "active", []),
    ("wr5", "理财老群", "li", "dismissed", ["理财交流群"]),
    ("wr6", "VIP%群", "zhao", "active", []),
]
OWNERS = {chat_id: owner for chat_id, _, owner, _, _ in GROUPS}


def seed(db: Database, now: datetime) -> None:
    def run(s: Session) -> None:
        for chat_id, name, owner, status, _ in GROUPS:
            s.add(Group(chat_id=chat_id, name=name, owner=owner, status=status, updated_at=now))
        s.flush()
        for chat_id, _, _, _, segments in GROUPS:
            for segment in segments:
                s.add(
                    GroupSegment(
                        chat_id=chat_id, segment=segment, source="rule", reason="test", since=now
                    )
                )

    db.call(run)


@pytest.fixture
def store(db: Database, clock: FrozenClock) -> Database:
    seed(db, clock.now())
    return db


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (None, ["wr1", "wr2", "wr3", "wr4", "wr6"]),
        ('segment("理财交流群")', ["wr1", "wr3"]),
        ('not segment("银发群")', ["wr1", "wr3", "wr4", "wr6"]),
        ('segment("没有的群")', []),
        ('owner == "li"', ["wr1", "wr3"]),
        # A comparison with a missing owner is false; its negation is true.
        ('owner != "li"', ["wr2", "wr6"]),
        ('not owner == "li"', ["wr2", "wr4", "wr6"]),
        ('owner in ("li", "zhao")', ["wr1", "wr3", "wr6"]),
        ('owner not in ("li",)', ["wr2", "wr6"]),
        ('name_has("理财")', ["wr1"]),
        ('name == "银发课堂"', ["wr2"]),
        ('chat_id in ("wr1", "wr5")', ["wr1"]),
        # Substring, not a LIKE pattern, and case-sensitive on both engines.
        ('name_has("%")', ["wr6"]),
        ('name_has("VIP")', ["wr6"]),
        ('name_has("vip")', []),
        ('segment("理财交流群") and not owner == "li"', []),
        ('segment("银发群") or name_has("亲子")', ["wr2", "wr4"]),
        ('(segment("代发工资群") or owner == "wang") and segment("理财交流群")', ["wr3"]),
    ],
)
def test_group_expression_selects_active_groups(
    store: Database, source: str | None, expected: list[str]
) -> None:
    assert group_ids(store, source) == [(c, OWNERS[c]) for c in expected]


def test_parsed_expression_and_query_reuse(store: Database) -> None:
    expr = parse_groups('segment("理财交流群")')
    assert expr.source == 'segment("理财交流群")'
    assert group_ids(store, expr) == [("wr1", "li"), ("wr3", "li")]
    query = group_ids_query(expr)
    rows = store.call(lambda s: s.execute(query).all())
    assert [tuple(r) for r in rows] == [("wr1", "li"), ("wr3", "li")]


def test_dismissed_groups_never_selected(store: Database) -> None:
    assert group_ids(store, 'chat_id == "wr5"') == []


@pytest.mark.parametrize(
    ("source", "column", "message"),
    [
        ('tag("资产50万+")', 1, "unknown function 'tag'; group expressions choose groups"),
        ('segmnt("理财")', 1, "unknown function 'segmnt' (did you mean 'segment'?)"),
        ("segment(1)", 9, "segment() takes text, got 1"),
        ('segment("a", "b")', 14, "segment() takes one text argument"),
        ("segment()", 1, "segment() takes one text argument"),
        ('owner > "a"', 7, "'>' compares numbers, but 'owner' is text: use == or !="),
        ("owner", 1, "'owner' is text, not a yes/no condition"),
        ('owner("li")', 1, "'owner' is an attribute, not a function"),
        ('segment == "x"', 1, "'segment' is a function: call it"),
        ("aum >= 5", 1, "unknown attribute 'aum'"),
        ("owner == 5", 10, "'owner' takes text, got 5"),
        ('owner in ("li", 3)', 17, "'owner' takes text, got 3"),
        ('segment("x") and', 17, "expected a condition, but the expression ends here"),
        ('segment("理财交流群") or owner = "li"', 27, "use '==' to compare"),
        ("", 1, "empty expression"),
    ],
)
def test_errors_point_at_the_column(source: str, column: int, message: str) -> None:
    with pytest.raises(ExpressionError) as info:
        parse_groups(source)
    assert info.value.column == column, info.value
    assert message in info.value.message
    with pytest.raises(ExpressionError):
        group_ids_query(source)
