"""Customer moments: add_moment_task limits and errcodes, the asynchronous job, cancel, and
media/upload_attachment."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from bot.clock import FrozenClock
from bot.sandbox import Sandbox
from tests.sandbox.conftest import WeCom

PNG = b"\x89PNG" + b"0" * 100
MP4 = b"\x00\x00\x00\x18ftypmp42" + b"0" * 100

Json = dict[str, Any]


async def upload_attachment(
    wecom: WeCom,
    filename: str,
    data: bytes,
    media_type: str = "image",
    attachment_type: str = "1",
) -> Json:
    response = await wecom.client.post(
        "/cgi-bin/media/upload_attachment",
        params={
            "access_token": wecom.token,
            "media_type": media_type,
            "attachment_type": attachment_type,
        },
        files={"media": (filename, data, "application/octet-stream")},
    )
    return dict(response.json())


async def upload_media(wecom: WeCom, filename: str, data: bytes) -> Json:
    response = await wecom.client.post(
        "/cgi-bin/media/upload",
        params={"access_token": wecom.token, "type": "image"},
        files={"media": (filename, data, "application/octet-stream")},
    )
    return dict(response.json())


class Media:
    """Media ids the parametrised cases build bodies from."""

    def __init__(self, image: str, video: str, plain: str) -> None:
        self.image = image
        self.video = video
        self.plain = plain  # from media/upload, not upload_attachment


@pytest.fixture
async def media(wecom: WeCom) -> Media:
    image = await upload_attachment(wecom, "cover.png", PNG)
    video = await upload_attachment(wecom, "clip.mp4", MP4, media_type="video")
    plain = await upload_media(wecom, "poster.png", PNG)
    return Media(image["media_id"], video["media_id"], plain["media_id"])


def senders(*userids: str) -> Json:
    return {"sender_list": {"user_list": list(userids)}}


def moment(text: str = "周五理财沙龙，欢迎预约", **extra: Any) -> Json:
    return {"text": {"content": text}, "visible_range": senders("ZhangLi"), **extra}


def image(media_id: str) -> Json:
    return {"msgtype": "image", "image": {"media_id": media_id}}


def video(media_id: str) -> Json:
    return {"msgtype": "video", "video": {"media_id": media_id}}


def link(media_id: str | None, **fields: Any) -> Json:
    body: Json = {"title": "本周活动", "url": "https://example.com/h5/salon", **fields}
    if media_id is not None:
        body["media_id"] = media_id
    return {"msgtype": "link", "link": body}


async def result(wecom: WeCom, jobid: str) -> Json:
    return await wecom.get("externalcontact/get_moment_task_result", jobid=jobid)


async def test_the_job_reports_started_running_then_done(
    wecom: WeCom, sandbox: Sandbox, clock: FrozenClock, media: Media
) -> None:
    world = sandbox.world
    group = world.create_tag_group("客户等级")
    gold = world.create_tag(group.group_id, "金卡")
    body = moment(
        attachments=[image(media.image), image(media.image)],
        visible_range={
            "sender_list": {"user_list": ["ZhangLi", "WangJianhua", "nobody", "LiuYang"]},
            "external_contact_list": {"tag_list": [gold.tag_id, "etmissing"]},
        },
    )
    answer = await wecom.post("externalcontact/add_moment_task", body)
    assert answer["errcode"] == 0, answer
    jobid = answer["jobid"]
    assert set(answer) == {"errcode", "errmsg", "jobid"}

    started = await result(wecom, jobid)
    assert started == {"errcode": 0, "errmsg": "ok", "status": 1, "type": "add_moment_task"}
    clock.advance(1)
    assert (await result(wecom, jobid))["status"] == 2
    clock.advance(2)
    done = await result(wecom, jobid)
    assert done["status"] == 3
    outcome = done["result"]
    moment_id = outcome.pop("moment_id")
    assert moment_id.startswith("mom")
    # LiuYang has customer contact switched off; "nobody" does not exist.
    assert outcome == {
        "errcode": 0,
        "errmsg": "ok",
        "invalid_sender_list": {"user_list": ["nobody", "LiuYang"]},
        "invalid_external_contact_list": {"tag_list": ["etmissing"]},
    }
    stored = world.moments[moment_id]
    assert (stored.senders, stored.tag_ids) == (["ZhangLi", "WangJianhua"], [gold.tag_id])
    assert stored.text == "周五理财沙龙，欢迎预约"
    assert len(stored.attachments) == 2


async def test_members_publish_and_cancel_stops_the_rest(
    wecom: WeCom, sandbox: Sandbox, clock: FrozenClock
) -> None:
    body = moment(visible_range=senders("ZhangLi", "WangJianhua"))
    jobid = (await wecom.post("externalcontact/add_moment_task", body))["jobid"]
    (moment_id,) = sandbox.world.moments
    with pytest.raises(ValueError, match="not done"):
        sandbox.script.member_publishes_moment(moment_id, "ZhangLi")
    # Until the job is done the moment's id is unknown, so it cannot be cancelled either.
    early = await wecom.post("externalcontact/cancel_moment_task", {"moment_id": moment_id})
    assert early["errcode"] == 40058
    clock.advance(3)
    assert (await result(wecom, jobid))["result"]["moment_id"] == moment_id
    published = sandbox.script.member_publishes_moment(moment_id, "ZhangLi")
    assert published == int(clock.timestamp())
    answer = await wecom.post("externalcontact/cancel_moment_task", {"moment_id": moment_id})
    assert answer["errcode"] == 0
    assert sandbox.world.moments[moment_id].cancelled
    with pytest.raises(ValueError, match="cancelled"):
        sandbox.script.member_publishes_moment(moment_id, "WangJianhua")
    assert sandbox.world.moments[moment_id].published == {"ZhangLi": published}


Body = Callable[[Media], Json]

LIMIT_CASES: list[tuple[str, Body, int]] = [
    ("2,001 characters", lambda m: moment("a" * 2001), 45002),
    ("4,002 bytes", lambda m: moment("字" * 1334), 45002),
    ("10 images", lambda m: moment(attachments=[image(m.image)] * 10), 40058),
    ("2 videos", lambda m: moment(attachments=[video(m.video)] * 2), 40058),
    ("2 links", lambda m: moment(attachments=[link(m.image)] * 2), 40058),
    ("image and link", lambda m: moment(attachments=[image(m.image), link(m.image)]), 40058),
    ("file attachment", lambda m: moment(attachments=[{"msgtype": "file", "file": {}}]), 40008),
    ("link without cover", lambda m: moment(attachments=[link(None)]), 40007),
    (
        "link with a picture URL for cover",
        lambda m: moment(attachments=[link(None, picurl="https://example.com/c.png")]),
        40007,
    ),
    ("link without url", lambda m: moment(attachments=[link(m.image, url="")]), 40058),
    (
        "link title of 65 bytes",
        lambda m: moment(attachments=[link(m.image, title="a" * 65)]),
        40058,
    ),
    ("media/upload media id", lambda m: moment(attachments=[image(m.plain)]), 40007),
    ("video media id as an image", lambda m: moment(attachments=[image(m.video)]), 40007),
    ("image media id as a video", lambda m: moment(attachments=[video(m.image)]), 40007),
    ("nothing to post", lambda m: moment(""), 44004),
    (
        "100,001 senders",
        lambda m: moment(visible_range=senders(*(f"u{i}" for i in range(100_001)))),
        40058,
    ),
    ("attachments not a list", lambda m: moment(attachments={"msgtype": "image"}), 40058),
]


@pytest.mark.parametrize(
    ("body", "errcode"), [c[1:] for c in LIMIT_CASES], ids=[c[0] for c in LIMIT_CASES]
)
async def test_add_moment_task_limits(
    wecom: WeCom, sandbox: Sandbox, media: Media, body: Body, errcode: int
) -> None:
    answer = await wecom.post("externalcontact/add_moment_task", body(media))
    assert answer["errcode"] == errcode, answer["errmsg"]
    assert "jobid" not in answer
    assert sandbox.world.moment_jobs == {}


async def test_limits_are_exact(wecom: WeCom, sandbox: Sandbox, media: Media) -> None:
    bodies = [
        moment("a" * 2000),
        # 1333 CJK characters and one letter are exactly 4000 bytes.
        moment("字" * 1333 + "a", attachments=[image(media.image)] * 9),
        moment("", attachments=[video(media.video)]),
        moment("", attachments=[link(media.image, title="a" * 64)]),
        moment(visible_range=senders(*(["ZhangLi"] * 100_000))),
    ]
    for body in bodies:
        answer = await wecom.post("externalcontact/add_moment_task", body)
        assert answer["errcode"] == 0, answer["errmsg"]
    assert len(sandbox.world.moment_jobs) == len(bodies)


async def test_text_messages_name_the_problem(wecom: WeCom, media: Media) -> None:
    too_long = await wecom.post("externalcontact/add_moment_task", moment("a" * 2001))
    assert "invalid text size" in too_long["errmsg"]
    mixed = moment(attachments=[image(media.image), video(media.video)])
    assert (
        "invalid attachments msgtype"
        in (await wecom.post("externalcontact/add_moment_task", mixed))["errmsg"]
    )
    many = moment(attachments=[image(media.image)] * 10)
    assert (
        "invalid attachments size"
        in (await wecom.post("externalcontact/add_moment_task", many))["errmsg"]
    )


async def test_jobs_that_cannot_publish_fail_in_their_result(
    wecom: WeCom, sandbox: Sandbox, clock: FrozenClock
) -> None:
    no_one = moment(visible_range=senders("nobody", "LiuYang"))
    no_tag = moment(
        visible_range={
            "sender_list": {"user_list": ["ZhangLi"]},
            "external_contact_list": {"tag_list": ["etgone"]},
        }
    )
    first = (await wecom.post("externalcontact/add_moment_task", no_one))["jobid"]
    second = (await wecom.post("externalcontact/add_moment_task", no_tag))["jobid"]
    clock.advance(3)
    failed = (await result(wecom, first))["result"]
    assert failed["errcode"] == 40003
    assert "moment_id" not in failed
    assert failed["invalid_sender_list"] == {"user_list": ["nobody", "LiuYang"]}
    untagged = (await result(wecom, second))["result"]
    assert untagged["errcode"] == 40068
    assert untagged["invalid_external_contact_list"] == {"tag_list": ["etgone"]}
    assert sandbox.world.moments == {}


async def test_without_sender_list_every_member_in_scope_is_asked(
    wecom: WeCom, sandbox: Sandbox, clock: FrozenClock
) -> None:
    sandbox.world.add_member("Hidden", "隐藏", visible=False)
    answer = await wecom.post("externalcontact/add_moment_task", {"text": {"content": "早安"}})
    clock.advance(3)
    outcome = (await result(wecom, answer["jobid"]))["result"]
    assert outcome["invalid_sender_list"] == {"user_list": ["LiuYang"]}
    assert sandbox.world.moments[outcome["moment_id"]].senders == ["ZhangLi", "WangJianhua"]


async def test_deleted_tags_and_departments_are_reported(
    wecom: WeCom, sandbox: Sandbox, clock: FrozenClock
) -> None:
    world = sandbox.world
    group = world.create_tag_group("客户等级")
    kept = world.create_tag(group.group_id, "金卡")
    gone = world.create_tag(group.group_id, "银卡")
    world.delete_tag(gone.tag_id)
    body = moment(
        visible_range={
            "sender_list": {"user_list": ["ZhangLi"], "department_list": [7]},
            "external_contact_list": {"tag_list": [kept.tag_id, gone.tag_id, group.group_id]},
        }
    )
    jobid = (await wecom.post("externalcontact/add_moment_task", body))["jobid"]
    clock.advance(3)
    outcome = (await result(wecom, jobid))["result"]
    assert outcome["errcode"] == 0
    assert outcome["invalid_sender_list"] == {"department_list": [7]}
    assert outcome["invalid_external_contact_list"] == {"tag_list": [gone.tag_id, group.group_id]}
    assert world.moments[outcome["moment_id"]].tag_ids == [kept.tag_id]


async def test_task_result_and_cancel_errors(wecom: WeCom) -> None:
    assert (await wecom.get("externalcontact/get_moment_task_result"))["errcode"] == 40058
    assert (await result(wecom, "jobnope"))["errcode"] == 40058
    posted = await wecom.post("externalcontact/get_moment_task_result", {"jobid": "x"})
    assert posted["errcode"] == 43001
    assert (await wecom.post("externalcontact/cancel_moment_task", {}))["errcode"] == 40058
    unknown = await wecom.post("externalcontact/cancel_moment_task", {"moment_id": "momx"})
    assert unknown["errcode"] == 40058


async def test_attachment_media_expires_after_three_days(
    wecom: WeCom, clock: FrozenClock, media: Media
) -> None:
    body = moment(attachments=[image(media.image)])
    assert (await wecom.post("externalcontact/add_moment_task", body))["errcode"] == 0
    clock.advance(3 * 86400)
    await wecom.login()
    assert (await wecom.post("externalcontact/add_moment_task", body))["errcode"] == 40007


async def test_upload_attachment(wecom: WeCom, sandbox: Sandbox, clock: FrozenClock) -> None:
    answer = await upload_attachment(wecom, "cover.png", PNG)
    assert answer["errcode"] == 0
    assert answer["type"] == "image"
    assert answer["created_at"] == str(int(clock.timestamp()))
    stored = sandbox.world.attachment_media[answer["media_id"]]
    assert (stored.attachment_type, stored.size) == (1, len(PNG))
    # A moments attachment is not a media/upload media id.
    assert answer["media_id"] not in sandbox.world.media
    (call,) = sandbox.world.calls("media/upload_attachment")
    assert call.body == {"files": [{"name": "media", "filename": "cover.png", "size": len(PNG)}]}


@pytest.mark.parametrize(
    ("filename", "data", "media_type", "attachment_type", "errcode"),
    [
        ("clip.mp4", MP4, "video", "1", 0),
        ("album.jpg", PNG, "image", "2", 0),
        ("clip.mp4", MP4, "video", "2", 40005),
        ("report.pdf", b"%PDF-1.7", "file", "1", 40005),
        ("voice.amr", b"#!AMR" * 4, "voice", "1", 40005),
        ("x.png", PNG, "sticker", "1", 40005),
        ("cover.png", PNG, "image", "3", 40058),
        ("cover.png", PNG, "image", "", 40058),
        ("virus.exe", b"MZ" * 10, "image", "1", 40004),
        ("tiny.png", b"1234", "image", "1", 40006),
    ],
)
async def test_upload_attachment_errors(
    wecom: WeCom, filename: str, data: bytes, media_type: str, attachment_type: str, errcode: int
) -> None:
    answer = await upload_attachment(wecom, filename, data, media_type, attachment_type)
    assert answer["errcode"] == errcode, answer["errmsg"]


async def test_a_lost_answer_still_creates_the_job(wecom: WeCom, sandbox: Sandbox) -> None:
    sandbox.world.faults.timeout_next("externalcontact/add_moment_task", after_effect=True)
    with pytest.raises(httpx.ReadTimeout):
        await wecom.post("externalcontact/add_moment_task", moment())
    assert len(sandbox.world.moment_jobs) == 1
    sandbox.world.faults.timeout_next("externalcontact/add_moment_task", after_effect=False)
    with pytest.raises(httpx.ReadTimeout):
        await wecom.post("externalcontact/add_moment_task", moment())
    assert len(sandbox.world.moment_jobs) == 1
