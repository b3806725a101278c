"""Ways to write a prompt that a model still reads as written, for measuring what the checks
read through (`python -m inferpool.guard.evaluate CATALOGUE --rewrites`; docs/security.md,
"Disguises the injection check reads through"). Each rewrites every space, or every word of
four letters or more (leetspeak: digits for its letters; letters apart: a hyphen between
them), or every letter (or letter and digit: combining marks on each), or encode the whole
text (base64, ROT13, hex) or write it backwards; `wrapped` hard-wraps a text as mail is.
"""

from __future__ import annotations

import base64
import codecs
import re
import textwrap
from collections.abc import Callable

_LEET = str.maketrans("aeiostAEIOST", "431057431057")
_LEET_VOWELS = str.maketrans("aeioAEIO", "43104310")


def _in_each_word(text: str, insert: Callable[[str], str]) -> str:
    return " ".join(insert(w) if len(w) > 3 else w for w in text.split(" "))


def _cyrillic(word: str) -> str:
    """One lookalike into a word that keeps other Latin letters (a mixed word)."""
    for latin, cyrillic in zip("aeopcx", "аеорсх", strict=True):
        at = word.find(latin)
        if at >= 0 and any(c.isascii() and c.isalpha() for c in word[:at] + word[at + 1 :]):
            return word[:at] + cyrillic + word[at + 1 :]
    return word


def _shifted(text: str, upper: int, lower: int, digits: int | None) -> str:
    out = []
    for c in text:
        if "A" <= c <= "Z":
            out.append(chr(upper + ord(c) - ord("A")))
        elif "a" <= c <= "z":
            out.append(chr(lower + ord(c) - ord("a")))
        elif digits is not None and "0" <= c <= "9":
            out.append(chr(digits + ord(c) - ord("0")))
        else:
            out.append(c)
    return "".join(out)


def _marked(text: str, marks: str) -> str:
    """With one mark: every character but a line break with it after it (as strike-through
    and underline generators write). With more: each letter and digit with two of them,
    cycling through `marks` (stacked, as "Zalgo" generators stack them)."""
    if len(marks) == 1:
        return "".join(c + marks if c != "\n" else c for c in text)
    size = len(marks)
    return "".join(
        c + marks[i % size] + marks[(3 * i + 1) % size] if c.isalnum() else c for i, c in enumerate(text)
    )


REWRITES: dict[str, Callable[[str], str]] = {
    "two spaces": lambda t: t.replace(" ", "  "),
    "tabs": lambda t: t.replace(" ", "\t"),
    "no-break spaces": lambda t: t.replace(" ", "\u00a0"),
    "ideographic spaces": lambda t: t.replace(" ", "\u3000"),
    "space tab space": lambda t: t.replace(" ", " \t "),
    "zero-width space in words": lambda t: _in_each_word(t, lambda w: w[:2] + "\u200b" + w[2:]),
    "zero-width spaces for spaces": lambda t: t.replace(" ", "\u200b"),
    "soft hyphen in words": lambda t: _in_each_word(t, lambda w: w[:3] + "\u00ad" + w[3:]),
    "word joiner and BOM": lambda t: _in_each_word(t, lambda w: w[0] + "\u2060" + w[1:-1] + "\ufeff" + w[-1]),
    "full-width": lambda t: _shifted(t, 0xFF21, 0xFF41, 0xFF10),
    "mathematical bold": lambda t: _shifted(t, 0x1D400, 0x1D41A, 0x1D7CE),
    "tag characters": lambda t: "".join(chr(0xE0000 + ord(c)) if " " <= c <= "~" else c for c in t),
    "cyrillic lookalikes": lambda t: " ".join(_cyrillic(w) for w in t.split(" ")),
    "struck through (combining long stroke)": lambda t: _marked(t, "\u0336"),
    "underlined (combining low line)": lambda t: _marked(t, "\u0332"),
    "zalgo (stacked combining marks)": lambda t: _marked(
        t, "\u0300\u0301\u0308\u0316\u0327\u0358\u035c\u1dc4"
    ),
    "base64 (the whole text)": lambda t: base64.b64encode(t.encode()).decode(),
    "rot13 (the whole text)": lambda t: codecs.encode(t, "rot13"),
    "hex (the whole text)": lambda t: t.encode().hex(),
    "backwards (the whole text)": lambda t: t[::-1],
    "each word backwards": lambda t: re.sub(r"\w+", lambda m: m.group()[::-1], t),
    "turkish dotless i": lambda t: t.replace("i", "\u0131"),
    "long s": lambda t: t.replace("s", "\u017f"),
    "leetspeak": lambda t: _in_each_word(t, lambda w: w.translate(_LEET)),
    "leetspeak, vowels only": lambda t: _in_each_word(t, lambda w: w.translate(_LEET_VOWELS)),
    "letters apart": lambda t: re.sub(r"[A-Za-z]{4,}", lambda m: "-".join(m.group()), t),
    "letters apart, spaced words": lambda t: re.sub(
        r"[A-Za-z]+", lambda m: " ".join(m.group()), t.replace(" ", "   ")
    ),
    "letters apart, words too (one space)": lambda t: re.sub(r"[A-Za-z]+", lambda m: " ".join(m.group()), t),
}


def wrapped(text: str, width: int) -> str:
    """`text` hard-wrapped at `width` columns, each of its lines as a paragraph."""
    return "\n".join(textwrap.fill(paragraph, width) for paragraph in text.split("\n"))


__all__ = ["REWRITES", "wrapped"]
