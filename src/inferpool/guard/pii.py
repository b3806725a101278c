"""PII detectors: a regular expression proposes a span, a well-kept library decides.

Phone numbers are validated by libphonenumber (`phonenumbers`) for the policy's regions;
cards, IBANs, SSNs and national IDs by `python-stdnum`. Numbers whose check is weak or absent
(Aadhaar's Verhoeff digit, CPF, UK NINO, BSN, PESEL, the German tax id, NHS and DNI numbers)
also need a keyword near them, because on their own they match too many order numbers.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from itertools import accumulate
from typing import NamedTuple, cast

import hyperscan
import phonenumbers
from phonenumbers import Leniency, PhoneNumberMatcher
from stdnum import iban, luhn
from stdnum.br import cpf
from stdnum.cn import ric
from stdnum.de import idnr
from stdnum.es import dni, nie
from stdnum.fr import nir
from stdnum.gb import nhs
from stdnum.in_ import aadhaar, pan
from stdnum.it import codicefiscale
from stdnum.nl import bsn, identiteitskaartnummer
from stdnum.pl import pesel
from stdnum.us import ssn

from inferpool.guard.findings import Finding, without_overlaps
from inferpool.guard.prescan import ascii_chars, compiled_database, unicode_digits


def gated(pattern: re.Pattern[str], first: str) -> re.Pattern[str]:
    """`pattern` behind a look-ahead for the characters a match can start with (`first`, a
    class that must admit every one of them): the same matches, but the positions that cannot
    start one are passed over before the pattern's look-behinds and alternatives are tried.
    Over a 100 KB log prompt: number scans 1.3–1.6× faster, the phone-context words 3×."""
    return re.compile(f"(?={first})(?:{pattern.pattern})", pattern.flags)


EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}\b")
# EMAIL from its '@' on: where this does not match, no address holds that '@' (email_spans)
_EMAIL_DOMAIN = re.compile(EMAIL.pattern[EMAIL.pattern.index("@") :])
# A run of 7+ digits with the separators people write phone numbers with.
PHONE_CANDIDATE = re.compile(r"(?<![\w+])(?:\+\s?|\()?\d[\d \t().\-/]{5,22}\d(?!\w)")
CARD_CANDIDATE = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?!\d)")
# Issuer prefixes (IIN ranges) of the card networks, so a Luhn-valid order number is not a card.
CARD_NETWORKS = re.compile(
    r"4\d{12}(?:\d{3}){0,2}"  # Visa
    r"|5[1-5]\d{14}|2(?:2[2-9]\d|[3-6]\d\d|7[01]\d|720)\d{12}"  # Mastercard
    r"|3[47]\d{13}"  # American Express
    r"|3(?:0[0-5]|[689]\d)\d{11,16}"  # Diners Club
    r"|6(?:011|5\d\d|4[4-9]\d)\d{12,15}"  # Discover
    r"|35(?:2[89]|[3-8]\d)\d{12,15}"  # JCB
    r"|62\d{14,17}"  # UnionPay
    r"|(?:5[06-9]|6\d)\d{10,17}"  # Maestro (IIN 50, 56-69)
)
IBAN_CANDIDATE = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
SSN_CANDIDATE = re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])")
# Shapes no phone number is written in: ISO and day-first dates, and (without a +CC) a group of
# one digit, as in versions (124.0.6367.91) and part numbers (0-7654-3210).
NOT_A_PHONE = re.compile(
    r"^\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|^\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}$|^[^+]*(?:^|[ .\-/])\d(?:[ .\-/]|$)"
)
PHONE_CONTEXT = re.compile(
    r"phone|\bcall|\bring\b|\btel\b|\btel[.:]|mobile|\bcell|whatsapp|\bsms\b|text me|\bfax\b|\breach\b|contact|"
    r"appel|téléphone|telefon|handy|llám|llama|número|numero|ligue|celular|电话|手机|फ़ोन|फोन",
    re.IGNORECASE,
)
# What the detectors run: the patterns above behind their first characters. The phone, card
# and SSN candidates instead take their first character first (a class, which `re` looks for
# with a tight loop before it tries the pattern) and then look behind it for what the
# look-behind before it allowed: the same matches, 10-15% sooner over digit-heavy windows
# than behind a look-ahead (tests/unit/guard/test_gated_patterns.py compares them).
_PHONE_SCAN = re.compile(
    r"[+(\d](?<![\w+][+(\d])(?:(?<=\+)\s?\d|(?<=\()\d|(?<=\d))[\d \t().\-/]{5,22}\d(?!\w)"
)
# Its separators possessive (`?+`): each is followed by a digit, so giving one back never
# lets a match succeed, and a failing attempt (a timestamp's 10-12 digits) stops without
# retrying every iteration without its separator (the card scan over logs 2 KB ≈7 -> 6 µs).
_CARD_SCAN = re.compile(r"\d(?<![\d-]\d)[ -]?+(?:\d[ -]?+){11,17}\d(?!\d)")
_IBAN_SCAN = gated(IBAN_CANDIDATE, r"[A-Z]")
_SSN_SCAN = re.compile(r"\d(?<![\d-]\d)\d{2}-\d{2}-\d{4}(?![\d-])")
_PHONE_CONTEXT_SCAN = gated(PHONE_CONTEXT, "[pcrtmwsfahln电手फ]")  # each keyword's first letter


def with_ascii_digits(pattern: re.Pattern[str]) -> re.Pattern[str]:
    """`pattern` with `\\d` spelled `[0-9]`: the same matches in a string without non-ASCII
    decimal digits (`unicode_digits`), sooner: `re` tests a class of literals against a
    bitmap, and `\\d` by a Unicode category lookup (the phone scan over a 75 KB log's windows
    1.5 -> 0.85 ms, the card scan 1.7 -> 1.3 ms)."""
    out: list[str] = []
    source, i, in_class = pattern.pattern, 0, False
    while i < len(source):
        piece = source[i : i + 2] if source[i] == "\\" else source[i]
        i += len(piece)
        if piece == r"\d":
            piece = "0-9" if in_class else "[0-9]"
        elif piece == "[" and not in_class:
            in_class = True
        elif piece == "]" and in_class:
            in_class = False
        out.append(piece)
    return re.compile("".join(out), pattern.flags)


class CandidateScans(NamedTuple):
    """The phone, card and SSN scans, in the form for one kind of string."""

    phone: re.Pattern[str]
    card: re.Pattern[str]
    ssn: re.Pattern[str]


ANY_DIGIT_SCANS = CandidateScans(_PHONE_SCAN, _CARD_SCAN, _SSN_SCAN)
# for joined windows without a non-ASCII digit, as most are
ASCII_DIGIT_SCANS = CandidateScans(*(with_ascii_digits(p) for p in ANY_DIGIT_SCANS))
CONTEXT_CHARS = 48  # how far before a number (and a little after) its keyword may be
# Joins the windows around digit runs (PiiScanner._numbers): not \w, \d or \s, and in none of
# the candidate patterns' character sets.
WINDOW_SEPARATOR = "\x00"
# Verdicts on candidate strings are kept (logs and chat histories repeat the same numbers) up
# to this many per validator; they depend on the candidate alone (and the scanner's regions).
_CACHE_SIZE = 4096
# From this many phone ranges on, one scan over their copy (`_ranges_copied`) beats a `finditer`
# per range (logs 100 KB: 618 ranges, ≈0.17 ms less here); below it the copying costs more
# (logs 2 KB: 8 ranges, 17 -> 24 µs)
COPY_RANGES_FROM = 64
_KEYWORD_SETS_KEPT = 64  # PiiScanner._kinds_passing's answers kept (distinct keyword sets)
_NINO_BAD_PREFIX = {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}


def _nino_ok(number: str) -> bool:
    """HMRC's allocation rules: no D/F/I/Q/U/V in the prefix, no O second, no reserved pairs."""
    compact = number.replace(" ", "").upper()
    return compact[:2] not in _NINO_BAD_PREFIX


def _undashed_ssn_ok(number: str) -> bool:
    """The SSA's rules (stdnum: no area 000, 666 or 9xx, no group 00, no serial 0000, none of
    the numbers it lists as published) for nine digits written without dashes."""
    return ssn.is_valid(number.replace(" ", "").replace(".", ""))


@dataclass(frozen=True)
class IdRule:
    """One national identity number: where it may be, how it is checked, which words must be near."""

    kind: str
    pattern: re.Pattern[str]
    is_valid: Callable[[str], bool]
    keywords: tuple[str, ...] = ()  # lower case; empty: the check digits are strong enough alone
    first: str = r"\d"  # the characters a match can start with (see `gated`)
    reports: str = ""  # the kind a finding is reported as, when not `kind` (INTERNAL_RULES)
    context: re.Pattern[str] | None = field(init=False, default=None)
    scan: re.Pattern[str] = field(init=False)  # `pattern` behind `first`: what runs

    def __post_init__(self) -> None:
        object.__setattr__(self, "scan", gated(self.pattern, self.first))
        if self.keywords:
            words = "|".join(re.escape(w) for w in self.keywords)
            object.__setattr__(self, "context", re.compile(rf"(?<!\w)(?:{words})(?!\w)", re.IGNORECASE))


ID_RULES: dict[str, IdRule] = {
    r.kind: r
    for r in (
        IdRule(
            "in_aadhaar",
            re.compile(r"(?<!\d)[2-9]\d{3}[ -]?\d{4}[ -]?\d{4}(?!\d)"),
            aadhaar.is_valid,
            ("aadhaar", "aadhar", "uid", "uidai", "आधार"),
        ),
        IdRule(
            "br_cpf",
            re.compile(r"(?<![\d.])\d{3}\.?\d{3}\.?\d{3}-?\d{2}(?![\d-])"),
            cpf.is_valid,
            ("cpf", "cadastro de pessoas"),
        ),
        IdRule("cn_ric", re.compile(r"(?<!\d)\d{17}[\dXx](?![\dA-Za-z])"), ric.is_valid),
        IdRule(
            "gb_nino",
            re.compile(r"\b[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b"),
            _nino_ok,
            ("national insurance", "ni", "nino"),
            first="[A-CEGHJ-PR-TW-Z]",
        ),
        IdRule(
            "gb_nhs",
            re.compile(r"(?<!\d)\d{3}[ -]?\d{3}[ -]?\d{4}(?!\d)"),
            nhs.is_valid,
            ("nhs",),
        ),
        IdRule(
            "es_dni",
            re.compile(r"(?<![\w-])\d{8}-?[A-Za-z](?!\w)"),
            dni.is_valid,
            ("dni", "nif", "documento nacional"),
        ),
        # Spain's foreigner's identity number (2026-12-07, a held-out set): X, Y or Z, seven
        # digits, a check letter; a letter-digits-letter shape SKUs and bookings share, so only
        # next to its name
        IdRule(
            "es_nie",
            re.compile(r"(?<![\w-])[XYZxyz]-?\d{7}-?[A-Za-z](?![\w-])"),
            nie.is_valid,
            ("nie", "n.i.e.", "identidad de extranjero", "número de extranjero"),
            first="[XYZxyz]",
        ),
        # India's income-tax number (2026-12-07, the same set): five letters (the fourth the
        # holder's kind), four digits, a letter; no check digit, so only next to its name
        IdRule(
            "in_pan",
            re.compile(r"\b[A-Z]{3}[ABCFGHJLPT][A-Z]\d{4}[A-Z]\b"),
            pan.is_valid,
            ("pan", "permanent account number", "पैन"),
            first="[A-Z]",
        ),
        IdRule(
            "it_codicefiscale",
            re.compile(
                r"\b[A-Z]{6}[0-9LMNPQRSTUV]{2}[A-EHLMPR-T][0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{3}[A-Z]\b"
            ),
            codicefiscale.is_valid,
            first="[A-Z]",
        ),
        IdRule(
            "fr_nir",
            re.compile(r"(?<!\d)[12] ?\d{2} ?\d{2} ?(?:\d{2}|2[AB]) ?\d{3} ?\d{3} ?\d{2}(?!\d)"),
            nir.is_valid,
        ),
        IdRule(
            "de_idnr",
            re.compile(r"(?<!\d)\d{2} ?\d{3} ?\d{3} ?\d{3}(?!\d)"),
            idnr.is_valid,
            (
                "steuer-id",
                "steuer-idnr",
                "steueridentifikationsnummer",
                "idnr",
                "identifikationsnummer",
                "tax id",
            ),
        ),
        IdRule(
            "nl_bsn",
            re.compile(r"(?<![\d.])\d{4}\.?\d{2}\.?\d{3}(?![\d.])|(?<!\d)\d{9}(?!\d)"),
            bsn.is_valid,
            ("bsn", "burgerservicenummer", "sofinummer"),
        ),
        IdRule("pl_pesel", re.compile(r"(?<!\d)\d{11}(?!\d)"), pesel.is_valid, ("pesel",)),
        # A US social security number written without dashes (run together, spaced, dotted):
        # nine digits with no check digit, so only next to a word that names it; found as "ssn"
        # (the dashed form needs no word: SSN_CANDIDATE), enabled by the type "ssn"
        IdRule(
            "us_ssn_undashed",
            re.compile(r"(?<![\d.-])\d{3}([ .]?)\d{2}\1\d{4}(?![\d-]|\.\d)"),
            _undashed_ssn_ok,
            ("ssn", "ssn#", "ss#", "social security", "social-security", "soc. sec", "soc sec"),
            reports="ssn",
        ),
        IdRule(
            "passport",
            re.compile(r"\b[A-NP-Z]{2}[A-NP-Z0-9]{6}\d\b"),
            identiteitskaartnummer.is_valid,
            ("passport", "paspoort", "reisdocument", "identiteitskaart"),
            first="[A-NP-Z]",
        ),
    )
}

ALNUM_TYPES = (
    "it_codicefiscale",
    "passport",
    "in_pan",
)  # letters and digits: no long digit run to pre-scan for
# Rules a policy does not name: each runs where the type it reports as is asked for
INTERNAL_RULES = {"us_ssn_undashed": "ssn"}
NUMBER_TYPES = tuple(
    t
    for t in ("phone", "credit_card", "iban", "ssn", *ID_RULES)
    if t not in ALNUM_TYPES and t not in INTERNAL_RULES
)
PII_TYPES = ("email", *NUMBER_TYPES, *ALNUM_TYPES)


class PiiScanner:
    """The PII detectors of one policy: its types and its phone regions, fixed at construction."""

    def __init__(self, types: Iterable[str] = PII_TYPES, phone_regions: Iterable[str] = ("US",)) -> None:
        self.types = tuple(types) or PII_TYPES
        unknown = set(self.types) - set(PII_TYPES)
        if unknown:
            raise ValueError(f"unknown PII types {sorted(unknown)}; known: {', '.join(PII_TYPES)}")
        self.types += tuple(rule for rule, named in INTERNAL_RULES.items() if named in self.types)
        self.phone_regions = tuple(r.upper() for r in phone_regions)
        bad = [r for r in self.phone_regions if r not in phonenumbers.SUPPORTED_REGIONS]
        if bad:
            raise ValueError(f"unknown phone regions {bad} (ISO 3166 alpha-2 codes libphonenumber knows)")
        self.wants_numbers = any(t in NUMBER_TYPES for t in self.types)
        self._national_lengths = frozenset(n for r in self.phone_regions for n in _national_lengths(r))
        # The fewest digits a phone candidate without a +CC can have and still be a phone here
        # (_phone_shape); more than any candidate can hold (15) when no region has one.
        self._national_digits = min(self._national_lengths, default=16)
        self._phone_shapes: dict[str, tuple[bool, bool] | None] = {}  # candidate -> _phone_shape
        # the pre-scan's keywords -> _kinds_passing's answer (most texts hold none of them)
        self._kinds_by_keywords: dict[frozenset[str], tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self.wants_email = "email" in self.types
        # Compiled with the policy that asks for the check, neither at import (every process would
        # pay ≈0.13 s here, screening or not) nor in the first request it screens
        _prefilters()
        _alnum_prefilter()
        _segment_database(self._national_digits)

    def find(
        self,
        text: str,
        *,
        number_spans: Iterable[tuple[int, int]] | None = None,
        alnum_ids: bool = True,
        email: bool = True,
        lowered: str | None = None,
        keywords: Collection[str] | None = None,
        chars: bytes | None = None,
        odd_digits: bool = True,
    ) -> list[Finding]:
        """Findings, earliest-then-longest first without overlaps. The pre-scan's say, when given:
        `number_spans`, the digit runs (number types look only around them); `alnum_ids`, whether
        the text holds the shape of an alphanumeric ID; `email`, whether it holds an @;
        `keywords`, which of the ID rules' keywords occur in `lowered` (ID_KEYWORDS); `chars`,
        the text's `ascii_chars`, and `odd_digits`, whether it holds a non-ASCII digit (without
        one, `chars` lets a compiled pass find where alphanumeric IDs may be)."""
        found: list[Finding] = []
        lowered = text.lower() if lowered is None else lowered
        if email and self.wants_email:
            found += _emails(text)
        alnum_kinds, number_kinds = self._kinds_passing(lowered, keywords)
        if alnum_ids and alnum_kinds:
            ends = None if chars is None or odd_digits else _alnum_id_ends(chars)
            for kind in alnum_kinds:
                rule = ID_RULES[kind]
                if ends is None:
                    found += _ids(text, rule)
                else:
                    found += _id_findings(text, rule, _alnum_id_matches(text, rule, ends[kind]))
        if self.wants_numbers:
            windows = [(0, len(text))] if number_spans is None else _windows(number_spans, len(text))
            if windows:
                found += self._numbers(number_kinds, text, windows, odd_digits)
        return without_overlaps(found)

    def _kinds_passing(
        self, lowered: str, keywords: Collection[str] | None
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The policy's alphanumeric ID types, and its other types, whose keyword gate lets them
        run (`_any_keyword`: an ID rule whose keyword occurs nowhere in the text cannot fire).
        For the pre-scan's frozenset of keywords the answer depends on that set alone, so it is
        kept per set (ten gate checks less per screen, ≈3 µs)."""
        cacheable = isinstance(keywords, frozenset)
        if cacheable:
            known = self._kinds_by_keywords.get(cast("frozenset[str]", keywords))
            if known is not None:
                return known
        passing = [k for k in self.types if k not in ID_RULES or _any_keyword(ID_RULES[k], lowered, keywords)]
        kinds = (
            tuple(k for k in passing if k in ALNUM_TYPES),
            tuple(k for k in passing if k not in ALNUM_TYPES),
        )
        if cacheable:
            if len(self._kinds_by_keywords) >= _KEYWORD_SETS_KEPT:
                self._kinds_by_keywords.clear()
            self._kinds_by_keywords[cast("frozenset[str]", keywords)] = kinds
        return kinds

    def _numbers(
        self, kinds: Iterable[str], text: str, windows: list[tuple[int, int]], odd_digits: bool = True
    ) -> list[Finding]:
        """Each number type's findings in each window, as if the window were the whole text.

        The windows are joined by WINDOW_SEPARATOR, so each candidate pattern runs once, not once
        per window: no candidate pattern matches that character, and to their lookarounds, word
        boundaries and the context searches (bounded to the window) it is what a string's edge
        is, so every match lies in one window and is the match that window alone gives.
        `odd_digits`: False when the text is known to hold no non-ASCII digit (nor do its windows)."""
        joined = WINDOW_SEPARATOR.join([text[s:e] for s, e in windows])
        bounds = _Segments(windows)
        odd_digits = odd_digits and unicode_digits(joined)
        scans = ANY_DIGIT_SCANS if odd_digits else ASCII_DIGIT_SCANS
        found: list[Finding] = []
        for kind, stretches in _stretches(kinds, joined, bounds, self._national_digits, odd_digits):
            if kind == "phone":  # (one call for all its ranges: in logs they are hundreds)
                found += self._phones(joined, bounds, stretches, scans.phone)
                continue
            if kind == "credit_card":
                found += _cards(joined, stretches, scans.card)
                continue
            for start, end in stretches:
                if kind == "iban":
                    found += _ibans(joined, start, end)
                elif kind == "ssn":
                    found += _ssns(joined, start, end, scans.ssn)
                elif kind in ID_RULES:
                    found += _ids(joined, ID_RULES[kind], bounds=bounds, start=start, end=end)
        return [bounds.to_text(f) for f in found]

    def _phones(
        self, text: str, bounds: _Segments, ranges: Sequence[tuple[int, int]], scan: re.Pattern[str]
    ) -> list[Finding]:
        """The phone numbers among `scan`'s candidates in the `ranges` of the joined windows `text`.
        libphonenumber decides validity and whether the digit groups are written as that region
        writes them (STRICT_GROUPING). A number in international form (+CC) or in the home region's
        (the first region's) grouping is a phone; a bare digit run, or a number valid only in a
        further region, also needs a phone word near it: most such runs are ids and timestamps."""
        out: list[Finding] = []
        shapes = self._phone_shapes
        shifts: list[int] | None = None
        if len(ranges) >= COPY_RANGES_FROM:
            copied, piece_starts, shifts = _ranges_copied(text, ranges)
            sources = [(copied, 0, len(copied))]
        else:
            sources = [(text, start, end) for start, end in ranges]
        for source, start, end in sources:
            for m in scan.finditer(source, start, end):
                span = m.group()
                if span in shapes:
                    shape = shapes[span]
                else:
                    if len(shapes) >= _CACHE_SIZE:
                        shapes.clear()
                    shape = shapes[span] = self._phone_shape(span)
                if shape is None:
                    continue
                international, bare = shape
                at = m.start()
                if shifts is not None:
                    at += shifts[bisect_right(piece_starts, at) - 1]  # where it is in `text`
                if bare and not _phone_word_near(text, bounds, at):
                    continue  # a bare digit run is an id or a timestamp unless a phone word is near
                for i, region in enumerate(self.phone_regions):
                    hits = _phone_hits(span, region)
                    if not hits:
                        continue
                    # (a bare run got here with a phone word near; the search runs only when it decides)
                    if international or bare or i == 0 or _phone_word_near(text, bounds, at):
                        out += [Finding("pii", "phone", at + a, at + b) for a, b in hits]
                    break
        return out

    def _phone_shape(self, span: str) -> tuple[bool, bool] | None:
        """(international, a bare digit run) for a candidate the policy's regions could hold;
        None for one of the wrong length or of a shape no phone number is written in."""
        count = sum(c.isdigit() for c in span)
        if not 7 <= count <= 15 or NOT_A_PHONE.search(span):
            return None
        international = span.lstrip("(").startswith("+")
        if not international and count not in self._national_lengths:
            return None  # no region of the policy has national numbers this long
        return international, span.isdigit()


def _ranges_copied(text: str, ranges: Sequence[tuple[int, int]]) -> tuple[str, list[int], list[int]]:
    """The `ranges` of `text` copied end to end for one `finditer` (in logs they are hundreds,
    and a call costs more than copying its range): each with the character before it, which
    the phone scan's look-behinds read, and a WINDOW_SEPARATOR after it, which no match holds
    and which its look-ahead takes for the end of the string. So the matches in the copy are
    those of `finditer(text, start, end)` for each range, provided no match can start at the
    character before a range: there a range begins after a window separator or a character
    no phone candidate holds (`candidate_segments`). Also where each copied range begins,
    and what to add to an offset in it to get the offset in `text`."""
    # (comprehensions, not one loop of appends: in logs this runs over hundreds of ranges)
    froms = [start - 1 if start else 0 for start, _end in ranges]
    ends = [end for _start, end in ranges]
    pieces = [text[before:end] for before, end in zip(froms, ends, strict=True)]
    step = len(WINDOW_SEPARATOR)
    piece_starts = list(
        accumulate([end - before + step for before, end in zip(froms, ends, strict=True)], initial=0)
    )
    shifts = [before - at for before, at in zip(froms, piece_starts, strict=False)]
    return WINDOW_SEPARATOR.join(pieces), piece_starts, shifts


def _phone_word_near(text: str, bounds: _Segments | None, at: int) -> bool:
    """Whether a phone word lies in the CONTEXT_CHARS characters before `at` (within its window,
    when `text` is joined windows)."""
    floor = 0 if bounds is None else bounds.start_of(at)
    return _PHONE_CONTEXT_SCAN.search(text, max(floor, at - CONTEXT_CHARS), at) is not None


def _national_lengths(region: str) -> set[int]:
    """Digit counts of the region's numbers written nationally: libphonenumber's possible lengths,
    with and without the trunk prefix (0 in GB, 1 in the US)."""
    meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
    if meta is None or meta.general_desc is None:
        return set(range(7, 16))
    lengths = set(meta.general_desc.possible_length or ())
    prefix = len(meta.national_prefix or "")
    return lengths | {n + prefix for n in lengths}


# Logs and long prompts repeat the same numbers (ports, build ids, timestamps); libphonenumber's
# verdict depends only on the candidate and the region, so it is computed once per pair.
@lru_cache(maxsize=4096)
def _phone_hits(span: str, region: str) -> tuple[tuple[int, int], ...]:
    """Where libphonenumber finds a number in `span` (STRICT_GROUPING), or () if it holds none."""
    if not _valid_phone(span, region):  # cheap; the matcher checks the grouping too
        return ()
    matches = PhoneNumberMatcher(span, region, leniency=Leniency.STRICT_GROUPING)
    return tuple((h.start, h.end) for h in matches)


def _valid_phone(span: str, region: str) -> bool:
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(span, region))
    except phonenumbers.NumberParseException:
        return False


def _windows(spans: Iterable[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    """Merged stretches around digit runs (spans of a text of `size` characters, in order of
    their starts): room before for a keyword or an IBAN's country code."""
    merged: list[tuple[int, int]] = []
    lead = CONTEXT_CHARS + 8
    runs = iter(spans)
    for s, e in runs:
        first, last = s - lead, e + 16  # the window being grown, not yet clamped to the text
        break
    else:
        return merged
    # (clamping after the comparison changes nothing: a span lies in the text, so a start
    # before 0 meets any earlier window, and a start within the text meets an end past it;
    # conditional expressions, not max/min calls: this loop runs once per digit run)
    for s, e in runs:
        if s - lead <= last:
            if e + 16 > last:
                last = e + 16
        else:
            merged.append((first if first > 0 else 0, last if last < size else size))
            first, last = s - lead, e + 16
    merged.append((first if first > 0 else 0, last if last < size else size))
    return merged


def _emails(text: str) -> list[Finding]:
    """EMAIL only around each @: run over a whole long text it retries 64 characters at every position."""
    out: list[Finding] = []
    end = 0
    at = text.find("@")
    while at >= 0:
        if at >= end:
            start, end = max(0, at - 65), min(len(text), at + 260)
            out += [
                Finding("pii", "email", s, e)
                for s, e in email_spans(text, start, end)
                if not in_url_userinfo(text, s, e)
            ]
        at = text.find("@", at + 1)
    return out


# The characters of a URL's userinfo and host (RFC 3986 §3.2: no whitespace, '/', '?' or '#';
# a backslash ends them too, as JSON's escaped slash `\/` does); userinfo is short, so its
# scheme is looked for this far back, and a further '@' this far on, at most
_AUTHORITY = re.compile(r"[^\s/\\?#]*")
_AUTHORITY_REACH = 256


def in_url_userinfo(text: str, start: int, end: int) -> bool:
    """Whether the address-shaped match `start`:`end` is a URL's user name or password and its
    host (`postgres://app:hunter2@db.example.com`, `ssh://git@github.com`): it lies in the
    authority after `scheme://` and its '@' is the authority's last (which ends the userinfo,
    as URL parsers read it), so it names no mailbox. An address given as the user name
    (`https://jane@corp.com:pw@host`) is followed by the userinfo's own '@' and stays one."""
    reach = max(0, start - _AUTHORITY_REACH)
    plain, escaped = text.rfind("://", reach, start), text.rfind(":\\/\\/", reach, start)
    if plain < 0 and escaped < 0:
        return False
    colon = max(plain, escaped)
    userinfo = colon + (3 if colon == plain else 5)
    if not (colon and text[colon - 1].isalnum()):  # (no scheme: every registered one ends so)
        return False
    before = _AUTHORITY.match(text, userinfo, start)
    if before is None or before.end() != start:
        return False
    at = text.index("@", start, end)
    after = _AUTHORITY.match(text, at + 1, at + 1 + _AUTHORITY_REACH)
    return after is not None and "@" not in after.group()


def email_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """The spans of `EMAIL.finditer(text, start, end)`, each searched for only from where it can
    begin: a match holds exactly one '@' (no part of it admits another), at most 64 characters
    before it, and after it a domain that EMAIL's domain part alone matches (whatever precedes
    the '@'), so none begins before the first such '@' from the last match's end less 64, and
    there is none once no such '@' is left (the window was scanned to its end, ≈200
    characters past its '@', a version string's "react@18.2.0" included)."""
    spans: list[tuple[int, int]] = []
    at = text.find("@", start, end)
    while at >= 0:
        if _EMAIL_DOMAIN.match(text, at, end) is None:  # no address holds this '@'
            at = text.find("@", at + 1, end)
            continue
        m = EMAIL.search(text, at - 64 if at - 64 > start else start, end)
        if m is None:
            break
        spans.append(m.span())
        start = m.end()
        at = text.find("@", start, end)
    return spans


def _digits(s: str) -> str:
    return "".join(c for c in s if c.isdigit())


# What a match of each number type needs, as a necessary condition checked per window before
# its pattern runs there: in the window with these separators (the ones its pattern allows
# between digits) deleted, a run of this many digits. The window's characters are classed
# first, ASCII digits as "0" and capitals as "A" (for IBANs, whose match starts with two
# capitals and two digits: "AA00" without deletions).
_NEEDS: dict[str, tuple[bytes, bytes]] = {
    "iban": (b"", b"AA00"),
    "ssn": (b"-", b"0" * 9),
    "in_aadhaar": (b" -", b"0" * 12),
    "br_cpf": (b".-", b"0" * 11),
    "cn_ric": (b"", b"0" * 17),
    "gb_nino": (b" ", b"0" * 6),
    "gb_nhs": (b" -", b"0" * 10),
    "es_dni": (b"", b"0" * 8),
    "es_nie": (b"-", b"0" * 7),
    "fr_nir": (b" ", b"0" * 8),  # its last three groups: 3, 3 and 2 digits
    "de_idnr": (b" ", b"0" * 11),
    "nl_bsn": (b".", b"0" * 9),
    "pl_pesel": (b"", b"0" * 11),
    "us_ssn_undashed": (b" .", b"0" * 9),
}
_CLASSES = bytes.maketrans(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"0" * 10 + b"A" * 26)


# The number types whose windows a compiled pass picks (Hyperscan scans of the joined
# windows), not _NEEDS: each one's candidate pattern in Hyperscan's prefilter mode, which
# reports wherever the pattern (with its look-arounds dropped, so more loosely) could end. Over
# ASCII bytes (non-ASCII characters as '?', non-ASCII digits excluded below) that is a superset
# of where Python's `re` finds a match: no pattern here takes a '?' or a NUL, and the only other
# difference, `\b` next to a non-ASCII word character, counts as a boundary here and not in `re`.
# Phone and card candidates fill nearly every window of digit-heavy text: there the prefilter
# would report thousands of ends (a Python call each) and skip nothing: their search is narrowed
# by `candidate_segments` instead.
PREFILTERED = ("iban", "ssn", *(k for k in ID_RULES if k not in ALNUM_TYPES))
_PREFILTER_PATTERNS = {
    "iban": IBAN_CANDIDATE,
    "ssn": SSN_CANDIDATE,
    **{k: ID_RULES[k].pattern for k in PREFILTERED if k in ID_RULES},
}


def _prefilter_database(kinds: tuple[str, ...]) -> tuple[hyperscan.Database, hyperscan.Scratch]:
    return compiled_database([_PREFILTER_PATTERNS[k].pattern for k in kinds], hyperscan.HS_FLAG_PREFILTER)


# The types that need no keyword share one database (they run whenever the policy has them);
# each keyword-gated ID rule has its own, scanned only when one of its keywords is in the text
# (in digit-heavy text their loose prefilters report hundreds of ends, a Python call each).
@cache
def _prefilters() -> tuple[tuple[tuple[str, ...], hyperscan.Database, hyperscan.Scratch], ...]:
    return tuple(
        (group, *_prefilter_database(group))
        for group in (
            tuple(k for k in PREFILTERED if k not in ID_RULES or not ID_RULES[k].keywords),
            *((k,) for k in PREFILTERED if k in ID_RULES and ID_RULES[k].keywords),
        )
    )


def _collect(kind: int, _start: int, end: int, _flags: int, ends: object) -> None:
    """Hyperscan's match callback: (pattern id, end) onto the list passed as the scan's context."""
    cast("list[tuple[int, int]]", ends).append((kind, end))


def prefiltered_windows(
    ascii_bytes: bytes, bounds: _Segments, kinds: Collection[str] = PREFILTERED
) -> dict[str, set[int]]:
    """For each of PREFILTERED (at least those in `kinds`), the windows (indices) where its
    candidate pattern may match."""
    found: dict[str, set[int]] = {}
    starts = bounds.starts
    wanted = set(kinds)
    for group, database, scratch in _prefilters():
        if wanted.isdisjoint(group):
            continue
        ends: list[tuple[int, int]] = []
        database.scan(ascii_bytes, match_event_handler=_collect, context=ends, scratch=scratch.clone())
        for kind in group:
            found[kind] = set()
        for kind_index, end in ends:
            found[group[kind_index]].add(bisect_right(starts, end - 1) - 1)
    return found


def _stretches(
    kinds: Iterable[str], joined: str, bounds: _Segments, national_digits: int, odd_digits: bool
) -> Iterable[tuple[str, list[tuple[int, int]]]]:
    """For each kind, the stretches of `joined` (runs of adjacent windows) its pattern must
    search: the windows that meet its need in _NEEDS, for PREFILTERED kinds the windows the
    compiled pass picks, for SEGMENTED kinds the ranges `candidate_segments` gives. All of
    them when a non-ASCII digit (which \\d matches too) or the text's own WINDOW_SEPARATOR is
    present. `national_digits`: as for `candidate_segments`. `odd_digits`:
    `unicode_digits(joined)`."""
    every = [(0, len(joined))]
    if joined.count(WINDOW_SEPARATOR) >= len(bounds.windows) or odd_digits:
        for kind in kinds:
            yield kind, every
        return
    ascii_bytes = ascii_chars(joined)
    starts, ends = bounds.starts, bounds.ends
    classed: dict[bytes, list[bytes]] = {}
    kinds = tuple(kinds)
    picked: dict[str, set[int]] | None = None
    segments: dict[str, list[tuple[int, int]]] | None = None
    for kind in kinds:
        if kind in SEGMENTED:
            if segments is None:
                segments = candidate_segments(ascii_bytes, national_digits)
            if segments[kind]:
                yield kind, segments[kind]
            continue
        if kind in PREFILTERED:
            if picked is None:
                picked = prefiltered_windows(ascii_bytes, bounds, kinds)
            if not picked[kind]:
                continue  # no window to search (most kinds, in most texts)
            chosen: Iterable[int] = sorted(picked[kind])
        else:
            need = _NEEDS.get(kind)
            if need is None:
                yield kind, every
                continue
            deleted, run = need
            parts = classed.get(deleted)
            if parts is None:
                parts = classed[deleted] = ascii_bytes.translate(_CLASSES, deleted).split(b"\x00")
            chosen = [i for i, part in enumerate(parts) if run in part]
        stretches: list[tuple[int, int]] = []
        previous = -2
        for i in chosen:
            if i == previous + 1:
                stretches[-1] = (stretches[-1][0], ends[i])
            else:
                stretches.append((starts[i], ends[i]))
            previous = i
        if stretches:
            yield kind, stretches


# Phone and card candidates (in joined windows without a non-ASCII digit) are looked for only
# in the *segments* that can hold one that counts. A segment is a maximal run of the characters
# a phone candidate can hold (_PHONE_CHARS: digits, its separators, the '+' and the `\s` after
# it, '?' standing for non-ASCII whitespace in ascii_chars; a card candidate holds fewer).
# No match of either scan holds another character, so every match lies in one segment, and
# `finditer` started at a position after such a character (a match cannot straddle it; the
# look-behinds see the text before `pos`) and stopped just past the character ending the
# segment (which the look-aheads see) finds exactly the matches the scan of the whole window
# finds there: the scan of a window is the scans of its segments one after another.
# A candidate counts only with a run of digits, with only its pattern's separators between
# them, of a length: for a phone the shape check's 7–15 digits, as many as a national number
# of the policy's regions has (`national_digits`) unless it begins with '+'; for a card 13
# (its pattern's fewest, one separator at most between two digits). One Hyperscan pass finds
# the segments with such a run (each pattern ends at the character after the segment, so it is
# reported once per segment); every other segment's candidates fail the shape check or are no
# card candidates at all, and are not looked for: in the 100 KB logs bench prompt the phone scan
# then reads 11 KB, not the 61 KB of the windows with a 10-digit run (their other digit
# groups were each a failed attempt), and half as many candidates reach the shape check.
_PHONE_CHARS = r"0-9 \t\n\x0b\x0c\r\x1c-\x1f().\-/+?"
_PHONE_SEPARATORS = r" \t().\-/"  # what the phone scan allows between two digits
_CARD_CHARS = r"0-9 \-"
SEGMENTED = ("phone", "credit_card")
# for each of SEGMENTED, ascii_chars -> b"x" for the characters its segments hold, b" " for the rest
_SEGMENT_MARKS = tuple(
    bytes(ord("x") if re.fullmatch(f"[{chars}]", chr(b)) else ord(" ") for b in range(256))
    for chars in (_PHONE_CHARS, _CARD_CHARS)
)


def _digit_run(digits: int, separators: str) -> str:
    """A Hyperscan expression: `digits` digits with any number of `separators` between them."""
    return rf"[0-9](?:[{separators}]*[0-9]){{{digits - 1}}}"


@lru_cache(maxsize=8)
def _segment_database(national_digits: int) -> tuple[hyperscan.Database, hyperscan.Scratch]:
    """SEGMENTED's patterns (ids: their indices): a segment holding the run its candidates need,
    reported where the character after it ends the match."""
    phone_run = (
        f"(?:{_digit_run(max(7, national_digits), _PHONE_SEPARATORS)}"
        f"|\\+[{_PHONE_CHARS}]?{_digit_run(7, _PHONE_SEPARATORS)})"
    )
    return compiled_database(
        [
            f"{phone_run}[{_PHONE_CHARS}]*[^{_PHONE_CHARS}]",
            rf"[0-9](?:[ \-]?[0-9]){{12}}[{_CARD_CHARS}]*[^{_CARD_CHARS}]",
        ],
        0,
    )


def _report_end(kind: int, _start: int, end: int, _flags: int, ends: object) -> None:
    """Hyperscan's match callback: `end` onto the list for pattern `kind` in the scan's context."""
    cast("tuple[list[int], ...]", ends)[kind].append(end)


def candidate_segments(ascii_bytes: bytes, national_digits: int) -> dict[str, list[tuple[int, int]]]:
    """For each of SEGMENTED, the ranges of joined windows (`ascii_bytes`: their ascii_chars,
    no non-ASCII digit among them) its scan must search, in order and apart. `national_digits`:
    the fewest digits a phone candidate without a '+' needs for _phone_shape to pass it."""
    database, scratch = _segment_database(national_digits)
    ends: tuple[list[int], ...] = tuple([] for _ in SEGMENTED)
    # a final segment-ending character, so that a segment at the end is reported too
    database.scan(
        ascii_bytes + b"\x00", match_event_handler=_report_end, context=ends, scratch=scratch.clone()
    )
    ranges: dict[str, list[tuple[int, int]]] = {}
    for kind, kind_ends, table in zip(SEGMENTED, ends, _SEGMENT_MARKS, strict=True):
        if not kind_ends:
            ranges[kind] = []
            continue
        kind_ends.sort()  # (Hyperscan reports in order of their ends; not relied on)
        marks = ascii_bytes.translate(table)
        # from just after the character before the segment (so the ranges are apart) through
        # the one after it (end - 1), which the look-aheads read
        where = ranges[kind] = [(marks.rfind(b" ", 0, end - 1) + 1, end) for end in kind_ends]
        if kind_ends[-1] > len(ascii_bytes):  # ended by the final NUL, which is no character of the text
            where[-1] = (where[-1][0], len(ascii_bytes))
    return ranges


class _Segments:
    """Where each window lies in the joined string (one separator between windows), and back."""

    def __init__(self, windows: list[tuple[int, int]]) -> None:
        self.windows = windows
        self.starts: list[int] = []  # where each window begins in the joined string
        self.ends: list[int] = []  # and where it ends
        at = 0
        for s, e in windows:
            self.starts.append(at)
            at += e - s
            self.ends.append(at)
            at += len(WINDOW_SEPARATOR)

    def segment(self, i: int) -> tuple[int, int]:
        return self.starts[i], self.ends[i]

    def _index(self, at: int) -> int:
        return bisect_right(self.starts, at) - 1

    def start_of(self, at: int) -> int:
        return self.starts[self._index(at)]

    def bounds_of(self, at: int) -> tuple[int, int]:
        return self.segment(self._index(at))

    def to_text(self, f: Finding) -> Finding:
        i = self._index(f.start)
        shift = self.windows[i][0] - self.starts[i]
        return Finding(f.check, f.kind, f.start + shift, f.end + shift)


@lru_cache(maxsize=_CACHE_SIZE)
def _is_card(candidate: str) -> bool:
    number = _digits(candidate)
    return CARD_NETWORKS.fullmatch(number) is not None and luhn.is_valid(number)


def _cards(text: str, ranges: Iterable[tuple[int, int]], scan: re.Pattern[str]) -> list[Finding]:
    return [
        Finding("pii", "credit_card", m.start(), m.end())
        for start, end in ranges
        for m in scan.finditer(text, start, end)
        if _is_card(m.group())
    ]


@lru_cache(maxsize=_CACHE_SIZE)
def _iban_length(candidate: str) -> int:
    """How much of the candidate is a valid IBAN (0: none). The pattern may run on into a
    following capitalised word: shorter ends at spaces are tried too."""
    ends = [len(candidate)] + [i for i in range(len(candidate) - 1, 14, -1) if candidate[i] == " "]
    for end in ends:
        if iban.is_valid(candidate[:end]):
            return end
    return 0


def _ibans(text: str, start: int = 0, end: int | None = None) -> list[Finding]:
    out = []
    for m in _IBAN_SCAN.finditer(text, start, len(text) if end is None else end):
        length = _iban_length(m.group())
        if length:
            out.append(Finding("pii", "iban", m.start(), m.start() + length))
    return out


_is_ssn = lru_cache(maxsize=_CACHE_SIZE)(ssn.is_valid)


def _ssns(text: str, start: int, end: int, scan: re.Pattern[str]) -> list[Finding]:
    return [
        Finding("pii", "ssn", m.start(), m.end())
        for m in scan.finditer(text, start, end)
        if _is_ssn(m.group())
    ]


def _any_keyword(rule: IdRule, lowered: str, found: Collection[str] | None = None) -> bool:
    """Whether one of the rule's keywords occurs in `lowered` (`found`: the pre-scan's answer,
    which may leave out a keyword found only inside words: the rule's context check, which
    sees a keyword only where a non-word character or its slice's edge is next to it, cannot
    see such a one, since no slice it searches is the keyword alone: each holds a digit)."""
    if not rule.keywords:
        return True
    if isinstance(found, (set, frozenset)):
        return not found.isdisjoint(rule.keywords)  # the pre-scan's frozenset: no generator
    where = lowered if found is None else found
    return any(w in where for w in rule.keywords)


def _ids(
    text: str,
    rule: IdRule,
    lowered: str | None = None,
    bounds: _Segments | None = None,
    start: int = 0,
    end: int | None = None,
) -> list[Finding]:
    """`lowered`: when given, a rule whose keywords it lacks is skipped without a regex pass.
    `bounds`: `text` is joined windows (the keyword must be in the match's own window), of
    which `start`:`end` are searched."""
    if lowered is not None and not _any_keyword(rule, lowered):
        return []
    return _id_findings(
        text, rule, rule.scan.finditer(text, start, len(text) if end is None else end), bounds
    )


def _id_findings(
    text: str, rule: IdRule, matches: Iterable[re.Match[str]], bounds: _Segments | None = None
) -> list[Finding]:
    """The rule's findings among its pattern's `matches` in `text`: valid, and with a keyword
    near them where the rule wants one (`bounds`: as for `_ids`)."""
    out: list[Finding] = []
    is_valid = _ID_VALIDATORS[rule.kind]
    for m in matches:
        if not is_valid(m.group()):
            continue
        if rule.context is not None:
            floor, ceiling = (0, len(text)) if bounds is None else bounds.bounds_of(m.start())
            near = text[max(floor, m.start() - CONTEXT_CHARS) : min(ceiling, m.end() + 16)]
            if not rule.context.search(near):
                continue
        out.append(Finding("pii", rule.reports or rule.kind, m.start(), m.end()))
    return out


_ID_VALIDATORS = {kind: lru_cache(maxsize=_CACHE_SIZE)(rule.is_valid) for kind, rule in ID_RULES.items()}

# The alphanumeric IDs' patterns run over a whole text (about 13 ns a character for the
# codice fiscale's); in a text without non-ASCII digits a compiled pass finds where they may
# match instead. Each match of either is one whole word of a fixed width (\b at both ends,
# word characters only, fixed repeats), so it is `pattern.match` at its end less its width,
# with the character after it in view. The Hyperscan patterns in prefilter mode, over the
# text's ascii_chars, report a superset of those ends: non-ASCII characters become '?', which
# no pattern takes and which ends a word for Hyperscan's ASCII \b as any non-word
# character does for `re`'s.
ALNUM_WIDTHS = {"it_codicefiscale": 16, "passport": 9, "in_pan": 10}


@cache
def _alnum_prefilter() -> tuple[hyperscan.Database, hyperscan.Scratch]:
    return compiled_database([ID_RULES[k].pattern.pattern for k in ALNUM_TYPES], hyperscan.HS_FLAG_PREFILTER)


def _alnum_id_ends(chars: bytes) -> dict[str, list[int]]:
    """For each alphanumeric ID type, where in a text (without non-ASCII digits) whose
    ascii_chars are `chars` a match of its pattern may end."""
    reported: list[tuple[int, int]] = []
    database, scratch = _alnum_prefilter()
    database.scan(chars, match_event_handler=_collect, context=reported, scratch=scratch.clone())
    ends: dict[str, list[int]] = {kind: [] for kind in ALNUM_TYPES}
    for kind_index, end in sorted(set(reported)):
        ends[ALNUM_TYPES[kind_index]].append(end)
    return ends


def _alnum_id_matches(text: str, rule: IdRule, ends: list[int]) -> list[re.Match[str]]:
    """`rule.pattern.finditer(text)` for an alphanumeric ID rule, given `ends` from
    `_alnum_id_ends` (ascending)."""
    width, size = ALNUM_WIDTHS[rule.kind], len(text)
    found = (rule.pattern.match(text, end - width, min(size, end + 1)) for end in ends if end >= width)
    return [m for m in found if m is not None]


# What the pre-scan looks for on the ID rules' behalf (PiiScanner.find's `keywords`)
ID_KEYWORDS = frozenset(w for rule in ID_RULES.values() for w in rule.keywords)
