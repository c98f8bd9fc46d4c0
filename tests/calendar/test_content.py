"""Calendar posts: front matter, strict rendering, per-target detection, sample variables."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from jinja2 import Template

from bot.calendar.content import (
    ContentLibrary,
    base_variables,
    blank_front_matter,
    sample_variables,
)
from bot.config import Settings
from bot.templates import RenderError, Templates

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "content"

# The channel each shipped post is written for; the one per-target post only makes sense in
# groups (it greets the group by name).
SHIPPED_POSTS = {
    "calendar/mon_wealth_brief.md.j2": "group",
    "calendar/mon_wealth_vip.md.j2": "single",
    "calendar/tue_prepurchase.md.j2": "group",
    "calendar/wed_half_off.md.j2": "group",
    "calendar/wed_payroll_steady.md.j2": "single",
    "calendar/thu_joint_rights.md.j2": "group",
    "calendar/thu_moments.md.j2": "moments",
    "calendar/fri_movie.md.j2": "group",
    "calendar/sat_family.md.j2": "group",
    "calendar/sun_senior.md.j2": "single",
    "calendar/sun_senior_group.md.j2": "group",
    "calendar/holiday_greeting.md.j2": "group",
    "calendar/campaign_year_end.md.j2": "group",
}


def write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "content"


def test_meta_reads_the_front_matter(root: Path) -> None:
    path = write(
        root,
        "calendar/a.md.j2",
        "---\ntitle: 周一财富早班车\nproduct: 天天盈\nwealth: true\n---\n第一行\n",
    )
    meta = ContentLibrary(root).meta("calendar/a.md.j2")
    assert (meta.title, meta.product, meta.wealth) == ("周一财富早班车", "天天盈", True)
    assert meta.path == path
    assert meta.body_line == 6
    assert dict(meta.key_lines) == {"title": 2, "product": 3, "wealth": 4}


def test_product_and_wealth_are_optional(root: Path) -> None:
    write(root, "calendar/a.md.j2", "---\ntitle: 周末亲子\n---\n正文\n")
    meta = ContentLibrary(root).meta("calendar/a.md.j2")
    assert (meta.product, meta.wealth, meta.body_line) == (None, False, 4)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("你好\n", 1, "front matter missing"),
        ("---\ntitle: 标题\n正文\n", 1, "front matter not closed"),
        ("---\ntitle: 标题\nproduct: a: b\n---\n正文\n", 3, "invalid YAML"),
        ("---\ntitle: 标题\nwealth: false\ntags: [x]\n---\n", 4, "unknown front matter key"),
        ("---\nproduct: 天天盈\n---\n正文\n", 1, "front matter needs a title"),
        ("---\ntitle: ''\n---\n正文\n", 2, "title must be non-empty text"),
        ("---\ntitle: 标题\nproduct: 90\n---\n", 3, "product must be non-empty text"),
        ("---\ntitle: 标题\n\nwealth: 是\n---\n", 4, "wealth must be true or false"),
        ("---\n- 标题\n---\n", 2, "front matter must be a mapping"),
    ],
)
def test_front_matter_errors_name_file_and_line(
    root: Path, text: str, line: int, message: str
) -> None:
    path = write(root, "calendar/bad.md.j2", text)
    library = ContentLibrary(root)
    with pytest.raises(RenderError) as caught:
        library.meta("calendar/bad.md.j2")
    assert str(caught.value).startswith(f"{path}:{line}: {message}")
    # Rendering checks the front matter first, with the same message.
    with pytest.raises(RenderError) as rendered:
        library.render("calendar/bad.md.j2", {})
    assert str(rendered.value) == str(caught.value)


def test_render_gives_the_body_only(root: Path) -> None:
    write(root, "calendar/a.md.j2", "---\ntitle: 标题\n---\n{{ manager }}您好\n第二行\n")
    text = ContentLibrary(root).render("calendar/a.md.j2", {"manager": "王晓明"})
    assert text == "王晓明您好\n第二行"


def test_a_renderer_loads_the_post_once_and_renders_it_many_times(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(root, "calendar/a.md.j2", "---\ntitle: 标题\n---\n{{ group_name }}的各位\n")
    library = ContentLibrary(root)
    loads: list[str] = []
    real = library.templates.env.get_template

    def counted(name: str) -> Template:
        loads.append(name)
        return real(name)

    monkeypatch.setattr(library.templates.env, "get_template", counted)
    render = library.renderer("calendar/a.md.j2")
    assert [render(group_name=f"群{i}") for i in range(3)] == [
        "群0的各位",
        "群1的各位",
        "群2的各位",
    ]
    assert loads == ["calendar/a.md.j2"]
    # Its errors are render's: file and line.
    with pytest.raises(RenderError) as caught:
        render()
    assert str(caught.value) == f"{path}:4: 'group_name' is undefined"


def test_an_undefined_variable_names_file_and_line(root: Path) -> None:
    path = write(root, "calendar/a.md.j2", "---\ntitle: 标题\n---\n第一行\n第二行{{ nope }}\n")
    with pytest.raises(RenderError) as caught:
        ContentLibrary(root).render("calendar/a.md.j2", {})
    assert str(caught.value) == f"{path}:5: 'nope' is undefined"


def test_an_undefined_variable_in_an_include_names_the_included_file(root: Path) -> None:
    write(root, "calendar/a.md.j2", '---\ntitle: 标题\n---\n正文\n{% include "calendar/_p.j2" %}\n')
    partial = write(root, "calendar/_p.j2", "第一行\n{{ customer_name }}您好\n")
    with pytest.raises(RenderError) as caught:
        ContentLibrary(root).render("calendar/a.md.j2", {})
    assert str(caught.value) == f"{partial}:2: 'customer_name' is undefined"


def test_a_syntax_error_names_the_file_line(root: Path) -> None:
    path = write(root, "calendar/a.md.j2", "---\ntitle: 标题\nwealth: false\n---\n一\n{{ x \n")
    with pytest.raises(RenderError) as caught:
        ContentLibrary(root).render("calendar/a.md.j2", {"x": 1})
    assert str(caught.value).startswith(f"{path}:6: ")


def test_a_missing_template_is_reported(root: Path) -> None:
    with pytest.raises(RenderError, match=r"calendar/none\.md\.j2: template not found"):
        ContentLibrary(root).render("calendar/none.md.j2", {})
    with pytest.raises(RenderError, match="template not found"):
        ContentLibrary(root).meta("calendar/none.md.j2")


def test_a_byte_order_mark_does_not_hide_the_front_matter(root: Path) -> None:
    write(root, "calendar/a.md.j2", "\ufeff---\ntitle: 标题\n---\n正文\n")
    library = ContentLibrary(root)
    assert library.meta("calendar/a.md.j2").title == "标题"
    assert library.render("calendar/a.md.j2", {}) == "正文"


def test_blank_front_matter_keeps_line_numbers() -> None:
    source = "---\ntitle: 标题\n---\n正文\n"
    assert blank_front_matter(source) == "\n\n\n正文\n"
    # A partial without front matter, or an unclosed one, is left alone.
    assert blank_front_matter("---\n正文\n") == "---\n正文\n"
    assert blank_front_matter("正文\n") == "正文\n"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("{{ group_name }}的朋友们好", True),
        ("{% if customer_name %}{{ customer_name }}{% endif %}您好", True),
        ("{{ manager }}祝您周末愉快", False),
        ('{% include "calendar/_greet.j2" %}', True),
        ('{% include "calendar/_outer.j2" %}', True),
        ('{% include "calendar/_plain.j2" %}', False),
        ('{% import "calendar/_macros.j2" as m %}{{ m.hello() }}', True),
        ('{% extends "calendar/_base.j2" %}', True),
        # A computed name cannot be followed: rendering per target is the safe answer.
        ("{% include which %}", True),
    ],
)
def test_per_target_looks_through_includes(root: Path, body: str, expected: bool) -> None:
    write(root, "calendar/_greet.j2", "{{ group_name }}的朋友们好\n")
    write(root, "calendar/_outer.j2", '{% include "calendar/_greet.j2" %}\n')
    write(root, "calendar/_plain.j2", "理财非存款，产品有风险，投资须谨慎。\n")
    write(root, "calendar/_macros.j2", "{% macro hello() %}{{ customer_name }}{% endmacro %}\n")
    write(root, "calendar/_base.j2", "{{ group_name }}\n{% block body %}{% endblock %}\n")
    write(root, "calendar/a.md.j2", f"---\ntitle: 标题\n---\n{body}\n")
    assert ContentLibrary(root).per_target("calendar/a.md.j2") is expected


def test_referenced_lists_what_a_post_pulls_in(root: Path) -> None:
    write(root, "calendar/_greet.j2", "{{ group_name }}\n")
    write(root, "calendar/_outer.j2", '{% include "calendar/_greet.j2" %}\n')
    write(root, "calendar/a.md.j2", '---\ntitle: 标题\n---\n{% include "calendar/_outer.j2" %}\n')
    assert ContentLibrary(root).referenced("calendar/a.md.j2") == [
        "calendar/_outer.j2",
        "calendar/_greet.j2",
    ]


def test_base_variables() -> None:
    settings = Settings(branch_name="城东支行")
    variables = base_variables(
        settings, theme="周一财富早班车", day=date(2026, 11, 23), manager_name="李敏"
    )
    assert variables == {
        "manager": "李敏",
        "branch": "城东支行",
        "theme": "周一财富早班车",
        "date": "11月23日",
        "weekday": "周一",
        "activity_link": "https://h5.example.com/h5/activity?week=2026-W48",
    }


def test_base_variables_use_the_iso_week_and_chinese_weekday() -> None:
    settings = Settings()
    sunday = base_variables(settings, theme="t", day=date(2026, 11, 29), manager_name="m")
    assert (sunday["weekday"], sunday["date"]) == ("周日", "11月29日")
    new_year = base_variables(settings, theme="t", day=date(2027, 1, 1), manager_name="m")
    assert new_year["activity_link"].endswith("week=2026-W53")


def test_a_bad_activity_link_is_a_render_error() -> None:
    settings = Settings.model_validate({"calendar": {"activity_link": "https://x/{id}"}})
    with pytest.raises(RenderError, match=r"calendar\.activity_link"):
        base_variables(settings, theme="t", day=date(2026, 11, 23), manager_name="m")


def test_sample_variables_per_channel() -> None:
    settings = Settings()
    group = sample_variables(settings, channel="group")
    single = sample_variables(settings, channel="single")
    moments = sample_variables(settings, channel="moments")
    assert group["group_name"] == "幸福里社区福利群"
    assert "customer_name" not in group
    assert single["customer_name"] == "张**"  # masked, never a full name
    assert "group_name" not in single
    assert not {"group_name", "customer_name"} & moments.keys()
    assert (group["date"], group["weekday"], group["branch"]) == ("11月23日", "周一", "本支行")
    with pytest.raises(ValueError, match="unknown channel"):
        sample_variables(settings, channel="email")


def test_the_shipped_posts_are_the_expected_set() -> None:
    assert sorted(ContentLibrary(SHIPPED).calendar_posts()) == sorted(SHIPPED_POSTS)


@pytest.mark.parametrize(("name", "channel"), sorted(SHIPPED_POSTS.items()))
def test_every_shipped_post_renders(name: str, channel: str) -> None:
    library = ContentLibrary(SHIPPED)
    settings = Settings()
    text = library.render(name, sample_variables(settings, channel=channel))
    assert text
    assert not any(mark in text for mark in ("{{", "{%", "{#", "---"))
    assert library.meta(name).title
    if library.per_target(name):
        assert channel == "group"
        assert "幸福里社区福利群" in text
    else:
        # A post read once per sender reads the same in a group and 1:1.
        for other in ("group", "single"):
            assert library.render(name, sample_variables(settings, channel=other)) == text


def test_wealth_posts_carry_the_shared_risk_notice() -> None:
    library = ContentLibrary(SHIPPED)
    wealth = [name for name in SHIPPED_POSTS if library.meta(name).wealth]
    assert sorted(wealth) == [
        "calendar/campaign_year_end.md.j2",
        "calendar/mon_wealth_brief.md.j2",
        "calendar/mon_wealth_vip.md.j2",
        "calendar/wed_payroll_steady.md.j2",
    ]
    for name in wealth:
        assert "calendar/_risk_notice.txt.j2" in library.referenced(name)


def test_templates_reports_the_line_of_an_undefined_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "welcome/x.txt.j2", "您好\n我是{{ manager }}\n")
    with pytest.raises(RenderError) as caught:
        Templates(tmp_path).render("welcome/x.txt.j2")
    assert str(caught.value) == f"{path}:2: 'manager' is undefined"


def test_the_shipped_welcome_templates_still_render() -> None:
    templates = Templates(SHIPPED)
    for name in ("welcome/default.txt.j2", "welcome/branch.txt.j2", "welcome/senior.txt.j2"):
        assert "王晓明" in templates.render(name, manager="王晓明", branch="本支行")
