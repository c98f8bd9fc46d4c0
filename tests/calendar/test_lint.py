"""Copy lint: each rule on a small post, reported at the source file's line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bot.calendar.content import ContentLibrary
from bot.calendar.lint import lint_content
from bot.calendar.schedule import load_calendar
from bot.config import Settings, load_config

ROOT = Path(__file__).resolve().parents[2]
NOTICE = "理财非存款，产品有风险，投资须谨慎。"


@dataclass(frozen=True)
class Slot:
    id: str
    template: str
    channel: str = "group"
    attachments: tuple[object, ...] = ()
    source: str = "schedules/default.yaml:3"
    holiday_template: str | None = None


@dataclass(frozen=True)
class Calendar:
    slots: tuple[Slot, ...]
    overrides: tuple[object, ...] = field(default=())


@dataclass(frozen=True)
class Override:
    slots: tuple[Slot, ...]


def post(root: Path, name: str, front: str, *body: str) -> Path:
    """content/calendar/<name>.md.j2 with `front` between the fences; the body starts on
    file line (front's line count + 3)."""
    path = root / "calendar" / f"{name}.md.j2"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"---\n{front}\n---\n" + "\n".join(body) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "content"


def lint(
    root: Path, settings: Settings | None = None, calendar: Calendar | None = None
) -> list[str]:
    return lint_content(ContentLibrary(root), settings or Settings(), calendar)


def test_the_shipped_content_passes_with_default_settings() -> None:
    assert lint_content(ContentLibrary(ROOT / "content"), Settings()) == []


def test_the_shipped_content_passes_with_the_shipped_config() -> None:
    settings = load_config(ROOT / "config.yaml", {})
    assert lint_content(ContentLibrary(settings.content_dir()), settings) == []


def test_the_shipped_calendar_and_content_pass_together() -> None:
    settings = load_config(ROOT / "config.yaml", {})
    calendar = load_calendar(settings.schedules_dir(), settings.content_dir())
    assert lint_content(ContentLibrary(settings.content_dir()), settings, calendar) == []


def test_a_clean_post_passes(root: Path) -> None:
    post(
        root,
        "ok",
        "title: 周五观影\nproduct: 惠享信用卡",
        "周五观影日！",
        "电影票9.9元起。",
        "惠享信用卡支付。",
    )
    assert lint(root) == []


def test_too_many_lines_is_reported_at_the_first_extra_line(root: Path) -> None:
    path = post(root, "long", "title: 长文", *[f"第{i}行" for i in range(1, 9)])
    # Body starts on line 4; the 8th rendered line is file line 11.
    assert lint(root) == [f"{path}:11: 8 lines, at most 7 (WeChat folds longer posts)"]


def test_a_long_hook_line_is_reported_at_its_line(root: Path) -> None:
    long = "一二三四五六七八九十一二三四五六七八九十一二三"  # 23 characters
    path = post(root, "hook", "title: 钩子", "短句", long, "第三行")
    assert lint(root) == [f'{path}:5: hook line 2 has 23 characters, at most 22: "{long}"']


def test_the_hook_is_measured_after_rendering_and_traced_to_its_source_line(root: Path) -> None:
    path = post(
        root,
        "hook",
        "title: 钩子",
        "周末好！",
        "{% if manager %}",
        "欢迎{{ group_name }}的各位朋友，今天有好消息！",
        "{% endif %}",
    )
    problems = lint(root)
    # "欢迎幸福里社区福利群的各位朋友，今天有好消息！" is 23 characters with the sample name.
    assert len(problems) == 1
    assert problems[0].startswith(f"{path}:6: hook line 2 has 23 characters")


def test_a_product_named_too_late(root: Path) -> None:
    path = post(
        root,
        "late",
        "title: 理财\nproduct: 天天盈现金管理\nwealth: true",
        "早上好！",
        "新的一周开始了。",
        "今天说点别的。",
        "天天盈现金管理，申赎灵活。",
        NOTICE,
    )
    assert lint(root) == [f'{path}:3: product "天天盈现金管理" is not named in the first 3 lines']


def test_a_product_named_by_the_configured_line_passes(root: Path) -> None:
    post(
        root,
        "late",
        "title: 理财\nproduct: 天天盈",
        "早上好！",
        "新的一周。",
        "说点别的。",
        "天天盈。",
    )
    settings = Settings.model_validate({"calendar": {"lint": {"product_by_line": 4}}})
    assert lint(root, settings) == []


def test_text_over_the_byte_limit(root: Path) -> None:
    path = post(root, "big", "title: 长", "短", "短", "好" * 1400)
    assert lint(root) == [f"{path}:4: text is 4208 bytes, at most 4000"]


def test_a_wealth_post_without_a_risk_notice(root: Path) -> None:
    path = post(
        root, "wealth", "title: 理财\nwealth: true\nproduct: 稳享90天", "早！", "好。", "稳享90天。"
    )
    assert lint(root) == [
        f"{path}:3: wealth post has no risk notice "
        '(one of "理财非存款", "产品有风险", "投资须谨慎", "投资需谨慎")'
    ]


def test_a_risk_notice_from_an_include_counts(root: Path) -> None:
    (root / "calendar").mkdir(parents=True)
    (root / "calendar" / "_notice.txt.j2").write_text(NOTICE + "\n", encoding="utf-8")
    post(
        root,
        "wealth",
        "title: 理财\nwealth: true",
        "早！",
        "好。",
        '{% include "calendar/_notice.txt.j2" %}',
    )
    assert lint(root) == []


def test_a_forbidden_word_is_reported_at_its_source_line(root: Path) -> None:
    path = post(root, "bad", "title: 理财", "早上好！", "新的一周。", "这款产品保本，放心买。")
    assert lint(root) == [f'{path}:6: forbidden word "保本"']


def test_a_longer_forbidden_word_is_reported_once(root: Path) -> None:
    path = post(root, "bad", "title: 理财", "稳赚不赔的好机会")
    assert lint(root) == [f'{path}:4: forbidden word "稳赚不赔"']


def test_a_forbidden_word_in_an_included_file_names_that_file(root: Path) -> None:
    (root / "calendar").mkdir(parents=True)
    partial = root / "calendar" / "_tail.txt.j2"
    partial.write_text("欢迎咨询。\n零风险，放心。\n", encoding="utf-8")
    post(root, "bad", "title: 理财", "早上好！", '{% include "calendar/_tail.txt.j2" %}')
    assert lint(root) == [f'{partial}:2: forbidden word "零风险"']


def test_a_forbidden_word_assembled_at_render_time(root: Path) -> None:
    path = post(root, "bad", "title: 理财", "早上好！", "{{ '保' }}本理财")
    assert lint(root) == [f'{path}:4: forbidden word "保本" in the rendered text']


def test_a_forbidden_word_in_the_front_matter(root: Path) -> None:
    path = post(root, "bad", "title: 保收益专场", "早上好！")
    assert lint(root) == [f'{path}:2: forbidden word "保收益"']


def test_front_matter_and_render_errors_are_problems(root: Path) -> None:
    broken = post(root, "broken", "title: 标题\ncolour: red", "正文")
    undefined = post(root, "undefined", "title: 标题", "第一行", "{{ nope }}")
    assert lint(root) == [
        f"{broken}:3: unknown front matter key 'colour' (allowed: title, product, wealth)",
        f"{undefined}:5: 'nope' is undefined",
    ]


def test_calendar_slots_are_checked(root: Path) -> None:
    post(root, "ok", "title: 标题", "第一行")
    calendar = Calendar(
        slots=(
            Slot("many", "calendar/ok.md.j2", attachments=(object(),) * 10, source="s.yaml:7"),
            Slot("gone", "calendar/missing.md.j2", source="s.yaml:20"),
            Slot(
                "hol", "calendar/ok.md.j2", holiday_template="calendar/h.md.j2", source="s.yaml:30"
            ),
        )
    )
    assert lint(root, calendar=calendar) == [
        "s.yaml:7: slot 'many' has 10 attachments, at most 9",
        f"s.yaml:20: slot 'gone' names template 'calendar/missing.md.j2', not found in {root}",
        f"s.yaml:30: slot 'hol' names template 'calendar/h.md.j2', not found in {root}",
    ]


def test_the_attachment_cap_comes_from_settings(root: Path) -> None:
    post(root, "ok", "title: 标题", "第一行")
    settings = Settings.model_validate({"calendar": {"lint": {"max_attachments": 2}}})
    calendar = Calendar(slots=(Slot("three", "calendar/ok.md.j2", attachments=(1, 2, 3)),))
    assert lint(root, settings, calendar) == [
        "schedules/default.yaml:3: slot 'three' has 3 attachments, at most 2"
    ]


def test_override_slots_are_checked_too(root: Path) -> None:
    post(root, "ok", "title: 标题", "第一行")
    calendar = Calendar(
        slots=(),
        overrides=(Override(slots=(Slot("x", "calendar/nope.md.j2", source="o.yaml:4"),)),),
    )
    assert lint(root, calendar=calendar) == [
        f"o.yaml:4: slot 'x' names template 'calendar/nope.md.j2', not found in {root}"
    ]


def test_a_post_renders_with_its_slots_channel(root: Path) -> None:
    path = post(root, "hello", "title: 问候", "{{ customer_name }}您好")
    # Outside a calendar the channel is unknown and every per-target variable is given.
    assert lint(root) == []
    single = Calendar(slots=(Slot("s", "calendar/hello.md.j2", channel="single"),))
    assert lint(root, calendar=single) == []
    group = Calendar(slots=(Slot("g", "calendar/hello.md.j2", channel="group"),))
    assert lint(root, calendar=group) == [f"{path}:4: 'customer_name' is undefined"]


def test_posts_outside_the_calendar_are_still_linted(root: Path) -> None:
    post(root, "used", "title: 标题", "第一行")
    unused = post(root, "unused", "title: 标题", "无风险")
    calendar = Calendar(slots=(Slot("u", "calendar/used.md.j2"), Slot("v", "calendar/used.md.j2")))
    assert lint(root, calendar=calendar) == [f'{unused}:4: forbidden word "无风险"']


def test_a_problem_in_a_post_used_twice_is_reported_once(root: Path) -> None:
    path = post(root, "twice", "title: 标题", "刚性兑付")
    calendar = Calendar(
        slots=(
            Slot("a", "calendar/twice.md.j2", channel="group"),
            Slot("b", "calendar/twice.md.j2", channel="single"),
        )
    )
    assert lint(root, calendar=calendar) == [f'{path}:4: forbidden word "刚性兑付"']


def test_a_bad_activity_link_is_reported_once(root: Path) -> None:
    post(root, "a", "title: 标题", "第一行")
    post(root, "b", "title: 标题", "第一行")
    settings = Settings.model_validate({"calendar": {"activity_link": "https://x/{id}"}})
    problems = lint(root, settings)
    assert len(problems) == 1
    assert problems[0].startswith("calendar.activity_link")
