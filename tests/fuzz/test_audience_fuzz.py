"""Audience expressions from random text and random syntax trees: a result or an
ExpressionError with a column inside the source, never another exception; whatever checks
compiles to SQL that runs and selects what the reference evaluator selects."""

from __future__ import annotations

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from bot.store.db import Database
from bot.tagging.audience.nodes import Expr
from tests.fuzz.audience_cases import AudienceHarness, check_source, sources, trees
from tests.fuzz.bounds import fuzz_settings
from tests.tagging.audience_data import WORLD, World, worlds


@fuzz_settings(max_examples=300, deadline_ms=2000)
@given(source=sources)
def test_any_text_parses_or_fails_with_a_column_inside_it(source: str) -> None:
    event(check_source(source))


@pytest.fixture
def hand_made(db: Database) -> AudienceHarness:
    return AudienceHarness(db, WORLD)


# Both engines: the world is loaded once, and odd values bind differently on each.
@fuzz_settings(max_examples=25, deadline_ms=None)
@given(tree=trees)
def test_random_trees_on_the_hand_made_world(hand_made: AudienceHarness, tree: Expr) -> None:
    event(hand_made.check_tree(tree))


# SQLite only: a world is loaded per example, which on both engines would cost more than the
# suite can spend; the hand-made world above covers PostgreSQL.
@fuzz_settings(max_examples=8, deadline_ms=None)
@given(world=worlds(), trees_=st.lists(trees, min_size=1, max_size=4))
def test_random_trees_on_random_worlds(
    sqlite_db: Database, world: World, trees_: list[Expr]
) -> None:
    harness = AudienceHarness(sqlite_db, world)
    for tree in trees_:
        event(harness.check_tree(tree))
