"""YAML documents with the source line of every field.

PyYAML's composer keeps a `start_mark` on each node; walking the node tree once gives a
map from JSON path to line, so validation errors can point at the offending field
instead of at the whole document.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

Path = tuple[str | int, ...]


@dataclass
class Document:
    """One YAML document: its data, its first line, and the line of each field (all 1-based)."""

    data: Any
    line: int
    lines: dict[Path, int] = field(default_factory=dict)
    # A key given twice in one mapping: (its path, the line of the later one, the line of the
    # first). PyYAML keeps the last value without a word; kubectl refuses such a document.
    duplicates: list[tuple[Path, int, int]] = field(default_factory=list)
    # Keys YAML 1.1 reads as booleans (a bare `on`, `yes`, `off`...): (mapping's path, the
    # boolean) -> the key as written. The data holds True where the author wrote `on`, so the
    # loader names the key as written when validation trips over it.
    boolean_keys: dict[Path, str] = field(default_factory=dict)

    def line_of(self, path: Path) -> int:
        """Line of `path`, or of its nearest present ancestor when the field is missing."""
        for end in range(len(path), 0, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return self.line


class YAMLSyntaxError(Exception):
    """A document that PyYAML cannot parse, with the 1-based line of the problem."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


_BOOL_TAG = "tag:yaml.org,2002:bool"


def _walk(
    node: yaml.Node, path: Path, lines: dict[Path, int], booleans: dict[Path, str], active: set[int]
) -> None:
    """Record field lines (and keys read as booleans) below `node`; `active` holds the nodes on
    the current path, so a self-referencing alias (`a: &x [*x]`) is walked once instead of forever."""
    if id(node) in active:
        return
    active.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            child = (*path, str(key_node.value))
            lines[child] = key_node.start_mark.line + 1
            if key_node.tag == _BOOL_TAG:
                value = yaml.SafeLoader.bool_values.get(str(key_node.value).lower())
                if value is not None:
                    booleans.setdefault((*path, value), str(key_node.value))
            _walk(value_node, child, lines, booleans, active)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*path, index)
            lines[child] = item.start_mark.line + 1
            _walk(item, child, lines, booleans, active)
    active.discard(id(node))


def _duplicate_keys(node: yaml.Node, path: Path, out: list[tuple[Path, int, int]], active: set[int]) -> None:
    """Keys given twice in one mapping below `node`, read before construction merges `<<` keys
    into their mappings (a merged key that the mapping sets again is no duplicate)."""
    if id(node) in active:
        return
    active.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key, line = str(key_node.value), key_node.start_mark.line + 1
            if key in first:
                out.append(((*path, key), line, first[key]))
            else:
                first[key] = line
            _duplicate_keys(value_node, (*path, key), out, active)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _duplicate_keys(item, (*path, index), out, active)
    active.discard(id(node))


def parse_documents(text: str, first_line: int = 1) -> Iterator[Document]:
    """Yield each non-empty document of a (multi-document) YAML text.

    A syntax error raises YAMLSyntaxError after the documents before it were yielded,
    so a caller keeps what was readable. `first_line` offsets every line (for YAML
    embedded in another document, such as a ConfigMap value).
    """
    try:
        loader = yaml.SafeLoader(text)  # the reader rejects control characters already here
    except yaml.YAMLError as exc:
        raise YAMLSyntaxError(first_line, f"YAML error: {exc}") from exc
    try:
        while True:
            try:
                if not loader.check_node():
                    return
                node = loader.get_node()
                if node is None:
                    continue
                duplicates: list[tuple[Path, int, int]] = []
                _duplicate_keys(node, (), duplicates, set())
                data = loader.construct_document(node)
            except yaml.MarkedYAMLError as exc:
                mark = exc.problem_mark or exc.context_mark
                line = (mark.line if mark is not None else 0) + first_line
                problem = exc.problem or str(exc)
                raise YAMLSyntaxError(line, f"YAML syntax error: {problem}") from exc
            except yaml.YAMLError as exc:
                raise YAMLSyntaxError(first_line, f"YAML error: {exc}") from exc
            if data is None:
                continue
            offset = first_line - 1
            lines: dict[Path, int] = {}
            booleans: dict[Path, str] = {}
            _walk(node, (), lines, booleans, set())
            if offset:
                lines = {path: line + offset for path, line in lines.items()}
                duplicates = [(path, line + offset, was + offset) for path, line, was in duplicates]
            yield Document(
                data=data,
                line=node.start_mark.line + first_line,
                lines=lines,
                duplicates=duplicates,
                boolean_keys=booleans,
            )
    finally:
        loader.dispose()
