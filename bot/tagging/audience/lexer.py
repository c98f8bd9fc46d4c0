"""Tokenizer for audience expressions: hand-written, one pass, columns on every token."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from bot.tagging.audience.errors import ExpressionError

TokenKind = Literal[
    "ident", "keyword", "string", "number", "op", "lparen", "rparen", "comma", "end"
]
KEYWORDS = frozenset({"and", "or", "not", "in", "true", "false"})
MAX_LENGTH = 10_000
# Numbers beyond this magnitude are refused: past 2^53 floats no longer hold every whole
# number, SQLite's INTEGER ends at 2^63, and no amount or age comes near either.
MAX_NUMBER = 2**53
# NUL and lone surrogates (what undecodable command-line bytes become) cannot be sent to a
# database as text.
_UNENCODABLE = re.compile("[\x00\ud800-\udfff]")

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"\d[\d_]*(\.\d+)?([eE][+-]?\d+)?")
_OPERATORS = ("==", "!=", "<=", ">=", "<", ">")
# Chinese units, because operators write amounts the way the bank does: 50万, 1.2亿.
_UNITS = {"万": 10_000, "亿": 100_000_000}
# JSON's escapes (to_source prints text as JSON), plus \' for single-quoted text.
_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "n": "\n", "t": "\t", "r": "\r", "b": "\b"}
_ESCAPES |= {"f": "\f", "/": "/"}
_HEX4 = re.compile(r"[0-9a-fA-F]{4}")
# Characters a Chinese input method produces in place of the ASCII ones the grammar uses.
_FULL_WIDTH = {
    "（": "(",
    "）": ")",
    "，": ",",
    "“": '"',
    "”": '"',
    "‘": "'",
    "’": "'",
    "＝": "=",
    "！": "!",
    "＜": "<",
    "＞": ">",
}
_MISTAKES = {
    "=>": "'=>' is not an operator: use '>='",
    "=<": "'=<' is not an operator: use '<='",
    "<>": "'<>' is not an operator: use '!='",
    "&&": "use 'and' instead of '&&'",
    "||": "use 'or' instead of '||'",
    "&": "use 'and' instead of '&'",
    "|": "use 'or' instead of '|'",
    "=": "use '==' to compare",
    "!": "use 'not' instead of '!'",
}


@dataclass(frozen=True)
class Token:
    kind: TokenKind
    text: str
    col: int
    value: str | int | float | None = None

    @property
    def length(self) -> int:
        return max(1, len(self.text))

    def describe(self) -> str:
        if self.kind == "end":
            return "the end of the expression"
        if self.kind == "string":
            return f"text {self.text}"
        if self.kind == "number":
            return f"number {self.text}"
        return f"'{self.text}'"


def tokenize(source: str) -> list[Token]:
    """Split `source` into tokens ending with an `end` token, or raise ExpressionError."""
    if len(source) > MAX_LENGTH:
        raise ExpressionError(
            f"expression too long ({len(source)} characters, at most {MAX_LENGTH})",
            source,
            MAX_LENGTH + 1,
        )
    if bad := _UNENCODABLE.search(source):
        raise ExpressionError(
            f"unexpected character {bad.group()!r}: check the expression's encoding",
            source,
            bad.start() + 1,
        )
    tokens: list[Token] = []
    i = 0
    while i < len(source):
        ch = source[i]
        col = i + 1
        if ch.isspace():
            i += 1
        elif ch in "\"'":
            token, i = _string(source, i)
            tokens.append(token)
        # isdecimal, not isdigit: "²" is a digit but no number the grammar can read.
        elif ch.isdecimal() or (ch == "-" and source[i + 1 : i + 2].isdecimal()):
            token, i = _number(source, i)
            tokens.append(token)
        elif match := _IDENT.match(source, i):
            word = match.group()
            kind: TokenKind = "keyword" if word.lower() in KEYWORDS else "ident"
            text = word.lower() if kind == "keyword" else word
            tokens.append(Token(kind, text, col))
            i = match.end()
        elif source.startswith("<>", i):
            raise _bad_character(source, i)
        elif op := next((o for o in _OPERATORS if source.startswith(o, i)), None):
            tokens.append(Token("op", op, col))
            i += len(op)
        elif ch in "(),":
            kinds: dict[str, TokenKind] = {"(": "lparen", ")": "rparen", ",": "comma"}
            tokens.append(Token(kinds[ch], ch, col))
            i += 1
        else:
            raise _bad_character(source, i)
    tokens.append(Token("end", "", len(source) + 1))
    return tokens


def _string(source: str, start: int) -> tuple[Token, int]:
    quote = source[start]
    chars: list[str] = []
    i = start + 1
    while i < len(source):
        ch = source[i]
        if ch == quote:
            text = source[start : i + 1]
            return Token("string", text, start + 1, "".join(chars)), i + 1
        if ch == "\\" and source[i + 1 : i + 2] == "u" and _HEX4.fullmatch(source, i + 2, i + 6):
            code = chr(int(source[i + 2 : i + 6], 16))
            if _UNENCODABLE.match(code):
                raise ExpressionError(
                    f"escape '{source[i : i + 6]}' is not a character text may hold",
                    source,
                    i + 1,
                    6,
                )
            chars.append(code)
            i += 6
            continue
        if ch == "\\":
            escaped = source[i + 1 : i + 2]
            if escaped not in _ESCAPES:
                raise ExpressionError(
                    f"unknown escape '\\{escaped}' in text (use \\\" \\' \\\\ \\n \\t \\uXXXX)",
                    source,
                    i + 1,
                    2,
                )
            chars.append(_ESCAPES[escaped])
            i += 2
            continue
        chars.append(ch)
        i += 1
    raise ExpressionError(
        f"unterminated text: no closing {quote} for the quote here", source, start + 1
    )


def _number(source: str, start: int) -> tuple[Token, int]:
    sign = -1 if source[start] == "-" else 1
    digits_at = start + 1 if sign < 0 else start
    match = _NUMBER.match(source, digits_at)
    assert match is not None  # the caller saw a digit here
    end = match.end()
    raw = match.group().replace("_", "")
    try:
        value: int | float = float(raw) if any(c in raw for c in ".eE") else int(raw)
    except ValueError:  # more digits than int() converts
        raise _out_of_range(source, start, end) from None
    if source[end : end + 1] in _UNITS:
        value = value * _UNITS[source[end]]
        end += 1
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        value = int(value)
    if end < len(source) and (source[end].isalnum() or source[end] == "_"):
        raise ExpressionError(
            f"malformed number {source[start : end + 1]!r}", source, start + 1, end + 1 - start
        )
    if abs(value) > MAX_NUMBER:
        raise _out_of_range(source, start, end)
    return Token("number", source[start:end], start + 1, sign * value), end


def _out_of_range(source: str, start: int, end: int) -> ExpressionError:
    return ExpressionError(
        f"number {source[start:end]} is out of range (at most {MAX_NUMBER:_} either way)",
        source,
        start + 1,
        end - start,
    )


def _bad_character(source: str, i: int) -> ExpressionError:
    ch = source[i]
    for mistake, hint in _MISTAKES.items():
        if source.startswith(mistake, i):
            return ExpressionError(hint, source, i + 1, len(mistake))
    if ch in _FULL_WIDTH:
        return ExpressionError(
            f"full-width '{ch}': use the ASCII '{_FULL_WIDTH[ch]}' instead", source, i + 1
        )
    if not ch.isascii() and ch.isprintable():
        return ExpressionError(
            f"unexpected character '{ch}': text such as tag names must be in quotes, "
            f'e.g. tag("资产50万+")',
            source,
            i + 1,
        )
    return ExpressionError(f"unexpected character {ch!r}", source, i + 1)
