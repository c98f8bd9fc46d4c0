"""Read YAML while remembering where each key stood, so errors can name file and line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Loc = tuple[str | int, ...]
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlFileError(Exception):
    """A YAML file could not be read; the message names the file and line."""

    def __init__(self, path: Path | str, line: int | None, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.message = message
        where = f"{self.path}:{line}" if line else self.path
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class YamlDocument:
    """The parsed data plus a map from key path to 1-based line number."""

    path: str
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Loc) -> int | None:
        """Line of the deepest key along `loc` that the file has."""
        probe = tuple(loc)
        while probe:
            if probe in self.lines:
                return self.lines[probe]
            probe = probe[:-1]
        return self.lines.get((), None)


def _walk(root: yaml.Node, lines: dict[Loc, int]) -> None:
    """Record the line of every key path, in document order (a repeated key's last line
    wins, as its value does). Iterative, and each node once: an alias is its anchor's node,
    so nested aliases would otherwise be walked exponentially often, and deep nesting would
    exhaust the recursion limit."""
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, Loc, int | None]] = [(root, (), None)]
    while stack:
        node, loc, key_line = stack.pop()
        if key_line is None:
            lines.setdefault(loc, node.start_mark.line + 1)
        else:
            lines[loc] = key_line
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            children = [(v, (*loc, k.value), k.start_mark.line + 1) for k, v in node.value]
        elif isinstance(node, yaml.SequenceNode):
            children = [(item, (*loc, index), None) for index, item in enumerate(node.value)]
        else:
            continue
        stack.extend(reversed(children))


def _refused_scalar_line(root: yaml.Node) -> int | None:
    """The line of the first scalar PyYAML cannot construct (its constructor raises a plain
    ValueError, without a position)."""
    constructor = yaml.SafeLoader("")
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            try:
                constructor.construct_object(node)
            except ValueError:
                return int(node.start_mark.line) + 1
        elif isinstance(node, yaml.MappingNode):
            stack.extend(reversed([part for pair in node.value for part in pair]))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(reversed(node.value))
    return None


def parse_yaml(text: str, path: Path | str) -> YamlDocument:
    """Parse YAML text safely (no Python tags), keeping key line numbers."""
    # libyaml's parser when PyYAML has it (about 10x faster), one parse for the node tree
    # and the data built from it.
    loader = _LOADER(text)
    node: yaml.Node | None = None
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise YamlFileError(path, line, f"invalid YAML: {exc.problem or exc}") from None
    except yaml.reader.ReaderError as exc:
        # A character YAML forbids (NUL, most controls): its position gives the line.
        line = text.count("\n", 0, exc.position) + 1
        char = f"#x{exc.character:04x}" if isinstance(exc.character, int) else exc.character
        raise YamlFileError(path, line, f"invalid YAML: character {char}: {exc.reason}") from None
    except yaml.YAMLError as exc:
        raise YamlFileError(path, None, f"invalid YAML: {exc}") from None
    except RecursionError:
        raise YamlFileError(path, None, "invalid YAML: nested too deeply") from None
    except ValueError as exc:
        # An unquoted value YAML reads as a date that is none: `from: 2026-02-30`.
        line = _refused_scalar_line(node) if node is not None else None
        raise YamlFileError(path, line, f"invalid YAML: {exc}") from None
    finally:
        loader.dispose()
    lines: dict[Loc, int] = {}
    if node is not None:
        _walk(node, lines)
    return YamlDocument(path=str(path), data=data, lines=lines)


def load_yaml(path: Path) -> YamlDocument:
    """Read and parse a UTF-8 YAML file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise YamlFileError(path, None, "file not found") from None
    except UnicodeDecodeError as exc:
        raise YamlFileError(path, None, f"not UTF-8: {exc.reason}") from None
    return parse_yaml(text, path)
