"""The SQL an expression compiles to selects exactly what the reference evaluator selects,
on SQLite and PostgreSQL, for random data and random expressions."""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.store.db import Database
from bot.tagging import audience
from bot.tagging.audience import Context, evaluate, to_source
from bot.tagging.audience.nodes import Expr
from bot.tagging.audience.terms import active_relations
from tests.tagging.audience_data import NOW, World, expressions, load, worlds

# The `db` fixture is per test, not per example: `load` replaces the data every example.
EQUIVALENCE = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def reference_per_manager(tree: Expr, world: World) -> dict[str, int]:
    chosen = evaluate(tree, world.customers, Context(NOW))
    counts: Counter[str] = Counter()
    for c in world.customers:
        if c["external_userid"] in chosen:
            counts.update(r["userid"] for r in active_relations(c))
    return dict(counts)


@EQUIVALENCE
@given(world=worlds(), trees=st.lists(expressions(), min_size=1, max_size=4))
def test_sql_selects_what_the_reference_selects(
    db: Database, world: World, trees: list[Expr]
) -> None:
    load(db, world)
    for tree in trees:
        source = to_source(tree)
        parsed = audience.parse(source)
        assert parsed.tree == tree
        expected = evaluate(tree, world.customers, Context(NOW))
        found = audience.ids(db, parsed, now=NOW)
        assert sorted(found) == sorted(expected), source
        assert audience.count(db, parsed, now=NOW) == len(expected), source
    last = trees[-1]
    assert audience.per_manager(db, to_source(last), now=NOW) == reference_per_manager(last, world)


@settings(EQUIVALENCE, max_examples=25)
@given(world=worlds(), tree=expressions())
def test_opted_out_customers_are_never_selected(db: Database, world: World, tree: Expr) -> None:
    """Whatever the expression, even `opted_out` itself or a negation of everything."""
    for c in world.customers:
        c["opted_out"] = True
    load(db, world)
    for source in (to_source(tree), "opted_out", f"not opted_out and not ({to_source(tree)})"):
        assert audience.ids(db, source, now=NOW) == []
