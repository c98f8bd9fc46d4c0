"""A realistic small bank branch to populate a world with, and scripted joins to play on it."""

# All people are invented; remark mobiles use the unallocated 100 prefix so that no
# generated number belongs to anyone.

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from bot.sandbox.models import ADD_WAY_CUSTOMER_LINK, ADD_WAY_QR, JOIN_QR_CODE
from bot.sandbox.script import NewCustomer, Script
from bot.sandbox.world import SandboxWorld

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许"
    "韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁任沈"
)
GIVEN = [
    "伟", "芳", "娜", "秀英", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟",
    "涛", "明", "超", "秀兰", "霞", "平", "刚", "桂英", "建华", "文", "华", "玉兰", "红", "志强",
    "海燕", "晓东", "雪梅", "国庆", "淑珍", "子涵", "欣怡", "浩然", "宇轩", "梓萱", "建国",
]  # fmt: skip
MANAGERS = [
    ("ZhangLi", "张丽"),
    ("WangJianhua", "王建华"),
    ("LiuYang", "刘洋"),
    ("ChenJing", "陈静"),
    ("ZhaoLei", "赵磊"),
    ("SunMin", "孙敏"),
    ("ZhouTao", "周涛"),
    ("WuXia", "吴霞"),
]
# Tag group -> tags; the weights say how common each tag is among customers.
TAG_LIBRARY: dict[str, list[tuple[str, float]]] = {
    "资产等级": [("5万+", 0.45), ("10万+", 0.3), ("50万+", 0.2), ("600万+私行潜客", 0.05)],
    "客户类型": [("代发工资", 0.35), ("银发客户", 0.25), ("个体商户", 0.15), ("普通客户", 0.25)],
    "生命周期": [("潜在", 0.2), ("新客", 0.2), ("成长", 0.25), ("成熟", 0.25), ("流失预警", 0.1)],
    "渠道": [("网点二维码", 0.0), ("大堂扫码", 0.0), ("公众号文章", 0.0), ("活动海报", 0.0)],
}
# Channel state -> the 渠道 tag a customer arriving that way gets.
CHANNELS: dict[str, str] = {
    "qr_branch_a": "网点二维码",
    "qr_lobby": "大堂扫码",
    "link_wechat_article": "公众号文章",
    "qr_event_poster": "活动海报",
}
GROUP_NAMES = [
    "城南支行理财交流群",
    "代发工资客户群",
    "银发生活群",
    "城南支行福利群",
    "私行客户尊享群",
    "商户经营交流群",
    "周三五折惠生活群",
    "亲子理财课堂群",
    "城南支行理财交流2群",
    "代发工资客户2群",
    "银发生活2群",
    "新客户欢迎群",
]
NOTICE = "文明交流，理财有风险，投资需谨慎"
COMPANIES = ["城南五金店", "鑫隆餐饮", "恒达物流", "安心药房", "晨光文具"]


@dataclass
class Branch:
    """What `build_branch` created, for the demo and tests to refer to."""

    managers: list[str]
    customers: list[str]
    groups: list[str]
    tags: dict[str, dict[str, str]]
    states: list[str] = field(default_factory=lambda: list(CHANNELS))


def chinese_name(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + rng.choice(GIVEN)


def synthetic_mobile(rng: random.Random) -> str:
    return "100" + "".join(str(rng.randrange(10)) for _ in range(8))


def _weighted(rng: random.Random, options: list[tuple[str, float]]) -> str:
    names = [name for name, _ in options]
    return rng.choices(names, weights=[w for _, w in options])[0]


def build_branch(
    world: SandboxWorld,
    *,
    managers: int = 5,
    customers: int = 300,
    groups: int = 12,
    rng: random.Random,
) -> Branch:
    """Populate `world` with a branch's standing state (no callbacks: it already existed)."""
    now = world.now()
    manager_ids = []
    for index in range(managers):
        userid, name = MANAGERS[index] if index < len(MANAGERS) else (f"manager{index + 1}", "")
        world.add_member(userid, (name or chinese_name(rng)) + "（客户经理）")
        manager_ids.append(userid)
    tags: dict[str, dict[str, str]] = {}
    for order, (group_name, options) in enumerate(TAG_LIBRARY.items()):
        group = world.create_tag_group(
            group_name, order=len(TAG_LIBRARY) - order, at=now - 200 * 86400
        )
        tags[group_name] = {}
        for tag_order, (tag_name, _) in enumerate(options):
            tag = world.create_tag(
                group.group_id, tag_name, order=len(options) - tag_order, at=now - 200 * 86400
            )
            tags[group_name][tag_name] = tag.tag_id
    customer_ids = [_add_customer(world, rng, manager_ids, tags, now) for _ in range(customers)]
    group_ids = _add_groups(world, rng, manager_ids, groups, now)
    return Branch(manager_ids, customer_ids, group_ids, tags)


def _add_customer(
    world: SandboxWorld,
    rng: random.Random,
    managers: list[str],
    tags: dict[str, dict[str, str]],
    now: int,
) -> str:
    wecom_user = rng.random() < 0.08
    customer = world.add_customer(
        chinese_name(rng),
        type=2 if wecom_user else 1,
        gender=rng.choice([1, 2]),
        unionid=None if wecom_user else "o" + world.random_string(27),
        corp_name=rng.choice(COMPANIES) if wecom_user else None,
    )
    followers = rng.sample(managers, 2 if rng.random() < 0.05 else 1)
    for userid in followers:
        state = rng.choice(list(CHANNELS))
        chosen = [tags["渠道"][CHANNELS[state]]]
        for group_name in ("资产等级", "客户类型", "生命周期"):
            chosen.append(tags[group_name][_weighted(rng, TAG_LIBRARY[group_name])])
        added = now - rng.randrange(86400, 180 * 86400)
        world.add_follow(
            userid,
            customer.external_userid,
            state=state,
            add_way=ADD_WAY_CUSTOMER_LINK if state.startswith("link") else ADD_WAY_QR,
            remark=customer.name,
            remark_mobiles=[synthetic_mobile(rng)] if rng.random() < 0.4 else [],
            tag_ids=chosen,
            at=float(added),
        )
    return customer.external_userid


def _add_groups(
    world: SandboxWorld, rng: random.Random, managers: list[str], count: int, now: int
) -> list[str]:
    chat_ids = []
    for index in range(count):
        owner = managers[index % len(managers)]
        name = GROUP_NAMES[index] if index < len(GROUP_NAMES) else f"城南支行客户{index + 1}群"
        created = now - rng.randrange(30 * 86400, 150 * 86400)
        group = world.create_group(owner, name, notice=NOTICE, at=created)
        mine = [r.external_userid for r in world.relations_of(owner, visible_only=False)]
        for ext in rng.sample(mine, min(len(mine), rng.randrange(8, 40))):
            world.join_group(
                group.chat_id,
                ext,
                join_scene=rng.choice([1, 2, JOIN_QR_CODE]),
                invitor=owner,
                at=created + rng.randrange(60, 20 * 86400),
            )
        chat_ids.append(group.chat_id)
    return chat_ids


@dataclass(frozen=True)
class JoinEvent:
    """One scripted arrival: a customer adds a manager, or joins a group, `after` seconds on."""

    kind: str
    after: float
    customer: str | NewCustomer
    # Which planned newcomer this is, so a later join finds the id their add produced.
    ref: int = 0
    userid: str = ""
    state: str = ""
    chat_id: str = ""
    join_scene: int = JOIN_QR_CODE


def plan_join_events(
    world: SandboxWorld,
    branch: Branch,
    *,
    rng: random.Random,
    count: int = 20,
    spacing: tuple[float, float] = (30.0, 300.0),
) -> Iterator[JoinEvent]:
    """Customers arriving through channel QR codes and links, some then joining a group."""
    after = 0.0
    for ref in range(count):
        after += rng.uniform(*spacing)
        userid = rng.choice(branch.managers)
        state = rng.choice(branch.states)
        newcomer = NewCustomer(chinese_name(rng), gender=rng.choice([1, 2]))
        yield JoinEvent("add_contact", after, newcomer, ref, userid=userid, state=state)
        owned = [c for c in branch.groups if world.groups[c].owner == userid]
        if owned and rng.random() < 0.4:
            after += rng.uniform(5.0, 60.0)
            yield JoinEvent(
                "join_group",
                after,
                newcomer,
                ref,
                userid=userid,
                chat_id=rng.choice(owned),
                join_scene=rng.choice([1, 2, JOIN_QR_CODE]),
            )


def play(script: Script, event: JoinEvent, known: dict[int, str]) -> str:
    """Apply one planned event; `known` maps planned newcomers (by ref) to their ids."""
    customer = event.customer
    if isinstance(customer, NewCustomer) and event.ref in known:
        customer = known[event.ref]
    if event.kind == "add_contact":
        ext = script.customer_adds_member(customer, event.userid, state=event.state).external_userid
    else:
        invitor = None if event.join_scene == JOIN_QR_CODE else event.userid
        ext = script.customer_joins_group(
            event.chat_id, customer, join_scene=event.join_scene, invitor=invitor
        )
    if isinstance(event.customer, NewCustomer):
        known[event.ref] = ext
    return ext
