"""A bank's daily customer export for the simulated branch, as the demo imports it.

Most rows name the WeCom customer directly; some can only be matched through the mobile
number a manager entered as a remark; a few are bank customers nobody follows in WeCom yet
(prospects), which the import reports as unmatched. Mobile numbers are synthetic (100…).
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from bot.sandbox.world import SandboxWorld

PRODUCTS = ["理财", "基金", "定期", "信用卡", "保险", "贵金属", "养老金"]
BRANCHES = ["城南支行", "城北支行", "高新区支行"]
OCCUPATIONS = ["教师", "医生", "个体经营", "公司职员", "退休", "公务员", "学生"]
DISTRICTS = ["万达商圈", "老城区", "高新园区", "大学城"]
HOBBIES = ["摄影", "广场舞", "钓鱼", "旅游", "书法", "跑步"]

HEADER = [
    "客户号",
    "企业微信客户ID",
    "手机号",
    "AUM",
    "代发标志",
    "出生日期",
    "年龄",
    "持有产品",
    "网点",
    "职业",
    "兴趣爱好",
    "商圈",
    "最近手机银行登录",
    "开户日期",
]


@dataclass(frozen=True)
class BankFile:
    """What was written, so the demo can say what the import should find."""

    path: Path
    rows: int
    by_id: int
    by_mobile: int
    prospects: int


def _aum(rng: random.Random) -> float:
    # Log-normal: most customers hold tens of thousands, a few hold millions.
    return round(min(rng.lognormvariate(11.0, 1.4), 30_000_000), 2)


def write_bank_file(
    world: SandboxWorld, path: Path, *, today: date, rng: random.Random, prospects: int = 10
) -> BankFile:
    """One row per sandbox customer (plus some prospects), in the bank's column names."""
    mobiles: dict[str, str] = {}
    for relation in world.relations.values():
        if relation.remark_mobiles:
            mobiles.setdefault(relation.external_userid, relation.remark_mobiles[0])
    by_id = by_mobile = 0
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        customers = sorted(world.customers)
        for index, external_userid in enumerate(customers):
            mobile = mobiles.get(external_userid, "")
            # A third of those with a remark mobile come without the WeCom id: the bank's
            # core system only knows the phone number.
            use_mobile = bool(mobile) and index % 3 == 0
            by_mobile += use_mobile
            by_id += not use_mobile
            writer.writerow(
                _row(
                    rng, today, f"C{100000 + index}", "" if use_mobile else external_userid, mobile
                )
            )
        for extra in range(prospects):
            writer.writerow(_row(rng, today, f"P{900000 + extra}", "", ""))
    return BankFile(path, len(world.customers) + prospects, by_id, by_mobile, prospects)


def _row(rng: random.Random, today: date, key: str, external_userid: str, mobile: str) -> list[str]:
    age = rng.choice([rng.randint(22, 59)] * 4 + [rng.randint(60, 85)])
    birth = today.replace(year=today.year - age) - timedelta(days=rng.randint(1, 300))
    opened = today - timedelta(days=rng.choice([rng.randint(5, 80)] + [rng.randint(100, 3000)] * 3))
    login = today - timedelta(days=rng.choice([rng.randint(0, 20)] * 3 + [rng.randint(100, 400)]))
    products = "|".join(sorted(rng.sample(PRODUCTS, rng.randint(0, 3))))
    return [
        key,
        external_userid,
        mobile,
        f"{_aum(rng):,.2f}",
        "Y" if rng.random() < 0.35 else "N",
        birth.isoformat(),
        "",
        products,
        rng.choice(BRANCHES),
        rng.choice(OCCUPATIONS),
        rng.choice(HOBBIES),
        rng.choice(DISTRICTS),
        f"{login.isoformat()} 08:30:00",
        opened.isoformat(),
    ]
