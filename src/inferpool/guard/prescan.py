"""One cheap pass over a text that decides which detectors run at all, and where.

Most prompts hold no e-mail address, no long digit run, no key prefix and none of the words
an injection needs; for them screening is a lower-casing, one compiled pass for every trigger
word at once (Hyperscan; Aho-Corasick for short texts), and a few scans for character shapes.
Each detector family runs only when its trigger fired, and only around where it fired.

The shape scans (digit runs, long tokens, alphanumeric IDs) do not run regular expressions
over the text itself: a regular expression tries its pattern at every position, about 10 ns
a character. Instead the text is mapped to one byte per character of its class
(`bytes.translate`, about 1 ns a character) and the class string is searched with a literal
prefix (`bytes.find`, which skips ahead), so only the few places that start a shape cost more.
The class strings have the text's length, so every offset is an offset into the text.
"""

from __future__ import annotations

import codecs
import functools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, cast

import ahocorasick
import hyperscan

from inferpool.guard import multilingual
from inferpool.guard.disguise import (
    APART,
    ASCII_SPACING,
    ESCAPE_EXPRESSIONS,
    LEET,
    OBFUSCATED_EMAIL_EXPRESSIONS,
    UNICODE_SPACING,
    Edited,
    Unescaped,
    decoded_runs,
    disguises,
    has_escapes,
    letters_apart,
    mixed_words,
    obfuscated_emails,
    odd_spacing,
    undisguised,
    unescaped,
)
from inferpool.guard.disguise import prepare as prepare_disguises

# Shortest number-based PII: a 7-digit phone number with separators.
DIGIT_RUN = re.compile(r"\d[\d \-.()/]{5,}\d")
# The fewest characters DIGIT_RUN and ALNUM_ID match: a shorter text holds no number-based PII.
SHORTEST_NUMBER_CANDIDATE = 7
# The shape both alphanumeric IDs share: two capitals, then capitals or digits, a digit among them.
ALNUM_ID = re.compile(r"[A-Z]{2}[A-Z0-9]{4,}\d")
ANY_DIGIT = re.compile(r"\d")  # (both DIGIT_RUN and ALNUM_ID hold one)
# Long runs of token characters: where prefix-less keys (Twilio, Discord, Mailchimp) can hide.
LONG_TOKEN = re.compile(r"[A-Za-z0-9_\-+/=.]{24,}")
LONG_TOKEN_CHARS = 24
# Words without which no injection signal can reach a threshold (see injection.SIGNALS), once
# each (the generated ones repeat a few listed above).
INJECTION_WORDS = tuple(dict.fromkeys((
    "ignor", "disregard", "forget", "set aside", "pay no attention", "abandon", "bypass", "overrid",
    "overrul", "discard", "obey", "t follow", "not follow", "stop follow", "no longer", "revoked",
    "cancel", "void", "outdated", "obsolete", "supersede", "a test", "by mistake", "never installed",
    "never existed", "never given", "switched off", "turned off", "exempt", "freed from", "bound by",
    "released from", "reveal", "repeat", "print", "dump", "leak", "quote", "copy", "preamble",
    "context window", "system prompt", "system message", "hidden", "confidential", "initial",
    "unfilter", "uncensor", "unrestrict", "never refuse", "restriction", "censorship", "your developer",
    "admin", "system:", "instruction:", "new instructions", "new orders", "new rules", "updated instruction",
    "note to the", "authoris", "authoriz", "olvida", "oubli", "vergiss", "ignora", "esquece",
    "mensaje de sistema", "systemprompt", "prompt système", "words above", "text above", "everything above",
    "appears before", "drop", "skip", "jailbreak", "do anything now", "alter ego",
    "no rule", "no limit", "no filter", "no polic", "no guideline", "no ethic", "free from", "free of", "without",
    "not bound", "never refuse", "consider them", "consider it", "treat them", "treat it", "treat everything",
    # role switches and jailbreak names, which reach the threshold together ("You are now in
    # developer mode"), and exfiltration targets that hold none of the words above ("what you
    # were told", "the exact instructions you received"): tests/unit/guard/test_injection_triggers.py
    "you are now", "from now on", "from this point on", "for this conversation", "for this session",
    "act as", "act like", "pretend", "roleplay", "respond as", "respond only as", "imagine your",
    "imagine you have", "let's play a game", "obey only", "do what i say", "comply with all",
    "developer mode", "dev mode", "god mode", "sudo mode", "maintenance mode", "evil mode",
    "evil assistant", "evil ai", "evil twin", "instructions you", "what you were", "what you have been",
    "your prompt", "your instructions", "your rules", "your configuration", "your hidden",
    "words before", "text before", "everything before", "lifted", "switch off", "t apply", "not apply",
    "stop apply",
    # exfiltration's "<secret|original|exact|system> <prompt|instructions|...>" (injection.SIGNALS)
    *(f"{adjective} {noun}" for adjective in ("secret", "original", "exact", "system")
      for noun in ("prompt", "instructions", "message", "rules", "preamble", "configuration")),
)))  # fmt: skip

# The trigger words, and the longer words of trigger phrases, as they may be spelled to hide
# them: in leetspeak ("1gn0re", "pr0mpt", "$ystem"; disguise.LEET) or with their letters apart
# ("I-g-n-o-r-e", "s.y.s.t.e.m"; disguise.APART). Found in the pre-scan's pass (`spelled`),
# where one sends the injection check to read the text with that spelling undone.
SPELLED_WORDS = tuple(sorted({
    word.strip(":")
    for phrase in INJECTION_WORDS
    if phrase.isascii()
    for word in phrase.split(" ")
    if (" " not in phrase or len(word) >= 5) and word.strip(":").isalpha()
}))  # fmt: skip
LEET_WORDS = tuple(w for w in SPELLED_WORDS if any(c in LEET for c in w))
# `Prescan.spelled` bits: a trigger word in leetspeak, one with its letters apart; and
# `Prescan.ciphers` bits: one in ROT13, one written backwards
LEETSPEAK = 1
LETTERS_APART = 2
ROT13 = 4
REVERSED = 8
# The trigger words of five letters or more in ROT13 ("vtaber" for "ignore", "flfgrz" for
# "system") and backwards ("erongi", "metsys"): found in the pre-scan's own pass as words of
# families of their own ("rot13", "reversed"), where one (at the edge of a word where its stem
# begins) sends the injection check to read the text so undone too. Shorter ones are everyday
# letter runs ("be" is "or" in ROT13, "no" is "on" backwards).
ROT13_WORDS = tuple(sorted({codecs.encode(w, "rot13") for w in SPELLED_WORDS if len(w) >= 5}))
REVERSED_WORDS = tuple(sorted({w[::-1] for w in SPELLED_WORDS if len(w) >= 5}))
CIPHER_FAMILIES = frozenset({"rot13", "reversed"})  # (the pre-scan's families of such words)


def _one_of(characters: str) -> str:
    return "[" + "".join(escaped(c) for c in characters) + "]"


def _leet_expression(word: str) -> str:
    """A Hyperscan expression for `word` with at least one letter written as in LEET: one
    alternative per letter that has substitutes, for when it is the first one substituted (the
    letters before it as they are, it a substitute, those after it either)."""
    return "|".join(
        escaped(word[:j])
        + _one_of(LEET[letter])
        + "".join(_one_of(c + LEET[c]) if c in LEET else escaped(c) for c in word[j + 1 :])
        for j, letter in enumerate(word)
        if letter in LEET
    )


def _apart_expressions(word: str) -> list[str]:
    """Hyperscan expressions for `word` with one of APART between each two of its letters, the
    same one throughout (as `disguise.letters_joined` reads them): literals, one per separator (a
    class between each two letters left the pass no literal to look for, and cost it ≈10 %)."""
    return [escaped(separator.join(word)) for separator in APART]


def spelled_expressions() -> list[str]:
    """LEET_WORDS' leetspeak expressions, then SPELLED_WORDS' letters-apart ones."""
    return [
        *(_leet_expression(w) for w in LEET_WORDS),
        *(e for w in SPELLED_WORDS for e in _apart_expressions(w)),
    ]


@functools.cache
def _spelled_database() -> tuple[hyperscan.Database, hyperscan.Scratch]:
    return compiled_database(spelled_expressions(), hyperscan.HS_FLAG_SINGLEMATCH)


def spelled_words(text: str) -> int:
    """How the trigger words of `text` are spelled to hide them (LEETSPEAK, LETTERS_APART bits):
    one compiled pass over its lower-cased `ascii_chars`; for a short text only where a word
    mixes digits or symbols with letters or a letter stands apart (those searches cost more
    than the pass over a long text: 3-4 ms each over 100 KB)."""
    if len(text) < COMPILED_SCAN_CHARS and not mixed_words(text) and not letters_apart(text):
        return 0
    database, scratch = _spelled_database()
    leet_count = len(LEET_WORDS)
    found = 0

    def on_match(expression: int, *_args: object) -> None:
        nonlocal found
        found |= LEETSPEAK if expression < leet_count else LETTERS_APART

    database.scan(ascii_chars(text).lower(), match_event_handler=on_match, scratch=scratch.clone())
    return found


# Characters that `re.IGNORECASE` equates with an ASCII letter (or whose lower case is one, or
# is longer than one character): with one of them in a text, the fast paths below could miss
# what the detectors' case-insensitive patterns match, so that text takes the general path.
CASE_EXOTIC = ("\u0130", "\u0131", "\u017f", "\u212a")  # İ ı ſ K (Kelvin sign)
_EXOTIC_LETTERS = (("\u0130", "i"), ("\u0131", "i"), ("\u017f", "s"), ("\u212a", "k"))
_ASCII = bytes(range(128))


def _class_table(members: str, mark: str, also: dict[str, str] | None = None) -> bytes:
    """A `bytes.translate` table: bytes in `members` become `mark`, `also` maps more, the rest ' '."""
    table = bytearray(b" " * 256)
    for ch in members:
        table[ord(ch)] = ord(mark)
    for ch, to in (also or {}).items():
        table[ord(ch)] = ord(to)
    return bytes(table)


_DIGITS = "0123456789"
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_DIGIT_CLASS = _class_table(_DIGITS, "0", {c: "-" for c in " -.()/"})
DIGIT_RUN_CLASS = re.compile(rb"0[0\-]{5,}0")  # DIGIT_RUN on _DIGIT_CLASS
_ALNUM_CLASS = _class_table(_UPPER, "A", {c: "0" for c in _DIGITS})
ALNUM_ID_CLASS = re.compile(rb"AA[A0]{4,}0")  # ALNUM_ID on _ALNUM_CLASS
_TOKEN_CLASS = _class_table(_UPPER + _UPPER.lower() + _DIGITS + "_-+/=.", "x")
_LONG_RUN = b"x" * LONG_TOKEN_CHARS


def fold(text: str) -> tuple[str, bool]:
    """`text` lower-cased for trigger-word search, with the same length, and whether it is exact:
    equal to `text.lower()` at every ASCII letter (and at the non-ASCII letters of trigger words,
    which the automaton holds in both cases). Non-ASCII text is lowered as UTF-8 bytes, ASCII
    letters only: `str.lower()` on it costs about 20 ns a character. Not exact when the text
    holds a CASE_EXOTIC character: each becomes the ASCII letter case-insensitive `re` matches
    it as (İ and ı i, ſ s, the Kelvin sign k), which `str.lower()` does not give. Of the same
    length either way, so offsets in the fold are offsets in the text (`str.lower()` would
    turn İ into two characters, i and a combining dot)."""
    lowered, exact, _utf8 = _fold(text)
    return lowered, exact


def _fold(text: str) -> tuple[str, bool, bytes | None]:
    """`fold(text)`, and for a non-ASCII text the UTF-8 bytes it was made from (ASCII letters
    lower-cased; None for an ASCII text, whose own bytes are its `ascii_chars`)."""
    if text.isascii():
        return text.lower(), True, None
    utf8 = text.encode("utf-8", "surrogatepass").lower()
    lowered = utf8.decode("utf-8", "surrogatepass")
    if has_case_exotic(lowered):
        # İ, ı, ſ and the Kelvin sign as the letters case-insensitive `re` takes them for: the
        # trigger words are found where the signals' patterns match ("ıgnore", "ſystem
        # prompt"); one for one, so of the same length still. Other non-ASCII letters keep
        # their case, as in any non-ASCII text (the automaton holds trigger words in every
        # case of their non-ASCII letters): `str.lower()` over all of it cost 3x as much.
        for exotic, letter in _EXOTIC_LETTERS:
            lowered = lowered.replace(exotic, letter)
        return lowered, False, utf8
    return lowered, True, utf8


def fold_ascii(text: str) -> str:
    """`text` with its ASCII letters lower-cased and nothing else changed (so of the same length,
    and each character folded on its own: the fold of a slice is the slice of the fold)."""
    if text.isascii():
        return text.lower()
    return text.encode("utf-8", "surrogatepass").lower().decode("utf-8", "surrogatepass")


def has_case_exotic(text: str) -> bool:
    """Whether a CASE_EXOTIC character is in `text`. All are non-ASCII, so an ASCII text (most
    injection passages; `isascii` reads words at a time) holds none (chat 100 KB's 268
    passages 370 -> 120 µs); otherwise a substring search per character, each a fast scan (a
    class search reads the text at `re`'s pace, 7x slower over 2 KB of multilingual text)."""
    return not text.isascii() and any(c in text for c in CASE_EXOTIC)


def unicode_digits(text: str, utf8: bytes | None = None) -> bool:
    """Whether the text holds a non-ASCII decimal digit (`\\d` matches those too). `utf8`: its
    UTF-8 encoding (ASCII letters may be lower-cased), when known."""
    if text.isascii():
        return False
    others = (text.encode("utf-8", "surrogatepass") if utf8 is None else utf8).translate(None, _ASCII)
    return re.search(r"\d", others.decode("utf-8", "surrogatepass")) is not None


def ascii_chars(text: str) -> bytes:
    """One byte per character (non-ASCII ones become '?'), so byte offsets are text offsets."""
    # an ASCII text's plain encode is the same bytes, ≈100 ns sooner for 2 KB
    return text.encode() if text.isascii() else text.encode("ascii", "replace")


def digit_runs(
    text: str, chars: bytes | None = None, odd_digits: bool | None = None
) -> tuple[tuple[int, int], ...]:
    """DIGIT_RUN's matches, from the digit class string (from DIGIT_RUN itself when the text
    holds non-ASCII digits, which `\\d` also matches). `chars`, `odd_digits`: the text's
    `ascii_chars` and whether it holds a non-ASCII digit, when known."""
    if odd_digits is None:
        odd_digits = unicode_digits(text)
    if odd_digits:
        return tuple(m.span() for m in DIGIT_RUN.finditer(text))
    marks = (ascii_chars(text) if chars is None else chars).translate(_DIGIT_CLASS)
    return tuple(map(re.Match.span, DIGIT_RUN_CLASS.finditer(marks)))  # no generator frame: ≈0.5 µs of 2 KB


def has_alnum_id(text: str, chars: bytes | None = None, odd_digits: bool | None = None) -> bool:
    """Whether ALNUM_ID matches anywhere (`chars`, `odd_digits`: as for digit_runs)."""
    if odd_digits is None:
        odd_digits = unicode_digits(text)
    if odd_digits:
        return ALNUM_ID.search(text) is not None
    marks = (ascii_chars(text) if chars is None else chars).translate(_ALNUM_CLASS)
    return ALNUM_ID_CLASS.search(marks) is not None


def long_tokens(text: str, chars: bytes | None = None) -> Iterator[tuple[int, int]]:
    """LONG_TOKEN's matches (ASCII classes only, so no non-ASCII case to handle): `find` of 24
    token marks skips 25 characters at each miss. `chars`: the text's `ascii_chars`, if known."""
    marks = (ascii_chars(text) if chars is None else chars).translate(_TOKEN_CLASS)
    at = marks.find(_LONG_RUN)
    while at >= 0:
        end = marks.find(b" ", at + LONG_TOKEN_CHARS)
        end = len(marks) if end < 0 else end
        yield marks.rfind(b" ", 0, at) + 1, end
        at = marks.find(_LONG_RUN, end)


# Where the last match of a shape starts in a text's `ascii_chars` (-1: none), searched only
# when a cheap look at its class string allows one. Only for a text holding no non-ASCII digit
# (`unicode_digits`): the class strings know ASCII digits only.


def last_digit_run(chars: bytes) -> int:
    return _last_start(DIGIT_RUN_CLASS, chars.translate(_DIGIT_CLASS), b"0")


def last_alnum_id(chars: bytes) -> int:
    return _last_start(ALNUM_ID_CLASS, chars.translate(_ALNUM_CLASS), b"AA")


def last_long_token(chars: bytes) -> int:
    return _last_start(_LONG_RUN_CLASS, chars.translate(_TOKEN_CLASS), _LONG_RUN)


def token_breaks(text: str) -> tuple[int, int]:
    """Where the first and the last character that ends a LONG_TOKEN run (any but
    [A-Za-z0-9_\\-+/=.]) are in `text` (-1, -1: none)."""
    # ascii_chars inlined: every streamed event that is not letters and digits only asks
    marks = (text.encode() if text.isascii() else text.encode("ascii", "replace")).translate(_TOKEN_CLASS)
    return marks.find(b" "), marks.rfind(b" ")


_LONG_RUN_CLASS = re.compile(rb"x{%d,}" % LONG_TOKEN_CHARS)  # LONG_TOKEN on _TOKEN_CLASS


def _last_start(shape: re.Pattern[bytes], marks: bytes, needed: bytes) -> int:
    if needed not in marks:
        return -1
    last = -1
    for m in shape.finditer(marks):
        last = m.start()
    return last


def _case_variants(word: str) -> list[str]:
    """`word` and its spellings whose `str.lower()` is `word`, for its non-ASCII letters (the
    fold leaves those as they are): "prompt système" and "prompt systÈme"."""
    variants = [word]
    for i, ch in enumerate(word):
        if ch.isascii():
            continue
        others = {c for c in (ch.upper(), ch.title()) if c != ch and len(c) == 1 and c.lower() == ch}
        variants += [v[:i] + c + v[i + 1 :] for v in variants for c in others]
    return variants


_T = TypeVar("_T")


class _lazy(Generic[_T]):  # lower case: used like the decorator it replaces
    """`functools.cached_property` without its lock: on Python 3.11 every first access takes an
    RLock (3.12 dropped it), and each Prescan is new, so every access here would be a first one
    (≈1.5 µs each, several per streamed event). The value goes into the instance's __dict__, which
    shadows this non-data descriptor from then on."""

    def __init__(self, compute: Callable[[Any], _T]) -> None:
        self._compute = compute
        self._name = compute.__name__
        self.__doc__ = compute.__doc__

    def __get__(self, obj: Any, owner: Any = None) -> _T:
        if obj is None:
            return self  # type: ignore[return-value]
        value: _T = self._compute(obj)
        obj.__dict__[self._name] = value
        return value


@dataclass  # (not frozen: a frozen dataclass sets each of its 12 fields through object.__setattr__, ≈1 µs a scan)
class Prescan:
    text: str
    lowered: str  # fold(text): same length unless `exact` is False
    exact: bool  # False: a CASE_EXOTIC character is in the text; detectors take their general path
    injection_hits: tuple[int, ...]  # where injection trigger words start
    secret_hints: dict[str, list[int]]  # hint -> offsets where it occurs
    # the ID keywords (pii.ID_RULES) that occur in `lowered` (see Prescanner); None: not searched for
    keywords: frozenset[str] | None = None
    chars: bytes | None = field(default=None, repr=False)  # ascii_chars(text), computed once
    _numbers: bool = field(default=True, repr=False)  # False: no digit run or ID shape can be there
    # Which runs of spacing other than one space the text may hold (disguise.ASCII_SPACING,
    # UNICODE_SPACING bits), and whether it holds a disguise (disguise.disguised): the
    # injection check reads such a text squeezed and undisguised.
    spaced: int = 0
    # A disguise the pass finds (an invisible character, full-width or mathematical letters,
    # tag characters, a lookalike in a Latin word, a combining mark on an ASCII character):
    # every check reads the text undisguised too
    disguised: bool = False
    utf8: bytes | None = field(default=None, repr=False)  # a non-ASCII text's UTF-8 (see _fold)
    # How injection trigger words are spelled to hide them (`spelled_words`); None: not looked
    # for yet (`spelled`)
    spelled_found: int | None = None
    # Whether the text holds a non-ASCII decimal digit (then the class strings do not serve):
    # found in the pass over a non-ASCII text's UTF-8 (disguise.disguises)
    odd_digits: bool = False
    ciphers: int = 0  # a trigger word in ROT13 (ROT13_WORDS), or backwards (REVERSED_WORDS): bits
    # Whether the text holds an escape (disguise.ESCAPE_TRIGGER: percent-encoding, character
    # references, \\u and \\x escapes, quoted-printable); None: not looked for yet (`escaped`)
    escapes_found: bool | None = None
    quoted_printable: bool | None = None  # (disguise.QUOTED_PRINTABLE; None: not known)
    # A trigger word of an injection in another language (guard/multilingual.py)
    foreign: bool = False
    # Where in the text the compiled pass's markers of an email address written obfuscated
    # ("jane [at] gmail [dot] com": disguise.obfuscated_emails) end, in order: the addresses lie
    # around them (none: no address). None: the pass did not read the text (a short one), which
    # `obfuscated_email` then asks about and `obfuscated` reads whole
    obfuscated_near: tuple[int, ...] | None = None

    @_lazy
    def number_spans(self) -> tuple[tuple[int, int], ...]:
        """Digit runs long enough for a phone, card, IBAN or ID."""
        return digit_runs(self.text, self.chars, self.odd_digits) if self._numbers else ()

    @_lazy
    def alnum_ids(self) -> bool:
        """An upper-case run with digits, as codice fiscale and passport numbers are."""
        return self._numbers and has_alnum_id(self.text, self.chars, self.odd_digits)

    @_lazy
    def email(self) -> bool:
        return "@" in self.text

    @_lazy
    def long_tokens(self) -> tuple[tuple[int, int], ...]:
        return tuple(long_tokens(self.text, self.chars)) if len(self.text) >= LONG_TOKEN_CHARS else ()

    @property
    def numbers(self) -> bool:
        return bool(self.number_spans)

    @_lazy
    def plain(self) -> Edited:
        """The text undisguised (`disguise.undisguised`), made once for every check that reads it."""
        return undisguised(self.text)

    @property
    def escaped(self) -> bool:
        """Whether the text holds an escape: every check reads its lines that do decoded too."""
        if self.escapes_found is None:
            self.escapes_found = has_escapes(self.text)
        return self.escapes_found

    @_lazy
    def unescaped(self) -> Unescaped | None:
        """The text's lines with escapes, decoded (`disguise.unescaped`), made once for every
        check that reads them; None without any."""
        return unescaped(self.text, self.quoted_printable) if self.escaped else None

    @_lazy
    def obfuscated_email(self) -> bool:
        """Whether the text may hold an obfuscated address: the PII check reads `obfuscated` then."""
        near = self.obfuscated_near
        return bool(near) if near is not None else may_hold_obfuscated_email(self.lowered)

    @_lazy
    def obfuscated(self) -> tuple[tuple[int, int, str], ...]:
        """The obfuscated addresses, with the address each spells (disguise.obfuscated_emails)."""
        return tuple(obfuscated_emails(self.text, self.obfuscated_near)) if self.obfuscated_email else ()

    @property
    def spelled(self) -> int:
        """How injection trigger words are spelled to hide them in the text (LEETSPEAK,
        LETTERS_APART bits)."""
        if self.spelled_found is None:
            self.spelled_found = spelled_words(self.text)
        return self.spelled_found

    @property
    def injection(self) -> bool:
        """Whether the injection check has anything to read: a trigger word, or a disguise or
        spelling that may hide one (the check finds its triggers in the text undone)."""
        return (
            bool(self.injection_hits)
            or self.disguised
            or bool(self.ciphers)
            or bool(self.spelled)
            or self.encoded
            or self.escaped
            or self.foreign
        )

    @_lazy
    def decoded(self) -> tuple[tuple[int, int, str], ...]:
        """The base64 or hex runs that decode to text, spaced or not, with that text
        (disguise.decoded_runs): decoded once for every check that reads them."""
        return tuple(decoded_runs(self.text, self.long_tokens)) if self.long_tokens else ()

    @property
    def encoded(self) -> bool:
        """Whether a run decodes to a text with a space in it: the injection check reads that."""
        return any(" " in decoded for _start, _end, decoded in self.decoded)


class Triggers(Protocol):
    """What decides whether a detector family runs at all (Prescan; openai.StreamScreener keeps
    its own for the text it has streamed)."""

    @property
    def numbers(self) -> bool: ...
    @property
    def alnum_ids(self) -> bool: ...
    @property
    def email(self) -> bool: ...
    @property
    def secret_hints(self) -> Mapping[str, Sequence[int]] | bool: ...
    @property
    def long_tokens(self) -> tuple[tuple[int, int], ...] | bool: ...
    @property
    def injection(self) -> bool: ...
    @property
    def disguised(self) -> bool: ...
    @property
    def escaped(self) -> bool: ...
    @property
    def obfuscated_email(self) -> bool: ...


# Below this many characters (a streamed event, the tail before it) the automaton answers
# sooner: a Hyperscan call costs about 1.3 µs before it reads a character.
COMPILED_SCAN_CHARS = 128


class Prescanner:
    """Every trigger word of a policy's checks found in a single pass over the lower-cased text,
    whatever the number of words: a Hyperscan literal database for texts of COMPILED_SCAN_CHARS
    or more, an Aho-Corasick automaton (pyahocorasick, C) for shorter ones and for `hits`."""

    def __init__(
        self, injection: bool, secret_hints: Iterable[str] = (), keywords: Iterable[str] = ()
    ) -> None:
        """`keywords`: words whose presence detectors ask about (the ID rules' context words);
        each scan then says which occur, found in the same pass: as `w in lowered`, or for a
        text of COMPILED_SCAN_CHARS or more with an exact fold, only where one begins or ends a
        word (the ID rules look for their keywords there: `keywords_at_edges`)."""
        # (the pass over a non-ASCII text's UTF-8, and where injection counts the word segmenter
        # for letters apart: made now, not at a first request)
        prepare_disguises(segmenter=injection)
        self._automaton = ahocorasick.Automaton()
        words: dict[str, tuple[str, str]] = {h: ("secret", h) for h in secret_hints}
        if injection:
            for word in INJECTION_WORDS:
                for variant in _case_variants(word):
                    words.setdefault(variant, ("injection", word))
            for word in ROT13_WORDS:
                words.setdefault(word, ("rot13", word))
            for word in REVERSED_WORDS:
                words.setdefault(word, ("reversed", word))
            # other languages' trigger words written in ASCII ("negeer", "abaikan", "zignoruj");
            # the others are found in the pass over a text's UTF-8 (disguise.disguises)
            for word in multilingual.ASCII_TRIGGERS:
                words.setdefault(word, ("foreign", word))
        self._foreign_words = frozenset(multilingual.ASCII_TRIGGERS) if injection else frozenset()
        self._keywords = frozenset(keywords)
        for word in self._keywords:
            for variant in _case_variants(word):
                # a keyword that is also a trigger word keeps that family; scan() checks it apart
                words.setdefault(variant, ("keyword", word))
        self._shared_keywords = frozenset(
            w for w in self._keywords if any(words[v] != ("keyword", w) for v in _case_variants(w))
        )
        for word, value in words.items():
            self._automaton.add_word(word, (*value, len(word)))
        self._empty = not words
        self._longest = max(map(len, words), default=0)
        if words:
            self._automaton.make_automaton()
        # The same words for scan(), numbered longest first (so sorting (end, number) puts the
        # hits in the automaton's order: by end, the longer of two ending together first). The
        # ASCII ones go into one Hyperscan database (literals), which scans a 100 KB text in
        # ~0.1-0.2 ms where the automaton takes ~1.5-2 ms. A non-ASCII trigger word with an
        # ASCII letter ("prompt système") goes in as its `ascii_chars` form ("prompt syst?me"),
        # which occurs wherever the word does, each report checked against the fold; the rest
        # (a keyword in another script: "आधार") are looked for with `str.find`, in non-ASCII
        # text only (3 such finds cost 3.6 µs of a 2 KB chat prompt's 16 µs pre-scan).
        order = sorted(words, key=lambda w: (-len(w), w))
        self._table = tuple((*words[w], len(w)) for w in order)
        self._ascii_ids = [i for i, w in enumerate(order) if w.isascii()]
        stand_ins: dict[str, list[tuple[int, str]]] = {}
        others: list[tuple[int, str]] = []
        for i, w in enumerate(order):
            if w.isascii():
                continue
            if words[w][0] != "keyword" and any(c.isascii() and c.isalpha() for c in w):
                stand_ins.setdefault(ascii_chars(w).decode(), []).append((i, w))
            else:
                others.append((i, w))
        self._others = tuple(others)
        # what each stand-in's report may be: database ids from len(ascii_ids) on
        self._stand_ins = tuple(tuple(group) for group in stand_ins.values())
        ascii_words = [order[i] for i in self._ascii_ids] + list(stand_ins)
        keyword = [words[order[i]][0] == "keyword" for i in self._ascii_ids] + [False] * len(stand_ins)
        expressions = [escaped(w) for w in ascii_words]
        # a pure keyword is only asked about once: one report is enough; and last, whether the
        # text holds a run of ASCII spacing other than one space anywhere (`Prescan.spaced`, a
        # hint for the injection check), and between two letters (where it can split a phrase);
        # with the injection words, whether one is spelled to hide it (`spelled_expressions`:
        # ≈1 µs more for a 2 KB prompt's pass, where a pass of their own cost 3 µs)
        # and after those, whether the text may hold an obfuscated email address
        # (disguise.OBFUSCATED_EMAIL_EXPRESSIONS), and whether it holds an escape
        # (disguise.ESCAPE_EXPRESSIONS: every check reads such lines decoded too)
        spacing = [ODD_SPACING, *SPLIT_PHRASE]
        markers = [*spacing, *spelled_expressions()] if injection else list(spacing)
        self._obfuscated_id = len(markers)  # marker numbers from here on: an obfuscated address
        markers += OBFUSCATED_EMAIL_EXPRESSIONS
        self._escape_id = len(markers)  # and from here on: an escape
        # (the last ones, quoted-printable's: disguise.QUOTED_PRINTABLE)
        self._quoted_printable_id = self._escape_id + len(ESCAPE_EXPRESSIONS) - 2
        markers += ESCAPE_EXPRESSIONS
        # (each marker reported once, but an obfuscated address's wherever it ends: the PII check
        # reads the text around those ends only, `Prescan.obfuscated_near`)
        once = [hyperscan.HS_FLAG_SINGLEMATCH if k else 0 for k in keyword] + [
            0 if self._obfuscated_id <= i < self._escape_id else hyperscan.HS_FLAG_SINGLEMATCH
            for i in range(len(markers))
        ]
        self._injection = injection
        self._spacing_id = len(ascii_words)
        self._leet_id = len(spacing)  # marker numbers from here on: a word in leetspeak,
        self._apart_id = len(spacing) + len(LEET_WORDS)  # and from here on: one with its letters apart
        self._compiled = compiled_database([*expressions, *markers], once) if ascii_words else None
        # The same words, the pure keywords only where one begins or ends a word: most texts
        # hold "ni" or "uid" inside a word ("definition", "guide"), which no ID rule counts.
        self._compiled_at_edges = (
            compiled_database(
                [at_an_edge(w) if k else e for w, e, k in zip(ascii_words, expressions, keyword, strict=True)]
                + markers,
                once,
            )
            if ascii_words and self._keywords
            else self._compiled
        )
        # The injection phrases of several words with any run of spacing between their words (a
        # second pass, for a text that has such a run: it costs about a third of the first)
        phrases = [
            (i, w)
            for i, w in enumerate(ascii_words)
            if " " in w and (i >= len(self._ascii_ids) or words[w][0] == "injection")
        ]
        assert not any(re.search(r"(?<![a-z]) | (?![a-z?])", w) for _i, w in phrases), (
            "each space of an injection phrase stands between two letters (SPLIT_PHRASE)"
        )
        self._phrase_ids = [i for i, _w in phrases]
        self._spaced_phrases = compiled_database([spaced(w) for _i, w in phrases], 0) if phrases else None

    def scan(self, text: str) -> Prescan:
        lowered, exact, utf8 = _fold(text)
        injection: list[int] = []
        hints: dict[str, list[int]] = {}
        keywords: set[str] = set()
        chars: bytes | None = None
        disguised = unicode_spaced = odd_digits = foreign = False
        if utf8 is not None:  # a non-ASCII text (every check reads its disguises)
            disguised, unicode_spaced, _hidden, odd_digits, foreign = disguises(text, utf8)
        markers: list[int] = []
        obfuscated_ends: list[int] = []  # (where an obfuscated address's marker ends)
        if len(text) < COMPILED_SCAN_CHARS and not (
            self._injection and (unicode_spaced or odd_spacing(text))
        ):
            word_hits: Iterable[tuple[int, tuple[str, str, int]]] = self.hits(lowered)
        else:  # (a short text with odd spacing too: the automaton knows phrases with one space)
            chars = ascii_chars(text)
            # an exact fold changes ASCII letters only: its ascii_chars are the text's, lowered
            at_edges = exact and len(text) >= COMPILED_SCAN_CHARS  # (short: keywords anywhere, as before)
            word_hits = self._hits(
                lowered,
                chars.lower() if exact else None,
                at_edges,
                markers,
                phrases_spaced=unicode_spaced,
                obfuscated_ends=obfuscated_ends,
            )
        ciphers = 0
        foreign_words = self._foreign_words
        for last, (family, word, length) in word_hits:
            if family == "injection":
                injection.append(last - length + 1)
                foreign = foreign or word in foreign_words  # ("ignora": Spanish and Italian)
            elif family == "foreign":
                foreign = True
            elif family == "secret":
                hints.setdefault(word, []).append(last - length + 1)
            # (at a whole word's edge where the trigger word's stem begins: the start of a word
            # in ROT13, its end backwards; "reven" in "revenue" is no "never" backwards)
            elif family == "rot13":
                if last - length < 0 or not lowered[last - length].isalnum():
                    ciphers |= ROT13
            elif family == "reversed":
                if last + 1 == len(lowered) or not lowered[last + 1].isalnum():
                    ciphers |= REVERSED
            else:
                keywords.add(word)
        keywords.update(w for w in self._shared_keywords if w in lowered)
        found = frozenset(keywords) if self._keywords else None
        # (markers: a few numbers at most, each reported once; min and max, not generators)
        escapes: bool | None = None  # (a text the compiled pass did not read: looked for when asked)
        quoted_printable: bool | None = None
        near: tuple[int, ...] | None = None
        if chars is not None and self._compiled is not None:
            escapes = bool(markers) and max(markers) >= self._escape_id
            quoted_printable = escapes and max(markers) >= self._quoted_printable_id
            # (the ends are the fold's offsets, which are the text's: a fold is one for one)
            near = tuple(sorted(obfuscated_ends))
            if escapes:  # (the obfuscated-address markers' ends went to `obfuscated_ends`)
                markers = [m for m in markers if m < self._escape_id]
        leet_id, apart_id = self._leet_id, self._apart_id
        spelled: int | None = None  # (the automaton's texts are looked at when asked: `Prescan.spelled`)
        if chars is not None and self._injection:
            spelled = 0
            if markers and max(markers) >= leet_id:
                spelled = (LETTERS_APART if max(markers) >= apart_id else 0) | (
                    LEETSPEAK if any(leet_id <= m < apart_id for m in markers) else 0
                )
        # A short text without a digit holds no digit run or ID shape: asked once here, not by each
        # shape's search (the floor of a short prompt's screen; a long text is searched as before)
        numbers = len(text) >= COMPILED_SCAN_CHARS or (
            len(text) >= SHORTEST_NUMBER_CANDIDATE and ANY_DIGIT.search(text) is not None
        )
        return Prescan(
            text,
            lowered,
            exact,
            tuple(injection),
            hints,
            found,
            chars,
            numbers,
            spaced=(UNICODE_SPACING if unicode_spaced else 0)
            | (ASCII_SPACING if markers and min(markers) < leet_id else 0),
            disguised=disguised,
            utf8=utf8,
            spelled_found=spelled,
            odd_digits=odd_digits,
            ciphers=ciphers,
            escapes_found=escapes,
            quoted_printable=quoted_printable,
            foreign=foreign and self._injection,
            obfuscated_near=near,
        )

    def _hits(
        self,
        lowered: str,
        chars: bytes | None = None,
        at_edges: bool = False,
        markers: list[int] | None = None,
        phrases_spaced: bool = False,
        obfuscated_ends: list[int] | None = None,
    ) -> list[tuple[int, tuple[str, str, int]]]:
        """`hits(lowered)`, from the Hyperscan database and `str.find`: a fold has no upper-case
        ASCII letter, so an ASCII word occurs in it exactly where it occurs in its
        `ascii_chars` (non-ASCII characters become '?', which no word holds; one byte per
        character, so the offsets are the fold's), and a non-ASCII word only in non-ASCII text.
        `chars`: `ascii_chars(lowered)`, if known. `at_edges`: an ASCII pure keyword only where
        it begins or ends a word (see `keywords_at_edges`). `markers`: gets 0 if the text holds
        a run of ASCII spacing other than one space (ODD_SPACING), and 1 or 2 if one may split a
        phrase (SPLIT_PHRASE). Then, or if `phrases_spaced` (the text holds a Unicode space), an
        injection phrase is also found with other spacing between its words (`spaced`), where it
        starts as many characters before its end as its length with one space each (a start in
        the phrase, so in its sentence)."""
        if self._empty:
            return []
        found: list[tuple[int, int]] = []
        ascii = lowered.isascii()
        compiled = self._compiled_at_edges if at_edges else self._compiled
        if compiled is not None:
            database, scratch = compiled
            append, numbers = found.append, self._ascii_ids
            stand_ins: list[tuple[int, int]] = []
            first_stand_in = len(numbers)

            spacing_id = self._spacing_id
            marked: list[int] = [] if markers is None else markers
            ends: list[int] = [] if obfuscated_ends is None else obfuscated_ends
            first_obfuscated, first_escape = spacing_id + self._obfuscated_id, spacing_id + self._escape_id

            def on_match(word: int, _start: int, end: int, _flags: int, _context: object) -> None:
                if word < first_stand_in:
                    append((end, numbers[word]))
                elif word < spacing_id:
                    stand_ins.append((end, word - first_stand_in))
                elif first_obfuscated <= word < first_escape:
                    ends.append(end)
                else:
                    marked.append(word - spacing_id)

            chars = ascii_chars(lowered) if chars is None else chars
            database.scan(chars, match_event_handler=on_match, scratch=scratch.clone())
            # (1 or 2: SPLIT_PHRASE; from _leet_id on: a leetspeak word)
            if self._spaced_phrases is not None and (phrases_spaced or 1 in marked or 2 in marked):
                phrase_ids, phrases_found = self._phrase_ids, len(found) + len(stand_ins)

                def on_phrase(phrase: int, start: int, end: int, flags: int, context: object) -> None:
                    on_match(phrase_ids[phrase], start, end, flags, context)

                spaced_database, spaced_scratch = self._spaced_phrases
                spaced_database.scan(chars, match_event_handler=on_phrase, scratch=spaced_scratch.clone())
                if len(found) + len(stand_ins) > phrases_found:  # (one with single spaces: reported twice)
                    found[:] = set(found)
                    stand_ins[:] = set(stand_ins)
            for end, group in stand_ins:
                found += [(end, n) for n, w in self._stand_ins[group] if _ends_with(lowered, w, end)]
        if self._others and not ascii:
            for number, word in self._others:
                found += [(at + len(word), number) for at in occurrences(lowered, word)]
        found.sort()
        table = self._table
        return [(end - 1, table[number]) for end, number in found]

    def hits(self, lowered: str) -> Iterable[tuple[int, tuple[str, str, int]]]:
        """Every trigger word in a folded text, in the order of their ends: (where its last
        character is, (family, word, length)); family "injection", "rot13" (ROT13_WORDS),
        "reversed" (REVERSED_WORDS), "secret" or "keyword", `word` the hint, keyword or the
        injection word's base form."""
        return () if self._empty else self._automaton.iter(lowered)

    @property
    def longest_word(self) -> int:
        return self._longest


def compiled_database(
    expressions: Sequence[str], flags: int | Sequence[int], literal: bool = False
) -> tuple[hyperscan.Database, hyperscan.Scratch]:
    """A block-mode Hyperscan database of `expressions` (ids: their indices; a non-ASCII one is
    matched in UTF-8, with HS_FLAG_UTF8 among the flags) and a template
    scratch space. A scratch is not thread-safe: each scan uses a clone of the template. The
    same expressions and flags give the same database, compiled once per process (read-only in
    a scan): policies of the same checks, and a policy reloaded, share it (a pre-scanner's
    two databases take ≈0.2 s to compile)."""
    return _compiled(tuple(expressions), flags if isinstance(flags, int) else tuple(flags), literal)


@functools.lru_cache(maxsize=64)
def _compiled(
    expressions: tuple[str, ...], flags: int | tuple[int, ...], literal: bool
) -> tuple[hyperscan.Database, hyperscan.Scratch]:
    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    database.compile(
        expressions=[e.encode() for e in expressions],
        ids=list(range(len(expressions))),
        elements=len(expressions),
        flags=flags if isinstance(flags, int) else list(flags),
        literal=literal,
    )
    return database, hyperscan.Scratch(database)


def may_hold_obfuscated_email(lowered: str) -> bool:
    """Whether a lower-cased text holds one of OBFUSCATED_EMAIL_EXPRESSIONS, so may hold an
    address `obfuscated_emails` reads (a short text's check: a long one's markers come from the
    compiled pass). Each holds " at " or an opening bracket: substring tests first, then a scan
    of their own (≈1.3 µs for 100 characters; `re` took ≈6)."""
    if " at " not in lowered and not any(b in lowered for b in "[({<"):
        return False
    database, scratch = _obfuscated_markers()
    found: list[int] = []
    database.scan(ascii_chars(lowered), match_event_handler=_note_end, context=found, scratch=scratch.clone())
    return bool(found)


@functools.cache
def _obfuscated_markers() -> tuple[hyperscan.Database, hyperscan.Scratch]:
    return compiled_database(OBFUSCATED_EMAIL_EXPRESSIONS, hyperscan.HS_FLAG_SINGLEMATCH)


def _note_end(_id: int, _start: int, end: int, _flags: int, found: object) -> None:
    """Hyperscan's match callback: the match's end onto the list passed as the scan's context."""
    cast("list[int]", found).append(end)


# Spacing the pre-scan's injection phrases allow between their words: ASCII spaces, tabs,
# vertical tabs, form feeds, and '?' (how `ascii_chars` writes a no-break or other Unicode space)
_SEPARATOR = r"[ \t\x0b\x0c?]+"
# Where a run of ASCII spacing other than one space is (Prescan.spaced)
ODD_SPACING = r"  |[\t\x0b\x0c]"
# Where spacing other than one space may split an injection phrase (each of whose spaces stands
# between two ASCII letters): two spaces after a letter, or a tab, vertical tab or form feed
# anywhere. Not the indentation of a line of code, the common run. (Expressions that Hyperscan
# finds by a literal: one for a run between two letters cost a third of the whole pass.)
SPLIT_PHRASE = (r"[a-z]  ", r"[\t\x0b\x0c]")
STAND_IN_SPACING_CHARS = 256


def spaced(phrase: str) -> str:
    """A Hyperscan expression for an ASCII `phrase` with any run of _SEPARATOR between its words."""
    return _SEPARATOR.join(escaped(word) for word in phrase.split(" "))


def _ends_with(lowered: str, phrase: str, end: int) -> bool:
    """Whether `phrase` (a non-ASCII trigger phrase) ends at `end` in `lowered`, with any run of
    spacing where it has a space (what its `spaced` form reported there may hold)."""
    if lowered.startswith(phrase, end - len(phrase)):
        return True
    # (a run of spacing longer than STAND_IN_SPACING_CHARS in all is missed: none is typed)
    lo = max(0, end - len(phrase) - STAND_IN_SPACING_CHARS)
    return " " in phrase and _spaced_pattern(phrase).search(lowered, lo, end) is not None


@functools.cache
def _spaced_pattern(phrase: str) -> re.Pattern[str]:
    gap = r"[\s\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]+"
    return re.compile(gap.join(map(re.escape, phrase.split(" "))) + r"\Z")


def escaped(word: str) -> str:
    """An ASCII `word` as a Hyperscan expression that matches it literally."""
    return "".join(c if c.isalnum() else f"\\x{ord(c):02x}" for c in word)


def at_an_edge(word: str) -> str:
    """A Hyperscan expression for an ASCII `word` where it begins or ends a word, in the ASCII
    sense of `\\b`: over a text's `ascii_chars`, a superset of where `(?<!\\w)word|word(?!\\w)`
    matches in the text itself (a non-ASCII character there is '?', no word character). A word
    that begins or ends with a non-word character is matched wherever it occurs."""
    if not all(c.isalnum() or c == "_" for c in (word[0], word[-1])):
        return escaped(word)
    return rf"\b{escaped(word)}|{escaped(word)}\b"


def occurrences(text: str, word: str) -> Iterator[int]:
    """Every offset where `word` starts in `text`, overlapping ones included."""
    at = text.find(word)
    while at >= 0:
        yield at
        at = text.find(word, at + 1)
