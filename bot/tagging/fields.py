"""Parsing one cell of the bank's export per field: keys, amounts, flags, dates and text."""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import date, datetime, time, timedelta, tzinfo
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

# What a cell can hold: CSV gives strings, openpyxl gives typed values.
Cell = str | int | float | Decimal | bool | date | datetime | time | None

# Column widths in customer_profiles: longer values would abort the whole transaction on
# PostgreSQL, so they are rejected per row instead.
KEY_MAX = 64
SHORT_TEXT_MAX = 64

# Above ten trillion yuan a personal AUM is an export error, and it keeps every accepted
# amount within the 15 significant digits a float (the column's Python type) holds exactly.
AUM_LIMIT = Decimal("1e13")
CENT = Decimal("0.01")
MAX_AGE = 150
EARLIEST = date(1900, 1, 1)

_FULLWIDTH = str.maketrans("０１２３４５６７８９，．－＋：／　", "0123456789,.-+:/ ")
_PLAIN_AMOUNT = re.compile(r"\d{1,13}(?:\.\d{1,2})?")
_AMOUNT = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[+-]?\.\d+")
_DATE = re.compile(r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?")
_DATETIME = re.compile(
    r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?"
    r"(?:[ T]+(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?)?"
)
_NON_DIGITS = re.compile(r"[^0-9]")


class FieldError(ValueError):
    """One cell cannot be used; the message says why, without echoing personal data."""


def cell_text(value: Cell) -> str:
    """A cell as the text an operator would see (integral floats without `.0`)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    return str(value)


def _clean(value: Cell) -> str:
    return cell_text(value).translate(_FULLWIDTH).strip()


def parse_key(value: Cell, *, limit: int = KEY_MAX) -> str | None:
    """An identifier (customer key, external_userid): trimmed text, numbers without `.0`."""
    text = value.strip() if type(value) is str else cell_text(value)
    if not text:
        return None
    if len(text) > limit:
        raise FieldError(f"longer than {limit} characters")
    if "\x00" in text:
        raise FieldError("contains a NUL character")
    return text


def parse_text(value: Cell, *, limit: int | None = SHORT_TEXT_MAX) -> str | None:
    """Free-form text: trimmed, empty means unknown."""
    text = cell_text(value)
    if not text:
        return None
    if limit is not None and len(text) > limit:
        raise FieldError(f"longer than {limit} characters")
    if "\x00" in text:
        raise FieldError("contains a NUL character")
    return text


def parse_aum(value: Cell) -> float | None:
    """Assets under management in yuan, to the fen; thousands separators allowed."""
    if type(value) is str:
        text = value.strip()
        # The common shapes ("12345.67", "12,345.67") need no Decimal: float() of at most
        # 13 integer digits and 2 decimals is already exact to the fen.
        if _PLAIN_AMOUNT.fullmatch(text):
            return float(text)
        if "," in text and _AMOUNT.fullmatch(text):
            plain = text.replace(",", "")
            if _PLAIN_AMOUNT.fullmatch(plain):
                return float(plain)
    if isinstance(value, bool):
        raise FieldError("not an amount")
    if isinstance(value, int | float | Decimal):
        amount = Decimal(str(value))
        if not amount.is_finite():
            raise FieldError("not an amount")
    else:
        text = _clean(value).replace(" ", "")
        if not text:
            return None
        if not _AMOUNT.fullmatch(text):
            raise FieldError(f"not an amount: {text[:20]!r}")
        amount = Decimal(text.replace(",", ""))
    if amount < 0:
        raise FieldError("negative amount")
    if amount >= AUM_LIMIT:
        raise FieldError("amount out of range")
    return float(amount.quantize(CENT, rounding=ROUND_HALF_UP))


def parse_flag(
    value: Cell, true_values: Collection[str], false_values: Collection[str]
) -> bool | None:
    """A yes/no flag spelt as the bank spells it (config `import.true_values`/`false_values`)."""
    if isinstance(value, bool):
        return value
    text = cell_text(value)
    if text in true_values:
        return True
    if text in false_values:
        return False
    if not text:
        return None
    raise FieldError(f"not a yes/no value: {text[:20]!r}")


def parse_age(value: Cell) -> int | None:
    """An age in whole years (`45`, `45.0`, `45岁`)."""
    text = _clean(value).removesuffix("岁").strip()
    if not text:
        return None
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise FieldError(f"not an age: {text[:20]!r}") from None
    if not number.is_finite() or number != number.to_integral_value():
        raise FieldError(f"not an age: {text[:20]!r}")
    age = int(number)
    if not 0 <= age <= MAX_AGE:
        raise FieldError(f"age out of range: {age}")
    return age


def age_on(birth: date, today: date) -> int:
    """Whole years from `birth` to `today` (a 29 February birthday counts from 1 March)."""
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


def parse_date(value: Cell, *, latest: date) -> date | None:
    """A calendar date (`2024-01-05`, `2024/1/5`, `20240105`, `2024年1月5日`, or a
    date-time whose day is taken), between 1900-01-01 and `latest`."""
    if value is None:
        return None
    if isinstance(value, datetime):
        day = value.date()
    elif isinstance(value, date):
        day = value
    else:
        text = _clean(value)
        if not text:
            return None
        day = _date_from_text(text)
    if not EARLIEST <= day <= latest:
        raise FieldError(f"date out of range: {day.isoformat()}")
    return day


def _date_from_text(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        pass
    match = _DATE.fullmatch(text)
    try:
        if match:
            return date(int(match[1]), int(match[2]), int(match[3]))
        return datetime.fromisoformat(text).date()
    except ValueError:
        raise FieldError(f"not a date: {text[:30]!r}") from None


def parse_datetime(value: Cell, *, tz: tzinfo, latest: datetime) -> datetime | None:
    """A moment (`2024-01-05 10:20[:30]`, ISO with `T` or an offset, or a date meaning
    midnight); without an offset it is local time in `tz` (Asia/Shanghai)."""
    if value is None:
        return None
    if type(value) is str:
        try:
            # Most exports use ISO shapes, which the C parser reads without a cache.
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            moment = None
        if moment is not None:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=tz)
            if moment.year < EARLIEST.year or moment > latest:
                raise FieldError(f"date-time out of range: {moment.isoformat()}")
            return moment
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value, time())
    else:
        text = _clean(value)
        if not text:
            return None
        moment = _datetime_from_text(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    if moment.year < EARLIEST.year or moment > latest:
        raise FieldError(f"date-time out of range: {moment.isoformat()}")
    return moment


def _datetime_from_text(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    match = _DATETIME.fullmatch(text)
    try:
        if match:
            micro = int((match[7] or "0").ljust(6, "0"))
            return datetime(  # noqa: DTZ001 - the zone is attached by the caller
                int(match[1]),
                int(match[2]),
                int(match[3]),
                int(match[4] or 0),
                int(match[5] or 0),
                int(match[6] or 0),
                micro,
            )
    except ValueError:
        pass
    raise FieldError(f"not a date-time: {text[:30]!r}")


def parse_products(value: Cell, separator: str) -> list[str]:
    """Products held: split on the configured separator, trimmed, deduplicated and sorted,
    so a reordered export is not a change."""
    text = cell_text(value)
    if not text:
        return []
    names = {name.strip() for name in text.split(separator)}
    names.discard("")
    return sorted(names)


def normalise_mobile(value: Cell) -> str | None:
    """Digits only, without a +86/0086/86 country prefix; None if too short to match on."""
    text = value if type(value) is str else cell_text(value)
    if not text.isascii():
        text = text.translate(_FULLWIDTH)
    digits = text if text.isdigit() else _NON_DIGITS.sub("", text)
    if digits.startswith("0086"):
        digits = digits[4:]
    elif len(digits) == 13 and digits.startswith("86"):
        digits = digits[2:]
    return digits if len(digits) >= 7 else None


def one_day_after(moment: datetime) -> datetime:
    """The latest last-login accepted: a day of clock skew between bank and bot is tolerated."""
    return moment + timedelta(days=1)
