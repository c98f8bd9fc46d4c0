"""Masking for anything a person could be identified by, before it reaches a log or a screen."""

from __future__ import annotations

import hashlib
import logging
import re

_MOBILE = re.compile(r"(?<!\d)(\+?86[- ]?)?(1[3-9]\d)[- ]?(\d{4})[- ]?(\d{4})(?!\d)")


def mask_mobile(value: str) -> str:
    """138****5678: keep the carrier prefix and the last four digits, as banks display them."""
    digits = re.sub(r"\D", "", value)
    if len(digits) == 13 and digits.startswith("86"):
        digits = digits[2:]
    if len(digits) < 7:
        return "*" * len(digits)
    return f"{digits[:3]}****{digits[-4:]}"


def mask_name(value: str | None) -> str:
    """张*, 欧阳** or J***: the first character only."""
    if not value:
        return ""
    return value[0] + "*" * max(1, len(value) - 1)


def hash_id(value: str | None) -> str:
    """A short stable hash of an external id, for logs that must not carry the id itself."""
    if not value:
        return "-"
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:12]


def scrub(text: str) -> str:
    """Mask every mobile number found in free text."""
    return _MOBILE.sub(lambda m: f"{m.group(2)}****{m.group(4)}", text)


class ScrubFilter(logging.Filter):
    """Mask mobile numbers in every record, whatever code produced it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True
