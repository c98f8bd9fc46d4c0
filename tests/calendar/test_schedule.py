"""Calendar files: the default calendar, and every validation rule reported as file:line."""

from __future__ import annotations

import textwrap
from datetime import date, time, timedelta
from pathlib import Path

import pytest

from bot.calendar.schedule import Attachment, Calendar, CalendarError, load_calendar

ROOT = Path(__file__).resolve().parents[2]

SLOT = """\
name: 测试日历
slots:
  - id: mon-brief
    theme: 周一早班车
    days: [mon]
    time: "09:30"
    channel: group
    template: calendar/a.md.j2
"""


def write(folder: Path, text: str, name: str = "cal.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def line(path: Path, needle: str, occurrence: int = 1) -> int:
    """1-based line of the `occurrence`-th line of `path` containing `needle`."""
    hits = [i for i, text in enumerate(path.read_text("utf-8").splitlines(), 1) if needle in text]
    return hits[occurrence - 1]


def problems(folder: Path, content_root: Path | None = None) -> list[str]:
    with pytest.raises(CalendarError) as info:
        load_calendar(folder, content_root)
    assert str(info.value).startswith("invalid calendar:")
    return info.value.problems


def only_problem(folder: Path, content_root: Path | None = None) -> str:
    found = problems(folder, content_root)
    assert len(found) == 1, found
    return found[0]


def only_problem_at(folder: Path, text: str, needle: str, message: str) -> None:
    """`text` as the folder's calendar has one problem, naming the line holding `needle`."""
    path = write(folder, text)
    found = only_problem(folder)
    assert found.startswith(f"{path}:{line(path, needle)}: "), found
    assert message in found


def image_attachments(n: int) -> str:
    return "    attachments:\n" + "".join(
        f"      - image: {{url: 'https://a/{i}.png'}}\n" for i in range(n)
    )


# -- the default calendar ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def default() -> Calendar:
    return load_calendar(ROOT / "schedules")


EXPECTED = {
    # id: (days, time, channel, template, holiday policy, priority)
    "mon-wealth-brief": (frozenset({0}), "09:30", "group", "mon_wealth_brief", "next_workday", 20),
    "mon-wealth-vip": (frozenset({0}), "10:00", "single", "mon_wealth_vip", "next_workday", 20),
    "tue-prepurchase": (frozenset({1}), "10:00", "group", "tue_prepurchase", "skip", 10),
    "wed-half-off": (frozenset({2}), "10:00", "group", "wed_half_off", "skip", 10),
    "wed-payroll-steady": (
        frozenset({2}),
        "12:10",
        "single",
        "wed_payroll_steady",
        "next_workday",
        10,
    ),
    "thu-joint-rights": (frozenset({3}), "10:00", "group", "thu_joint_rights", "variant", 10),
    "thu-moments": (frozenset({3}), "20:00", "moments", "thu_moments", "skip", 10),
    "fri-movie": (frozenset({4}), "11:00", "group", "fri_movie", "variant", 10),
    "sat-family": (frozenset({5}), "10:00", "group", "sat_family", "variant", 10),
    "sun-senior": (frozenset({6}), "09:30", "single", "sun_senior", "variant", 10),
    "sun-senior-group": (frozenset({6}), "15:00", "group", "sun_senior_group", "variant", 10),
}


def test_default_calendar_slots_are_as_documented(default: Calendar) -> None:
    assert default.names == ("本支行社群日历",)
    assert [s.id for s in default.slots] == list(EXPECTED)
    for slot in default.slots:
        days, hhmm, channel, template, policy, priority = EXPECTED[slot.id]
        assert slot.days == days, slot.id
        assert slot.time.strftime("%H:%M") == hhmm, slot.id
        assert slot.channel == channel, slot.id
        assert slot.template == f"calendar/{template}.md.j2", slot.id
        assert slot.holiday == policy, slot.id
        assert slot.priority == priority, slot.id
        assert slot.source.startswith(str(ROOT / "schedules" / "default.yaml") + ":")


def test_default_calendar_targets(default: Calendar) -> None:
    by_id = {s.id: s for s in default.slots}
    assert by_id["mon-wealth-brief"].groups == 'segment("理财交流群")'
    assert by_id["mon-wealth-vip"].audience == 'tag("资产50万+")'
    assert by_id["wed-payroll-steady"].audience == 'tag("代发客户") and not tag("资产50万+")'
    assert by_id["thu-moments"].tags == ("代发客户",)
    assert by_id["sat-family"].groups == 'not segment("银发群")'
    assert by_id["sun-senior"].audience == 'tag("老年客户")'
    assert by_id["sun-senior"].window_policy == "defer"
    assert by_id["sun-senior-group"].groups == 'segment("银发群")'
    for all_groups in ("tue-prepurchase", "wed-half-off", "thu-joint-rights", "fri-movie"):
        assert by_id[all_groups].groups is None
    for variant in ("thu-joint-rights", "fri-movie"):
        assert by_id[variant].holiday_template == "calendar/holiday_greeting.md.j2"
    for linked in ("tue-prepurchase", "thu-joint-rights"):
        (attachment,) = by_id[linked].attachments
        assert attachment.kind == "link"
        assert attachment.to_wecom()["link"]["url"].startswith("https://")


def test_default_calendar_override(default: Calendar) -> None:
    (override,) = default.overrides
    assert override.name == "年终理财节"
    assert (override.start, override.end) == (date(2026, 12, 21), date(2026, 12, 27))
    assert override.mode == "add"
    assert override.skip == {"wed-half-off"}
    (slot,) = override.slots
    assert slot.id == "campaign-year-end"
    assert slot.days is None  # every day of the range
    assert slot.time == time(10, 30)
    assert slot.channel == "group"
    assert slot.groups == 'segment("理财交流群")'
    assert slot.template == "calendar/campaign_year_end.md.j2"
    assert slot.override == "年终理财节"
    assert default.slot("campaign-year-end") is slot


def test_default_calendar_templates_exist_in_content() -> None:
    calendar = load_calendar(ROOT / "schedules", ROOT / "content")
    assert len(calendar.all_slots()) == 12


def test_lateness_default_comes_from_the_loader(tmp_path: Path) -> None:
    write(tmp_path, SLOT)
    assert load_calendar(tmp_path).default_lateness == timedelta(minutes=120)
    assert load_calendar(tmp_path, lateness_minutes=30).default_lateness == timedelta(minutes=30)


# -- attachments ------------------------------------------------------------------------------


def test_attachments_to_wecom(tmp_path: Path) -> None:
    write(
        tmp_path,
        SLOT
        + """\
    attachments:
      - link: {title: 标题, description: 说明, url: "https://a.example/x", cover: "https://a.example/c.jpg"}
      - link: {title: 只有标题, url: "https://a.example/y"}
      - image: {url: "https://a.example/i.png"}
      - miniprogram: {title: 小程序, appid: wx123, page: pages/index, cover_media: MEDIA1}
""",
    )
    (slot,) = load_calendar(tmp_path).slots
    assert [a.to_wecom() for a in slot.attachments] == [
        {
            "msgtype": "link",
            "link": {
                "title": "标题",
                "picurl": "https://a.example/c.jpg",
                "desc": "说明",
                "url": "https://a.example/x",
            },
        },
        {"msgtype": "link", "link": {"title": "只有标题", "url": "https://a.example/y"}},
        {"msgtype": "image", "image": {"pic_url": "https://a.example/i.png"}},
        {
            "msgtype": "miniprogram",
            "miniprogram": {
                "title": "小程序",
                "pic_media_id": "MEDIA1",
                "appid": "wx123",
                "page": "pages/index",
            },
        },
    ]
    assert slot.attachments[2] == Attachment("image", {"url": "https://a.example/i.png"})
    hash(slot.attachments[0])  # occurrences carrying attachments stay hashable


# -- validation: each rule names file and line ------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "needle", "message"),
    [
        ("    colour: red\n", "colour:", "unknown key 'colour'"),
        ("    tempalte: x\n", "tempalte:", "unknown key 'tempalte' (did you mean 'template'?)"),
        ("    priority: high\n", "priority:", "priority: Input should be a valid integer"),
        ("    window_policy: later\n", "window_policy:", "window_policy: Input should be"),
        ("    lateness_minutes: -5\n", "lateness_minutes:", "lateness_minutes: Input should be"),
        ("    holiday: {policy: variant}\n", "holiday:", "policy variant needs `template:`"),
        (
            "    holiday: {policy: skip, template: calendar/h.md.j2}\n",
            "holiday:",
            "`template:` is only used with policy variant, not skip",
        ),
        ("    holiday: {policy: never}\n", "holiday:", "policy: Input should be 'skip'"),
        (
            "    attachments:\n      - link: {title: t}\n",
            "- link:",
            "missing key 'url'",
        ),
        (
            "    attachments:\n      - image: {url: ftp://x}\n",
            "- image:",
            "'ftp://x' is not a web address",
        ),
        (
            "    attachments:\n      - {image: {url: 'https://a/i'}, link: {title: t, url: 'https://a'}}\n",
            "- {image:",
            "exactly one of link, image or miniprogram (found link, image)",
        ),
        (
            "    attachments:\n"
            "      - miniprogram: {title: t, appid: app1, page: p, cover_media: m}\n",
            "- miniprogram:",
            "a mini-program appid starts with 'wx'",
        ),
        (
            "    attachments:\n      - video: {url: 'https://a/v'}\n",
            "- video:",
            "unknown key 'video'",
        ),
    ],
)
def test_slot_rule(tmp_path: Path, extra: str, needle: str, message: str) -> None:
    only_problem_at(tmp_path, SLOT + extra, needle, message)


@pytest.mark.parametrize(
    ("old", "new", "needle", "message"),
    [
        ('time: "09:30"', "time: 10:00", "time:", 'write the time in quotes, e.g. time: "10:00"'),
        ('time: "09:30"', 'time: "9:30"', "time:", "'9:30' is not a time"),
        ('time: "09:30"', 'time: "24:00"', "time:", "'24:00' is not a time"),
        ("days: [mon]", "days: [monday]", "days:", "'monday' is not a day: write mon, tue"),
        ("days: [mon]", "days: []", "days:", "write days as a list"),
        ("days: [mon]", "days: [mon, mon]", "days:", "a day is listed twice"),
        ("    days: [mon]\n", "", "- id:", "missing key 'days'"),
        ("id: mon-brief", "id: Mon_Brief", "id:", "slot id 'Mon_Brief': use lowercase"),
        ("channel: group", "channel: wechat", "channel:", "channel: Input should be 'group'"),
        ("    theme: 周一早班车\n", "", "- id:", "missing key 'theme'"),
    ],
)
def test_slot_field_rule(tmp_path: Path, old: str, new: str, needle: str, message: str) -> None:
    assert old in SLOT
    only_problem_at(tmp_path, SLOT.replace(old, new), needle, message)


@pytest.mark.parametrize(
    ("channel", "extra", "needle", "message"),
    [
        (
            "single",
            "    audience: payroll\n    groups: 'segment(\"x\")'\n",
            "groups:",
            "groups is for group slots",
        ),
        ("group", "    tags: [资产10万+]\n", "tags:", "tags is for moments slots only"),
        (
            "single",
            "    audience: payroll\n    tags: [a]\n",
            "tags:",
            "tags is for moments slots only",
        ),
        (
            "group",
            "    audience: payroll\n",
            "audience:",
            "audience is for single and moments slots",
        ),
        ("single", "", "- id:", "a single slot needs audience:"),
        ("moments", "    groups: 'segment(\"x\")'\n", "groups:", "groups is for group slots"),
        (
            "moments",
            "    attachments:\n"
            "      - miniprogram: {title: t, appid: wx1, page: p, cover_media: m}\n",
            "attachments:",
            "moments posts are text only here",
        ),
        (
            "moments",
            "    attachments:\n      - link: {title: t, url: 'https://a'}\n      - image: {url: 'https://a/i'}\n",
            "attachments:",
            "moments posts are text only here",
        ),
    ],
)
def test_channel_field_mismatch(
    tmp_path: Path, channel: str, extra: str, needle: str, message: str
) -> None:
    text = SLOT.replace("channel: group", f"channel: {channel}") + extra
    only_problem_at(tmp_path, text, needle, message)


def test_moments_accept_tags_and_audience_but_no_attachments(tmp_path: Path) -> None:
    moments = SLOT.replace("channel: group", "channel: moments")
    write(tmp_path, moments + "    tags: [资产10万+]\n    audience: payroll\n")
    (slot,) = load_calendar(tmp_path).slots
    assert slot.tags == ("资产10万+",)
    assert slot.attachments == ()
    text = moments + "    tags: [资产10万+]\n" + image_attachments(1)
    only_problem_at(tmp_path, text, "attachments:", "moments posts are text only here")


def test_at_most_nine_attachments(tmp_path: Path) -> None:
    path = write(tmp_path, SLOT + image_attachments(10))
    found = only_problem(tmp_path)
    where = f"{path}:{line(path, 'attachments:')}"
    assert found == f"{where}: attachments: at most 9 attachments (WeCom), found 10"


def test_audience_expression_error_names_line_and_column(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        SLOT.replace("channel: group", "channel: single")
        + "    audience: 'tag(\"代发客户\") and agee > 60'\n",
    )
    found = only_problem(tmp_path)
    assert found == (
        f"{path}:{line(path, 'audience:')}: audience column 17: "
        "unknown attribute 'agee' (did you mean 'age'?); attributes are "
        + found.split("attributes are ", 1)[1]
    )


def test_group_expression_error_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, SLOT + '    groups: \'segment("理财") or tag("x")\'\n')
    found = only_problem(tmp_path)
    assert found.startswith(f"{path}:{line(path, 'groups:')}: groups column 18: ")
    assert "unknown function 'tag'" in found


def test_template_checked_only_with_a_content_root(tmp_path: Path) -> None:
    schedules = tmp_path / "schedules"
    content = tmp_path / "content"
    path = write(
        schedules,
        SLOT + "    holiday: {policy: variant, template: calendar/holiday.md.j2}\n",
    )
    load_calendar(schedules)  # no content root: templates are not looked for
    found = problems(schedules, content)
    assert found == [
        f"{path}:{line(path, 'template: calendar/a')}: "
        f"template 'calendar/a.md.j2' not found in {content}",
        f"{path}:{line(path, 'holiday:')}: "
        f"template 'calendar/holiday.md.j2' not found in {content}",
    ]
    (content / "calendar").mkdir(parents=True)
    (content / "calendar" / "a.md.j2").write_text("hi", encoding="utf-8")
    (content / "calendar" / "holiday.md.j2").write_text("节日快乐", encoding="utf-8")
    assert load_calendar(schedules, content).slots[0].holiday_template == "calendar/holiday.md.j2"


def test_template_outside_content_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, SLOT.replace("calendar/a.md.j2", "../secrets.txt"))
    assert only_problem(tmp_path) == (
        f"{path}:{line(path, 'template:')}: template '../secrets.txt': write a path inside content/"
    )


def test_duplicate_ids_within_and_across_files(tmp_path: Path) -> None:
    first = write(tmp_path, SLOT + SLOT.split("slots:\n", 1)[1], name="a.yaml")
    second = write(tmp_path, SLOT, name="b.yaml")
    where = f"{first}:{line(first, '- id:')}"
    assert problems(tmp_path) == [
        f"{first}:{line(first, '- id:', 2)}: duplicate slot id 'mon-brief' (also at {where})",
        f"{second}:{line(second, '- id:')}: duplicate slot id 'mon-brief' (also at {where})",
    ]


def test_every_bad_slot_is_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        name: 测试日历
        slots:
          - id: a
            theme: A
            days: [mon]
            time: "9"
            channel: group
            template: t.j2
          - id: b
            theme: B
            days: [funday]
            time: "10:00"
            channel: group
            template: t.j2
        """,
    )
    bad_time = line(path, 'time: "9"')
    assert problems(tmp_path) == [
        f'{path}:{bad_time}: time: \'9\' is not a time: write "HH:MM" (24-hour), e.g. "09:30"',
        f"{path}:{line(path, 'funday')}: days: 'funday' is not a day: write mon, tue, wed, "
        "thu, fri, sat, sun",
    ]


# -- overrides --------------------------------------------------------------------------------

OVERRIDE = (
    SLOT
    + """\
overrides:
  - name: 活动周
    from: 2026-11-09
    to: 2026-11-15
    mode: add
    skip: [mon-brief]
    slots:
      - id: campaign
        theme: 活动
        time: "10:30"
        channel: group
        template: calendar/c.md.j2
"""
)


def test_override_loads_with_days_optional(tmp_path: Path) -> None:
    write(tmp_path, OVERRIDE)
    (override,) = load_calendar(tmp_path).overrides
    assert override.covers(date(2026, 11, 9))
    assert override.covers(date(2026, 11, 15))
    assert not override.covers(date(2026, 11, 16))
    assert override.slots[0].days is None


@pytest.mark.parametrize(
    ("old", "new", "needle", "message"),
    [
        ("to: 2026-11-15", "to: 2026-11-08", "to:", "to is before from (for a single day"),
        (
            "skip: [mon-brief]",
            "skip: [mon-brif]",
            "skip:",
            "skip names unknown slot 'mon-brif' (did you mean 'mon-brief'?)",
        ),
        ("mode: add", "mode: replace", "skip:", "skip is for mode add"),
        ("mode: add", "mode: merge", "mode:", "mode: Input should be 'add' or 'replace'"),
        ("from: 2026-11-09", "from: '2026-13-01'", "from:", "'2026-13-01' is not a date"),
        ("from: 2026-11-09", "start: 2026-11-09", "start:", "unknown key 'start'"),
        ('        time: "10:30"\n', "", "- id: campaign", "missing key 'time'"),
        ("id: campaign", "id: mon-brief", "id: mon-brief", "duplicate slot id 'mon-brief'"),
    ],
)
def test_override_rule(tmp_path: Path, old: str, new: str, needle: str, message: str) -> None:
    assert old in OVERRIDE
    path = write(tmp_path, OVERRIDE.replace(old, new))
    occurrence = 2 if needle == "id: mon-brief" else 1
    where = f"{path}:{line(path, needle, occurrence)}: "
    found = problems(tmp_path)
    # A renamed key also leaves the real one missing; every other rule is the only problem.
    assert len(found) == (2 if "unknown key" in message else 1), found
    assert any(p.startswith(where) and message in p for p in found), found


def test_skip_may_name_a_slot_of_another_file(tmp_path: Path) -> None:
    write(tmp_path, SLOT, name="a.yaml")
    write(
        tmp_path,
        """\
        name: 特殊日期
        overrides:
          - {name: 停发, from: 2026-11-09, to: 2026-11-09, skip: [mon-brief]}
        """,
        name="b.yaml",
    )
    calendar = load_calendar(tmp_path)
    assert calendar.names == ("测试日历", "特殊日期")
    assert calendar.overrides[0].skip == {"mon-brief"}


# -- files ------------------------------------------------------------------------------------


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, SLOT + "    theme: [unclosed\n")
    found = only_problem(tmp_path)
    assert found.startswith(f"{path}:"), found
    assert "invalid YAML" in found


def test_top_level_must_be_a_mapping_with_a_name(tmp_path: Path) -> None:
    path = write(tmp_path, "- a\n- b\n")
    assert only_problem(tmp_path).startswith(f"{path}:1: a calendar file is a mapping")
    path.write_text("slots: []\n", encoding="utf-8")
    assert only_problem(tmp_path) == f"{path}:1: missing key 'name'"
    path.write_text("name: x\nslot: []\n", encoding="utf-8")
    assert only_problem(tmp_path) == f"{path}:2: unknown key 'slot' (did you mean 'slots'?)"


def test_missing_folder_and_empty_folder(tmp_path: Path) -> None:
    assert problems(tmp_path / "nope") == [f"{tmp_path / 'nope'}: schedules folder not found"]
    empty = load_calendar(tmp_path)
    assert empty.slots == ()
    assert empty.overrides == ()


def test_yml_files_are_read_too(tmp_path: Path) -> None:
    write(tmp_path, SLOT, name="week.yml")
    assert [s.id for s in load_calendar(tmp_path).slots] == ["mon-brief"]
