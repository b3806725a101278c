"""Every `inferpool …` command the README and docs/ show names a command, subcommand and
options that exist: a renamed or dropped flag fails here, not on a user's terminal. Placeholders
(`-f DIR`, `--rate R`) are not parsed; only the words that start with '-' are looked up.
Budget: ≈2 s (it imports every command's module)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.core import TyperGroup

from inferpool.cli import COMMANDS, click_command

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "examples").rglob("*.md"))]
_FENCED = re.compile(r"```[a-z]*\n(.*?)```", re.S)
_IN_LINE = re.compile(r"(?:^|&& |\| |; |\$ )(inferpool [^#|;&]*)")
_INLINE_CODE = re.compile(r"`(inferpool [^`]+)`")
_NOT_AN_OPTION = re.compile(r"-+\d.*|-+")  # a negative number, a lone dash, a table rule


def documented_commands(text: str) -> list[str]:
    """`inferpool …` lines of fenced blocks (continuation lines joined) and inline code spans."""
    found = []
    for block in _FENCED.finditer(text):
        for line in block.group(1).replace("\\\n", " ").splitlines():
            if m := _IN_LINE.search(line.strip()):
                found.append(" ".join(m.group(1).split()))
    found += [" ".join(m.group(1).split()) for m in _INLINE_CODE.finditer(text)]
    return found


def problems(command_line: str) -> list[str]:
    """What in one documented command line does not exist (empty when it is all real)."""
    words = command_line.split()[1:]
    if not words or words[0] not in COMMANDS:
        return []  # prose ("inferpool is an …"), not a command line
    command, rest = click_command(words[0]), words[1:]
    if isinstance(command, TyperGroup):
        if not rest or rest[0].startswith("-"):
            return []
        sub = command.commands.get(rest[0])
        if sub is None:
            return [f"no command `inferpool {words[0]} {rest[0]}`"]
        command, rest = sub, rest[1:]
    known = {o for p in command.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
    out = []
    for word in rest:
        word = word.strip("[]()")
        if word.startswith("-") and not _NOT_AN_OPTION.fullmatch(word):
            name = word.split("=", 1)[0]
            if name not in known:
                out.append(f"`{command.name}` has no option {name}")
    return out


def test_the_check_finds_what_is_not_there() -> None:
    assert problems("inferpool serve -f DIR --no-auth") == []
    assert problems("inferpool serve -f DIR --no-such-flag") == ["`serve` has no option --no-such-flag"]
    assert problems("inferpool bench overhead --contenders serve:default --tests closed") == []
    assert problems("inferpool bench overheads") == ["no command `inferpool bench overheads`"]
    assert problems("inferpool bench compare [--rate R | --rates 2,4]") == []
    assert documented_commands("```sh\n$ inferpool serve \\\n  -f d --no-auth\n```\nor `inferpool top`") == [
        "inferpool serve -f d --no-auth",
        "inferpool top",
    ]


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(ROOT)) for d in DOCS])
def test_documented_commands_exist(doc: Path) -> None:
    wrong = [f"{line}: {p}" for line in documented_commands(doc.read_text()) for p in problems(line)]
    assert not wrong, "\n".join(wrong)


def test_the_docs_show_commands() -> None:
    """The extraction still finds the docs' commands (a format change would pass the test above vacuously)."""
    assert sum(len(documented_commands(d.read_text())) for d in DOCS) >= 150
