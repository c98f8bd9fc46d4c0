"""Calendar files and posts under fuzzing: random YAML documents, mutations of the shipped
schedules/default.yaml and content/calendar/*.md.j2, and hostile YAML and Jinja snippets;
and the properties loading, rendering and lint must keep."""

from __future__ import annotations

import copy
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

from bot.calendar.content import ContentLibrary, sample_variables
from bot.calendar.lint import lint_content
from bot.calendar.schedule import Calendar, CalendarError, load_calendar
from bot.config import Settings
from bot.templates import RenderError
from tests.fuzz.bounds import bounded

ROOT = Path(__file__).resolve().parents[2]
SCHEDULE = (ROOT / "schedules" / "default.yaml").read_text(encoding="utf-8")
CONTENT = ROOT / "content"
POSTS = sorted(p.name for p in (CONTENT / "calendar").glob("*.md.j2"))
# Loading a calendar or linting the posts takes milliseconds; seconds would be a hang.
LOAD_SECONDS = 10.0

# -- text mutations -------------------------------------------------------------------------

YAML_SNIPPETS = [
    "[" * 300 + "]" * 300,
    "{a: " * 200 + "1" + "}" * 200,
    "- " * 100 + "x",
    "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c]\n"
    "e: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n",
    "!!python/object/apply:os.system ['true']",
    "!!binary aGVsbG8=",
    "<<: {name: x}",
    "? [a, b]\n: 1",
    "? - a\n: 1",
    "&x a: *x",
    "*undefined",
    "time: 10:00",
    "time: 99999999999999999999",
    "priority: 1e400",
    "priority: .nan",
    "from: 2026-02-30",
    "from: 99999-01-01",
    "to: 2026-12-21 10:00:00",
    "days: [mon, mon]",
    "days: mon",
    "id: MON",
    "template: /etc/passwd",
    "template: ../../etc/passwd",
    "template: " + "a" * 300,
    "template: " + "a/" * 3000,
    "template: 'calendar/\\x00'",
    "audience: 'aum >= ²'",
    "audience: 'tag(\"\\ud800\")'",
    "groups: '((((((((((((((((((((((((((('",
    "channel: fax",
    "holiday: {policy: variant}",
    "attachments: [{link: {title: t, url: ftp://x}}]",
    "attachments: " + "[{image: {url: 'https://x'}}, " * 12 + "]",
    "\ufeff",
    "\x00",
    "\t- tab",
    "%YAML 1.1\n---",
    "--- a\n--- b",
    "'unclosed",
    "名字: 值",
]  # fmt: skip


@st.composite
def mutated_text(draw: st.DrawFn, text: str, snippets: list[str]) -> str:
    """`text` after a few line- and character-level edits and hostile snippets."""
    lines = text.split("\n")
    for _ in range(draw(st.integers(0, 3))):
        how = draw(st.sampled_from(["delete", "duplicate", "swap", "indent", "snippet", "chars"]))
        at = draw(st.integers(0, max(0, len(lines) - 1)))
        if how == "delete" and lines:
            del lines[at]
        elif how == "duplicate" and lines:
            lines.insert(at, lines[at])
        elif how == "swap" and len(lines) > 1:
            other = draw(st.integers(0, len(lines) - 1))
            lines[at], lines[other] = lines[other], lines[at]
        elif how == "indent" and lines:
            lines[at] = draw(st.sampled_from(["", " ", "  ", "\t", "    "])) + lines[at].lstrip()
        elif how == "snippet":
            indent = draw(st.sampled_from(["", "  ", "    ", "      "]))
            snippet = draw(st.sampled_from(snippets))
            lines.insert(at, "\n".join(indent + part for part in snippet.split("\n")))
        elif lines:
            line = lines[at]
            pos = draw(st.integers(0, len(line)))
            junk = draw(st.text(max_size=5))
            cut = draw(st.integers(0, 5))
            lines[at] = line[:pos] + junk + line[pos + cut :]
    return "\n".join(lines)


def _scalars() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**20), 10**20),
        st.floats(),
        st.text(max_size=20),
        st.sampled_from(["mon", "09:30", "group", "single", "moments", "skip", "variant",
                         "calendar/fri_movie.md.j2", 'tag("A")', "https://x", "wx1"]),
        st.dates(date(1, 1, 1), date(9999, 12, 31)),
        st.datetimes(datetime(1, 1, 1), datetime(9999, 12, 31)),  # noqa: DTZ001
    )  # fmt: skip


CALENDAR_KEYS = [
    "name", "slots", "overrides", "id", "theme", "days", "time", "channel", "audience",
    "groups", "tags", "template", "attachments", "priority", "holiday", "window_policy",
    "lateness_minutes", "policy", "from", "to", "mode", "skip", "link", "image", "miniprogram",
    "title", "url", "description", "cover", "appid", "page", "cover_media",
]  # fmt: skip
_KEYS = st.one_of(st.sampled_from(CALENDAR_KEYS), st.text(max_size=8))
# Random documents whose keys are mostly the calendar's own, so validation goes deep.
yaml_data = st.recursive(
    _scalars(),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(_KEYS, children, max_size=5),
    ),
    max_leaves=25,
)


# libyaml when PyYAML has it, as bot.yamlsource uses: the oracle must read files the same way.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_SCHEDULE_DATA = yaml.load(SCHEDULE, Loader=_LOADER)


def _dump(data: Any) -> str:
    return yaml.dump(data, Dumper=_DUMPER, allow_unicode=True, sort_keys=False)


@st.composite
def data_mutations(draw: st.DrawFn) -> str:
    """The shipped calendar as data, with one node replaced, removed or added, re-dumped."""
    data = copy.deepcopy(_SCHEDULE_DATA)
    path: list[Any] = []
    node = data
    while isinstance(node, dict | list) and node and draw(st.integers(0, 3)) > 0:
        key = draw(st.sampled_from(list(node) if isinstance(node, dict) else range(len(node))))
        path.append(key)
        node = node[key]
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    how = draw(st.sampled_from(["replace", "remove", "add"]))
    if not path:
        return _dump(draw(yaml_data)) if how == "replace" else _dump(data)
    key = path[-1]
    if how == "replace":
        parent[key] = draw(yaml_data)
    elif how == "remove":
        del parent[key]
    elif isinstance(parent, dict):
        parent[draw(_KEYS)] = draw(yaml_data)
    else:
        parent.insert(key, draw(yaml_data))
    return _dump(data)


schedule_files = st.one_of(
    mutated_text(SCHEDULE, YAML_SNIPPETS),
    data_mutations(),
    yaml_data.map(_dump),
    st.lists(st.sampled_from(YAML_SNIPPETS), min_size=1, max_size=3).map("\n".join),
)


@dataclass(frozen=True)
class ScheduleCase:
    """One or two calendar files (a second file makes cross-file ids and skips matter)."""

    files: tuple[bytes, ...]


@st.composite
def schedule_cases(draw: st.DrawFn) -> ScheduleCase:
    first = draw(schedule_files).encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 9)) == 0:
        first = draw(st.sampled_from([b"\xff\xfe" + first, first[: len(first) // 2] + b"\xc3"]))
    files = [first]
    if draw(st.integers(0, 4)) == 0:
        files.append(draw(schedule_files).encode("utf-8", "surrogatepass"))
    return ScheduleCase(tuple(files))


# -- posts ----------------------------------------------------------------------------------

JINJA_SNIPPETS = [
    "{{ 1/0 }}",
    "{{ manager[10] }}",
    "{{ manager(1) }}",
    "{{ manager.__class__ }}",
    "{{ manager|wordwrap(0) }}",
    "{{ manager|truncate(-1) }}",
    "{{ '%d'|format('x') }}",
    "{{ date|format(1) }}",
    "{{ manager|int(base=99) }}",
    "{% for x in 5 %}{% endfor %}",
    "{{ undefined_variable }}",
    "{{ x.y }}",
    "{% include 'calendar/{name}' %}",
    "{% extends 'calendar/{name}' %}",
    "{% import 'calendar/{name}' as m %}",
    "{% include 'calendar/missing.md.j2' %}",
    "{% include '../../etc/passwd' %}",
    "{% include '" + "a" * 300 + "' %}",
    "{% include theme %}",
    "{{ (" * 400 + "1" + ")" * 400 + " }}",
    "{% if 1 %}" * 300 + "{% endif %}" * 300,
    "{% raw %}",
    "{{",
    "{% endif %}",
    "{#",
    "---",
    "title: x",
    "wealth: maybe",
    "product: [a]",
    "[" * 300,
    "? [a]\n: 1",
    "1: x",
    "\x00",
    "\ufeff",
]  # fmt: skip


@dataclass(frozen=True)
class PostCase:
    """One post of content/calendar rewritten (or a new one added)."""

    name: str
    text: bytes


@st.composite
def post_cases(draw: st.DrawFn) -> PostCase:
    name = draw(st.sampled_from([*POSTS, "new_post.md.j2"]))
    original = CONTENT / "calendar" / name
    base = original.read_text(encoding="utf-8") if original.exists() else "---\ntitle: t\n---\n"
    snippets = [s.replace("{name}", name) for s in JINJA_SNIPPETS]
    text = draw(mutated_text(base, snippets)).encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 9)) == 0:
        text = text[: draw(st.integers(0, len(text)))] + draw(st.binary(max_size=4))
    return PostCase(name, text)


# -- the harness ----------------------------------------------------------------------------

_WHERE = re.compile(r"^(?P<path>.+?)(?::(?P<line>\d+))?: ", re.DOTALL)


def _line_count(data: bytes) -> int:
    return data.count(b"\n") + 1


class CalendarHarness:
    """A scratch folder with a copy of content/ and a schedules folder, rewritten per case.

    Use as a context manager; the folder is removed at the end.
    """

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="calendar-fuzz-"))
        self.content = self.root / "content"
        shutil.copytree(CONTENT, self.content)
        self.schedules = self.root / "schedules"
        self.schedules.mkdir()
        self.settings = Settings()
        self.calendar = load_calendar(ROOT / "schedules", self.content)

    def __enter__(self) -> CalendarHarness:
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    # -- calendar files --

    def check_schedule(self, case: ScheduleCase) -> str:
        """A Calendar, or a CalendarError whose every problem names one of the files, with a
        line inside it whenever the file was readable YAML with content."""
        for old in self.schedules.iterdir():
            old.unlink()
        paths = [self.schedules / f"{n}.yaml" for n in ("default", "extra")[: len(case.files)]]
        for path, data in zip(paths, case.files, strict=False):
            path.write_bytes(data)
        with bounded(LOAD_SECONDS, "loading a calendar"):
            try:
                calendar = load_calendar(self.schedules, self.content)
            except CalendarError as exc:
                files = {str(path): data for path, data in zip(paths, case.files, strict=False)}
                self._name_files(exc.problems, files)
                return "error"
        assert isinstance(calendar, Calendar)
        lint_content(ContentLibrary(self.content), self.settings, calendar)
        return "loaded"

    def _name_files(self, problems: list[str], files: dict[str, bytes]) -> None:
        assert problems
        for problem in problems:
            self._names_a_file(problem, files)

    @staticmethod
    def _names_a_file(problem: str, files: dict[str, bytes]) -> None:
        match = _WHERE.match(problem)
        assert match is not None, problem
        path, line = match.group("path"), match.group("line")
        assert path in files, problem
        data = files[path]
        if line is not None:
            # One past the last line is where an empty document at the end starts.
            assert 1 <= int(line) <= _line_count(data) + 1, problem
            return
        # No line: only for a file that is not UTF-8, not YAML at all, or empty.
        try:
            text = data.decode("utf-8")
            node = yaml.compose(text, Loader=_LOADER)
        except (UnicodeDecodeError, yaml.YAMLError, RecursionError):
            return
        assert node is None, f"no line in {problem!r}"

    # -- posts --

    def check_post(self, case: PostCase) -> str:
        """meta and render give a result or a RenderError naming the file; lint never raises
        and names a file in every problem."""
        path = self.content / "calendar" / case.name
        shipped = CONTENT / "calendar" / case.name
        original = shipped if shipped.exists() else None
        path.write_bytes(case.text)
        try:
            return self._check_post(f"calendar/{case.name}", path)
        finally:
            if original is None:
                path.unlink()
            else:
                shutil.copy(original, path)

    def _check_post(self, name: str, path: Path) -> str:
        library = ContentLibrary(self.content)
        failure: str | None = None
        with bounded(LOAD_SECONDS, "reading, rendering and linting a post"):
            try:
                library.meta(name)
                library.per_target(name)
                library.render(name, sample_variables(self.settings, channel="group"))
            except RenderError as exc:
                failure = str(exc)
            problems = lint_content(library, self.settings, self.calendar)
        assert failure is None or failure.startswith(str(self.content)), failure
        assert all(isinstance(p, str) for p in problems)
        for problem in problems:
            assert problem.startswith((str(self.content), str(ROOT))), problem
        return f"{'render-error' if failure else 'ok'}/{'lint' if problems else 'clean'}"
