"""Hypothesis strategies for hostile XML: random trees, deep nesting, huge attributes,
entities, DTDs, CDATA tricks, declared encodings, truncation, and WeCom-shaped messages."""

from __future__ import annotations

import re
from xml.sax.saxutils import escape

from hypothesis import strategies as st

from tests.gateway.conftest import FIXTURES

# WeCom's field names, so random trees sometimes look like real messages.
FIELD_NAMES = [
    "ToUserName", "FromUserName", "CreateTime", "MsgType", "Event", "ChangeType", "UserID",
    "ExternalUserID", "State", "WelcomeCode", "ChatId", "MemChangeList", "Item", "Encrypt",
    "AgentID", "Content", "TagType", "Id", "SelectedItems", "SelectedItem", "OptionIds",
]  # fmt: skip
ENCODINGS = [
    "utf-8", "UTF-8", "utf8", "gbk", "GB2312", "big5", "shift_jis", "utf-16", "utf-16-le",
    "utf-32", "utf-7", "latin-1", "cp1252", "koi8-r", "ascii", "unicode_escape",
    "raw_unicode_escape", "rot13", "hex", "base64", "zlib", "idna", "punycode", "undefined",
    "charmap", "mbcs", "nonsense", "",
]  # fmt: skip
DTDS = [
    b'<!DOCTYPE xml [<!ENTITY a "b">]>',
    b'<!DOCTYPE xml SYSTEM "file:///etc/passwd">',
    b'<!doctype xml [<!entity x SYSTEM "http://127.0.0.1/x">]>',
    b"<! DOCTYPE xml>",
    b'<!DOCTYPE x [<!ENTITY % p SYSTEM "http://127.0.0.1/p.dtd"> %p;]>',
    b'<!DOCTYPE x [<!ENTITY a "aaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">'
    b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]>',
    b"<!DOCTYPE xml PUBLIC '-//W3C//DTD XHTML 1.0//EN' 'http://127.0.0.1/x.dtd'>",
]
ENTITY_REFS = [
    "&amp;", "&lt;", "&gt;", "&quot;", "&apos;", "&#65;", "&#x4e2d;", "&#0;", "&#xD800;",
    "&#x110000;", "&undefined;", "&a;", "&", "&#;", "&#x;", "&lol9;",
]  # fmt: skip
# Characters XML 1.0 allows in text (no controls other than tab/newline/CR, no surrogates).
_XML_CHAR = st.characters(
    codec="utf-8",  # no surrogates
    exclude_characters="".join(chr(c) for c in range(32) if c not in (9, 10, 13)) + "\ufffe\uffff",
)
xml_safe_text = st.text(_XML_CHAR, max_size=40)
_NAME_START = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_"
names = st.one_of(
    st.sampled_from(FIELD_NAMES),
    st.builds(
        lambda first, rest: first + rest,
        st.sampled_from(_NAME_START),
        st.text(_NAME_START + "0123456789.-", max_size=12),
    ),
)
# Strategies are built once: building them inside a draw costs more than drawing from them.
_TEXT_PARTS = st.lists(
    st.one_of(
        xml_safe_text.map(escape),
        st.sampled_from(ENTITY_REFS),
        st.sampled_from(["<", "]]>", "<![CDATA[", "<!--", "-->", "<?", "?>"]),
        xml_safe_text.map(lambda t: f"<![CDATA[{t.replace(']]>', '')}]]>"),
        # "]]>" split across two CDATA sections: legal, and reads back as "]]>".
        st.just("<![CDATA[a]]]]><![CDATA[>b]]>"),
        xml_safe_text.map(lambda t: f"<!--{t.replace('--', '')}-->"),
    ),
    max_size=4,
)
# Element text: escaped text, raw markup characters, entity references, CDATA tricks.
text_content = _TEXT_PARTS.map("".join)


_ATTRIBUTE_SIZES = st.sampled_from([0, 1, 10, 1000, 30_000])
_ATTRIBUTE_VALUES = st.sampled_from(["x", "&amp;", "<", '"', "&a;"])
_QUOTES = st.sampled_from(['"', "'", ""])


@st.composite
def _attributes(draw: st.DrawFn) -> str:
    out = []
    for _ in range(draw(st.integers(0, 3))):
        value = draw(_ATTRIBUTE_VALUES) * draw(_ATTRIBUTE_SIZES)
        quote = draw(_QUOTES)
        out.append(f" {draw(names)}={quote}{value}{quote}")
    if draw(st.booleans()):
        out.append("".join(f' a{i}="{i}"' for i in range(draw(st.integers(0, 500)))))
    return "".join(out)


# Zero or more attributes, some of them huge, some duplicated or unquoted.
attributes = _attributes()


def elements(max_leaves: int = 6) -> st.SearchStrategy[str]:
    """Random element trees (names mostly WeCom's), sometimes malformed."""
    leaf = st.builds(
        lambda name, attrs, text: f"<{name}{attrs}>{text}</{name}>",
        names,
        attributes,
        text_content,
    )
    return st.recursive(
        leaf,
        lambda children: st.builds(
            lambda name, kids, closed: (
                f"<{name}>{''.join(kids)}" + (f"</{name}>" if closed else "")
            ),
            names,
            st.lists(children, max_size=3),
            st.integers(0, 9).map(lambda n: n != 0),  # now and then left open
        ),
        max_leaves=max_leaves,
    )


# One element nested up to thousands deep (WeCom's deepest shape is 5).
deep = st.builds(
    lambda depth, name, text: f"<{name}>" * depth + escape(text) + f"</{name}>" * depth,
    st.integers(5, 3000),
    st.sampled_from(["a", "Item", "MemChangeList"]),
    xml_safe_text,
)


@st.composite
def prolog(draw: st.DrawFn) -> bytes:
    """An optional BOM, XML declaration (any encoding name), DTD, comments and PIs."""
    out = b""
    if draw(st.integers(0, 9)) == 0:
        out += b"\xef\xbb\xbf"
    if draw(st.booleans()):
        encoding = draw(st.sampled_from(ENCODINGS))
        declared = f' encoding="{encoding}"' if encoding else ""
        out += f'<?xml version="1.0"{declared}?>'.encode()
    if draw(st.integers(0, 3)) == 0:
        out += draw(st.sampled_from(DTDS))
    if draw(st.booleans()):
        out += b"<!-- c --><?pi data?>"
    return out


_CHILDREN = st.lists(st.one_of(elements(), deep), max_size=3)
_PROLOG = prolog()


@st.composite
def _documents(draw: st.DrawFn) -> bytes:
    body = f"<xml{draw(attributes)}>{''.join(draw(_CHILDREN))}</xml>"
    return draw(damaged(draw(_PROLOG) + body.encode("utf-8")))


# A whole document: prolog, a root with random children, then damage of some kind.
xml_documents = _documents()


@st.composite
def damaged(draw: st.DrawFn, data: bytes) -> bytes:
    """The bytes as they are, re-encoded, truncated, or with garbage spliced in."""
    how = draw(st.sampled_from(["as-is", "as-is", "as-is", "encode", "truncate", "splice"]))
    if how == "encode":
        codec = draw(st.sampled_from(["gbk", "utf-16", "utf-16-le", "latin-1", "utf-32"]))
        return data.decode("utf-8", "replace").encode(codec, "replace")
    if how == "truncate" and data:
        return data[: draw(st.integers(0, len(data) - 1))]
    if how == "splice":
        at = draw(st.integers(0, len(data)))
        junk = draw(st.binary(min_size=1, max_size=16))
        return data[:at] + junk + data[at:]
    return data


# -- WeCom-shaped messages: well-formed, so an authentic delivery of one must be stored ---

_FIXTURES = sorted(FIXTURES.glob("*.xml"))
_LEAF = re.compile(rb"<(\w+)>(<!\[CDATA\[)?([^<\]]*)(\]\]>)?</\1>")


@st.composite
def _wecom_messages(draw: st.DrawFn) -> bytes:
    """A fixture callback with some leaf values replaced by random (escaped) text."""
    path = draw(st.sampled_from(_FIXTURES))
    data = path.read_bytes()
    leaves = list(_LEAF.finditer(data))
    if not leaves:
        return data
    chosen = draw(st.sets(st.sampled_from(range(len(leaves))), max_size=len(leaves)))
    out = bytearray()
    last = 0
    for index, match in enumerate(leaves):
        if index not in chosen:
            continue
        value = draw(xml_safe_text)
        cdata = draw(st.booleans()) and "]]>" not in value
        replacement = f"<![CDATA[{value}]]>" if cdata else escape(value)
        tag = match.group(1).decode()
        out += data[last : match.start()] + f"<{tag}>{replacement}</{tag}>".encode()
        last = match.end()
    out += data[last:]
    return bytes(out)


def dtd_like(data: bytes) -> bool:
    """Whether the bytes carry a document type or entity declaration in plain sight."""
    return re.search(rb"<!\s*(?:doctype|entity)", data, re.IGNORECASE) is not None


wecom_messages = _wecom_messages()
