"""Bounded, DTD-free XML parsing for callback bodies (outer envelope and decrypted message)."""

from __future__ import annotations

import re
from typing import Any, NoReturn
from xml.parsers import expat

# WeCom never sends a DTD, so any declaration is hostile. Checking the raw bytes is
# sub-microsecond, whereas expat only refuses a billion-laughs body after ~150 ms of CPU.
_DECLARATION = re.compile(rb"<!\s*(?:doctype|entity)", re.IGNORECASE)
# The encoding an XML declaration names. WeCom sends UTF-8 only; expat would look any other
# name up in Python's codecs, which raise ValueError (multi-byte) or LookupError (unknown) out
# of the parser, and a single-byte one would be decoded after the byte scan above.
_ENCODING = re.compile(rb"""^(?:\xef\xbb\xbf)?\s*<\?xml\b[^>]*?\bencoding\s*=\s*["']([^"']*)""")

# An XML value is either a leaf's text or, for an element with children, each child tag
# mapped to the list of its values in document order (`<MemChangeList><Item>a</Item>…`
# becomes {"Item": ["a", …]}).
XmlValue = str | dict[str, list[Any]]

# WeCom's deepest shape is xml/SelectedItems/SelectedItem/OptionIds/OptionId; the cap keeps
# a hostile, deeply nested body from growing the parser's stack without bound.
MAX_DEPTH = 8


class XmlRejected(ValueError):
    """The body was refused: too large, carrying a DTD or entity, or not well-formed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ForbiddenConstruct(XmlRejected):
    """A DTD, entity declaration or external entity reached the parser itself."""


def parse_xml(data: bytes, *, max_bytes: int) -> dict[str, Any]:
    """Parse `<xml>…</xml>` into a dict of the root's children (first occurrence wins).

    Leaves map to their text ("" when empty); elements with children map to
    `{child_tag: [values…]}`. Attributes are ignored: WeCom does not use them.
    """
    if len(data) > max_bytes:
        raise XmlRejected(f"body of {len(data)} bytes exceeds {max_bytes}")
    # UTF-16/32 would hide "<!DOCTYPE" from the byte scan below; WeCom sends UTF-8 only.
    if b"\x00" in data:
        raise XmlRejected("body is not UTF-8 (NUL byte)")
    if _DECLARATION.search(data):
        raise XmlRejected("DTD or entity declaration refused")
    declared = _ENCODING.match(data)
    if declared and declared.group(1).lower() not in (b"utf-8", b"utf8"):
        raise XmlRejected("declared encoding is not UTF-8")
    try:
        return parse_tree(data)
    except expat.ExpatError as exc:
        raise XmlRejected(f"malformed XML: {exc}") from None
    except (ValueError, LookupError) as exc:
        if isinstance(exc, XmlRejected):
            raise
        # An encoding expat cannot use, declared in a way the check above did not read.
        raise XmlRejected(f"unusable encoding: {type(exc).__name__}") from None


def parse_tree(data: bytes) -> dict[str, Any]:
    """expat straight into the field dict, with every DTD hook refusing.

    The byte scan in `parse_xml` is the first line; these handlers are the second, the
    same ones defusedxml sets, on expat's C parser rather than ElementTree's pure-Python
    one (which cost about 60 µs per callback body, a third of the gateway's own work).
    No DTD means no entity can be declared, so nothing can expand or reach outside.
    """
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse_doctype
    parser.EntityDeclHandler = _refuse_entity
    parser.UnparsedEntityDeclHandler = _refuse_entity
    parser.ExternalEntityRefHandler = _refuse_external
    parser.buffer_text = True
    builder = _Builder()
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.text
    parser.Parse(data, True)
    return builder.fields


class _Builder:
    """Element events → the nested dicts of `XmlValue`; the root's children into `fields`."""

    __slots__ = ("_stack", "fields")

    def __init__(self) -> None:
        self.fields: dict[str, Any] = {}
        # One frame per open element: [tag, text parts, children or None].
        self._stack: list[list[Any]] = []

    def start(self, tag: str, _attributes: Any) -> None:
        stack = self._stack
        if len(stack) >= MAX_DEPTH:
            raise XmlRejected(f"elements nested deeper than {MAX_DEPTH}")
        if stack and stack[-1][2] is None:
            stack[-1][2] = {}
        stack.append([tag, [], None])

    def end(self, _tag: str) -> None:
        tag, parts, children = self._stack.pop()
        value: XmlValue = "".join(parts) if children is None else children
        if len(self._stack) == 1:
            self.fields.setdefault(tag, value)
        elif self._stack:
            siblings: dict[str, list[Any]] = self._stack[-1][2]
            siblings.setdefault(tag, []).append(value)

    def text(self, data: str) -> None:
        frame = self._stack[-1] if self._stack else None
        # Text around children (indentation) is not a value; a leaf's text is.
        if frame is not None and frame[2] is None:
            frame[1].append(data)


def _refuse_doctype(*_args: Any) -> NoReturn:
    raise ForbiddenConstruct("forbidden XML construct: DTD")


def _refuse_entity(*_args: Any) -> NoReturn:
    raise ForbiddenConstruct("forbidden XML construct: entity declaration")


def _refuse_external(*_args: Any) -> NoReturn:
    raise ForbiddenConstruct("forbidden XML construct: external entity")


__all__ = ["MAX_DEPTH", "ForbiddenConstruct", "XmlRejected", "XmlValue", "parse_tree", "parse_xml"]
