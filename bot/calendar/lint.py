"""Copy rules for calendar posts, applied by `bot check` (settings.calendar.lint).

WeChat folds a post past a few lines, so the first two lines must hook and the product must be
named early; bank marketing rules forbid promising returns and require a risk notice on
wealth products. Each problem is "path:line: message", the line being the source file's.
Length rules read the text rendered with sample variables; forbidden words are looked for in
the source (where they must be fixed) and, failing that, in the rendered text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bot.calendar.content import ContentLibrary, ContentMeta, sample_variables
from bot.config import CopyLintConfig, Settings
from bot.templates import RenderError

# Jinja tags, split out of a source line to leave the literal text it contributes.
_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}")


class SlotLike(Protocol):
    """What lint reads of a calendar slot."""

    @property
    def id(self) -> str: ...
    @property
    def template(self) -> str: ...
    @property
    def attachments(self) -> Sequence[object]: ...
    @property
    def channel(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def holiday_template(self) -> str | None: ...


class CalendarLike(Protocol):
    @property
    def slots(self) -> Sequence[SlotLike]: ...


@dataclass(frozen=True)
class _Use:
    """A post as a calendar uses it: the channel decides which per-target variable exists."""

    name: str
    channel: str | None  # None: not in the calendar, so any channel's variables are given


def lint_content(
    library: ContentLibrary, settings: Settings, calendar: CalendarLike | None = None
) -> list[str]:
    """Every copy problem in the posts a calendar uses and in content/calendar/*.md.j2."""
    problems: list[str] = []
    uses: list[_Use] = []
    if calendar is not None:
        for slot in _all_slots(calendar):
            problems += _check_slot(library, settings.calendar.lint, slot, uses)
    used = {use.name for use in uses}
    uses += [_Use(name, None) for name in library.calendar_posts() if name not in used]
    try:
        samples = {
            channel: sample_variables(settings, channel=channel)
            for channel in ("group", "single", "moments")
        }
    except RenderError as exc:
        return [*problems, str(exc)]
    for use in dict.fromkeys(uses):
        if use.channel is None:
            variables = {**samples["group"], **samples["single"]}
        else:
            variables = dict(samples[use.channel])
        problems += lint_post(library, settings.calendar.lint, use.name, variables)
    return list(dict.fromkeys(problems))


def _all_slots(calendar: CalendarLike) -> list[SlotLike]:
    # Override slots (campaign weeks) may live under `overrides[].slots` rather than in
    # `slots`; they are posts too.
    slots = list(calendar.slots)
    for override in getattr(calendar, "overrides", ()):
        slots += list(getattr(override, "slots", ()))
    return slots


def _check_slot(
    library: ContentLibrary, rules: CopyLintConfig, slot: SlotLike, uses: list[_Use]
) -> list[str]:
    """Attachment count and template existence for one slot; posts to lint go to `uses`."""
    problems: list[str] = []
    if len(slot.attachments) > rules.max_attachments:
        problems.append(
            f"{slot.source}: slot {slot.id!r} has {len(slot.attachments)} attachments, "
            f"at most {rules.max_attachments}"
        )
    for name in (slot.template, slot.holiday_template):
        if name is None:
            continue
        if not library.exists(name):
            problems.append(
                f"{slot.source}: slot {slot.id!r} names template {name!r}, "
                f"not found in {library.root}"
            )
        elif slot.channel in ("group", "single", "moments"):
            uses.append(_Use(name, slot.channel))
    return problems


def lint_post(
    library: ContentLibrary, rules: CopyLintConfig, name: str, variables: dict[str, Any]
) -> list[str]:
    """The copy rules for one post rendered with `variables`."""
    try:
        info = library.meta(name)
        sources = [name, *library.referenced(name)]
    except RenderError as exc:
        return [str(exc)]
    problems: list[str] = []
    found_in_source: set[str] = set()
    texts: dict[str, str] = {}
    for source_name in sources:
        try:
            text = texts[source_name] = library.source(source_name)
        except RenderError as exc:
            problems.append(str(exc))
            continue
        for lineno, word in _forbidden_in(text.splitlines(), rules.forbidden):
            found_in_source.add(word)
            problems.append(f"{library.path(source_name)}:{lineno}: forbidden word {_q(word)}")
    try:
        rendered = library.render(name, variables)
    except RenderError as exc:
        return [*problems, str(exc)]
    for _, word in _forbidden_in([rendered], rules.forbidden):
        if word not in found_in_source:
            # Assembled from variables or pieces: only the rendered text shows it.
            problems.append(
                f"{info.path}:{info.body_line}: forbidden word {_q(word)} in the rendered text"
            )
    return problems + _text_rules(info, rules, rendered, texts[name].splitlines())


def _text_rules(
    info: ContentMeta, rules: CopyLintConfig, rendered: str, source_lines: list[str]
) -> list[str]:
    """Length, hook, product and risk-notice rules on the rendered text."""
    problems: list[str] = []
    lines = rendered.split("\n")
    origins = _line_origins(lines, source_lines, info.body_line)
    where = str(info.path)
    if len(lines) > rules.max_lines:
        problems.append(
            f"{where}:{origins[rules.max_lines]}: {len(lines)} lines, at most "
            f"{rules.max_lines} (WeChat folds longer posts)"
        )
    for index, line in enumerate(lines[:2]):
        if len(line) > rules.hook_line_chars:
            problems.append(
                f"{where}:{origins[index]}: hook line {index + 1} has {len(line)} characters, "
                f"at most {rules.hook_line_chars}: {_q(line)}"
            )
    if info.product and info.product not in "\n".join(lines[: rules.product_by_line]):
        at = info.key_lines.get("product", 1)
        problems.append(
            f"{where}:{at}: product {_q(info.product)} is not named in the first "
            f"{rules.product_by_line} lines"
        )
    size = len(rendered.encode("utf-8"))
    if size > rules.text_max_bytes:
        problems.append(
            f"{where}:{info.body_line}: text is {size} bytes, at most {rules.text_max_bytes}"
        )
    if info.wealth and not any(p in rendered for p in rules.risk_notice_phrases):
        at = info.key_lines.get("wealth", 1)
        phrases = ", ".join(_q(p) for p in rules.risk_notice_phrases)
        problems.append(f"{where}:{at}: wealth post has no risk notice (one of {phrases})")
    return problems


def _forbidden_in(lines: Iterable[str], words: Sequence[str]) -> list[tuple[int, str]]:
    """(1-based line, word) for each forbidden word; a word inside a longer one found on the
    same line ("稳赚" in "稳赚不赔") is not reported twice."""
    hits: list[tuple[int, str]] = []
    for lineno, line in enumerate(lines, start=1):
        found = [w for w in words if w and w in line]
        hits += [
            (lineno, w) for w in found if not any(w != other and w in other for other in found)
        ]
    return hits


def _line_origins(rendered: list[str], source: list[str], body_line: int) -> list[int]:
    """For each rendered line, the source line it most likely came from: the next body line,
    in order, whose literal text (tags removed) all appears in it; a line matched by none
    (a blank line, a loop's repeat, an include's text) takes the last line matched."""
    origins: list[int] = []
    cursor = body_line - 1
    last = body_line
    for out in rendered:
        for index in range(cursor, len(source)):
            chunks = [c.strip() for c in _TAG.split(source[index]) if c.strip()]
            if chunks and _in_order(chunks, out):
                last, cursor = index + 1, index + 1
                break
        origins.append(last)
    return origins


def _in_order(chunks: list[str], text: str) -> bool:
    start = 0
    for chunk in chunks:
        found = text.find(chunk, start)
        if found < 0:
            return False
        start = found + len(chunk)
    return True


def _q(text: str) -> str:
    return f'"{text}"'
