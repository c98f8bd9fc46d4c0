"""Customer worlds for the audience tests: random ones and expressions (hypothesis), one
hand-made world whose answers are written down, and loading a world into the store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from hypothesis import strategies as st
from sqlalchemy import delete, insert
from sqlalchemy.orm import Session

from bot.store.db import Database
from bot.store.models import (
    CorpTag,
    Customer,
    CustomerProfile,
    CustomerTag,
    FollowRelation,
    FollowTag,
    Group,
    GroupMember,
    GroupSegment,
    TagGroup,
)
from bot.tagging.audience.nodes import (
    COMPARE_OPS,
    And,
    Call,
    Compare,
    Expr,
    Flag,
    Member,
    Not,
    Or,
    lit,
)
from bot.tagging.audience.terms import (
    RefCorpTag,
    RefCustomer,
    RefMembership,
    RefProfile,
    RefRelation,
)

NOW = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
MANAGERS = ["m1", "m2", "m3"]
CHATS = ["wr1", "wr2", "wr3"]
SEGMENTS = ["银发群", "代发群"]
RULE_TAGS = ["A", "B", "资产50万+"]
# Corp tags by id: (name, deleted). "B" exists only as a deleted corp tag.
CORP_TAGS: dict[str, tuple[str, bool]] = {"t1": ("A", False), "t2": ("C", False)}
CORP_TAGS["t3"] = ("B", True)
TIMES = [NOW - timedelta(days=d) for d in (1, 30, 90)] + [NOW - timedelta(days=30, seconds=1)]

PROFILE_VALUES: dict[str, list[Any]] = {
    "aum": [0.0, 50000.0, 99999.5, 100000.0, 500000.0],
    "age": [30, 59, 60, 75],
    "asset_tier": ["T1", "T2", "T3"],
    "payroll": [True, False],
    "branch": ["城南支行", "城北支行"],
    "occupation": ["教师", "医生"],
    "district": ["商圈1", "商圈2"],
    "lifecycle": ["new", "growth", "mature"],
    "products": [[], ["基金"], ["基金", "理财"], ["理财"]],
    "last_login_at": TIMES,
}
# Literals per attribute: the stored values, values between them, and values nobody has.
NUMBER_LITERALS = {
    "aum": [0, 50000, 99999.5, 100000, 100000.25, 500000, -1],
    "age": [30, 59.5, 60, 75],
}
TEXT_LITERALS = {
    "asset_tier": ["T1", "T2", "T3", "T9"],
    "branch": ["城南支行", "城北支行", "城东支行"],
    "occupation": ["教师", "医生", "律师"],
    "district": ["商圈1", "商圈2"],
    "lifecycle": ["new", "growth", "mature", "churning"],
    "manager": [*MANAGERS, "m9"],
    "channel": ["qr_lobby", "qr_branch_a", "qr_x"],
}
FUNCTION_LITERALS: dict[str, list[Any]] = {
    "tag": [*RULE_TAGS, "C", "none"],
    "product": ["基金", "理财", "保险"],
    "in_group": [*CHATS, "wr9"],
    "in_segment": [*SEGMENTS, "理财沙龙"],
    "joined_within": [0, 1, 30, 365],
    "login_within": [0, 1, 30, 365],
}


# -- expressions ---------------------------------------------------------------------------


def _atoms() -> st.SearchStrategy[Expr]:
    numbers = st.sampled_from(sorted(NUMBER_LITERALS)).flatmap(
        lambda a: st.builds(
            lambda op, v: Compare(a, op, lit(v)),
            st.sampled_from(COMPARE_OPS),
            st.sampled_from(NUMBER_LITERALS[a]),
        )
    )
    texts = st.sampled_from(sorted(TEXT_LITERALS)).flatmap(
        lambda a: st.builds(
            lambda op, v: Compare(a, op, lit(v)),
            st.sampled_from(["==", "!="]),
            st.sampled_from(TEXT_LITERALS[a]),
        )
    )
    pools: dict[str, list[Any]] = {**NUMBER_LITERALS, **TEXT_LITERALS}
    members = st.sampled_from(sorted(pools)).flatmap(
        lambda a: st.builds(
            lambda values, negated: Member(a, tuple(lit(v) for v in values), negated),
            st.lists(st.sampled_from(pools[a]), min_size=1, max_size=3),
            st.booleans(),
        )
    )
    flags = st.sampled_from(["payroll", "opted_out"])
    booleans = st.builds(
        lambda a, op, v: Compare(a, op, lit(v)), flags, st.sampled_from(["==", "!="]), st.booleans()
    )
    calls = st.sampled_from(sorted(FUNCTION_LITERALS)).flatmap(
        lambda f: st.sampled_from(FUNCTION_LITERALS[f]).map(lambda v: Call(f, (lit(v),)))
    )
    return st.one_of(calls, numbers, texts, members, st.builds(Flag, flags), booleans)


def expressions(max_leaves: int = 7) -> st.SearchStrategy[Expr]:
    """Random trees from the whole grammar (every term, every operator)."""
    return st.recursive(
        _atoms(),
        lambda children: st.one_of(
            st.builds(Not, children),
            st.builds(And, children, children),
            st.builds(Or, children, children),
        ),
        max_leaves=max_leaves,
    )


# -- worlds --------------------------------------------------------------------------------


@dataclass
class World:
    customers: list[RefCustomer]
    segments: dict[str, list[str]] = field(default_factory=dict)


def _maybe(values: list[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), st.sampled_from(values))


@st.composite
def _profile(draw: st.DrawFn) -> RefProfile:
    v = {name: draw(_maybe(values)) for name, values in PROFILE_VALUES.items()}
    return RefProfile(
        aum=v["aum"],
        asset_tier=v["asset_tier"],
        payroll=v["payroll"],
        age=v["age"],
        branch=v["branch"],
        occupation=v["occupation"],
        district=v["district"],
        lifecycle=v["lifecycle"],
        products=v["products"],
        last_login_at=v["last_login_at"],
    )


@st.composite
def _customer(draw: st.DrawFn, i: int, segments: dict[str, list[str]]) -> RefCustomer:
    relations = [
        RefRelation(
            userid=userid,
            status=draw(st.sampled_from(["active", "active", "ended"])),
            state=draw(_maybe(["qr_lobby", "qr_branch_a"])),
            added_at=draw(_maybe(TIMES)),
            corp_tags=[
                RefCorpTag(name=CORP_TAGS[t][0], deleted=CORP_TAGS[t][1])
                for t in draw(st.lists(st.sampled_from(sorted(CORP_TAGS)), unique=True))
            ],
        )
        for userid in draw(st.lists(st.sampled_from(MANAGERS), unique=True, max_size=3))
    ]
    groups = [
        RefMembership(chat_id=chat, left=draw(st.booleans()), segments=segments[chat])
        for chat in draw(st.lists(st.sampled_from(CHATS), unique=True, max_size=2))
    ]
    return RefCustomer(
        external_userid=f"wm{i:03d}",
        opted_out=draw(st.sampled_from([False, False, False, True])),
        profile=draw(st.one_of(st.none(), _profile())),
        tags=draw(st.lists(st.sampled_from(RULE_TAGS), unique=True, max_size=3)),
        relations=relations,
        groups=groups,
    )


@st.composite
def worlds(draw: st.DrawFn, max_customers: int = 8) -> World:
    segments = {
        chat: draw(st.lists(st.sampled_from(SEGMENTS), unique=True, max_size=2)) for chat in CHATS
    }
    n = draw(st.integers(0, max_customers))
    return World([draw(_customer(i, segments)) for i in range(n)], segments)


# -- a hand-made world ---------------------------------------------------------------------


def profile_of(**values: object) -> RefProfile:
    """A profile with every attribute missing except `values`."""
    return cast(RefProfile, dict.fromkeys(RefProfile.__annotations__) | values)


def relation(
    userid: str, status: str = "active", state: str | None = None, days: int | None = None,
    tags: tuple[tuple[str, bool], ...] = (),
) -> RefRelation:  # fmt: skip
    return RefRelation(
        userid=userid,
        status=status,
        state=state,
        added_at=None if days is None else NOW - timedelta(days=days),
        corp_tags=[RefCorpTag(name=n, deleted=d) for n, d in tags],
    )


def customer(
    eid: str,
    profile: RefProfile | None,
    *,
    opted_out: bool = False,
    tags: Sequence[str] = (),
    relations: Sequence[RefRelation] = (),
    groups: Sequence[RefMembership] = (),
) -> RefCustomer:
    return RefCustomer(
        external_userid=eid,
        opted_out=opted_out,
        profile=profile,
        tags=list(tags),
        relations=list(relations),
        groups=list(groups),
    )


RICH = profile_of(
    aum=600000.0, asset_tier="T3", payroll=True, age=45, branch="城南支行", lifecycle="growth",
    products=["基金"], last_login_at=NOW - timedelta(days=2),
)  # fmt: skip
WORLD = World(
    [
        customer(
            "rich",
            RICH,
            tags=["资产50万+"],
            relations=[relation("m1", state="qr_lobby", days=10)],
            groups=[RefMembership(chat_id="wr1", left=False, segments=["银发群"])],
        ),
        customer(
            "senior",
            profile_of(aum=80000.0, asset_tier="T1", payroll=False, age=70, lifecycle="mature"),
            tags=["老年客户", "资产5万+"],
            # A manager tagged them 资产50万+ by hand in WeCom: that counts as the tag.
            relations=[relation("m1", days=400, tags=(("资产50万+", False),)), relation("m2")],
            groups=[RefMembership(chat_id="wr1", left=True, segments=["银发群"])],
        ),
        customer(
            "noprofile",
            None,
            relations=[relation("m2", tags=(("VIP", True),))],  # a deleted corp tag
            groups=[RefMembership(chat_id="wr2", left=False, segments=["代发群"])],
        ),
        customer("optout", RICH, opted_out=True, tags=["资产50万+"], relations=[relation("m1")]),
        customer(
            "ended", RICH, tags=["资产50万+"], relations=[relation("m3", "ended", "qr_lobby")]
        ),
        customer(
            "poor",
            profile_of(aum=1000.0, branch="城北支行", payroll=None),
            relations=[relation("m3"), relation("m2", "ended", tags=(("高净值客户", False),))],
        ),
    ],
    {"wr1": ["银发群"], "wr2": ["代发群"], "wr3": []},
)


# -- loading -------------------------------------------------------------------------------

_TABLES = [FollowTag, CustomerTag, GroupMember, GroupSegment, FollowRelation, CustomerProfile]
_TABLES += [Customer, Group, CorpTag, TagGroup]


def load(db: Database, world: World) -> None:
    """Replace everything audience terms read with `world`, in one transaction."""
    db.call(lambda session: _load(session, world))


def _load(session: Session, world: World) -> None:
    for model in _TABLES:
        session.execute(delete(model))
    session.execute(insert(TagGroup), [{"group_id": "g1", "name": "手工", "updated_at": NOW}])
    # Every corp tag the world mentions, by (name, deleted); the pool's always exist.
    pairs = {*CORP_TAGS.values()}
    pairs |= {
        (t["name"], t["deleted"]) for c in world.customers for r in c["relations"]
        for t in r["corp_tags"]
    }  # fmt: skip
    tag_ids = {pair: f"t{n}" for n, pair in enumerate(sorted(pairs), start=1)}
    session.execute(
        insert(CorpTag),
        [
            {"tag_id": t, "group_id": "g1", "name": name, "deleted": deleted, "updated_at": NOW}
            for (name, deleted), t in tag_ids.items()
        ],
    )
    session.execute(insert(Group), [{"chat_id": c, "updated_at": NOW} for c in CHATS])
    segments = [
        {"chat_id": c, "segment": s, "source": "manual", "reason": "test", "since": NOW}
        for c, names in world.segments.items()
        for s in names
    ]
    if segments:
        session.execute(insert(GroupSegment), segments)
    # A bank profile matched to no WeCom customer: must never leak into an audience.
    session.execute(
        insert(CustomerProfile),
        [{"customer_key": "ORPHAN", "aum": 1e6, "payroll": True, "imported_at": NOW,
          "updated_at": NOW}],
    )  # fmt: skip
    rows: dict[type[Any], list[dict[str, Any]]] = {m: [] for m in _TABLES}
    relation_id = 0
    for i, c in enumerate(world.customers):
        eid = c["external_userid"]
        rows[Customer].append(
            {"external_userid": eid, "name": f"张三{i}", "opted_out": c["opted_out"],
             "created_at": NOW, "updated_at": NOW}
        )  # fmt: skip
        if c["profile"] is not None:
            rows[CustomerProfile].append(
                {"customer_key": f"K{i}", "external_userid": eid, **c["profile"],
                 "imported_at": NOW, "updated_at": NOW}
            )  # fmt: skip
        rows[CustomerTag] += [
            {"external_userid": eid, "tag": tag, "family": "f", "rule": "r", "reason": "test",
             "since": NOW}
            for tag in c["tags"]
        ]  # fmt: skip
        for r in c["relations"]:
            relation_id += 1
            rows[FollowRelation].append(
                {"id": relation_id, "external_userid": eid, "userid": r["userid"],
                 "status": r["status"], "state": r["state"], "added_at": r["added_at"],
                 "updated_at": NOW}
            )  # fmt: skip
            rows[FollowTag] += [
                {"follow_id": relation_id, "tag_id": tag_ids[(t["name"], t["deleted"])]}
                for t in r["corp_tags"]
            ]
        rows[GroupMember] += [
            {"chat_id": g["chat_id"], "member_id": eid, "type": 2,
             "left_at": NOW if g["left"] else None, "updated_at": NOW}
            for g in c["groups"]
        ]  # fmt: skip
    # Parents before children: the reverse of the deletion order.
    for model in reversed(_TABLES):
        if rows[model]:
            session.execute(insert(model), rows[model])
