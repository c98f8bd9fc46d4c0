"""Writing a benchmark's section of docs/benchmarks.md."""

from __future__ import annotations

from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def write_section(heading: str, body: str) -> None:
    """Replace the section under `heading` (up to the next `## `), or add it at the end."""
    page = DOCS.read_text(encoding="utf-8")
    section = f"{heading}\n\n{body.rstrip()}\n"
    start = page.find(heading)
    if start < 0:
        page = page.rstrip("\n") + "\n\n" + section
    else:
        end = page.find("\n## ", start + len(heading))
        rest = "" if end < 0 else "\n" + page[end + 1 :]
        page = page[:start] + section + rest
    DOCS.write_text(page, encoding="utf-8")
