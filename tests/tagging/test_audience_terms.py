"""What each term means, on a small hand-made world: the SQL and the reference evaluator
must both give the documented answer (on both engines)."""

from __future__ import annotations

import pytest

from bot.privacy import hash_id
from bot.store.db import Database
from bot.tagging import audience
from bot.tagging.audience import Context, evaluate
from tests.tagging.audience_data import NOW, WORLD, load

BENCH = (
    'tag("资产50万+") and not tag("老年客户") or (aum >= 100000 and lifecycle in ("new", "growth"))'
)


CASES = [
    ('tag("资产50万+")', {"rich", "senior"}),
    ('tag("高净值客户")', set()),  # only on an ended relation
    ('tag("VIP")', set()),  # the corp tag was deleted
    ('not tag("资产50万+")', {"noprofile", "poor"}),
    ("aum >= 100000", {"rich"}),
    ("aum < 100000", {"senior", "poor"}),  # no profile: no aum, the comparison fails
    ("not aum >= 100000", {"senior", "noprofile", "poor"}),  # …and its negation holds
    ("aum >= 10万", {"rich"}),
    ('branch != "城南支行"', {"poor"}),  # missing branch: != fails too
    ('not branch == "城南支行"', {"senior", "noprofile", "poor"}),
    ('asset_tier not in ("T3")', {"senior"}),
    ('asset_tier in ("T1", "T3")', {"rich", "senior"}),
    ("payroll", {"rich"}),
    ("payroll == false", {"senior"}),
    ("not payroll", {"senior", "noprofile", "poor"}),
    ("age >= 60", {"senior"}),
    ('lifecycle in ("new", "growth")', {"rich"}),
    ('manager == "m1"', {"rich", "senior"}),
    ('manager != "m1"', {"noprofile", "poor"}),  # many-valued: no active relation with m1
    ('manager in ("m2", "m3")', {"senior", "noprofile", "poor"}),  # m3 with "ended" is over
    ('manager not in ("m2", "m3")', {"rich"}),
    ('channel == "qr_lobby"', {"rich"}),
    ('in_group("wr1")', {"rich"}),  # senior left wr1
    ('in_segment("代发群")', {"noprofile"}),
    ('in_segment("银发群")', {"rich"}),
    ('product("基金")', {"rich"}),
    ('not product("基金")', {"senior", "noprofile", "poor"}),
    ("login_within(2)", {"rich"}),  # exactly two days ago is within two days
    ("login_within(1)", set()),
    ("joined_within(30)", {"rich"}),
    ("opted_out", set()),
    ("not opted_out", {"rich", "senior", "noprofile", "poor"}),
    (BENCH, {"rich"}),
    ('tag("资产50万+") and not tag("老年客户")', {"rich"}),
    ('(tag("资产50万+") or payroll) and aum >= 50000 and not age >= 60', {"rich"}),
]


@pytest.mark.parametrize(("source", "expected"), CASES, ids=[c[0] for c in CASES])
def test_reference_meaning(source: str, expected: set[str]) -> None:
    assert evaluate(audience.parse(source).tree, WORLD.customers, Context(NOW)) == expected


def test_sql_meaning(db: Database) -> None:
    """All cases in one test per engine: loading the world is the slow part."""
    load(db, WORLD)
    for source, expected in CASES:
        assert set(audience.ids(db, source, now=NOW)) == expected, source
        assert audience.count(db, source, now=NOW) == len(expected), source


def test_per_manager_counts_each_following_manager(db: Database) -> None:
    load(db, WORLD)
    # Largest first, then by userid; poor's relation with m2 has ended.
    assert list(audience.per_manager(db, "not opted_out").items()) == [
        ("m1", 2), ("m2", 2), ("m3", 1),
    ]  # fmt: skip
    assert audience.per_manager(db, 'tag("资产50万+")') == {"m1": 2, "m2": 1}
    assert audience.per_manager(db, 'tag("nobody")') == {}


def test_sample_is_masked_and_drawn_from_the_audience(db: Database) -> None:
    load(db, WORLD)
    rows = audience.sample(db, 'tag("资产50万+")', 10)
    assert {r.customer for r in rows} == {hash_id("rich"), hash_id("senior")}
    for row in rows:
        assert row.name[0] == "张"
        assert set(row.name[1:]) == {"*"}
        assert row.customer not in ("rich", "senior")
    rich = next(r for r in rows if r.customer == hash_id("rich"))
    assert (rich.managers, rich.asset_tier, rich.lifecycle, rich.branch) == (
        ("m1",), "T3", "growth", "城南支行",
    )  # fmt: skip
    senior = next(r for r in rows if r.customer == hash_id("senior"))
    assert senior.managers == ("m1", "m2")
    assert len(audience.sample(db, "not opted_out", 2)) == 2
    assert audience.sample(db, "not opted_out", 0) == []
