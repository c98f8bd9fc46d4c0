"""Adding a term is one registration: activity participation, as it will be added once
activities exist, works in the parser, the checker, the SQL and the reference evaluator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Column, MetaData, String, Table, insert, select

from bot.store.db import Database
from bot.tagging import audience
from bot.tagging.audience import Context, Function, IdSet, Type, evaluate, register_function
from bot.tagging.audience.sqlparts import value_param
from bot.tagging.audience.vocabulary import FUNCTIONS
from tests.tagging.audience_data import NOW, WORLD, load

participations = Table(
    "test_participations",
    MetaData(),
    Column("activity_id", String(64), primary_key=True),
    Column("external_userid", String(64), primary_key=True),
)


@pytest.fixture
def participated(db: Database) -> Iterator[None]:
    participations.create(db.engine)
    register_function(
        Function(
            name="participated",
            params=(Type.TEXT,),
            sql=lambda args, ctx: IdSet(
                select(participations.c.external_userid).where(
                    participations.c.activity_id == value_param(args[0])
                )
            ),
            reference=lambda args, customer, ctx: args[0] in customer.get("activities", []),
            doc="took part in the activity",
        )
    )
    try:
        yield
    finally:
        del FUNCTIONS["participated"]
        participations.drop(db.engine)


@pytest.mark.usefixtures("participated")
def test_a_registered_term_works_everywhere(db: Database) -> None:
    load(db, WORLD)
    entered = {"rich": ["quiz-1"], "senior": ["quiz-1", "quiz-2"], "optout": ["quiz-1"]}
    with db.engine.begin() as conn:
        conn.execute(
            insert(participations),
            [{"activity_id": a, "external_userid": c} for c, acts in entered.items() for a in acts],
        )
    customers = [c | {"activities": entered.get(c["external_userid"], [])} for c in WORLD.customers]
    cases = {
        'participated("quiz-1")': {"rich", "senior"},  # opted out: never
        'participated("quiz-2") or tag("资产50万+")': {"rich", "senior"},
        'tag("资产50万+") and not participated("quiz-2")': {"rich"},
        'not participated("quiz-1")': {"noprofile", "poor"},
    }
    for source, expected in cases.items():
        tree = audience.parse(source).tree
        assert evaluate(tree, customers, Context(NOW)) == expected, source
        assert set(audience.ids(db, source)) == expected, source


def test_unknown_until_registered() -> None:
    with pytest.raises(audience.ExpressionError, match="unknown function 'participated'"):
        audience.parse('participated("quiz-1")')


def test_a_name_can_be_registered_once() -> None:
    with pytest.raises(ValueError, match="already defined"):
        register_function(FUNCTIONS["tag"])
