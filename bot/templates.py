"""One Jinja environment over `content/`, strict about undefined variables."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from jinja2 import (
    BaseLoader,
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

    def __init__(self, root: Path, *, loader: BaseLoader | None = None) -> None:
        # `loader` lets a content family preprocess its files (calendar posts strip their
        # front matter) while sharing these environment settings.
        self.root = root
        self.env = Environment(
            loader=FileSystemLoader(str(root)) if loader is None else loader,
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=False,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def render(self, name: str, **data: Any) -> str:
        return self.renderer(name)(**data)

    def renderer(self, name: str) -> Callable[..., str]:
        """`render` for one template, loaded once: a day's plan renders one post per group,
        and loading it each time (two file stats and a cache lookup) cost as much as the
        rendering itself."""
        try:
            template = self.env.get_template(name)
        except Exception as exc:
            raise self._error(name, exc) from None

        def render(**data: Any) -> str:
            try:
                return template.render(**data).strip()
            except Exception as exc:
                raise self._error(name, exc) from None

        return render

    def _error(self, name: str, exc: Exception) -> RenderError:
        """Jinja's error, as a RenderError naming the file and line."""
        if isinstance(exc, TemplateNotFound):
            if exc.name == name:
                return RenderError(f"{self.root / name}: template not found")
            where = _template_frame(exc.__traceback__) or str(self.root / name)
            return RenderError(f"{where}: template {exc.name!r} not found")
        if isinstance(exc, TemplateSyntaxError):
            path = exc.filename or str(self.root / name)
            return RenderError(f"{path}:{exc.lineno}: {exc.message}")
        where = _template_frame(exc.__traceback__) or str(self.root / name)
        if isinstance(exc, UndefinedError):
            return RenderError(f"{where}: {exc.message}")
        if isinstance(exc, TemplateError):
            return RenderError(f"{where}: {exc}")
        # The template's own code failed ({{ 1/0 }}, a filter given a bad argument, an
        # include of itself): that is the template's error, not the caller's.
        return RenderError(f"{where}: {type(exc).__name__}: {exc}")

    def exists(self, name: str) -> bool:
        try:
            return (self.root / name).is_file()
        except (OSError, ValueError):  # a name the system refuses outright (too long, a NUL)
            return False

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
            except RecursionError:
                problems.append(TemplateProblem(str(path), None, "nested too deeply"))
        return problems


def _template_frame(tb: TracebackType | None) -> str | None:
    """The "file:line" of the innermost template frame (an included template's, if that is where
    the error arose). Jinja rewrites tracebacks so that template frames carry the template's
    file and line and a `__jinja_exception__` global; other frames are Python's own."""
    found: str | None = None
    while tb is not None:
        frame = tb.tb_frame
        if "__jinja_exception__" in frame.f_globals:
            found = f"{frame.f_code.co_filename}:{tb.tb_lineno}"
        tb = tb.tb_next
    return found
