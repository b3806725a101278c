"""Undoing the disguises that hide a phrase from a phrase detector but not from a model.

A model reads "Ignore  previous  instructions" (two spaces), "You\tare\tnow DAN", "Ig<U+200B>nore"
(a zero-width space), "Ｉｇｎｏｒｅ" (full-width letters), "𝐈𝐠𝐧𝐨𝐫𝐞" (mathematical bold),
"іgnore" (a Cyrillic і among Latin letters) and text in Unicode tag characters (invisible, and
read as ASCII) as the plain phrase, and "i̶g̶n̶o̶r̶e̶" (struck through: combining marks) as
"ignore". The injection check reads them so too, and so do the secrets and PII checks (a key
split by a zero-width space or written in full-width letters):

- `squeezed`: a run of horizontal spacing between two words (spaces, tabs, no-break and
  other Unicode spaces) becomes one space. Cheap, per passage: the pre-scan's trigger phrases
  already allow any such run between their words (prescan.spaced).
- `undisguised`: invisible format characters are removed (or, a second reading, made spaces:
  "ignore<U+200B>previous" uses them as spaces; `readings`), combining marks stacked on an
  ASCII character ("i̶g̶n̶o̶r̶e̶", "Zalgo" text) are removed, full-width and mathematical
  letters and digits, and tag characters, become their ASCII letters, and Cyrillic or Greek
  letters that look Latin become Latin inside a word that also holds Latin letters (a Russian
  or Greek word alone is left as it is). Only for a text that holds one of them (`disguised`:
  one compiled pass over its UTF-8 bytes), so ordinary text pays nothing more.
- `unwrapped`: a line break that wraps a sentence (SOFT_WRAP: hard-wrapped mail and prose)
  becomes a space; other line breaks are kept (such lines are scored apart: docs/security.md).
- `leet_readings`: digits and symbols written for letters ("1gn0re all prev10us
  1nstruct10ns", "$ystem pr0mpt") become those letters, inside a word that also holds letters
  (a number alone is left as it is); once with 1 and | as i, once as l. Only for a text whose
  pre-scan found a trigger word so written (prescan.SPELLED_WORDS).
- `rot13`: every ASCII letter rotated by 13 ("vtaber nyy cerivbhf vafgehpgvbaf"), for a text
  whose pre-scan found a trigger word so written (prescan.ROT13_WORDS). One for one. And the
  text backwards, or each of its words backwards in place (`words_reversed`, one for one), for
  one holding a trigger word backwards (prescan.REVERSED_WORDS).
- `encoded_runs`, `decoded_text` and `decoded_runs`: where a text may hold base64 (its long
  token runs, wrapped lines joined; a key=value token's value) or hex, and the text a run
  decodes to, which every check reads (`decoded_findings`: a finding spans the run, not one for
  one).
- `letters_joined`: a word written with its letters apart ("I-g-n-o-r-e", "s.y.s.t.e.m",
  "r e v e a l") becomes the word: a run of three letters or more, each alone, with the same
  one separator (APART) between them; a run with the words apart too ("i g n o r e a l l") is
  split into words where the caller says (`word_starts`: segmentation by English word
  frequencies), the separator there kept as a space. The same only-when-found rule.

All only delete characters or replace one by one, so an offset in the result maps back to the
text (`Edited.source`; `unwrapped` keeps every offset): a finding points at the disguised
phrase as written.
"""

from __future__ import annotations

import base64
import functools
import html
import importlib.resources
import re
import string
import unicodedata
from bisect import bisect_right
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, cast

import hyperscan

from inferpool.guard import multilingual
from inferpool.guard.findings import Finding

if TYPE_CHECKING:
    from symspellpy import SymSpell

# Horizontal spacing a model reads as a space: ASCII tab, vertical tab, form feed; no-break,
# Ogham, en/em/thin/hair spaces, narrow no-break, medium mathematical, ideographic.
UNICODE_SPACES = (
    "\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000"
)
SPACES = " \t\x0b\x0c" + UNICODE_SPACES
# A run of spacing that is not one plain space, between two characters that are not spacing
# or line breaks (a line's indentation and a line's end are left as they are).
_ODD_RUN = re.compile(rf"(?<=[^\s])(?:[{SPACES}]{{2,}}|[{SPACES[1:]}])(?=[^\s])")

# Invisible characters that split a word for a detector, not for a model: soft hyphen,
# combining grapheme joiner, Mongolian vowel separator, zero-width space/non-joiner/joiner,
# left-to-right and right-to-left marks and embeddings, word joiner, invisible operators,
# isolates, deprecated format characters, byte-order mark.
INVISIBLE = "\u00ad\u034f\u180e\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e" + "".join(
    map(chr, (*range(0x2060, 0x2065), *range(0x2066, 0x2070), 0xFEFF))
)
# Combining marks stacked on a letter or digit: struck through (U+0336), underlined (U+0332),
# "Zalgo" text; a model reads the letter under them. The blocks of combining diacritical marks
# (with their extended and supplement blocks; the combining grapheme joiner, U+034F, is
# INVISIBLE) and the half marks. Undone only on what reads as an ASCII character (MARKED; text
# generators strike spaces through too): a mark on a Greek or a Vietnamese letter is that
# letter's own. Not the marks for symbols (U+20D0-20FF) nor the variation selectors: emoji
# keycaps ("1" U+FE0F U+20E3) are everyday text in answers, and each would make a streamed
# answer's next 256 characters be screened at every word.
COMBINING_RANGES = ((0x300, 0x34E), (0x350, 0x36F), (0x1AB0, 0x1AFF), (0x1DC0, 0x1DFF), (0xFE20, 0xFE2F))
COMBINING = "".join(f"{chr(low)}-{chr(high)}" for low, high in COMBINING_RANGES)  # (a regex class's ranges)
# What a combining mark is undone on: printable ASCII, and the full-width and mathematical
# characters that become it
MARKED = " -~\uff01-\uff5e\U0001d400-\U0001d7ff"
# Cyrillic and Greek letters drawn as a Latin one (Unicode's confusables, the common ones).
LOOKALIKES = {
    **dict(zip("аеорсухіјѕԁԛԝүһӏ", "aeopcyxijsdqwyhl", strict=True)),
    **dict(zip("АВЕКМНОРСТХІЈЅҮԜ", "ABEKMHOPCTXIJSYW", strict=True)),
    **dict(zip("οαειυνκρτχ", "oaeiuvkptx", strict=True)),
    **dict(zip("ΑΒΕΖΗΙΚΜΝΟΡΤΥΧ", "ABEZHIKMNOPTYX", strict=True)),
}
_SCRIPTS = "\u0370-\u03ff\u0400-\u052f"  # Greek, Cyrillic (with its supplement)
_INVISIBLE_CHAR = re.compile(f"[{INVISIBLE}]")
# The same, as byte sequences of the UTF-8 encoding (ASCII letters lower-cased or not), for
# one Hyperscan pass: invisible characters, full-width letters and digits, mathematical
# alphanumerics, tag characters, a Greek or Cyrillic letter next to a Latin one, a combining
# mark on an ASCII character.
_SCRIPT_CHAR = rb"(?:\xcd[\xb0-\xbf]|[\xce-\xd3][\x80-\xbf]|\xd4[\x80-\xaf])"  # _SCRIPTS
_DISGUISE_BYTES = (
    rb"\xc2\xad|\xcd\x8f|\xe1\xa0\x8e|\xe2\x80[\x8b-\x8f\xaa-\xae]|\xe2\x81[\xa0-\xa4\xa6-\xaf]|\xef\xbb\xbf",
    rb"\xef\xbc[\x8e\x90-\x99\xa0-\xba]|\xef\xbd[\x81-\x9a]",  # (with ＠ and ．: an address)
    rb"\xf0\x9d[\x90-\x9f]",
    rb"\xf3\xa0[\x80\x81]",
    rb"[A-Za-z]" + _SCRIPT_CHAR + rb"|" + _SCRIPT_CHAR + rb"[A-Za-z]",
    # a printable ASCII character with a combining mark (COMBINING) after it
    rb"[\x20-\x7e](?:\xcc[\x80-\xbf]|\xcd[\x80-\xaf]|\xe1\xaa[\xb0-\xbf]|\xe1\xab[\x80-\xbf]|\xe1\xb7[\x80-\xbf]"
    rb"|\xef\xb8[\xa0-\xaf])",
)
# UNICODE_SPACES, as UTF-8: not a disguise to undo (squeezed makes them spaces where it
# matters), but where a run of odd spacing may be (the pre-scan's `spaced`)
_UNICODE_SPACE_BYTES = rb"\xc2\xa0|\xe1\x9a\x80|\xe2\x80[\x80-\x8a\xaf]|\xe2\x81\x9f|\xe3\x80\x80"
_SPACE_ID = len(_DISGUISE_BYTES)
_INVISIBLE_ID = 0  # _DISGUISE_BYTES[0]: the invisible characters
_DIGIT_ID = _SPACE_ID + 1
_FOREIGN_ID = _DIGIT_ID + 1  # a trigger word of another language's injection (guard/multilingual.py)


DIGITS_END = 0x20000  # past the last decimal digit of Unicode (Python 3.11's: 0x1FBF9)


def _odd_digit_bytes() -> bytes:
    """The non-ASCII decimal digits (what Python's `\\d` matches beyond 0-9: Unicode's Nd), as
    UTF-8 byte sequences: not a disguise either, but the same pass tells the PII check whether
    its ASCII-only fast paths serve (prescan.unicode_digits, which it replaces for a scanned text)."""
    groups: dict[bytes, list[int]] = {}
    # (every one lies below DIGITS_END, a test checks; a C search, where a category lookup per
    # code point took 0.1 s)
    for digit in re.findall(r"\d", "".join(map(chr, range(0x80, DIGITS_END)))):
        encoded = digit.encode()
        groups.setdefault(encoded[:-1], []).append(encoded[-1])
    return b"|".join(
        b"".join(b"\\x%02x" % b for b in prefix) + b"[" + b"".join(b"\\x%02x" % b for b in last) + b"]"
        for prefix, last in groups.items()
    )


@functools.cache
def _disguise_database() -> tuple[hyperscan.Database, hyperscan.Scratch]:
    foreign = multilingual.utf8_expression(tuple(w for w in multilingual.TRIGGERS if not w.isascii()))
    expressions = [*_DISGUISE_BYTES, _UNICODE_SPACE_BYTES, _odd_digit_bytes(), foreign]
    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    database.compile(
        expressions=expressions,
        ids=list(range(len(expressions))),
        elements=len(expressions),
        flags=[hyperscan.HS_FLAG_SINGLEMATCH] * len(expressions),  # one report each is enough
    )
    return database, hyperscan.Scratch(database)


def prepare(segmenter: bool = False) -> None:
    """Compile the pass's database now (≈0.1 s), and with `segmenter` load the word segmenter
    of `letters_joined` (≈0.13 s), so that the first text needing either does not wait."""
    _disguise_database()
    if segmenter:
        _segmenter()


def _note(kind: int, _start: int, _end: int, _flags: int, found: object) -> None:
    cast("set[int]", found).add(kind)


def disguises(text: str, utf8: bytes | None = None) -> tuple[bool, bool, bool, bool, bool]:
    """Whether `undisguised` may change `text`, whether it holds a Unicode space (which
    `squeezed` may change), whether it holds an invisible character (which splits a key or an
    address for a detector, not for whoever copies it), whether it holds a non-ASCII decimal
    digit, and whether it holds a non-ASCII trigger word of another language's injection
    (multilingual.TRIGGERS): one pass over its UTF-8 bytes (`utf8`, when known; ASCII letters
    lower-cased). An ASCII text holds none."""
    if text.isascii():
        return False, False, False, False, False
    database, scratch = _disguise_database()
    found: set[int] = set()
    database.scan(
        text.encode("utf-8", "surrogatepass") if utf8 is None else utf8,
        match_event_handler=_note,
        context=found,
        scratch=scratch.clone(),
    )
    return (
        bool(found - {_SPACE_ID, _DIGIT_ID, _FOREIGN_ID}),
        _SPACE_ID in found,
        _INVISIBLE_ID in found,
        _DIGIT_ID in found,
        _FOREIGN_ID in found,
    )


# The disguises of _DISGUISE_BYTES as a regular expression over text, each matched at its first
# character (a pair's first), for where the last one starts (`last_disguise`); held to the
# compiled pass by a test
_DISGUISE_STARTS = re.compile(
    f"[{INVISIBLE}\uff0e\uff10-\uff19\uff20-\uff3a\uff41-\uff5a\U0001d400-\U0001d7ff\U000e0000-\U000e007f]"
    f"|[A-Za-z](?=[{_SCRIPTS}])|[{_SCRIPTS}](?=[A-Za-z])|[ -~](?=[{COMBINING}\u034f])"
)


def last_disguise(text: str) -> int:
    """Where the last disguise `disguises` finds in `text` starts (-1: none): a text's suffix
    holds one exactly when it starts there or before. For short texts (a streamed event)."""
    last = -1
    for m in _DISGUISE_STARTS.finditer(text):
        last = m.start()
    return last


def hidden(text: str) -> bool:
    """Whether `text` holds an invisible character (INVISIBLE)."""
    return not text.isascii() and _INVISIBLE_CHAR.search(text) is not None


def disguised(text: str) -> bool:
    """Whether `undisguised` may change `text` (it does unless a mixed word holds no lookalike)."""
    return disguises(text)[0]


class Edited:
    """A text with characters deleted or replaced one by one, and how to find its offsets in the
    text it was made from."""

    __slots__ = ("_deleted", "_shifts", "_source", "text")

    def __init__(
        self,
        text: str,
        shifts: tuple[tuple[int, int], ...] | None = (),
        source: str = "",
        deleted: re.Pattern[str] | None = None,
    ) -> None:
        """`shifts`: (offset here, what to add to it to get the source's offset), from each
        deletion on; or None, to be found when first asked for: the runs of `deleted` in
        `source` are what was deleted (most readings are never mapped back)."""
        self.text = text
        self._shifts = shifts
        self._source = source
        self._deleted = deleted

    def _table(self) -> tuple[tuple[int, int], ...]:
        if self._shifts is None:
            shifts: list[tuple[int, int]] = []
            removed = 0
            for m in cast("re.Pattern[str]", self._deleted).finditer(self._source):
                start, end = m.span()
                removed += end - start
                shifts.append((end - removed, removed))
            self._shifts = tuple(shifts)
        return self._shifts

    def source(self, offset: int) -> int:
        """The offset in the source text of the character at `offset` here (of the source's end
        for the end); the start of a deleted run maps to the character after it."""
        shifts = self._table()
        at = bisect_right(shifts, (offset, float("inf"))) - 1
        return offset if at < 0 else offset + shifts[at][1]

    def source_span(self, start: int, end: int) -> tuple[int, int]:
        """A span here as a span of the source: from its first character to just past its last
        and the combining marks on it (one character to a reader: a redaction takes them too)."""
        if end <= start:
            return self.source(start), self.source(start)
        last = self.source(end - 1) + 1
        if self._source:
            marks = _MARKS_RUN.match(self._source, last)
            if marks is not None:
                last = marks.end()
        return self.source(start), last


def _edit(text: str, pattern: re.Pattern[str], replace: Callable[[str], str]) -> Edited:
    """`text` with each match of `pattern` replaced by `replace(match)` (of the same length or
    shorter), and the offset shifts that makes."""
    pieces: list[str] = []
    shifts: list[tuple[int, int]] = []
    done = 0  # where the unchanged text resumes
    length = 0  # the result's length so far
    for m in pattern.finditer(text):
        start, end = m.span()
        new = replace(m.group())
        pieces += [text[done:start], new]
        length += start - done + len(new)
        done = end
        if len(new) < end - start:
            shifts.append((length, end - length))
    pieces.append(text[done:])
    return Edited("".join(pieces), tuple(shifts))


def _undone_table(invisible_as: str | None) -> dict[int, str | None]:
    """A `str.translate` table for `undisguised`: invisible characters to `invisible_as` (None:
    deleted), full-width forms (letters, digits and the signs among them: a key, a phone
    number or an address written so keeps its + @ . -) and tag characters to the ASCII they stand for
    (tags that stand for none deleted), mathematical letters and digits to theirs (NFKC)."""
    table: dict[int, str | None] = {ord(c): invisible_as for c in INVISIBLE}
    for code in range(0xFF01, 0xFF5F):
        table[code] = chr(code - 0xFEE0)
    for code in range(0xE0000, 0xE0080):
        table[code] = chr(code - 0xE0000) if 0xE0020 <= code <= 0xE007E else None
    for code in range(0x1D400, 0x1D800):
        plain = unicodedata.normalize("NFKC", chr(code))
        if plain.isascii() and plain.isalnum() and len(plain) == 1:
            table[code] = plain
    return table


_UNDONE_TABLE = _undone_table(None)
_UNDONE_SPACED_TABLE = _undone_table(" ")
# The characters `undisguised` deletes or replaces (its tables' keys), and what the first
# reading deletes (for the offsets back: Edited)
# (group 1: combining marks on what is or becomes an ASCII character, deleted)
_MARKS_ON = f"(?<=[{MARKED}])[{COMBINING}]+"
_UNDONE = re.compile(f"({_MARKS_ON})|[{INVISIBLE}\uff01-\uff5e\U0001d400-\U0001d7ff\U000e0000-\U000e007f]")
_DELETED = re.compile(f"{_MARKS_ON}|[{INVISIBLE}\U000e0000-\U000e001f\U000e007f]+")
_DELETED_SPACED = re.compile(f"{_MARKS_ON}|[\U000e0000-\U000e001f\U000e007f]+")
_MARKS_ON_PATTERN = re.compile(_MARKS_ON)
_MARKS_RUN = re.compile(f"[{COMBINING}]+")
# Past this many characters to undo, one `str.translate` of the whole text (≈50 ns a
# character, dict lookups) costs less than a piece per character
UNDONE_PIECES = 256
_LOOKALIKE_TABLE = str.maketrans(LOOKALIKES)
_SCRIPT = re.compile(f"[{_SCRIPTS}]")
_ADJACENT = re.compile(f"[A-Za-z][{_SCRIPTS}]|[{_SCRIPTS}][A-Za-z]")


def _replaced(text: str, invisible_as_space: bool) -> Edited:
    """`text` with its disguised characters undone (the tables above) and the combining marks
    on its ASCII characters (MARKED) deleted."""
    table = _UNDONE_SPACED_TABLE if invisible_as_space else _UNDONE_TABLE
    deleted = _DELETED_SPACED if invisible_as_space else _DELETED
    pieces: list[str] = []
    done = 0
    for count, m in enumerate(_UNDONE.finditer(text)):
        if count == UNDONE_PIECES:  # a text written in them: translate it whole
            plain = _MARKS_ON_PATTERN.sub("", text).translate(table)
            return Edited(plain) if len(plain) == len(text) else Edited(plain, None, text, deleted)
        start, end = m.span()
        if m.group(1) is not None:  # combining marks
            new: str | None = None
        else:
            char = m.group()
            new = table.get(ord(char), char)  # (a mathematical symbol that stands for no ASCII: kept)
        pieces += [text[done:start], "" if new is None else new]
        done = end
    if not pieces:
        return Edited(text)
    pieces.append(text[done:])
    plain = "".join(pieces)
    return Edited(plain) if len(plain) == len(text) else Edited(plain, None, text, deleted)


def _latin_words(text: str) -> str:
    """`text` with the lookalikes in each mixed word (a Latin letter touching a Greek or
    Cyrillic one) made Latin, found from where the scripts touch, not word by word."""
    pieces: list[str] = []
    done = 0
    size = len(text)
    for m in _ADJACENT.finditer(text):
        if m.start() < done:
            continue  # in the word just made Latin
        lo, hi = m.start(), m.end()
        while lo > done and (text[lo - 1].isalnum() or text[lo - 1] == "_"):
            lo -= 1
        while hi < size and (text[hi].isalnum() or text[hi] == "_"):
            hi += 1
        pieces += [text[done:lo], text[lo:hi].translate(_LOOKALIKE_TABLE)]
        done = hi
    if not pieces:
        return text
    pieces.append(text[done:])
    return "".join(pieces)


def undisguised(text: str, invisible_as_space: bool = False) -> Edited:
    """`text` as a model reads it (module doc): the disguises undone, nothing else changed. An
    invisible character inside a word hides it ("ig<U+200B>nore"), one between words stands for
    a space ("ignore<U+200B>previous"): it is dropped, or with `invisible_as_space` made a space
    (`readings`). The mixed words after the rest: an invisible character may split one."""
    plain = _replaced(text, invisible_as_space)
    if _SCRIPT.search(plain.text):  # (a Greek or Cyrillic letter at all)
        latin = _latin_words(plain.text)  # one for one: the same offsets
        if latin is not plain.text:
            plain.text = latin
    return plain


def readings(text: str, first: Edited | None = None) -> Iterator[Edited]:
    """The ways a model may read a disguised `text`: `undisguised` (`first`, when made
    already), and if it holds invisible characters, also with them as spaces (made only when
    asked for: the first reading that blocks decides)."""
    yield undisguised(text) if first is None else first
    if _INVISIBLE_CHAR.search(text):
        yield undisguised(text, invisible_as_space=True)


# Leetspeak: the digits and symbols written for a letter, and the letters they stand for. 1
# and | stand for i or l ("1gnore", "a11"): two readings. ! only before a letter or digit
# ("h!dden"; "now!" ends a sentence).
LEET = {"a": "4@", "e": "3", "i": "1!|", "l": "1|", "o": "0", "s": "5$", "t": "7"}
_LEET_AS_I = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s",
                            "!": "i", "|": "i"})  # fmt: skip
_LEET_AS_L = str.maketrans({"0": "o", "1": "l", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s",
                            "!": "i", "|": "l"})  # fmt: skip
# Where a substitute touches a letter (a ! or | only before one): a mixed word is around it
_LEET_ADJACENT = re.compile(r"[A-Za-z][0-9@$]|[0-9@$!|][A-Za-z]")
_LEET_WORD_CHARS = frozenset(string.ascii_letters + string.digits + "@$!|'\u2019")  # ("l37'5")


def leet_readings(text: str) -> Iterator[str]:
    """`text` with each mixed word's digits and symbols read as letters (LEET): with 1 and | as
    i, then as l. One for one, so offsets are the text's."""
    words = mixed_words(text)
    if not words:
        return
    first = _translated(text, words, _LEET_AS_I)
    yield first
    second = _translated(text, words, _LEET_AS_L)
    if second != first:
        yield second


def _translated(text: str, spans: list[tuple[int, int]], table: dict[int, str]) -> str:
    pieces: list[str] = []
    done = 0
    for lo, hi in spans:
        pieces += [text[done:lo], text[lo:hi].translate(table)]
        done = hi
    pieces.append(text[done:])
    return "".join(pieces)


def mixed_words(text: str) -> list[tuple[int, int]]:
    """The spans of the words in which a substitute touches a letter (found from where they
    touch, as `_latin_words` finds mixed scripts); a word's trailing ! and | are punctuation."""
    spans: list[tuple[int, int]] = []
    done = 0
    size = len(text)
    for m in _LEET_ADJACENT.finditer(text):
        if m.start() < done:
            continue  # in the word just found
        lo, hi = m.start(), m.end()
        while lo > done and text[lo - 1] in _LEET_WORD_CHARS:
            lo -= 1
        while hi < size and text[hi] in _LEET_WORD_CHARS:
            hi += 1
        done = hi
        while text[hi - 1] in "!|":
            hi -= 1
        spans.append((lo, hi))
    return spans


# Letters apart: what may stand between the letters of a word so written. A run of three
# letters or more, each alone (no letter or digit touches it), with the same separator
# throughout: "i g n o r e   p r e v i o u s" is two words (the wider gap is no separator). Two
# letters with one space between them only with a wider gap or punctuation on both sides
# ("t o   m e"), so "a t-e-s-t" stays "a test", not "at-est".
APART = " .-_*/+~|"
_APART_RUN = re.compile(
    r"(?<![A-Za-z0-9])[A-Za-z]([ .\-_*/+~|])[A-Za-z](?:\1[A-Za-z])+(?![A-Za-z0-9])"
    r"|(?<![A-Za-z0-9])(?<![^ ] )[A-Za-z] [A-Za-z](?=  |[.,;:!?]|$)"
)


def letters_apart(text: str) -> bool:
    """Whether `text` holds a run of letters apart (`letters_joined` would change it)."""
    return _APART_RUN.search(text) is not None


_ROT13 = str.maketrans(
    string.ascii_lowercase + string.ascii_uppercase,
    string.ascii_lowercase[13:]
    + string.ascii_lowercase[:13]
    + string.ascii_uppercase[13:]
    + string.ascii_uppercase[:13],
)


_WORD = re.compile(r"\w+")


def words_reversed(text: str) -> str:
    """`text` with each word written backwards in its place (one for one)."""
    return _WORD.sub(_backwards, text)


def _backwards(word: re.Match[str]) -> str:
    return word.group()[::-1]


def rot13(text: str) -> str:
    """`text` with its ASCII letters rotated by 13 (ROT13, its own inverse): one for one."""
    return text.translate(_ROT13)


# Base64 as prompts carry it: the standard or URL-safe alphabet, padded or not, in lines of a
# multiple of four characters when wrapped (MIME: 76). A run of LONG_TOKEN characters (the
# pre-scan's long tokens, found for the secrets check) qualifies when it holds nothing else and
# both cases of letters (base64 of text always does); hex digits of one case, an even number
# of them, are hex (a digest is too, and decodes to no text).
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")
_HEX = re.compile(r"[0-9a-f]+|[0-9A-F]+")
_LOWER = re.compile(r"[a-z]")
_UPPER = re.compile(r"[A-Z]")


def encoded_runs(text: str, tokens: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """The spans of `text` that may be base64 or hex of a text: each of `tokens` (long token
    runs, in order; of a key=value token, its value of 16 characters or more) that is hex digits
    of one case, an even number of them, or base64 with both cases, with the lines that continue
    it joined (wrapped: after a line break, while every line is as long as
    the first, a whole number of four-character groups; a last line shorter than a long token
    is not among `tokens`, and is taken after a full line of the block's width, when that is
    known: two lines or more, or MIME's 76 or PEM's 64)."""
    blocks: list[list[tuple[int, int]]] = []
    runs = []
    for start, end in tokens:
        key = _KEY.match(text, start, end)
        if key is not None and end - key.end() >= _VALUE_CHARS:
            start = key.end()  # (`payload=eyJ1c2Vy…`: the value of a key=value pair)
        if _HEX.fullmatch(text, start, end) is not None:
            # (text holds a space, byte 0x20: a digest seldom holds "20", and is not decoded)
            if (end - start) % 2 == 0 and text.find("20", start, end) >= 0:
                runs.append((start, end))
            continue  # (hex is base64 too, of one case: not base64 of text)
        # (base64 of text has both cases in every line of it: most tokens, paths and ids, have not)
        if _UPPER.search(text, start, end) is None or _LOWER.search(text, start, end) is None:
            continue
        if _BASE64.fullmatch(text, start, end) is None:
            continue
        if blocks and text[blocks[-1][-1][1] : start] in ("\n", "\r\n") and _open(text, blocks[-1]):
            blocks[-1].append((start, end))
        else:
            blocks.append([(start, end)])
    for block in blocks:
        start, end = block[0][0], block[-1][1]
        width = block[0][1] - block[0][0]
        if _open(text, block) and (len(block) > 1 or width in (64, 76)):
            last_line = _SHORT_LAST_LINE.match(text, end)
            if last_line is not None:
                end = last_line.end()
        if _LOWER.search(text, start, end) and _UPPER.search(text, start, end):
            runs.append((start, end))
    return sorted(runs)


# A token that is a key=value pair (a query parameter, a cookie): its value may be base64
_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*=(?=[A-Za-z0-9+/_-])")
_VALUE_CHARS = 16


_SHORT_LAST_LINE = re.compile(r"\r?\n[A-Za-z0-9+/_-]{1,23}={0,2}(?![A-Za-z0-9+/_=-])")


def _open(text: str, block: list[tuple[int, int]]) -> bool:
    """Whether a block of base64 lines may go on: every line as long as the first, a whole
    number of four-character groups, no padding."""
    width = block[0][1] - block[0][0]
    return width % 4 == 0 and all(e - s == width for s, e in block) and text[block[-1][1] - 1] != "="


def decoded_text(encoded: str) -> str | None:
    """What `encoded` (a run from `encoded_runs`) decodes to, if that is text a model would
    read: valid UTF-8, nearly all of it printable (with no space in it, a key, a password or a
    number: the injection check reads only what has one). None else."""
    try:
        if _HEX.fullmatch(encoded) is not None:
            raw = bytes.fromhex(encoded)
        else:
            compact = encoded.replace("\r", "").replace("\n", "").rstrip("=")
            if "-" in compact or "_" in compact:
                if "+" in compact or "/" in compact:
                    return None  # two alphabets: no base64
                compact = compact.replace("-", "+").replace("_", "/")
            raw = base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
        decoded = raw.decode("utf-8")
    except ValueError:  # (binascii.Error and UnicodeDecodeError are ValueErrors)
        return None
    printable = sum(c.isprintable() or c in "\n\r\t" for c in decoded)
    return decoded if printable >= 0.95 * len(decoded) else None


def decoded_findings(
    text: str,
    decoded: Iterable[tuple[int, int, str]],
    found: Sequence[Finding],
    find: Callable[[str], list[Finding]],
) -> list[Finding]:
    """What `find` finds in what each run of `decoded` (`decoded_runs`: base64 or hex that decodes
    to text, a sentence, a key or a card number) decodes to, as one
    finding of the kind found first over the whole run; a run that one of `found` (the text's
    findings as written) overlaps is not read. A run that decodes to what another did (an address
    a log repeats) is read once."""
    out = []
    kinds: dict[str, tuple[str, str] | None] = {}  # decoded text -> (check, kind) of its first finding
    for start, end, plain in decoded:
        if any(f.start < end and start < f.end for f in found):
            continue
        if plain not in kinds:
            inner = find(plain)
            kinds[plain] = (inner[0].check, inner[0].kind) if inner else None
        first = kinds[plain]
        if first is not None:
            out.append(Finding(first[0], first[1], start, end))
    return out


def decoded_runs(text: str, tokens: Iterable[tuple[int, int]]) -> list[tuple[int, int, str]]:
    """Each run of `encoded_runs` that decodes to text (`decoded_text`), with that text."""
    runs = []
    for start, end in encoded_runs(text, tokens):
        decoded = decoded_text(text[start:end])
        if decoded is not None:
            runs.append((start, end, decoded))
    return runs


def letters_joined(
    text: str, words: Callable[[str, list[tuple[int, int]]], Sequence[Collection[int]]] | None = None
) -> Edited:
    """`text` with each run of letters apart written as one word (the separators deleted), and
    where each of its letters came from (a finding may end inside a joined word). `words`, if
    given, says where in each run's letters a word starts (given the text and every run's span
    at once; a run with words apart too, "i g n o r e a l l", is one run): the separator there
    is kept, as a space."""
    runs = [m.span() for m in _APART_RUN.finditer(text)]
    if not runs:
        return Edited(text)
    letters = [text[start:end:2] for start, end in runs]  # (one separator between each two letters)
    starts = words(text, runs) if words is not None else [()] * len(runs)
    pieces: list[str] = []
    shifts: list[tuple[int, int]] = []
    done = removed = 0
    for (start, end), run, run_starts in zip(runs, letters, starts, strict=True):
        at = start - removed  # where the run's first letter is in the result
        joined = [run[0]]
        for i in range(1, len(run)):
            if i in run_starts:
                joined.append(" ")  # (the separator before a word, as a space: no shift)
            else:
                removed += 1
                shifts.append((at + len(joined), removed))
            joined.append(run[i])
        pieces += [text[done:start], "".join(joined)]
        done = end
    pieces.append(text[done:])
    return Edited("".join(pieces), tuple(shifts))


# The longest word `word_starts` looks for: no trigger phrase holds a longer one, and it costs
# ≈64 % of looking for the dictionary's longest (28 letters)
SEGMENTED_WORD_MAX = 16


@functools.lru_cache(maxsize=1024)  # (a streamed answer's recent text is screened again at each event)
def word_starts(letters: str) -> frozenset[int]:
    """Where in `letters` (letters with nothing between them) a word other than the first
    starts, as the most likely English words split them (symspellpy's segmentation, by word
    frequency): "ignoreall" -> {6}. One word has none. ≈50 µs a letter."""
    if len(letters) < 2:
        return frozenset()
    segmented = (
        _segmenter()
        .word_segmentation(
            letters.lower(), max_edit_distance=0, max_segmentation_word_length=SEGMENTED_WORD_MAX
        )
        .segmented_string
    )
    starts = []
    letter = 0
    for char in segmented:
        if char == " ":
            starts.append(letter)
        else:
            letter += 1
    return frozenset(starts)


@functools.cache
def _segmenter() -> SymSpell:
    """symspellpy with its English unigram dictionary (82,765 words), for exact lookups only:
    no edit distance, a one-character prefix (≈12 MB and ≈0.13 s to load, where its defaults
    precompute every deletion: ≈67 MB, ≈0.7 s). Loaded once per process, when first needed or
    by `prepare`."""
    # (imported here: a data plane without the injection check never needs it)
    from symspellpy import SymSpell

    segmenter = SymSpell(max_dictionary_edit_distance=0, prefix_length=1)
    dictionary = importlib.resources.files("symspellpy") / "frequency_dictionary_en_82_765.txt"
    with importlib.resources.as_file(dictionary) as path:
        if not segmenter.load_dictionary(str(path), term_index=0, count_index=1, encoding="utf-8"):
            raise RuntimeError(f"symspellpy's dictionary {path} did not load")
    return segmenter


# What spacing other than one plain space a text holds, as bits of an int (the pre-scan's
# `Prescan.spaced`; plain ints: an IntFlag's `&` runs Python code, ≈1 µs, per passage here)
ASCII_SPACING = 1  # two spaces, a tab, a vertical tab or a form feed
UNICODE_SPACING = 2  # one of UNICODE_SPACES


def odd_spacing(text: str, kinds: int = ASCII_SPACING | UNICODE_SPACING) -> bool:
    """Whether `squeezed` would change `text` (a fast check first: most text has no such run).
    `kinds`: what the text may hold, when known (a Unicode space is 16 searches to rule out)."""
    if "  " not in text and "\t" not in text and "\x0b" not in text and "\x0c" not in text:
        if not kinds & UNICODE_SPACING or text.isascii() or not any(c in text for c in UNICODE_SPACES):
            return False
    return _ODD_RUN.search(text) is not None


# A line break that wraps a sentence: after a letter, a comma, colon or semicolon or a closing
# quote or bracket, before a lower-case letter or an opening quote or bracket (a line that
# starts with a capital, a digit or a bullet, or follows a full stop, is a line of its own)
WRAP_BEFORE = frozenset(string.ascii_letters + ",;:)'\"\u2019\u201d")
WRAP_AFTER = frozenset(string.ascii_lowercase + "('\"\u2018\u201c")
SOFT_WRAP = re.compile(
    f"(?<=[{re.escape(''.join(sorted(WRAP_BEFORE)))}])\n(?=[{re.escape(''.join(sorted(WRAP_AFTER)))}])"
)


def unwrapped(text: str) -> str:
    """`text` with each line break that wraps a sentence made a space (one for one)."""
    return SOFT_WRAP.sub(" ", text)


def squeezed(text: str) -> Edited:
    """`text` with each run of spacing between two words made one plain space."""
    return _edit(text, _ODD_RUN, _one_space)


def _one_space(_matched: str) -> str:
    return " "


# Escapes that hide a character from a detector but not from whoever decodes them (a browser, a
# URL or JSON parser, a mail reader, a model asked to): percent-encoding (once or twice: %2540),
# numeric HTML character references and `&commat;`, JavaScript/JSON \\u and \\x escapes, JSON's
# escaped slash (`https:\\/\\/…`, as PHP's json_encode writes every URL), and
# quoted-printable (`=49=67`) where the text says so or holds three such escapes in a row. A
# line holding one is read with every escape in it decoded (`unescaped`); named references such
# as `&amp;` alone do not make a line worth reading again, but are decoded in one that is.
# As Hyperscan expressions over a lower-cased text's `ascii_chars` (the pre-scan's pass; a short
# text's check is ESCAPE_TRIGGER, below):
ESCAPE_EXPRESSIONS = (
    r"%[0-9a-f]{2}",
    r"&#x?[0-9a-f]{1,7};",
    r"&commat;",
    r"\\[ux][0-9a-f]{2}",
    r"\\/",
    r"(?:=[0-9a-f]{2}){3}",
    r"quoted-printable",
)
# One decoded character each (so a finding's span maps back escape by escape): a byte, or the
# bytes of one UTF-8 character, percent-encoded; a byte encoded twice (%25 is '%'); a character
# reference; a \\u escape (a surrogate pair as one) or a \\x escape.
_ESCAPE_UNIT = re.compile(
    r"%25[0-9A-Fa-f]{2}|%[0-9A-Fa-f]{2}(?:%[89ABab][0-9A-Fa-f])*"
    r"|&#[0-9]{1,7};|&#[xX][0-9A-Fa-f]{1,6};|&[A-Za-z][A-Za-z0-9]{1,31};"
    r"|\\u[dD][89abAB][0-9A-Fa-f]{2}\\u[dD][c-fC-F][0-9A-Fa-f]{2}|\\u[0-9A-Fa-f]{4}|\\x[0-9A-Fa-f]{2}|\\/"
)
_QP_UNIT = re.compile(r"=[0-9A-F]{2}(?:=[89AB][0-9A-F])*")  # (quoted-printable: upper-case hex)
# Whether a text is quoted-printable: three escapes in a row, or its name (the pre-scan's pass
# says so for a long text: `re` reads a digit-heavy 100 KB for these in ≈2 ms here)
QUOTED_PRINTABLE = re.compile(r"(?:=[0-9A-F]{2}){3}|(?i:quoted-printable)")
# Where a line to read is: an escape (and in a text that is quoted-printable, any `=XX`),
# matched where one of its leads is (`str.find` is memchr-fast; a search of the alternation is
# not); with quoted-printable's marks, whether a text holds one at all (ESCAPE_TRIGGER)
_ESCAPE_LINE = re.compile(
    r"%[0-9A-Fa-f]{2}|&#[0-9]{1,7};|&#[xX][0-9A-Fa-f]{1,6};|&commat;|\\u[0-9A-Fa-f]{4}|\\x[0-9A-Fa-f]{2}|\\/"
)
ESCAPE_TRIGGER = re.compile(f"{_ESCAPE_LINE.pattern}|{QUOTED_PRINTABLE.pattern}")
_ESCAPE_LEADS = ("%", "&#", "&commat;", "\\u", "\\x", "\\/")
_ESCAPE_OR_QP = re.compile(f"{_ESCAPE_UNIT.pattern}|{_QP_UNIT.pattern}")
_ESCAPE_LINE_OR_QP = re.compile(f"{_ESCAPE_LINE.pattern}|{_QP_UNIT.pattern}")
# At most this much of a text is read decoded: the escapes of a hostile 100 KB are otherwise
# a reading as long, decoded one call each, and every check's again (≈40 ms here); logs whose
# every line holds a percent-encoded URL would be read twice over
UNESCAPED_CHARS_MAX = 16_384
UNESCAPED_UNITS_MAX = 2_048


def has_escapes(text: str) -> bool:
    """Whether `text` holds an escape ESCAPE_TRIGGER finds (a short text's check: a long one's
    comes from the pre-scan's compiled pass)."""
    if "%" not in text and "&" not in text and "\\" not in text and "=" not in text:
        return False
    return ESCAPE_TRIGGER.search(text) is not None


@functools.lru_cache(maxsize=4096)  # (the same few escapes again and again: %20, %2F, &#32;)
def _unescape(unit: str) -> str:
    """The character an escape unit stands for (U+FFFD for a byte sequence that is no UTF-8, or a
    lone surrogate: the readings are encoded as UTF-8 again)."""
    lead = unit[0]
    if lead == "&":
        return html.unescape(unit)  # (an unknown name is left as it is)
    if lead == "\\":
        if unit[1] == "/":
            return "/"
        if unit[1] == "x":
            return chr(int(unit[2:], 16))
        first = int(unit[2:6], 16)
        if len(unit) == 12:  # a surrogate pair
            return chr(0x10000 + ((first - 0xD800) << 10) + (int(unit[8:], 16) - 0xDC00))
        return "\ufffd" if 0xD800 <= first < 0xE000 else chr(first)
    if unit.startswith("%25") and len(unit) == 5:
        return chr(int(unit[3:], 16))
    return bytes.fromhex(unit.replace(lead, "")).decode("utf-8", "replace")


class Unescaped(Edited):
    """The lines of a text that hold escapes, each escape decoded (the other lines deleted, one
    line break kept between two read lines): a span here maps back to the whole escapes it
    covers, so a redaction leaves none of an escape's characters behind."""

    __slots__ = ()

    def source_span(self, start: int, end: int) -> tuple[int, int]:
        first, last = super().source_span(start, end)
        unit = _ESCAPE_OR_QP.match(self._source, last - 1) if last > first else None
        return first, unit.end() if unit is not None else last


def _escape_lines(text: str, quoted_printable: bool) -> Iterator[tuple[int, int]]:
    """The (start, end) of each line of `text` holding an escape, in order."""
    trigger = _ESCAPE_LINE_OR_QP if quoted_printable else _ESCAPE_LINE
    leads = (*_ESCAPE_LEADS, "=") if quoted_printable else _ESCAPE_LEADS
    ahead = {lead: at for lead in leads if (at := text.find(lead)) >= 0}  # each lead's next place
    while ahead:
        at = min(ahead.values())
        if trigger.match(text, at) is not None:
            line_start = text.rfind("\n", 0, at) + 1
            line_end = text.find("\n", at)
            line_end = len(text) if line_end < 0 else line_end
            yield line_start, line_end
            at = line_end
        else:
            at += 1
        for lead, place in list(ahead.items()):
            if place < at:
                place = text.find(lead, at)
                if place < 0:
                    del ahead[lead]
                else:
                    ahead[lead] = place


def unescaped(text: str, quoted_printable: bool | None = None) -> Unescaped | None:
    """The text's lines that hold an escape (ESCAPE_TRIGGER; with quoted-printable, where the
    text holds it, any line with a `=XX`), with every escape in them decoded; None when there is
    none, or nothing decodes. Twice-encoded bytes (%2540) are decoded through; other double
    encodings once. The first UNESCAPED_CHARS_MAX characters of such lines and UNESCAPED_UNITS_MAX
    escapes at most (a line is cut at the last escape read). `quoted_printable`: whether the
    text is (QUOTED_PRINTABLE), when known."""
    if quoted_printable is None:
        quoted_printable = QUOTED_PRINTABLE.search(text) is not None
    units = _ESCAPE_OR_QP if quoted_printable else _ESCAPE_UNIT
    pieces: list[str] = []
    shifts: list[tuple[int, int]] = []
    done = 0  # how far the text has been read (copied, replaced or deleted)
    length = 0  # the reading's length so far
    decoded = False
    left = UNESCAPED_UNITS_MAX
    for line_start, line_end in _escape_lines(text, quoted_printable):
        if length >= UNESCAPED_CHARS_MAX or left <= 0:
            break
        # the lines between the last one read and this one are deleted (one break kept)
        keep_from = line_start - 1 if pieces else line_start
        if keep_from > done:
            shifts.append((length, keep_from - length))
            done = keep_from
        for unit in units.finditer(text, line_start, line_end):
            start, end = unit.span()
            plain = _unescape(unit.group())
            decoded = decoded or plain != unit.group()
            pieces += [text[done:start], plain]
            length += start - done + len(plain)
            done = end
            if len(plain) < end - start:
                shifts.append((length, end - length))
            left -= 1
            if left == 0:
                line_end = end  # (the rest of the line is not read)
                break
        pieces.append(text[done:line_end])
        length += line_end - done
        done = line_end
    if not decoded:
        return None
    return Unescaped("".join(pieces), tuple(shifts), text)


# Email addresses written so that a scraper (or a detector) does not read them, as people read
# them: "jane.doe [at] gmail [dot] com", "mark(at)outlook(dot)com", "{at}", "<at>", "[@]",
# defanged "[.]", upper-case "AT"/"DOT", and the words "at" and "dot" where the name before them
# is a handle ("s.nakamura at sony dot co dot jp", "rachel dot green at gmail dot com"): a
# bracketed at, or a name with a dot or underscore between two parts, one of them with a letter
# after it ("v1.2 at github.com" is a version); and a one-word name before a domain spoken with
# "dot" ("john at gmail dot com") where a word about mail or contact stands before it in the
# sentence ("email", "reach", "write to": prose is full of "log in at gmail dot com", "shop at
# amazon dot com") or it is a line of its own (a signature). Read by the PII check as the
# address they spell (a finding spans the whole of it).
_CONTACT_WORDS = ("mail", "contact", "reach", "write", "send", "reply", "ping", "address")
CONTACT_REACH = 48  # how far before a one-word name its contact word may begin
# Markers for the pre-scan's compiled pass (lower-cased ASCII). Each holds an address's "at" and
# what comes after it, written with single spaces (the word forms) or at most one space inside
# brackets: an address written with other spacing around its "at" or first "dot" is not read
# (markers with any spacing cost the 100 KB chat prompt's pass ≈0.15 ms more). (The contact
# words: `_CONTACT_BEFORE`'s, as a part of a word, up to CONTACT_REACH before a name of up to 64
# characters.)
_FIRST_DOT = r"(?:\.| dot | ?[\[({<] ?(?:dot|\.) ?[\])}>])"
OBFUSCATED_EMAIL_EXPRESSIONS = (
    r"[\[({<] ?(?:at|@) ?[\])}>]",
    rf"[a-z0-9][._][a-z0-9._]* at [a-z0-9-]+{_FIRST_DOT}",
    rf"[a-z0-9] dot [a-z0-9]+ at [a-z0-9-]+{_FIRST_DOT}",
    rf"(?:{'|'.join(_CONTACT_WORDS)})[^\n]{{0,{CONTACT_REACH + 64}}} at [a-z0-9-]+ dot [a-z]",
    r"(?:^|\n)[ \t:*>-]*[a-z0-9-]+ at [a-z0-9-]+ dot [a-z]",
)
_AT_BRACKETED = r"\s*[\[({<]\s*(?:at|@)\s*[\])}>]\s*"
_DOT_BRACKETED = r"\s*[\[({<]\s*(?:dot|\.)\s*[\])}>]\s*"
_DOT_ANY = rf"(?:{_DOT_BRACKETED}|\s+dot\s+|\.)"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = rf"{_LABEL}(?:{_DOT_ANY}{_LABEL})*{_DOT_ANY}[A-Za-z]{{2,24}}\b"
_SPOKEN_DOMAIN = rf"{_LABEL}(?:[ \t]+dot[ \t]+{_LABEL})*[ \t]+dot[ \t]+[A-Za-z]{{2,24}}\b"
_OBFUSCATED_EMAIL = re.compile(
    # a bracketed at: any local part
    rf"(?<![\w.+-])[A-Za-z0-9._%+-]{{1,64}}{_AT_BRACKETED}{_DOMAIN}"
    # the word "at": a handle, parts joined by '.', '_' or the word "dot" (`_a_handle` judges it)
    rf"|(?<![\w.+-])(?P<handle>[A-Za-z0-9]+(?:(?:[._]|\s+dot\s+)[A-Za-z0-9]+)+)\s+at\s+{_DOMAIN}"
    # or a one-word name before a domain spoken whole (`_a_named_address` judges it)
    rf"|(?<![\w.+-])(?P<name>[A-Za-z0-9][A-Za-z0-9-]{{0,63}})[ \t]+at[ \t]+{_SPOKEN_DOMAIN}",
    re.IGNORECASE,
)
# A contact word before a one-word name, in its sentence: "email", "e-mail", "emailed", "reach
# me", "write to", "address is" (as a prefix of a word)
_CONTACT_BEFORE = re.compile(rf"\b(?:e-?)?(?:{'|'.join(_CONTACT_WORDS)})", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?;](?:\s|$)|\n")
# Words that stand before "at" in prose, never as an address's name: "send it to me at …",
# "log in at …"
_NOT_A_NAME = frozenset(
    ("me", "us", "you", "him", "her", "them", "it", "in", "on", "up", "out", "here", "there")
)
_HANDLE_PARTS = re.compile(r"[._]|\s+dot\s+", re.IGNORECASE)


def _a_named_address(text: str, match: re.Match[str]) -> bool:
    """Whether a one-word name "at" a domain is an address: a contact word stands before the name
    in its sentence (within CONTACT_REACH characters), or the address is its line's only text
    (punctuation aside)."""
    start, end = match.span()
    if match["name"].lower() in _NOT_A_NAME:
        return False
    # (a line of its own is short: its ends are looked for CONTACT_REACH characters away at most)
    line_start = text.rfind("\n", max(0, start - CONTACT_REACH), start) + 1
    line_end = text.find("\n", end, end + CONTACT_REACH)
    if line_end < 0 and end + CONTACT_REACH >= len(text):
        line_end = len(text)
    alone = (line_start > 0 or start <= CONTACT_REACH) and line_end >= 0
    if alone and not text[line_start:start].strip(" \t:-*>") and not text[end:line_end].strip(" \t.,;"):
        return True
    before = text[max(line_start, start - CONTACT_REACH) : start]
    ends = [m.end() for m in _SENTENCE_END.finditer(before)]
    return _CONTACT_BEFORE.search(before, ends[-1] if ends else 0) is not None


def _a_handle(name: str) -> bool:
    """Whether a part after the first of a name holds a letter ("s.nakamura", "jackson.lee.1990";
    not "v1.2", a version)."""
    return any(not part.isdigit() for part in _HANDLE_PARTS.split(name)[1:])


_SEPARATOR = re.compile(rf"{_AT_BRACKETED}|\s+at\s+|{_DOT_BRACKETED}|\s+dot\s+", re.IGNORECASE)


def _spelled(match: re.Match[str]) -> str:
    return "@" if match.group().strip().strip("[](){}<>").strip().lower() in ("at", "@") else "."


# How far an obfuscated address reaches before and after where one of the markers above ends
# in it (a name and its "at" before, a domain of several spoken labels after)
NEAR_BEFORE, NEAR_AFTER = 256, 512


def obfuscated_emails(text: str, near: Sequence[int] | None = None) -> list[tuple[int, int, str]]:
    """Each address written obfuscated in `text` (above), with the address it spells. `near`:
    where markers of one end (ascending), if known: only the text around them is read (over
    the whole of a long text the search costs ≈0.2 µs a character)."""
    windows = [(0, len(text))] if near is None else _merged(near, len(text))
    found: list[tuple[int, int, str]] = []
    for lo, hi in windows:
        at = max(lo, found[-1][1]) if found else lo
        while (m := _OBFUSCATED_EMAIL.search(text, at, hi)) is not None:
            if (m["handle"] is None or _a_handle(m["handle"])) and (
                m["name"] is None or _a_named_address(text, m)
            ):
                found.append((m.start(), m.end(), _SEPARATOR.sub(_spelled, m.group())))
                at = m.end()
            else:  # (not one: a later start may be: "Contact me at jane.doe [at] gmail [dot] com")
                at = m.start() + 1
    return found


def _merged(ends: Sequence[int], size: int) -> list[tuple[int, int]]:
    """The stretches NEAR_BEFORE before to NEAR_AFTER after each of `ends` (ascending), merged."""
    windows: list[tuple[int, int]] = []
    for end in ends:
        lo, hi = max(0, end - NEAR_BEFORE), min(size, end + NEAR_AFTER)
        if windows and lo <= windows[-1][1]:
            windows[-1] = (windows[-1][0], hi)
        else:
            windows.append((lo, hi))
    return windows


__all__ = [
    "APART",
    "ASCII_SPACING",
    "ESCAPE_EXPRESSIONS",
    "ESCAPE_TRIGGER",
    "INVISIBLE",
    "LEET",
    "LOOKALIKES",
    "OBFUSCATED_EMAIL_EXPRESSIONS",
    "SOFT_WRAP",
    "SPACES",
    "UNICODE_SPACES",
    "UNICODE_SPACING",
    "WRAP_AFTER",
    "WRAP_BEFORE",
    "Edited",
    "Unescaped",
    "decoded_findings",
    "decoded_runs",
    "decoded_text",
    "disguised",
    "disguises",
    "encoded_runs",
    "has_escapes",
    "hidden",
    "last_disguise",
    "leet_readings",
    "letters_apart",
    "letters_joined",
    "mixed_words",
    "obfuscated_emails",
    "odd_spacing",
    "readings",
    "rot13",
    "squeezed",
    "undisguised",
    "unescaped",
    "unwrapped",
    "word_starts",
    "words_reversed",
]  # fmt: skip
