"""Plain tests for what the fuzz properties found, one input each, so each fix stays fixed
whatever the random search happens to try next time."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.calendar.content import ContentLibrary, sample_variables
from bot.calendar.lint import lint_content
from bot.calendar.schedule import CalendarError, load_calendar
from bot.clock import FrozenClock
from bot.config import Settings
from bot.gateway.xmlsafe import XmlRejected, parse_xml
from bot.store.db import Database
from bot.tagging import audience
from bot.tagging.audience import ExpressionError, to_source
from bot.templates import RenderError
from bot.yamlsource import YamlFileError, parse_yaml
from tests.fuzz.gateway_harness import CallbackHarness, Delivery
from tests.gateway.conftest import CORP_ID, RANDOM16

NOW = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]

# -- callbacks: an XML declaration naming an encoding Python cannot use was a 500 ---------


@pytest.mark.parametrize(
    "encoding", ["gbk", "utf-16", "nonsense", "rot13", "idna", "undefined", "cp1252"]
)
def test_a_declared_encoding_other_than_utf8_is_refused(encoding: str) -> None:
    body = f'<?xml version="1.0" encoding="{encoding}"?><xml><Encrypt>a</Encrypt></xml>'
    with pytest.raises(XmlRejected, match="not UTF-8"):
        parse_xml(body.encode(), max_bytes=65_536)


def test_a_declared_utf8_encoding_is_still_read() -> None:
    body = b'<?xml version="1.0" encoding="UTF-8"?><xml><Encrypt>a</Encrypt></xml>'
    assert parse_xml(body, max_bytes=65_536) == {"Encrypt": "a"}


@pytest.fixture
def callbacks(db: Database, clock: FrozenClock) -> Iterator[CallbackHarness]:
    with CallbackHarness(db, clock) as harness:
        yield harness


def test_an_envelope_declaring_gbk_is_a_bad_request(callbacks: CallbackHarness) -> None:
    envelope = callbacks.crypto.seal(
        b"<xml><MsgType>text</MsgType></xml>",
        timestamp=str(int(callbacks.clock.timestamp())),
        nonce="1",
        random16=RANDOM16,
    )
    body = f'<?xml version="1.0" encoding="gbk"?><xml><Encrypt>{envelope.encrypt}</Encrypt></xml>'
    response = callbacks.send(
        Delivery("POST", tuple(envelope.query().items()), body.encode(), False, None, False, "")
    )
    assert response.status_code == 400
    assert callbacks.rows() == 0


def test_a_sealed_message_declaring_an_unknown_encoding_is_refused_not_stored(
    callbacks: CallbackHarness,
) -> None:
    inner = b'<?xml version="1.0" encoding="nonsense"?><xml><MsgType>text</MsgType></xml>'
    envelope = callbacks.crypto.seal(
        inner, timestamp=str(int(callbacks.clock.timestamp())), nonce="1", random16=RANDOM16
    )
    body = envelope.callback_xml(CORP_ID).encode()
    response = callbacks.send(
        Delivery("POST", tuple(envelope.query().items()), body, False, inner, False, "")
    )
    assert response.status_code == 400
    assert callbacks.rows() == 0


# -- audience expressions ---------------------------------------------------------------


def test_a_superscript_digit_is_an_error_not_a_crash() -> None:
    # "²".isdigit() is true, but no number the lexer reads starts with it.
    with pytest.raises(ExpressionError) as caught:
        audience.parse("aum >= ²")
    assert caught.value.column == 8


@pytest.mark.parametrize(
    ("source", "column"),
    [
        ("aum >= 10000000000000000000000000000", 8),  # past SQLite's INTEGER
        ("age == 9223372036854775808", 8),
        ("aum >= 1e400", 8),  # infinity
        ("aum >= 9007199254740993", 8),  # past what a float holds exactly
        ("aum >= " + "9" * 5000, 8),  # past what int() converts
    ],
)
def test_numbers_out_of_range_are_errors_at_their_column(source: str, column: int) -> None:
    with pytest.raises(ExpressionError, match="out of range") as caught:
        audience.parse(source)
    assert caught.value.column == column


def test_the_largest_number_still_runs(sqlite_db: Database) -> None:
    assert audience.count(sqlite_db, "aum >= 9007199254740992 or age < -9007199254740992") == 0


@pytest.mark.parametrize("source", ["joined_within(99999999)", "login_within(36501)"])
def test_days_beyond_a_century_are_an_error_not_an_overflow(source: str) -> None:
    with pytest.raises(ExpressionError, match=r"whole number of days \(0 to 36500\)"):
        audience.parse(source)
    audience.parse(source.split("(")[0] + "(36500)")


@pytest.mark.parametrize(
    ("source", "column"),
    [('tag("\x00")', 6), ('branch == "\ud800"', 12), ('tag("\\u0000")', 6), ("\udcff", 1)],
)
def test_text_a_database_cannot_hold_is_an_error(source: str, column: int) -> None:
    with pytest.raises(ExpressionError) as caught:
        audience.parse(source)
    assert caught.value.column == column


def test_text_with_control_characters_prints_back_readably(sqlite_db: Database) -> None:
    parsed = audience.parse('tag("a\\u0001\\r\\b\\f/")')
    source = to_source(parsed.tree)
    assert audience.parse(source).tree == parsed.tree
    assert audience.count(sqlite_db, source, now=NOW) == 0


# -- calendar files ---------------------------------------------------------------------


def test_deeply_nested_yaml_is_read_or_refused_never_a_recursion_error() -> None:
    # libyaml reads it and the line map is built without recursion; PyYAML's pure-Python
    # composer recurses, and its RecursionError becomes a file error.
    text = "a: " + "[" * 2000 + "]" * 2000  # twice the recursion limit
    try:
        doc = parse_yaml(text, "deep.yaml")
    except YamlFileError:
        with pytest.raises(YamlFileError, match="nested too deeply"):
            parse_yaml(text, "deep.yaml")
    else:
        assert doc.line_of(("a", 0, 0, 0)) == 1


def test_nested_aliases_are_read_in_linear_time() -> None:
    levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for n in range(1, 6):
        prev = chr(ord("a") + n - 1)
        levels.append(f"{chr(ord('a') + n)}: &{chr(ord('a') + n)} [{', '.join(['*' + prev] * 10)}]")
    started = time.perf_counter()
    doc = parse_yaml("\n".join(levels), "laughs.yaml")
    assert time.perf_counter() - started < 2  # a million paths if every alias were walked
    assert len(doc.lines) < 100
    assert doc.line_of(("f", 3, 5)) == 5  # inside an alias: where its anchor stands


def test_a_forbidden_character_is_reported_with_its_line() -> None:
    with pytest.raises(YamlFileError) as caught:
        parse_yaml("name: x\nslots:\n  - id: \x00\n", "nul.yaml")
    assert caught.value.line == 3


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("from: 2026-02-30", 1, "day is out of range for month"),
        ("a: 1\nb:\n  - x\n  - 2026-13-01", 4, "month must be in 1..12"),
        ("at: 2026-01-01 25:00:00", 1, "hour must be in 0..23"),
    ],
)
def test_an_impossible_unquoted_date_is_a_file_error_at_its_line(
    text: str, line: int, message: str
) -> None:
    with pytest.raises(YamlFileError, match=message) as caught:
        parse_yaml(text, "dates.yaml")
    assert caught.value.line == line


def test_an_impossible_override_date_names_file_and_line(tmp_path: Path) -> None:
    folder = _calendar_file(
        tmp_path, "name: x\noverrides:\n  - {name: a, from: 2026-02-30, to: 2026-03-01}\n"
    )
    with pytest.raises(CalendarError) as caught:
        load_calendar(folder)
    assert caught.value.problems == [
        f"{folder / 'default.yaml'}:3: invalid YAML: day is out of range for month"
    ]


def _calendar_file(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "schedules"
    folder.mkdir()
    (folder / "default.yaml").write_text(text, encoding="utf-8")
    return folder


def test_a_template_name_too_long_for_the_system_is_not_found(tmp_path: Path) -> None:
    folder = _calendar_file(
        tmp_path,
        "name: x\nslots:\n  - {id: a, theme: t, days: [mon], time: '09:00', channel: group,\n"
        f"     template: '{'a/' * 3000}'}}\n",
    )
    with pytest.raises(CalendarError) as caught:
        load_calendar(folder, ROOT / "content")
    [problem] = caught.value.problems
    assert problem.startswith(f"{folder / 'default.yaml'}:4: template 'a/a/")
    assert problem.endswith("not found in " + str(ROOT / "content"))


def test_a_calendar_nested_too_deeply_names_the_file(tmp_path: Path) -> None:
    folder = _calendar_file(tmp_path, "name: " + "[" * 3000 + "]" * 3000)
    with pytest.raises(CalendarError) as caught:
        load_calendar(folder)
    assert caught.value.problems[0].startswith(str(folder / "default.yaml"))


# -- posts: errors in a template's own code escaped render and lint ------------------------


@pytest.fixture
def content(tmp_path: Path) -> Path:
    root = tmp_path / "content"
    (root / "calendar").mkdir(parents=True)
    return root


def _post(content: Path, body: str) -> str:
    (content / "calendar" / "x.md.j2").write_text(f"---\ntitle: t\n---\n{body}\n", "utf-8")
    return "calendar/x.md.j2"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("{{ 1/0 }}", "ZeroDivisionError"),
        ("{{ manager(1) }}", "TypeError"),
        ("{{ manager|wordwrap(0) }}", "ValueError"),
        ("{{ '%d'|format('x') }}", "TypeError"),
        ("{% include 'calendar/x.md.j2' %}", "RecursionError"),
    ],
)
def test_a_failing_template_is_a_render_error_naming_its_line(
    content: Path, body: str, error: str
) -> None:
    name = _post(content, body)
    library = ContentLibrary(content)
    settings = Settings()
    with pytest.raises(RenderError) as caught:
        library.render(name, sample_variables(settings, channel="group"))
    assert str(caught.value).startswith(f"{content / name}:4: {error}")
    [problem] = lint_content(library, settings)
    assert problem == str(caught.value)


def test_a_template_nested_too_deeply_is_a_lint_problem(content: Path) -> None:
    name = _post(content, "{{ " + "(" * 500 + "1" + ")" * 500 + " }}")
    library = ContentLibrary(content)
    assert lint_content(library, Settings()) == [f"{content / name}: nested too deeply"]
    assert [str(p) for p in library.templates.check()] == [f"{content / name}: nested too deeply"]
