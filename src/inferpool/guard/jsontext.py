"""Redaction inside JSON text: tool-call arguments, which are JSON written as a string (or, in
Anthropic's API, an object screened as its JSON text), streamed a few characters at a time.

A match's marker (`[REDACTED:kind]`, no quote or backslash in it) may replace the characters of
a JSON string's content and nothing else: a quote, a colon or a brace replaced would leave
arguments the client cannot parse. So a match is cut along the JSON's structure: its parts
inside strings are replaced (an escape sequence whole, never half of one), a number it touches
becomes the marker as a string (`"[REDACTED:phone]"`: a bare marker is no JSON value), and the
punctuation between them stays. A streamed fragment starts in the state where the one before it
ended (`JsonState`), so the same cut holds however the events split the arguments.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# What a piece of JSON text is: the content of a string (plain characters, or one escape
# sequence), a number (or the part of one), or anything else (quotes, punctuation, spacing,
# true/false/null), which a redaction leaves in place.
CONTENT, ESCAPE, NUMBER, OTHER = range(4)

_INSIDE = re.compile(r'[^"\\]+|\\u[0-9A-Fa-f]{0,4}|\\.?|"', re.S)
# outside strings: a quote, a number (a '-' ending the text may begin one), anything else
_OUTSIDE = re.compile(r'(")|(-?[0-9][-+0-9.eE]*|-\Z)|[^"0-9-]+|-')
_NUMBER_GOES_ON = re.compile(r"[-+0-9.eE]+")  # (the rest of a number the last fragment cut)


@dataclass(frozen=True, slots=True)
class JsonState:
    """Where a fragment of JSON text starts: in a string or not; in an escape sequence the last
    fragment cut (`escape_left` characters of it still to come; -1: it ended on the backslash,
    so the next character says how long it is) or in a number; how many characters before the
    fragment that escape or number began (`unit_back`), and where the escape is taken to end
    (`unit_ahead` characters into the fragment: after a lone backslash, the longest escape's
    end, as the fragment that cut it took it, so both decide alike whether a span touches it);
    for a number, how much of it the fragment that began it held (`number_head`: whether a span
    touches that part decided whether it went, so it decides for the rest too)."""

    in_string: bool = False
    escape_left: int = 0
    in_number: bool = False
    unit_back: int = 0
    unit_ahead: int = 0
    number_head: int = 0


OUTSIDE = JsonState()

# A piece: (start, end, kind, starts_here, unit_start, unit_end), in the fragment's positions.
# An escape or a number is redacted whole, so a piece of one carries the extent a span must
# touch for it to go (`unit_start` below 0: it began in an earlier fragment; an escape's
# `unit_end` may lie past the fragment's end; a number's extent is its part in the fragment
# that began it). `starts_here`: it begins in this piece (its marker goes there).
Piece = tuple[int, int, int, bool, int, int]


def pieces(text: str, state: JsonState = OUTSIDE) -> tuple[list[Piece], JsonState]:
    """`text` cut into pieces, and the state it ends in."""
    out: list[Piece] = []
    pos, n = 0, len(text)
    in_string, left, in_number = state.in_string, state.escape_left, state.in_number
    if left and n:  # the rest of an escape sequence the last fragment cut
        if left < 0:  # (it ended on the backslash: `\u` and four hex digits, or one character)
            left = 5 if text[0] == "u" else 1
        end = min(n, left)
        out.append((0, end, ESCAPE, False, -state.unit_back, state.unit_ahead))
        pos, left = end, left - end
    while pos < n:
        if in_string:
            match = _INSIDE.match(text, pos)
            assert match is not None  # (every character starts a piece)
            end = match.end()
            piece = match.group()
            if piece == '"':
                out.append((pos, end, OTHER, True, pos, end))
                in_string = False
            elif piece[0] == "\\":
                if len(piece) == 1:  # (a backslash ending the text: taken as `\\u` and four digits)
                    left = -1
                    out.append((pos, end, ESCAPE, True, pos, pos + 6))
                else:
                    full = 6 if piece[1] == "u" else 2
                    left = full - len(piece)
                    out.append((pos, end, ESCAPE, True, pos, pos + full))
            else:
                out.append((pos, end, CONTENT, True, pos, end))
        elif in_number and pos == 0 and (going_on := _NUMBER_GOES_ON.match(text)):
            end = going_on.end()
            out.append((0, end, NUMBER, False, -state.unit_back, -state.unit_back + state.number_head))
        else:
            match = _OUTSIDE.match(text, pos)
            assert match is not None
            end = match.end()
            if match.group(1):
                out.append((pos, end, OTHER, True, pos, end))
                in_string = True
            else:
                out.append((pos, end, NUMBER if match.group(2) else OTHER, True, pos, end))
        in_number = not in_string and out[-1][2] == NUMBER
        pos = end
    in_unit = bool(out) and bool(left or (in_number and pos == n))
    unit_back = n - out[-1][4] if in_unit else 0
    unit_ahead = out[-1][5] - n if in_unit and left else 0
    head = 0
    if in_number and in_unit:
        head = out[-1][5] - out[-1][4] if out[-1][3] else state.number_head
    return out, JsonState(in_string, left, in_number and pos == n, unit_back, unit_ahead, head)


def advance(text: str, state: JsonState = OUTSIDE) -> JsonState:
    """The state after `text` (`pieces`' second half). A fragment inside a string with no quote
    or backslash leaves it as it was: most of a call's streamed fragments (≈0.2 µs, not ≈5)."""
    if state.in_string and not state.escape_left and '"' not in text and "\\" not in text:
        return state
    return pieces(text, state)[1]


def rewrite(
    text: str, spans: Iterable[tuple[int, int, str]], begin: int = 0, state: JsonState = OUTSIDE
) -> str:
    """`text` (JSON, or a fragment of it starting at position `begin` of its stream, in `state`)
    with each span (start, stop, marker), in that stream's positions, sorted and apart, removed
    along the JSON's structure: the marker goes where the span's first part inside a string is,
    when the span starts in this fragment (a span carried on from an earlier one is only cut);
    an escape it touches goes whole; a number it touches becomes the quoted marker where the
    number begins, and goes where it goes on from an earlier fragment. (A number an earlier
    fragment began and sent as it was, no span touching its part there, stays whole whatever
    touches its rest: removing the rest could leave "-" or "1.", no JSON. Detectors match whole
    digit runs.)"""
    cut, _ = pieces(text, state)
    # (an escape the fragment cuts reaches past its end, one it goes on with began before it:
    # a span there may touch it)
    end_of_text = begin + max(len(text), cut[0][5], cut[-1][5]) if cut else begin
    start_of_text = begin + min(0, cut[0][4] if cut else 0)
    out: list[str] = []
    pos = 0  # (in `text`)
    at = 0  # the first piece that may meet the next span
    for start, stop, marker in spans:
        if stop <= start_of_text or start >= end_of_text:
            continue
        lo, hi = start - begin, stop - begin
        placed = start < begin  # (carried on: its marker is in an earlier fragment)
        while at < len(cut) and cut[at][5] <= lo:
            at += 1
        i = at
        while i < len(cut) and cut[i][4] < hi:
            p_start, p_end, kind, starts_here, _, unit_end = cut[i]
            i += 1
            if kind == OTHER or p_end <= pos or unit_end <= lo:
                continue
            if kind == CONTENT:
                a, b = max(p_start, lo, pos), min(p_end, hi)
            else:  # an escape or a number: whole
                a, b = max(p_start, pos), p_end
            out.append(text[pos:a])
            if not starts_here:  # (the rest of one an earlier fragment began, and marked)
                out.append("")
                placed = True
            elif kind == NUMBER:
                out.append(f'"{marker}"')
                placed = True
            else:
                out.append("" if placed else marker)
                placed = True
            pos = b
        at = max(at, i - 1)
    out.append(text[pos:])
    return "".join(out)


def redact(text: str, found: Iterable[tuple[int, int, str]], state: JsonState = OUTSIDE) -> str:
    """A JSON text (or a fragment starting in `state`) with each (start, stop, kind) found in it
    redacted along its structure (overlaps dropped as `screen.redact` drops them: the earliest
    start wins)."""
    spans: list[tuple[int, int, str]] = []
    kept_to = 0
    for start, stop, kind in sorted(found, key=lambda f: f[0]):
        if start < kept_to:
            continue
        spans.append((start, stop, f"[REDACTED:{kind}]"))
        kept_to = stop
    return rewrite(text, spans, 0, state)


# A JSON string escape (outside strings JSON has no backslash, so one is an escape wherever it is)
_ESCAPE = re.compile(r'\\(?:u[0-9A-Fa-f]{4}|["\\/bfnrt])')
_ESCAPED = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _unescaped(match: re.Match[str]) -> str:
    escape = match.group()
    return chr(int(escape[2:], 16)) if escape[1] == "u" else _ESCAPED[escape[1]]


def decoded(text: str) -> str:
    """`reading(text)`'s text alone (no map: for a check that only blocks)."""
    return _ESCAPE.sub(_unescaped, text) if "\\" in text else text


def reading(text: str) -> tuple[str, list[int] | None]:
    """JSON text (or any part of it) as the checks read it: its string escapes decoded, so a line
    break is one and a quote a quote (written as `\\n` a whole document of code is one line to
    the line-by-line secret rules, which then read a value on into the next line and flag it;
    15 of 40 benign 4 KB prompts streamed as a call's arguments were blocked so). With, for each
    character of the reading and one past its end, where it starts in `text` (None when nothing
    is escaped: the reading is the text)."""
    if "\\" not in text:
        return text, None
    out: list[str] = []
    starts: list[int] = []
    pos = 0
    for match in _ESCAPE.finditer(text):
        at = match.start()
        out.append(text[pos:at])
        starts.extend(range(pos, at))
        escape = match.group()
        out.append(chr(int(escape[2:], 16)) if escape[1] == "u" else _ESCAPED[escape[1]])
        starts.append(at)
        pos = match.end()
    out.append(text[pos:])
    starts.extend(range(pos, len(text) + 1))
    return "".join(out), starts


def in_text(starts: list[int] | None, start: int, end: int) -> tuple[int, int]:
    """Where the reading's characters `start`:`end` are in the text (`reading`'s map)."""
    return (start, end) if starts is None else (starts[start], starts[end])


_HEX = frozenset("0123456789abcdefABCDEF")


def unfinished_escape(text: str) -> int:
    """Where an escape that `text` ends before finishing begins (a streamed fragment may end on a
    backslash, or inside `\\uXXXX`); `len(text)` when none does."""
    at = text.rfind("\\")
    if at < 0:
        return len(text)
    if (at - len(text[:at].rstrip("\\"))) % 2:  # (the second of an escaped backslash)
        return len(text)
    tail = text[at:]
    if tail == "\\" or (tail[1] == "u" and len(tail) < 6 and all(c in _HEX for c in tail[2:])):
        return at
    return len(text)
