"""`client.moment` and `client.media.upload_attachment` against the sandbox."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from pydantic import SecretStr

from bot.clock import FrozenClock
from bot.config import WeComConfig
from bot.sandbox import Sandbox
from bot.store.db import Database
from bot.wecom import InvalidRequest, OutcomeUnknown, RequestRejected, WeComClient
from bot.wecom.moment_models import (
    MOMENT_JOB_DONE,
    MomentLink,
    MomentLinkAttachment,
    MomentTaskResult,
)
from tests.sandbox.conftest import make_sandbox

PNG = b"\x89PNG" + b"0" * 100
MP4 = b"\x00\x00\x00\x18ftypmp42" + b"0" * 100
ADD = "externalcontact/add_moment_task"


@pytest.fixture
def sandbox(clock: FrozenClock) -> Sandbox:
    return make_sandbox(clock)


@pytest.fixture
async def client(
    sandbox: Sandbox, sqlite_db: Database, clock: FrozenClock
) -> AsyncIterator[WeComClient]:
    world = sandbox.world
    config = WeComConfig(
        corp_id=world.corp_id,
        agent_id=world.agent_id,
        secret=SecretStr(world.secret),
        api_base="http://sandbox/cgi-bin",
    )
    async with WeComClient(
        config,
        db=sqlite_db,
        clock=clock,
        transport=sandbox.api_transport(),
        rng=random.Random(7),
    ) as made:
        yield made


async def wait_done(client: WeComClient, jobid: str) -> tuple[MomentTaskResult, list[int]]:
    """Poll the job the way a caller would, sleeping on the client's clock."""
    seen: list[int] = []
    for _ in range(10):
        result = await client.moment.get_moment_task_result(jobid)
        seen.append(result.status)
        if result.done:
            return result, seen
        await client.clock.sleep(1)
    raise AssertionError(f"job {jobid} never finished: {seen}")


async def test_a_link_moment_from_upload_to_cancel(client: WeComClient, sandbox: Sandbox) -> None:
    world = sandbox.world
    group = world.create_tag_group("客户等级")
    gold = world.create_tag(group.group_id, "金卡")
    cover = await client.media.upload_attachment("image", PNG, filename="cover.png")
    assert cover.type == "image"
    assert world.attachment_media[cover.media_id].attachment_type == 1

    created = await client.moment.add_moment_task(
        text="本周理财沙龙",
        attachments=[
            MomentLinkAttachment(
                link=MomentLink(
                    title="理财沙龙", url="https://example.com/h5/salon", media_id=cover.media_id
                )
            )
        ],
        visible_range={
            "sender_list": {"user_list": ["ZhangLi", "nobody"]},
            "external_contact_list": {"tag_list": [gold.tag_id, "etgone"]},
        },
    )
    (call,) = world.calls(ADD)
    assert call.body == {
        "text": {"content": "本周理财沙龙"},
        "attachments": [
            {
                "msgtype": "link",
                "link": {
                    "title": "理财沙龙",
                    "url": "https://example.com/h5/salon",
                    "media_id": cover.media_id,
                },
            }
        ],
        "visible_range": {
            "sender_list": {"user_list": ["ZhangLi", "nobody"]},
            "external_contact_list": {"tag_list": [gold.tag_id, "etgone"]},
        },
    }

    result, statuses = await wait_done(client, created.jobid)
    assert statuses == [1, 2, 2, MOMENT_JOB_DONE]
    assert result.type == "add_moment_task"
    outcome = result.result
    assert outcome is not None
    assert outcome.errcode == 0
    assert outcome.invalid_sender_list.user_list == ["nobody"]
    assert outcome.invalid_sender_list.department_list == []
    assert outcome.invalid_external_contact_list.tag_list == ["etgone"]
    moment = world.moments[outcome.moment_id]
    assert (moment.senders, moment.tag_ids) == (["ZhangLi"], [gold.tag_id])

    await client.moment.cancel_moment_task(outcome.moment_id)
    assert moment.cancelled


async def test_unfinished_job_has_no_result(client: WeComClient) -> None:
    created = await client.moment.add_moment_task(
        text="早安", visible_range={"sender_list": {"user_list": ["ZhangLi"]}}
    )
    result = await client.moment.get_moment_task_result(created.jobid)
    assert (result.status, result.done, result.result) == (1, False, None)


async def test_failed_job_reports_its_errcode(client: WeComClient, clock: FrozenClock) -> None:
    created = await client.moment.add_moment_task(
        text="早安", visible_range={"sender_list": {"user_list": ["nobody"]}}
    )
    clock.advance(3)
    result = await client.moment.get_moment_task_result(created.jobid)
    assert result.result is not None
    assert (result.result.errcode, result.result.moment_id) == (40003, "")


async def test_images_and_video(client: WeComClient, sandbox: Sandbox) -> None:
    image = await client.media.upload_attachment("image", PNG, filename="a.png")
    clip = await client.media.upload_attachment("video", MP4, filename="a.mp4")
    visible = {"sender_list": {"user_list": ["ZhangLi"]}}
    await client.moment.add_moment_task(
        attachments=[{"msgtype": "image", "image": {"media_id": image.media_id}}] * 9,
        visible_range=visible,
    )
    await client.moment.add_moment_task(
        attachments=[{"msgtype": "video", "video": {"media_id": clip.media_id}}],
        visible_range=visible,
    )
    assert len(sandbox.world.moment_jobs) == 2


VISIBLE = {"sender_list": {"user_list": ["ZhangLi"]}}
IMAGE = {"msgtype": "image", "image": {"media_id": "M"}}
VIDEO = {"msgtype": "video", "video": {"media_id": "V"}}
LINK = {"msgtype": "link", "link": {"title": "t", "url": "https://x", "media_id": "M"}}

Call = Callable[[WeComClient], Awaitable[Any]]

REFUSED: list[tuple[str, Call, str]] = [
    (
        "2,001 characters",
        lambda c: c.moment.add_moment_task(text="a" * 2001, visible_range=VISIBLE),
        "2001 characters",
    ),
    (
        "4,002 bytes",
        lambda c: c.moment.add_moment_task(text="字" * 1334, visible_range=VISIBLE),
        "4002 bytes",
    ),
    (
        "nothing to post",
        lambda c: c.moment.add_moment_task(text="", visible_range=VISIBLE),
        "text or at least one attachment",
    ),
    (
        "10 images",
        lambda c: c.moment.add_moment_task(attachments=[IMAGE] * 10, visible_range=VISIBLE),
        "at most 9 images",
    ),
    (
        "two videos",
        lambda c: c.moment.add_moment_task(attachments=[VIDEO] * 2, visible_range=VISIBLE),
        "at most one video",
    ),
    (
        "image and link",
        lambda c: c.moment.add_moment_task(attachments=[IMAGE, LINK], visible_range=VISIBLE),
        "all images, one video or one link",
    ),
    (
        "link without a cover",
        lambda c: c.moment.add_moment_task(
            attachments=[{"msgtype": "link", "link": {"title": "t", "url": "https://x"}}],
            visible_range=VISIBLE,
        ),
        "media_id",
    ),
    (
        "mass-send link shape",
        lambda c: c.moment.add_moment_task(
            attachments=[
                {"msgtype": "link", "link": {"url": "https://x", "media_id": "M", "picurl": "p"}}
            ],
            visible_range=VISIBLE,
        ),
        "picurl",
    ),
    (
        "link title over 64 bytes",
        lambda c: c.moment.add_moment_task(
            attachments=[
                {"msgtype": "link", "link": {"title": "标" * 22, "url": "u", "media_id": "M"}}
            ],
            visible_range=VISIBLE,
        ),
        "66 bytes",
    ),
    (
        "miniprogram",
        lambda c: c.moment.add_moment_task(
            attachments=[{"msgtype": "miniprogram", "miniprogram": {}}], visible_range=VISIBLE
        ),
        "attachments.0",
    ),
    (
        "no sender_list",
        lambda c: c.moment.add_moment_task(text="hi", visible_range={}),
        "sender_list is required",
    ),
    (
        "empty sender_list",
        lambda c: c.moment.add_moment_task(
            text="hi", visible_range={"sender_list": {"user_list": []}}
        ),
        "both empty",
    ),
    (
        "100,001 senders",
        lambda c: c.moment.add_moment_task(
            text="hi",
            visible_range={"sender_list": {"user_list": [f"u{i}" for i in range(100_001)]}},
        ),
        "at most 100000 items",
    ),
    (
        "empty tag_list",
        lambda c: c.moment.add_moment_task(
            text="hi", visible_range={**VISIBLE, "external_contact_list": {"tag_list": []}}
        ),
        "tag_list",
    ),
    ("empty jobid", lambda c: c.moment.get_moment_task_result(""), "jobid"),
    ("empty moment_id", lambda c: c.moment.cancel_moment_task(""), "moment_id"),
    (
        "a file for moments",
        lambda c: c.media.upload_attachment("file", b"%PDF-1.7", filename="a.pdf"),  # type: ignore[arg-type]
        "attachment_type 1 takes image, video",
    ),
    (
        "a video for product albums",
        lambda c: c.media.upload_attachment("video", MP4, filename="a.mp4", attachment_type=2),
        "attachment_type 2 takes image",
    ),
    (
        "a 4-byte image",
        lambda c: c.media.upload_attachment("image", b"1234", filename="a.png"),
        "4 bytes",
    ),
    (
        "no filename",
        lambda c: c.media.upload_attachment("image", PNG, filename=""),
        "filename",
    ),
]


@pytest.mark.parametrize(("call", "message"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
async def test_refused_before_sending(
    client: WeComClient, sandbox: Sandbox, call: Call, message: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await call(client)
    assert message in caught.value.errmsg
    paths = {c.path for c in sandbox.world.calls()}
    assert paths <= {"gettoken"}


async def test_a_timeout_on_creation_is_an_unknown_outcome(
    client: WeComClient, sandbox: Sandbox
) -> None:
    world = sandbox.world
    world.faults.timeout_next(ADD, after_effect=True)
    with pytest.raises(OutcomeUnknown):
        await client.moment.add_moment_task(text="早安", visible_range=VISIBLE)
    # Not retried by the client, although the job exists.
    assert len(world.calls(ADD)) == 1
    assert len(world.moment_jobs) == 1


async def test_reading_the_result_is_retried_after_a_timeout(
    client: WeComClient, sandbox: Sandbox
) -> None:
    created = await client.moment.add_moment_task(text="早安", visible_range=VISIBLE)
    path = "externalcontact/get_moment_task_result"
    sandbox.world.faults.timeout_next(path, after_effect=False)
    result = await client.moment.get_moment_task_result(created.jobid)
    assert result.status == 1
    assert len(sandbox.world.calls(path)) == 2


async def test_wecom_errors_surface(client: WeComClient) -> None:
    with pytest.raises(RequestRejected) as unknown_job:
        await client.moment.get_moment_task_result("jobnope")
    assert unknown_job.value.errcode == 40058
    with pytest.raises(RequestRejected) as stale_media:
        await client.moment.add_moment_task(attachments=[IMAGE], visible_range=VISIBLE)
    assert stale_media.value.errcode == 40007


async def test_members_publish_status_is_paged(client: WeComClient, sandbox: Sandbox) -> None:
    senders = ["ZhangLi", "WangJianhua"]
    created = await client.moment.add_moment_task(
        text="早安", visible_range={"sender_list": {"user_list": senders}}
    )
    result, _ = await wait_done(client, created.jobid)
    assert result.result is not None
    moment_id = result.result.moment_id
    sandbox.script.member_publishes_moment(moment_id, "ZhangLi")

    first = await client.moment.get_moment_task(moment_id, limit=1)
    assert [(t.userid, t.published) for t in first.task_list] == [("WangJianhua", False)]
    assert first.next_cursor
    second = await client.moment.get_moment_task(moment_id, cursor=first.next_cursor, limit=1)
    assert [(t.userid, t.publish_status) for t in second.task_list] == [("ZhangLi", 1)]
    assert second.next_cursor == ""

    with pytest.raises(RequestRejected):
        await client.moment.get_moment_task("momnope")
    with pytest.raises(InvalidRequest):
        await client.moment.get_moment_task(moment_id, limit=1001)
