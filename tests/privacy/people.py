"""A customer with personal data in every table that can hold some (helpers, no tests)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.store.models import (
    AttributeChange,
    Base,
    Customer,
    CustomerProfile,
    CustomerTag,
    FollowRelation,
    FollowTag,
    Group,
    GroupMember,
    InboxEvent,
    MassTask,
    OutboxItem,
    PushedTag,
    ReceiveCount,
    SlotRun,
    SlotTarget,
)


@dataclass(frozen=True)
class Person:
    """One customer's personal data; every value is distinctive, so finding it anywhere in
    the database after a forget means it was missed."""

    external_userid: str
    customer_key: str
    name: str
    mobile: str  # as the manager typed it
    unionid: str
    avatar: str
    corp_name: str
    remark: str
    description: str
    remark_corp_name: str
    nickname: str
    occupation: str
    interests: str
    district: str
    product: str
    birth_date: date
    aum: float

    def personal_values(self) -> list[str]:
        """What must not survive a forget, as it would be printed."""
        digits = "".join(c for c in self.mobile if c.isdigit())
        return [
            self.name,
            self.mobile,
            digits,
            self.unionid,
            self.avatar,
            self.corp_name,
            self.remark,
            self.description,
            self.remark_corp_name,
            self.nickname,
            self.occupation,
            self.interests,
            self.district,
            self.product,
            self.birth_date.isoformat(),
            f"{self.aum:.2f}",
            f"{self.aum:,.2f}",
        ]


OUYANG = Person(
    external_userid="wmForgetOuyang000000000000000001",
    customer_key="C-FORGET-0001",
    name="欧阳娜娜",
    mobile="138-1234-5678",
    unionid="oUnionForgetOuyang0000000000",
    avatar="https://wework.qpic.cn/avatar/ouyang-forget.png",
    corp_name="欧阳家纺有限公司",
    remark="欧阳姐 城南花园",
    description="住城南花园三栋，女儿在读高三",
    remark_corp_name="欧阳家纺城南店",
    nickname="娜娜姐在城南",
    occupation="高级会计师",
    interests="广场舞、太极拳",
    district="城南花园商圈",
    product="大额存单2026期",
    birth_date=date(1958, 3, 4),
    aum=523_456.78,
)
ZHOU = Person(
    external_userid="wmKeepZhou000000000000000000002",
    customer_key="C-KEEP-0002",
    name="周建国",
    mobile="13987654321",
    unionid="oUnionKeepZhou00000000000000",
    avatar="https://wework.qpic.cn/avatar/zhou-keep.png",
    corp_name="建国五金",
    remark="周师傅",
    description="开五金店",
    remark_corp_name="建国五金店",
    nickname="老周",
    occupation="个体工商户",
    interests="钓鱼",
    district="老城商圈",
    product="养老理财A",
    birth_date=date(1962, 8, 9),
    aum=88_888.88,
)
MANAGER = "li"
OTHER_MANAGER = "wang"
CHAT = "wrForgetGroup0001"


def seed(session: Session, person: Person, now: datetime, *, run_id: int) -> None:
    """`person` as the bot would hold them after a few weeks of use."""
    eid = person.external_userid
    session.add(
        Customer(
            external_userid=eid,
            name=person.name,
            type=2,
            gender=2,
            unionid=person.unionid,
            corp_name=person.corp_name,
            avatar=person.avatar,
            fetched_at=now,
            created_at=now,
            updated_at=now,
        )
    )
    session.flush()
    for userid, remark in ((MANAGER, person.remark), (OTHER_MANAGER, None)):
        relation = FollowRelation(
            external_userid=eid,
            userid=userid,
            remark=remark,
            description=person.description if remark else None,
            remark_corp_name=person.remark_corp_name if remark else None,
            remark_mobiles=[person.mobile] if remark else [],
            add_way=1,
            state="qr_lobby",
            added_at=now - timedelta(days=30),
            status="active",
            updated_at=now,
        )
        session.add(relation)
        session.flush()
        session.add(FollowTag(follow_id=relation.id, tag_id="etGold", tag_type=1))
    session.add(
        PushedTag(userid=MANAGER, external_userid=eid, wecom_tag_id="etGold", pushed_at=now)
    )
    session.add(
        CustomerProfile(
            customer_key=person.customer_key,
            external_userid=eid,
            match_method="mobile",
            aum=person.aum,
            asset_tier="T3",
            payroll=True,
            birth_date=person.birth_date,
            age=68,
            products=[person.product],
            branch="城南支行",
            occupation=person.occupation,
            interests=person.interests,
            district=person.district,
            last_login_at=now - timedelta(days=3),
            opened_at=date(2011, 5, 6),
            lifecycle="mature",
            aum_trend=0.0731,
            imported_at=now,
            updated_at=now,
        )
    )
    for old, new in ((None, 480_000.0), (480_000.0, person.aum)):
        session.add(
            AttributeChange(
                customer_key=person.customer_key,
                attribute="aum",
                old_value=None if old is None else f"{old:.2f}",
                new_value=f"{new:.2f}",
                changed_at=now,
            )
        )
    for tag, family, reason in (
        ("资产50万+", "asset", f"AUM {person.aum:,.2f} ≥ 500,000 (资产50万+)"),
        ("老年客户", "senior", f"age 68 (from birth date {person.birth_date}) ≥ 60"),
    ):
        session.add(
            CustomerTag(
                external_userid=eid, tag=tag, family=family, rule=family, reason=reason, since=now
            )
        )
    if session.get(Group, CHAT) is None:
        session.add(Group(chat_id=CHAT, name="城南支行理财交流群", owner=MANAGER, updated_at=now))
        session.flush()
    session.add(
        GroupMember(
            chat_id=CHAT,
            member_id=eid,
            type=2,
            unionid=person.unionid,
            join_time=int(now.timestamp()),
            join_scene=3,
            invitor=MANAGER,
            group_nickname=person.nickname,
            name=person.name,
            updated_at=now,
        )
    )
    _seed_calendar(session, person, now, run_id=run_id)
    _seed_messages(session, person, now)


def _seed_calendar(session: Session, person: Person, now: datetime, *, run_id: int) -> None:
    eid = person.external_userid
    session.add(
        SlotRun(
            id=run_id,
            slot_id=f"mon-wealth-{run_id}",
            day=now.date(),
            part="main",
            channel="single",
            theme="周一财富私享",
            template="calendar/mon_wealth_vip.md.j2",
            fire_at=now,
            status="planned",
            planned_at=now,
            stats={"matched": 1, "reached": 1, "tasks": 1, "dropped": {}},
        )
    )
    session.flush()
    key = f"mass:{run_id}:{MANAGER}"
    session.add(
        SlotTarget(
            run_id=run_id,
            target_id=eid,
            target_kind="customer",
            sender=MANAGER,
            task_key=key,
            status="delivered",
            period=f"{now:%Y-%m}",
        )
    )
    session.add(
        MassTask(
            run_id=run_id,
            outbox_key=key,
            chat_type="single",
            sender=MANAGER,
            msgid=f"msg{run_id}",
            targets=1,
            status="final",
            created_at=now,
            delivered=1,
        )
    )
    session.add(ReceiveCount(period=f"{now:%Y-%m}", target_kind="customer", target_id=eid, count=3))
    session.add(
        OutboxItem(
            idempotency_key=key,
            kind="mass_task",
            lane="normal",
            payload={
                "run_id": run_id,
                "chat_type": "single",
                "sender": MANAGER,
                "external_userid": [eid],
                "text": {"content": f"{person.name}您好，本周财富私享会邀您参加"},
            },
            status="sent",
            attempts=1,
            due_at=now,
            created_at=now,
            updated_at=now,
        )
    )


def _seed_messages(session: Session, person: Person, now: datetime) -> None:
    """A manager's opt-out command quoting the customer, as the inbox keeps it."""
    digits = "".join(c for c in person.mobile if c.isdigit())
    xml = (
        f"<xml><ToUserName><![CDATA[ww1]]></ToUserName><FromUserName><![CDATA[{MANAGER}]]>"
        f"</FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]>"
        f"</MsgType><Content><![CDATA[退订 {person.remark}（{digits}）]]></Content>"
        f"<MsgId>{person.customer_key}</MsgId><AgentID>1000002</AgentID></xml>"
    )
    session.add(
        InboxEvent(
            dedupe_key=f"dedupe-{person.customer_key}",
            received_at=now,
            msg_type="text",
            payload=xml.encode("utf-8"),
            status="done",
            attempts=1,
            next_attempt_at=now,
            processed_at=now,
        )
    )


def everything(session: Session) -> str:
    """Every value in every table, as text, for searching."""
    parts: list[str] = []
    for table in Base.metadata.sorted_tables:
        for row in session.execute(select(table)):
            parts.extend(_text(value) for value in row)
    return "\n".join(parts)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def row_counts(session: Session) -> dict[str, int]:
    return {
        table.name: int(session.scalar(select(func.count()).select_from(table)) or 0)
        for table in Base.metadata.sorted_tables
    }
