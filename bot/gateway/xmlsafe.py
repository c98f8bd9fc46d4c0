"""Bounded, DTD-free XML parsing for callback bodies (outer envelope and decrypted message)."""

from __future__ import annotations

import re
from typing import Any
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as defused_etree
from defusedxml import DefusedXmlException

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
# a hostile, deeply nested body from exhausting the recursion limit.
MAX_DEPTH = 8


class XmlRejected(ValueError):
    """The body was refused: too large, carrying a DTD or entity, or not well-formed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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
        root = defused_etree.fromstring(data, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise XmlRejected(f"forbidden XML construct: {type(exc).__name__}") from None
    except ParseError as exc:
        raise XmlRejected(f"malformed XML: {exc}") from None
    except (ValueError, LookupError) as exc:
        # An encoding expat cannot use, declared in a way the check above did not read.
        raise XmlRejected(f"unusable encoding: {type(exc).__name__}") from None
    fields: dict[str, Any] = {}
    for child in root:
        if child.tag not in fields:
            fields[child.tag] = _value(child, 2)
    return fields


def _value(element: Element, depth: int) -> XmlValue:
    if len(element) == 0:
        return element.text or ""
    if depth >= MAX_DEPTH:
        raise XmlRejected(f"elements nested deeper than {MAX_DEPTH}")
    children: dict[str, list[Any]] = {}
    for child in element:
        children.setdefault(child.tag, []).append(_value(child, depth + 1))
    return children


__all__ = ["MAX_DEPTH", "XmlRejected", "XmlValue", "parse_xml"]
