"""change_external_contact end to end: callback → gateway → handler → mirror, outbox → WeCom."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import select

from bot.outbox.kinds import WELCOME_MSG
from bot.sandbox.limits import Limits
from bot.sandbox.script import NewCustomer
from bot.store.models import Customer, FollowRelation, FollowTag, InboxEvent, OutboxItem
from bot.sync import run_sync
from tests.integration.conftest import WANG, ZHANG, World

WELCOME = "externalcontact/send_welcome_msg"
GET = "externalcontact/get"

# A distinctive line of each welcome template under content/welcome/.
BRANCH_LINE = "网点活动、预约取号、理财咨询，在这里找我就好。"
SENIOR_LINE = "防诈骗提醒：银行工作人员不会向您索要验证码和密码。"
DEFAULT_LINE = "理财、代发、信用卡、养老金等问题，随时找我。"
# A bound on real waiting that only a broken fast lane reaches.
HOLD_SECONDS = 5.0


def relation(world: World, userid: str, external_userid: str) -> FollowRelation:
    found = world.rows(
        FollowRelation,
        FollowRelation.userid == userid,
        FollowRelation.external_userid == external_userid,
    )
    assert len(found) == 1, found
    first: FollowRelation = found[0]
    return first


def tag_ids(world: World, rel: FollowRelation) -> set[str]:
    return set(
        world.q(lambda s: s.scalars(select(FollowTag.tag_id).where(FollowTag.follow_id == rel.id)))
    )


def welcome_rows(world: World) -> list[OutboxItem]:
    return world.outbox(WELCOME_MSG)


class WelcomeFirst(httpx.AsyncBaseTransport):
    """Holds the bot's `externalcontact/get` calls until a welcome has gone out.

    On a frozen clock the handler's 84061 back-off takes no real time, so without this the
    fetch could finish before the sender's thread even claims the welcome. Held here, the
    handler is provably still fetching when the welcome is sent; a welcome that waited for
    the handler would never come, and the hold gives up (which the test reports).
    """

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.welcome_sent = asyncio.Event()
        self.held_in_vain = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/externalcontact/get") and not self.held_in_vain:
            try:
                await asyncio.wait_for(self.welcome_sent.wait(), timeout=HOLD_SECONDS)
            except TimeoutError:
                self.held_in_vain += 1
        response = await self.inner.handle_async_request(request)
        if request.url.path.endswith("/externalcontact/send_welcome_msg"):
            self.welcome_sent.set()
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class TestAddExternalContact:
    # The handler's fetch must retry 84061 for 0.5 + 1 + 2 s before WeCom shows the new
    # relation, so a welcome queued behind the fetch would leave more than 3 s after the add.
    @pytest.fixture
    def limits(self) -> Limits:
        return Limits(contact_visibility_lag=3.2)

    @pytest.fixture
    def gate(self) -> list[WelcomeFirst]:
        return []

    @pytest.fixture
    def wrap_transport(
        self, gate: list[WelcomeFirst]
    ) -> Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport]:
        def wrap(inner: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
            gate.append(WelcomeFirst(inner))
            return gate[0]

        return wrap

    async def test_welcome_goes_out_fast_while_detail_is_fetched(
        self, world: World, gate: list[WelcomeFirst]
    ) -> None:
        tags = world.wecom.create_tag_group("资产等级")
        gold = world.wecom.create_tag(tags.group_id, "50万+")
        added = world.script.customer_adds_member(
            NewCustomer("李秀英", gender=2, unionid="oUnion0000000000000000000001"),
            ZHANG,
            state="qr_senior_club",
        )
        # What the member filled in on the add screen.
        rel = world.wecom.relations[(ZHANG, added.external_userid)]
        rel.remark_mobiles = ["10012345678"]
        rel.tag_ids = [gold.tag_id]
        rel.remark = "李阿姨"
        start = world.clock.timestamp()

        await world.step()
        # The welcome is out before WeCom shows the customer at all.
        assert [c.errcode for c in world.calls(GET)] == [84061]
        assert len(world.calls(WELCOME)) == 1
        # The detail is read again as WeCom catches up (after 1 s, then 2 s, then 3 s),
        # each retry its own pass, so other callbacks are not held up behind the lag.
        for wait in (1, 2, 3):
            await world.later(wait)

        assert gate[0].held_in_vain == 0, "the welcome waited for the customer's detail"
        # The fetch really was slow: 84061 three times, then the detail.
        gets = world.calls(GET)
        assert [c.errcode for c in gets] == [84061, 84061, 84061, 0]
        assert world.clock.timestamp() - start >= 3.5
        # ... and the welcome did not wait for it.
        [code] = world.wecom.welcome_codes.values()
        assert code.code == added.welcome_code
        assert code.used_at is not None
        assert code.used_at - code.issued_at <= 3
        [call] = world.calls(WELCOME)
        assert call.seq < gets[-1].seq
        assert call.body["welcome_code"] == added.welcome_code
        # The channel's template (qr_senior_club → senior.txt.j2), rendered.
        [message] = world.wecom.welcome_messages
        assert message.external_userid == added.external_userid
        assert SENIOR_LINE in message.text
        assert DEFAULT_LINE not in message.text
        assert "{{" not in message.text
        [row] = welcome_rows(world)
        assert (row.status, row.attempts, row.lane) == ("sent", 1, "fast")

        [customer] = world.rows(Customer)
        assert (customer.external_userid, customer.name, customer.gender, customer.type) == (
            added.external_userid,
            "李秀英",
            2,
            1,
        )
        assert customer.unionid == "oUnion0000000000000000000001"
        mirrored = relation(world, ZHANG, added.external_userid)
        assert mirrored.status == "active"
        assert (mirrored.state, mirrored.add_way, mirrored.remark) == (
            "qr_senior_club",
            1,
            "李阿姨",
        )
        assert mirrored.remark_mobiles == ["10012345678"]
        assert mirrored.added_at is not None
        assert mirrored.added_at.timestamp() == int(start)
        assert tag_ids(world, mirrored) == {gold.tag_id}
        [inbox] = world.rows(InboxEvent)
        assert (inbox.status, inbox.attempts) == ("done", 4)  # three passes put off, one done


class TestWeComLagsLongerThanTheHandlerWaits:
    @pytest.fixture
    def limits(self) -> Limits:
        return Limits(contact_visibility_lag=8.0)

    @pytest.mark.parametrize("known_customer", [False, True])
    async def test_the_callback_is_retried_and_welcomes_once(
        self, world: World, known_customer: bool
    ) -> None:
        customer: str | NewCustomer = NewCustomer("韩梅")
        if known_customer:
            # Followed by ZhangLi for a day: WeCom answers, just without WangJianhua yet.
            customer = world.wecom.add_customer("韩梅").external_userid
            world.wecom.add_follow(ZHANG, customer, at=world.clock.timestamp() - 86400)
        added = world.script.customer_adds_member(customer, WANG, state="qr_lobby")
        await world.step()
        [inbox] = world.rows(InboxEvent)
        assert (inbox.status, inbox.attempts) == ("pending", 1)
        assert "retry later" in (inbox.last_error or "")
        # The welcome did not wait for WeCom to catch up.
        assert [c.errcode for c in world.calls(WELCOME)] == [0]

        # Put off after 1, 2, 3 and 4 s: the fifth pass, 10 s on, finds the relation.
        await world.settle()
        [inbox] = world.rows(InboxEvent)
        assert (inbox.status, inbox.attempts) == ("done", 5)
        assert relation(world, WANG, added.external_userid).state == "qr_lobby"
        if known_customer:
            assert relation(world, ZHANG, added.external_userid).status == "active"
        # The retried handler queued the welcome again: the key made it a no-op.
        assert [c.errcode for c in world.calls(WELCOME)] == [0]
        assert len(welcome_rows(world)) == 1


@pytest.mark.parametrize(
    ("state", "line"),
    [
        ("qr_branch_a", BRANCH_LINE),
        ("qr_senior_club", SENIOR_LINE),
        ("link_wechat_article", DEFAULT_LINE),  # no by_state entry: the default template
    ],
)
async def test_welcome_template_is_chosen_by_channel_state(
    world: World, state: str, line: str
) -> None:
    world.script.customer_adds_member(NewCustomer("周杰"), WANG, state=state)
    await world.settle()
    [message] = world.wecom.welcome_messages
    assert line in message.text
    others = {BRANCH_LINE, SENIOR_LINE, DEFAULT_LINE} - {line}
    assert not any(other in message.text for other in others)
    # The manager's name is unknown to the mirror here: the text must still read well.
    assert "客户经理您的客户经理" not in message.text
    assert "我是，" not in message.text


async def test_half_external_contact_is_welcomed_and_mirrored(world: World) -> None:
    added = world.script.customer_adds_member(
        NewCustomer("陈静"), WANG, state="qr_branch_a", verified=False
    )
    await world.settle()
    [message] = world.wecom.welcome_messages
    assert message.code == added.welcome_code
    assert BRANCH_LINE in message.text
    assert [r.status for r in welcome_rows(world)] == ["sent"]
    mirrored = relation(world, WANG, added.external_userid)
    assert (mirrored.status, mirrored.state) == ("active", "qr_branch_a")


async def test_no_welcome_code_means_no_welcome_row(world: World) -> None:
    added = world.script.customer_adds_member(NewCustomer("赵磊"), ZHANG, welcome_code=False)
    await world.settle()
    assert world.outbox() == []
    assert world.calls(WELCOME) == []
    assert relation(world, ZHANG, added.external_userid).status == "active"


async def test_reused_welcome_code_is_final(world: World) -> None:
    added = world.script.customer_adds_member(NewCustomer("孙敏"), ZHANG)
    # The customer wrote first, so WeCom no longer accepts the code (41051).
    world.script.customer_starts_chatting(added.external_userid, ZHANG)
    await world.settle()
    await world.later(30)
    [call] = world.calls(WELCOME)
    assert call.errcode == 41051
    [row] = welcome_rows(world)
    assert (row.status, row.attempts, row.last_errcode) == ("skipped", 1, 41051)
    assert world.wecom.welcome_messages == []
    # The customer is mirrored regardless.
    assert relation(world, ZHANG, added.external_userid).status == "active"


async def test_welcome_in_progress_is_retried_once(world: World) -> None:
    added = world.script.customer_adds_member(NewCustomer("吴霞"), ZHANG)
    world.faults.fail_next(WELCOME, 41096)
    await world.settle()
    await world.later(2)
    assert [c.errcode for c in world.calls(WELCOME)] == [41096, 0]
    [row] = welcome_rows(world)
    assert (row.status, row.attempts) == ("sent", 2)
    [message] = world.wecom.welcome_messages
    assert message.code == added.welcome_code
    assert message.sent_at - world.wecom.welcome_codes[message.code].issued_at <= 20


async def test_welcome_in_progress_twice_gives_up(world: World) -> None:
    world.script.customer_adds_member(NewCustomer("吴霞"), ZHANG)
    world.faults.fail_next(WELCOME, 41096, times=2)
    await world.settle()
    for _ in range(3):
        await world.later(2)
    assert [c.errcode for c in world.calls(WELCOME)] == [41096, 41096]
    [row] = welcome_rows(world)
    assert (row.status, row.attempts, row.last_errcode) == ("dead", 2, 41096)


async def test_welcome_deferred_past_the_window_expires_unsent(world: World) -> None:
    world.script.customer_adds_member(NewCustomer("郭涛"), ZHANG)
    # WeCom throttles the API: the sender waits out the penalty (60 s), past the 20 s window.
    world.faults.fail_next(WELCOME, 45009)
    await world.settle()
    assert [r.status for r in welcome_rows(world)] == ["pending"]
    await world.later(61)
    assert [c.errcode for c in world.calls(WELCOME)] == [45009]
    [row] = welcome_rows(world)
    assert row.status == "expired"
    assert world.wecom.welcome_messages == []
    assert world.wecom.breaches("welcome_code_late") == []


async def test_welcome_for_a_callback_handled_late_is_never_sent(world: World) -> None:
    added = world.script.customer_adds_member(NewCustomer("马超"), ZHANG)
    await world.deliverer.flush()  # stored and acknowledged, but the bot was busy
    world.clock.advance(25)
    await world.bot.drain()
    assert world.calls(WELCOME) == []
    assert [r.status for r in welcome_rows(world)] == ["expired"]
    assert relation(world, ZHANG, added.external_userid).status == "active"


async def test_duplicate_delivery_is_handled_once(world: World) -> None:
    world.deliverer.duplicate_next()
    added = world.script.customer_adds_member(NewCustomer("朱丽"), ZHANG)
    await world.settle()
    assert len(world.deliverer.attempts) == 2
    assert all(a.ok for a in world.deliverer.attempts)
    assert world.count(InboxEvent) == 1
    assert world.bot.gateway.counters.duplicates == 1
    [call] = world.calls(WELCOME)
    assert call.body["welcome_code"] == added.welcome_code
    assert len(welcome_rows(world)) == 1
    assert world.count(FollowRelation) == 1


async def added_customer(world: World, userid: str = ZHANG, name: str = "林芳") -> str:
    ext = world.script.customer_adds_member(NewCustomer(name), userid).external_userid
    await world.settle()
    world.clock.advance(5)
    return ext


async def test_edit_refetches_remark_and_tags(world: World) -> None:
    group = world.wecom.create_tag_group("客户类型")
    payroll = world.wecom.create_tag(group.group_id, "代发工资")
    senior = world.wecom.create_tag(group.group_id, "银发客户")
    ext = await added_customer(world)
    gets = len(world.calls(GET))

    world.script.member_edits_customer(
        ZHANG,
        ext,
        remark="重点客户",
        add_tags=[payroll.tag_id, senior.tag_id],
        remark_mobiles=["10087654321"],
    )
    await world.settle()
    mirrored = relation(world, ZHANG, ext)
    assert (mirrored.remark, mirrored.remark_mobiles) == ("重点客户", ["10087654321"])
    assert tag_ids(world, mirrored) == {payroll.tag_id, senior.tag_id}

    # A second edit in the same second would be byte-identical to the first callback, so
    # the gateway would take it for a retry: a minute passes.
    world.clock.advance(60)
    world.script.member_edits_customer(ZHANG, ext, remove_tags=[payroll.tag_id])
    await world.settle()
    assert tag_ids(world, relation(world, ZHANG, ext)) == {senior.tag_id}
    assert len(world.calls(GET)) == gets + 2


@pytest.mark.parametrize(
    ("source", "reason"), [(None, "deleted_by_member"), ("DELETE_BY_TRANSFER", "transferred")]
)
async def test_member_deleting_customer_ends_relation_and_keeps_it(
    world: World, source: str | None, reason: str
) -> None:
    ext = await added_customer(world)
    world.script.member_deletes_customer(ZHANG, ext, source=source)
    deleted_at = world.wecom.now()
    await world.settle()
    ended = relation(world, ZHANG, ext)
    assert (ended.status, ended.ended_reason) == ("ended", reason)
    assert ended.ended_at is not None
    assert ended.ended_at.timestamp() == deleted_at  # the event's time, not the handler's
    assert ended.state == "qr_branch_a"  # history kept
    assert world.count(Customer) == 1


async def test_customer_deleting_member_ends_relation_and_sync_does_not_revive_it(
    world: World,
) -> None:
    group = world.wecom.create_tag_group("资产等级")
    tag = world.wecom.create_tag(group.group_id, "10万+")
    ext = await added_customer(world)
    world.script.member_edits_customer(ZHANG, ext, add_tags=[tag.tag_id])
    await world.settle()
    world.script.customer_deletes_member(ext, ZHANG)
    await world.settle()
    ended = relation(world, ZHANG, ext)
    assert (ended.status, ended.ended_reason) == ("ended", "deleted_by_customer")
    assert tag_ids(world, ended) == {tag.tag_id}

    # WeCom still lists the customer for the member, in a full sync and in a re-fetch.
    world.clock.advance(60)
    report = await run_sync(world.bot)
    assert report.relations == 1
    world.script.member_edits_customer(ZHANG, ext, remark="已删除我")
    await world.settle()
    still = relation(world, ZHANG, ext)
    assert (still.status, still.ended_reason, still.remark) == (
        "ended",
        "deleted_by_customer",
        "已删除我",
    )

    # Adding the member again is a new relation: it is active once more.
    world.clock.advance(60)
    world.script.customer_adds_member(ext, ZHANG, state="qr_lobby")
    await world.settle()
    again = relation(world, ZHANG, ext)
    assert (again.status, again.ended_reason, again.state) == ("active", None, "qr_lobby")


async def test_customer_deletion_before_the_first_sync_is_not_undone_by_it(world: World) -> None:
    # The relation predates the bot: the mirror first hears of it as a deletion.
    ext = world.wecom.add_customer("老客户").external_userid
    world.wecom.add_follow(ZHANG, ext, state="qr_lobby", at=world.clock.timestamp() - 86400)
    world.script.customer_deletes_member(ext, ZHANG)
    await world.settle()
    assert relation(world, ZHANG, ext).status == "ended"

    world.clock.advance(60)
    report = await run_sync(world.bot)
    assert report.relations == 1  # WeCom still lists the customer for ZhangLi
    synced = relation(world, ZHANG, ext)
    assert (synced.status, synced.ended_reason) == ("ended", "deleted_by_customer")
    assert synced.state == "qr_lobby"  # the sync filled in the detail
    [customer] = world.rows(Customer)
    assert customer.name == "老客户"


async def test_edit_then_delete_before_the_bot_reads(world: World) -> None:
    ext = await added_customer(world)
    world.script.member_edits_customer(ZHANG, ext, remark="马上删除")
    world.clock.advance(1)
    world.script.member_deletes_customer(ZHANG, ext)
    # By the time the edit is handled WeCom answers 84061: nothing to re-read, no retries.
    await world.settle()
    assert [c.errcode for c in world.calls(GET)][-1:] == [84061]
    statuses = world.q(lambda s: s.scalars(select(InboxEvent.status).order_by(InboxEvent.id)).all())
    assert statuses == ["done", "done", "done"]
    ended = relation(world, ZHANG, ext)
    assert (ended.status, ended.ended_reason) == ("ended", "deleted_by_member")


async def test_del_follow_user_leaves_other_followers_alone(world: World) -> None:
    ext = await added_customer(world)
    world.script.customer_adds_member(ext, WANG)
    await world.settle()
    world.script.customer_deletes_member(ext, ZHANG)
    await world.settle()
    assert relation(world, ZHANG, ext).status == "ended"
    assert relation(world, WANG, ext).status == "active"


async def test_transfer_fail_is_recorded(world: World) -> None:
    ext = await added_customer(world)
    world.script.transfer_fails(WANG, ext, "customer_refused")
    await world.settle()
    [inbox] = world.rows(InboxEvent)[-1:]
    assert inbox.status == "done"
    # The customer stays with ZhangLi; WangJianhua never got them.
    assert relation(world, ZHANG, ext).status == "active"
    attempted = relation(world, WANG, ext)
    assert attempted.transfer_fail_reason == "customer_refused"
    assert attempted.status != "active"
