"""Problems found while loading manifests, in the one-line form editors and CI logs understand."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Literal

from pydantic import ValidationError

from inferpool.api.yamlpos import Path

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class LoadError:
    """One problem: `file:line: Kind/name: field: message` (field and Kind/name omitted when unknown)."""

    file: str
    line: int
    kind: str | None
    name: str | None
    field: str | None
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        parts = [f"{self.file}:{self.line}" if self.line else self.file]  # line 0: the path as a whole
        if self.kind:
            parts.append(f"{self.kind}/{self.name or '<unnamed>'}")
        if self.field:
            parts.append(self.field)
        message = self.message if self.severity == "error" else f"warning: {self.message}"
        parts.append(message)
        return ": ".join(parts)


@dataclass(frozen=True)
class Problem:
    """A problem at a JSON path of a document, before it is placed in a file."""

    path: Path
    message: str
    severity: Severity = "error"


def format_path(path: Path) -> str:
    """("spec", "targetModels", 0, "weight") -> "spec.targetModels[0].weight"."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif "." in part or "/" in part:
            text += f"[{part}]" if text else part
        else:
            text += f".{part}" if text else part
    return text


_SCALAR_TYPES = {
    "int_type": "an integer",
    "float_type": "a number",
    "string_type": "a string",
    "bool_type": "true or false",
}


def _described(value: object) -> str:
    """A YAML value as a reader of the file would name it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "the boolean " + str(value).lower()
    if isinstance(value, str):
        return f"the string {value!r}" if len(value) <= 40 else "a string"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _message(error: dict[str, object]) -> str:
    kind = error["type"]
    msg = str(error["msg"])
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind in ("value_error", "assertion_error"):
        return msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind == "literal_error":
        return msg.replace("Input should be", "must be")
    if kind in ("dict_type", "model_type"):  # model_type: a nested object given as null or a scalar
        return "must be a mapping"
    if kind == "list_type":
        return "must be a list"
    if kind in _SCALAR_TYPES:  # strict, as the API server is: "8000" is not a port number
        return f"must be {_SCALAR_TYPES[kind]}, not {_described(error.get('input'))}"
    return (
        msg.replace("Input should", "should")
        .replace("List should", "should")
        .replace("Dictionary should", "should")
    )


def from_validation_error(exc: ValidationError, prefix: Path = ()) -> list[Problem]:
    """Pydantic errors as problems at document paths (dict-key errors point at the key itself)."""
    problems: list[Problem] = []
    for error in exc.errors():
        loc = [part for part in error["loc"] if part != "[key]"]
        problems.append(Problem(path=(*prefix, *loc), message=_message(dict(error))))
    return problems


def name_boolean_keys(
    problems: Iterable[Problem],
    boolean_keys: Mapping[Path, str],
    field_for: Callable[[Path, str], str | None] = lambda parent, key: None,
) -> list[Problem]:
    """Problems at a key YAML 1.1 read as a boolean (`on:` -> True), said in those words and
    placed at the key as written: pydantic sees only `True` ("Keys should be strings" at
    `[1]`). `field_for(mapping path, key)` names the field the author likely meant, if known."""
    out: list[Problem] = []
    for problem in problems:
        # True == 1, so a path ending in the bool or the int pydantic makes of it finds the key
        raw = boolean_keys.get(problem.path) if problem.path and isinstance(problem.path[-1], int) else None
        if raw is None:
            out.append(problem)
            continue
        parent = problem.path[:-1]
        value = str(bool(problem.path[-1])).lower()
        message = f"`{raw}` is read by YAML as the boolean {value}, not as the key '{raw}'"
        meant = field_for(parent, raw)
        message += f"; write `{meant}:`" if meant else f"; quote it ('{raw}') if that key is meant"
        out.append(replace(problem, path=(*parent, raw), message=message))
    return out
