"""Calendar posts (`content/calendar/*.md.j2`): YAML front matter, then a Jinja body.

```
---
title: 周一财富早班车
product: 天天盈现金管理   # the product the post names (optional)
wealth: true              # a wealth product: the risk notice is mandatory
---
body…
```

Bodies render through `bot.templates.Templates` (StrictUndefined), with a loader that blanks
the front matter instead of cutting it, so a Jinja line number is the file's line number.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, TemplateNotFound, TemplateSyntaxError, meta
from jinja2.nodes import Template as TemplateNode

from bot.config import Settings
from bot.privacy import mask_name
from bot.templates import RenderError, Templates
from bot.yamlsource import YamlFileError, parse_yaml

FENCE = "---"
FRONT_MATTER_KEYS = ("title", "product", "wealth")
CHANNELS = ("group", "single", "moments")
# Variables that differ from one group or customer to the next: a post using one of them is
# rendered per target, any other post once per sender.
PER_TARGET_VARIABLES = frozenset({"group_name", "customer_name"})
WEEKDAYS = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")

# Previews and lint render with these: realistic lengths, so line-length rules mean something.
SAMPLE_DAY = date(2026, 11, 23)
SAMPLE_THEME = "本周主题"
SAMPLE_MANAGER = "王晓明"
SAMPLE_GROUP = "幸福里社区福利群"
SAMPLE_CUSTOMER = "张晓明"


@dataclass(frozen=True)
class ContentMeta:
    """A post's front matter. `body_line` is the 1-based file line of the body's first line;
    `key_lines` maps each front matter key present to its file line (for lint messages)."""

    title: str
    product: str | None
    wealth: bool
    path: Path
    body_line: int
    key_lines: Mapping[str, int] = field(default_factory=dict, compare=False)


def _closing_fence(lines: list[str]) -> int | None:
    """0-based index of the fence closing the front matter, if the text opens with one."""
    if not lines or lines[0].rstrip() != FENCE:
        return None
    for index in range(1, len(lines)):
        if lines[index].rstrip() == FENCE:
            return index
    return None


def blank_front_matter(source: str) -> str:
    """The source with its front matter lines emptied (line count kept); text without a
    complete front matter (a partial pulled in by include) is returned unchanged."""
    # An editor's BOM would hide the opening fence (Jinja reads the file as plain UTF-8).
    source = source.removeprefix("\ufeff")
    lines = source.splitlines(keepends=True)
    end = _closing_fence([line.rstrip("\r\n") for line in lines])
    if end is None:
        return source
    return "\n" * (end + 1) + "".join(lines[end + 1 :])


def parse_front_matter(source: str, path: Path) -> ContentMeta:
    """Read the front matter of a post; RenderError "path:line: message" when it is wrong."""
    lines = source.lstrip("\ufeff").splitlines()
    if not lines or lines[0].rstrip() != FENCE:
        raise RenderError(f"{path}:1: front matter missing: a post starts with a '---' line")
    end = _closing_fence(lines)
    if end is None:
        raise RenderError(f"{path}:1: front matter not closed: no second '---' line")
    try:
        # The front matter's first line is the file's second line.
        doc = parse_yaml("\n".join(lines[1:end]), path)
    except YamlFileError as exc:
        where = f"{path}:{exc.line + 1}" if exc.line else f"{path}:1"
        raise RenderError(f"{where}: {exc.message}") from None
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict):
        raise RenderError(f"{path}:2: front matter must be a mapping (title, product, wealth)")
    key_lines = {str(key): doc.lines.get((key,), 1) + 1 for key in data}
    for key in sorted(data, key=lambda k: key_lines[str(k)]):
        if key not in FRONT_MATTER_KEYS:
            allowed = ", ".join(FRONT_MATTER_KEYS)
            raise RenderError(
                f"{path}:{key_lines[str(key)]}: unknown front matter key {key!r} "
                f"(allowed: {allowed})"
            )
    title = data.get("title")
    if "title" not in data:
        raise RenderError(f"{path}:1: front matter needs a title")
    if not isinstance(title, str) or not title.strip():
        raise RenderError(f"{path}:{key_lines['title']}: title must be non-empty text")
    product = data.get("product")
    if product is not None and (not isinstance(product, str) or not product.strip()):
        raise RenderError(f"{path}:{key_lines['product']}: product must be non-empty text")
    wealth = data.get("wealth", False)
    if not isinstance(wealth, bool):
        raise RenderError(f"{path}:{key_lines['wealth']}: wealth must be true or false")
    return ContentMeta(
        title=title.strip(),
        product=product.strip() if product is not None else None,
        wealth=wealth,
        path=path,
        body_line=end + 2,
        key_lines=key_lines,
    )


class FrontMatterLoader(FileSystemLoader):
    """A FileSystemLoader that hands Jinja the body only (front matter blanked)."""

    def get_source(
        self, environment: Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        source, filename, uptodate = super().get_source(environment, template)
        return blank_front_matter(source), filename, uptodate

    def raw_source(self, environment: Environment, template: str) -> tuple[str, str]:
        """The file as written, and its path."""
        source, filename, _ = super().get_source(environment, template)
        return source, filename


@dataclass(frozen=True)
class _Closure:
    """A template and what it pulls in: the names, the variables they read, and whether
    some include/import is computed at render time (so cannot be followed)."""

    names: tuple[str, ...]
    variables: frozenset[str]
    dynamic: bool


class ContentLibrary:
    """Calendar posts under the content folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._loader = FrontMatterLoader(str(root))
        self.templates = Templates(root, loader=self._loader)
        # Front matter by (name, mtime): a day's plan renders one post thousands of times.
        self._metas: dict[tuple[str, int], ContentMeta] = {}

    def path(self, name: str) -> Path:
        return self.root / name

    def exists(self, name: str) -> bool:
        return self.templates.exists(name)

    def calendar_posts(self) -> list[str]:
        """Names ("calendar/x.md.j2") of every post in content/calendar/."""
        folder = self.root / "calendar"
        return [path.relative_to(self.root).as_posix() for path in sorted(folder.glob("*.md.j2"))]

    def source(self, name: str) -> str:
        """The file as written (front matter included)."""
        try:
            return self._loader.raw_source(self.templates.env, name)[0]
        except TemplateNotFound:
            raise RenderError(f"{self.path(name)}: template not found") from None
        except UnicodeDecodeError as exc:
            raise RenderError(f"{self.path(name)}: not UTF-8: {exc.reason}") from None

    def meta(self, name: str) -> ContentMeta:
        try:
            key = (name, self.path(name).stat().st_mtime_ns)
        except OSError:
            key = None
        if key is not None and key in self._metas:
            return self._metas[key]
        meta = parse_front_matter(self.source(name), self.path(name))
        if key is not None:
            self._metas[key] = meta
        return meta

    def per_target(self, name: str) -> bool:
        """Whether the post (or anything it includes, extends or imports) reads group_name or
        customer_name. A computed include cannot be followed, so it counts as yes: rendering
        per target is always correct, only slower."""
        closure = self._closure(name)
        return closure.dynamic or bool(closure.variables & PER_TARGET_VARIABLES)

    def referenced(self, name: str) -> list[str]:
        """Templates the post pulls in, directly or not (computed names left out)."""
        return list(self._closure(name).names[1:])

    def render(self, name: str, variables: Mapping[str, Any]) -> str:
        """The post's text; RenderError "path:line: message" on a bad front matter, a syntax
        error or a variable the caller did not give."""
        return self.renderer(name)(**variables)

    def renderer(self, name: str) -> Callable[..., str]:
        """`render` for one post, its front matter checked and its template loaded once."""
        self.meta(name)
        return self.templates.renderer(name)

    def _parse(self, name: str) -> TemplateNode:
        env = self.templates.env
        try:
            source, filename, _ = self._loader.get_source(env, name)
        except TemplateNotFound:
            raise RenderError(f"{self.path(name)}: template not found") from None
        except UnicodeDecodeError as exc:
            raise RenderError(f"{self.path(name)}: not UTF-8: {exc.reason}") from None
        try:
            return env.parse(source, name=name, filename=filename)
        except TemplateSyntaxError as exc:
            raise RenderError(f"{filename}:{exc.lineno}: {exc.message}") from None
        except RecursionError:
            raise RenderError(f"{filename}: nested too deeply") from None

    def _closure(self, name: str) -> _Closure:
        names: list[str] = []
        variables: set[str] = set()
        dynamic = False
        pending = [name]
        while pending:
            current = pending.pop(0)
            if current in names:
                continue
            names.append(current)
            tree = self._parse(current)
            variables |= meta.find_undeclared_variables(tree)
            for ref in meta.find_referenced_templates(tree):
                if ref is None:
                    dynamic = True
                else:
                    pending.append(ref)
        return _Closure(tuple(names), frozenset(variables), dynamic)


def iso_week(day: date) -> str:
    """ISO week as "2026-W48" (the activity page's key)."""
    year, week, _ = day.isocalendar()
    return f"{year:04d}-W{week:02d}"


def activity_link(settings: Settings, day: date) -> str:
    """settings.calendar.activity_link with `{week}` filled in for the week of `day`."""
    template = settings.calendar.activity_link
    try:
        return template.format(week=iso_week(day))
    except (KeyError, IndexError, ValueError) as exc:
        raise RenderError(
            f"calendar.activity_link {template!r}: only {{week}} may appear in braces ({exc})"
        ) from None


def base_variables(
    settings: Settings, *, theme: str, day: date, manager_name: str
) -> dict[str, Any]:
    """The variables every post gets: manager, branch, theme, date, weekday, activity_link."""
    return {
        "manager": manager_name,
        "branch": settings.branch_name,
        "theme": theme,
        "date": f"{day.month}月{day.day}日",
        "weekday": WEEKDAYS[day.weekday()],
        "activity_link": activity_link(settings, day),
    }


def sample_variables(
    settings: Settings, *, channel: str, theme: str = SAMPLE_THEME, day: date = SAMPLE_DAY
) -> dict[str, Any]:
    """Variables for a preview or lint render on `channel` (group | single | moments)."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r} (expected one of {', '.join(CHANNELS)})")
    variables = base_variables(settings, theme=theme, day=day, manager_name=SAMPLE_MANAGER)
    if channel == "group":
        variables["group_name"] = SAMPLE_GROUP
    elif channel == "single":
        variables["customer_name"] = mask_name(SAMPLE_CUSTOMER)
    return variables
