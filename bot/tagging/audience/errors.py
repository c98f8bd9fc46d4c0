"""ExpressionError: what is wrong with an audience expression, and at which column."""

from __future__ import annotations

import unicodedata


def display_width(text: str) -> int:
    """Terminal cells `text` takes: CJK characters are two cells wide, so a caret under a
    Chinese tag name has to be shifted by their width, not by their count."""
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


class ExpressionError(ValueError):
    """An audience expression that cannot be parsed, checked or compiled.

    `column` is 1-based and counts characters (not bytes, not terminal cells); `length` is
    how many characters the problem spans, for the caret line.
    """

    def __init__(self, message: str, source: str, column: int, length: int = 1) -> None:
        self.message = message
        self.source = source
        self.column = max(1, column)
        self.length = max(1, length)
        super().__init__(f"column {self.column}: {message}")

    def caret_line(self) -> str:
        """Spaces up to the column, then carets under the offending text."""
        start = self.column - 1
        before = self.source[:start].replace("\t", " ")
        marked = self.source[start : start + self.length]
        return " " * display_width(before) + "^" * max(1, display_width(marked))

    def render(self) -> str:
        """The message, the expression and a caret line pointing at the problem."""
        # Newlines would break the caret alignment; the expression is one line for display.
        shown = self.source.replace("\n", " ").replace("\t", " ")
        return f"column {self.column}: {self.message}\n  {shown}\n  {self.caret_line()}"
