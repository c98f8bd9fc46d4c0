"""One row of the bank's export: which column is which, and the row turned into attributes."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, NamedTuple

from bot.config import ImportConfig
from bot.tagging.fields import (
    Cell,
    FieldError,
    age_on,
    normalise_mobile,
    one_day_after,
    parse_age,
    parse_aum,
    parse_date,
    parse_datetime,
    parse_flag,
    parse_key,
    parse_products,
    parse_text,
)
from bot.tagging.readers import ImportFileError

IDENTITY_FIELDS = ("customer_key", "external_userid", "mobile")
MATCH_FIELDS = ("external_userid", "mobile")
# Logical field (a key of `import.columns`) → customer_profiles column it sets.
ATTRIBUTE_FIELDS = {
    "aum": "aum",
    "payroll": "payroll",
    "birth_date": "birth_date",
    "age": "age",
    "products": "products",
    "branch": "branch",
    "occupation": "occupation",
    "interests": "interests",
    "district": "district",
    "last_login": "last_login_at",
    "opened_at": "opened_at",
}
KNOWN_FIELDS = (*IDENTITY_FIELDS, *ATTRIBUTE_FIELDS)


class RowError(ValueError):
    """The row is rejected; the message names each bad column by its header."""


@dataclass(frozen=True)
class ColumnMap:
    """Where each configured field sits in this file's header."""

    positions: dict[str, int]
    titles: dict[str, str]
    width: int
    not_in_file: tuple[str, ...]
    ignored: tuple[str, ...]
    # customer_profiles columns this file sets; the others are left as they are.
    attributes: tuple[str, ...]


def resolve_columns(path: Path, header: Sequence[str], mapping: Mapping[str, str]) -> ColumnMap:
    """Map `import.columns` onto the header, or explain what is missing before any write."""
    unknown = sorted(set(mapping) - set(KNOWN_FIELDS))
    if unknown:
        raise ImportFileError(
            f"import.columns: unknown field(s) {', '.join(unknown)}; "
            f"known fields: {', '.join(KNOWN_FIELDS)}"
        )
    index: dict[str, int] = {}
    repeated: set[str] = set()
    for position, title in enumerate(header):
        if title in index:
            repeated.add(title)
        index.setdefault(title, position)
    positions = {name: index[title] for name, title in mapping.items() if title in index}
    clashing = sorted(title for title in repeated if title in mapping.values())
    problems = []
    if clashing:
        problems.append(f"column(s) appear more than once: {', '.join(clashing)}")
    if "customer_key" not in positions:
        problems.append(f"missing required column {_title(mapping, 'customer_key')}")
    if not any(name in positions for name in MATCH_FIELDS):
        problems.append(
            "missing a column to match customers by: "
            + " or ".join(_title(mapping, name) for name in MATCH_FIELDS)
        )
    if problems:
        expected = ", ".join(f"{title} ({name})" for name, title in mapping.items())
        found = ", ".join(header) or "(nothing)"
        raise ImportFileError(
            f"{path}: " + "; ".join(problems) + f". Expected headers: {expected}. "
            f"The file has: {found}"
        )
    attributes = [ATTRIBUTE_FIELDS[name] for name in ATTRIBUTE_FIELDS if name in positions]
    if "birth_date" in positions and "age" not in attributes:
        attributes.append("age")  # derived from the birth date
    mapped = {mapping[name] for name in positions}
    return ColumnMap(
        positions=positions,
        titles={name: mapping[name] for name in positions},
        width=len(header),
        not_in_file=tuple(title for name, title in mapping.items() if name not in positions),
        ignored=tuple(title for title in header if title and title not in mapped),
        attributes=tuple(attributes),
    )


def _title(mapping: Mapping[str, str], name: str) -> str:
    return f"{mapping.get(name, name)!r} ({name})"


# Cells worth remembering: few distinct values over many rows (amounts and login times are
# nearly all distinct). The cap bounds memory whatever the file.
CACHED_FIELDS = frozenset(
    {"payroll", "products", "branch", "occupation", "interests", "district", "opened_at"}
)
CACHE_LIMIT = 50_000
_MISS = object()


class _Failed:
    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


def remembered(cache: dict[str, Any], parse: Callable[[Cell], Any], cell: str) -> Any:
    """Parse a text cell once; later rows with the same text reuse the outcome."""
    try:
        outcome = parse(cell)
    except FieldError as exc:
        outcome = _Failed(str(exc))
    if len(cache) < CACHE_LIMIT:
        cache[cell] = outcome
    return outcome


def memo(parse: Callable[[Cell], Any]) -> Callable[[Cell], Any]:
    """`parse` remembered per text cell, errors included, up to CACHE_LIMIT cells."""
    cache: dict[str, Any] = {}

    def run(cell: Cell) -> Any:
        if type(cell) is not str:
            return parse(cell)
        hit = cache.get(cell, _MISS)
        if hit is _MISS:
            hit = remembered(cache, parse, cell)
        if type(hit) is _Failed:
            raise FieldError(hit.message)
        return hit

    return run


def _then(
    parse: Callable[[Cell], Any], encode: Callable[[Any], Any] | None
) -> Callable[[Cell], Any]:
    if encode is None:
        return parse
    return lambda cell: encode(parse(cell))


class ParsedRow(NamedTuple):
    """One row as read: its key, what to match it by and its attribute values in the store's
    form (in the order of `ColumnMap.attributes`), or the error that rejects it (then the
    match columns are whatever could be read)."""

    line: int
    # The cells as they were in the file, for the reject file: a rejected row's only. Good
    # rows go without theirs (pickling that text was a good part of a large import).
    cells: Sequence[Cell]
    key: str  # "" when the row has none (then `error` says so)
    external_userid: str | None
    mobile: str | None
    values: tuple[Any, ...]
    error: str | None

    def rejected(self, error: str, cells: Sequence[Cell]) -> ParsedRow:
        """This row rejected for `error`, with its original cells."""
        return self._replace(cells=cells, values=(), error=error)


class RowParser:
    """Validates rows against one file's columns; `today` is the import's, not the wall clock's."""

    def __init__(
        self,
        columns: ColumnMap,
        config: ImportConfig,
        *,
        now: datetime,
        tz: tzinfo,
        strict_width: bool,
        encoders: Mapping[str, Callable[[Any], Any] | None],
    ) -> None:
        self._columns = columns
        self._strict_width = strict_width
        positions = columns.positions
        titles = columns.titles
        self._key_at = positions["customer_key"]
        self._ext_at = positions.get("external_userid")
        self._mobile_at = positions.get("mobile")
        self._birth_at = positions.get("birth_date")
        self._age_at = positions.get("age")
        slots = {name: index for index, name in enumerate(columns.attributes)}
        self._width = len(slots)
        self._birth_slot = slots.get("birth_date")
        self._age_slot = slots.get("age")
        true_values = frozenset(config.true_values)
        false_values = frozenset(config.false_values)
        separator = config.products_separator
        today = now.astimezone(tz).date()
        # In `tz` itself: aware values with the same tzinfo compare without offset lookups.
        latest_login = one_day_after(now).astimezone(tz)
        parsers: dict[str, Callable[[Cell], Any]] = {
            "aum": parse_aum,
            "payroll": lambda cell: parse_flag(cell, true_values, false_values),
            "products": lambda cell: parse_products(cell, separator),
            "branch": parse_text,
            "occupation": parse_text,
            "interests": lambda cell: parse_text(cell, limit=None),
            "district": parse_text,
            "last_login": lambda cell: parse_datetime(cell, tz=tz, latest=latest_login),
            "opened_at": lambda cell: parse_date(cell, latest=today),
        }
        # (slot, position, title, parse, cache or None), looped over for every row.
        self._plain: list[tuple[int, int, str, Callable[[Cell], Any], dict[str, Any] | None]] = [
            (
                slots[ATTRIBUTE_FIELDS[name]],
                positions[name],
                titles[name],
                _then(parse, encoders.get(ATTRIBUTE_FIELDS[name])),
                {} if name in CACHED_FIELDS else None,
            )
            for name, parse in parsers.items()
            if name in positions
        ]
        encode_birth = encoders.get("birth_date")

        def birth(cell: Cell) -> tuple[Any, int | None]:
            day = parse_date(cell, latest=today)
            if day is None:
                return None, None
            return (encode_birth(day) if encode_birth else day), age_on(day, today)

        self._birth = memo(birth)
        self._age = memo(parse_age)

    def read(self, line: int, cells: Sequence[Cell]) -> ParsedRow:
        """The row, or its error: the key is checked first, so duplicates are found even in
        otherwise bad rows. A rejected row keeps whatever match columns are readable, so
        the import can tell a forgotten customer's row and keep it out of the reject file."""
        try:
            key = self._key(cells)
        except RowError as exc:
            return ParsedRow(line, cells, "", *self._identity(cells), (), str(exc))
        try:
            return self._parse(line, cells, key)
        except RowError as exc:
            return ParsedRow(line, cells, key, *self._identity(cells), (), str(exc))

    def _identity(self, cells: Sequence[Cell]) -> tuple[str | None, str | None]:
        """The row's external_userid and mobile as far as they can be read, else None."""
        external_userid = mobile = None
        if self._ext_at is not None and self._ext_at < len(cells):
            with suppress(FieldError):
                external_userid = parse_key(cells[self._ext_at])
        if self._mobile_at is not None and self._mobile_at < len(cells):
            mobile = normalise_mobile(cells[self._mobile_at])
        return external_userid, mobile

    def _key(self, cells: Sequence[Cell]) -> str:
        if self._strict_width and len(cells) != self._columns.width:
            raise RowError(f"has {len(cells)} fields, the header has {self._columns.width}")
        try:
            key = parse_key(cells[self._key_at] if self._key_at < len(cells) else None)
        except FieldError as exc:
            raise RowError(f"{self._columns.titles['customer_key']}: {exc}") from None
        if key is None:
            raise RowError(f"{self._columns.titles['customer_key']}: missing customer key")
        return key

    def _parse(self, line: int, cells: Sequence[Cell], key: str) -> ParsedRow:
        """Every attribute of the row, or a RowError listing each bad column."""
        titles = self._columns.titles
        problems: list[str] = []
        values: list[Any] = [None] * self._width
        if len(cells) < self._columns.width:
            cells = [*cells, *[None] * (self._columns.width - len(cells))]
        # The hot loop of an import: cached fields are looked up inline.
        for slot, position, title, parse, cache in self._plain:
            cell = cells[position]
            if cache is not None and type(cell) is str:
                value = cache.get(cell, _MISS)
                if value is _MISS:
                    value = remembered(cache, parse, cell)
                if type(value) is _Failed:
                    problems.append(f"{title}: {value.message}")
                else:
                    values[slot] = value
                continue
            try:
                values[slot] = parse(cell)
            except FieldError as exc:
                problems.append(f"{title}: {exc}")
        external_userid = None
        if self._ext_at is not None:
            try:
                external_userid = parse_key(cells[self._ext_at])
            except FieldError as exc:
                problems.append(f"{titles['external_userid']}: {exc}")
        mobile = None if self._mobile_at is None else normalise_mobile(cells[self._mobile_at])
        try:
            self._birth_and_age(cells, values)
        except RowError as exc:
            problems.append(str(exc))
        if problems:
            raise RowError("; ".join(problems))
        return ParsedRow(line, (), key, external_userid, mobile, tuple(values), None)

    def _birth_and_age(self, cells: Sequence[Cell], values: list[Any]) -> None:
        """A birth date sets the age (on the import's date); without one, the age column does."""
        age: int | None = None
        if self._birth_at is not None and self._birth_slot is not None:
            try:
                birth, age = self._birth(cells[self._birth_at])
            except FieldError as exc:
                raise RowError(f"{self._columns.titles['birth_date']}: {exc}") from None
            values[self._birth_slot] = birth
        if age is None and self._age_at is not None:
            try:
                age = self._age(cells[self._age_at])
            except FieldError as exc:
                raise RowError(f"{self._columns.titles['age']}: {exc}") from None
        if self._age_slot is not None:
            values[self._age_slot] = age
