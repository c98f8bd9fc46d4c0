"""One Jinja environment over `content/`, strict about undefined variables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
    UndefinedError,
)


class RenderError(Exception):
    """A template could not be rendered; the message names the template (and line)."""


@dataclass(frozen=True)
class TemplateProblem:
    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.message}"


class Templates:
    """Loads templates from the content folder; `render` fails loudly on a missing variable."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = Environment(
            loader=FileSystemLoader(str(root)),
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=False,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def render(self, name: str, **data: Any) -> str:
        try:
            return self.env.get_template(name).render(**data).strip()
        except TemplateNotFound:
            raise RenderError(f"{self.root / name}: template not found") from None
        except TemplateSyntaxError as exc:
            raise RenderError(f"{self.root / name}:{exc.lineno}: {exc.message}") from None
        except UndefinedError as exc:
            raise RenderError(f"{self.root / name}: {exc.message}") from None
        except TemplateError as exc:
            raise RenderError(f"{self.root / name}: {exc}") from None

    def exists(self, name: str) -> bool:
        return (self.root / name).is_file()

    def check(self) -> list[TemplateProblem]:
        """Compile every template under the root; report syntax errors with file and line."""
        problems: list[TemplateProblem] = []
        if not self.root.is_dir():
            return [TemplateProblem(str(self.root), None, "content folder not found")]
        for path in sorted(self.root.rglob("*.j2")):
            rel = path.relative_to(self.root).as_posix()
            try:
                source = path.read_text(encoding="utf-8")
            except UnicodeDecodeError as exc:
                problems.append(TemplateProblem(str(path), None, f"not UTF-8: {exc.reason}"))
                continue
            try:
                self.env.parse(source, name=rel, filename=str(path))
            except TemplateSyntaxError as exc:
                problems.append(
                    TemplateProblem(str(path), exc.lineno, exc.message or "syntax error")
                )
        return problems
