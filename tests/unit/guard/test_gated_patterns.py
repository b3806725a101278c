"""The PII scans run each candidate pattern behind a look-ahead for its first characters
(`pii.gated`), or (phone, card, SSN) rewritten to take the first character before looking
behind it; they must find exactly what the plain patterns find, at every offset and window,
including digits and letters that are not ASCII."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st
from test_findings_unchanged import corpus  # pytest puts this folder on sys.path

from inferpool.guard import pii

PAIRS: list[tuple[str, re.Pattern[str], re.Pattern[str]]] = [
    ("phone", pii.PHONE_CANDIDATE, pii._PHONE_SCAN),
    ("card", pii.CARD_CANDIDATE, pii._CARD_SCAN),
    ("iban", pii.IBAN_CANDIDATE, pii._IBAN_SCAN),
    ("ssn", pii.SSN_CANDIDATE, pii._SSN_SCAN),
    ("phone context", pii.PHONE_CONTEXT, pii._PHONE_CONTEXT_SCAN),
    *[(kind, rule.pattern, rule.scan) for kind, rule in pii.ID_RULES.items()],
]


def test_gated_scans_find_what_the_plain_patterns_find_in_the_guard_corpus() -> None:
    """Every catalogue and tuning text, transformed (case, spacing, exotic letters, non-ASCII
    digits) and sliced, as the findings golden test reads them."""
    texts = corpus()
    assert len(texts) > 1000
    for text in texts:
        for name, plain, scan in PAIRS:
            assert [m.span() for m in scan.finditer(text)] == [m.span() for m in plain.finditer(text)], (
                name,
                text,
            )


# Pieces the patterns react to: digits (ASCII and not), separators, capitals, keyword letters.
_PIECES = st.sampled_from(
    ["0", "1", "2", "4", "5", "9", "٣", "１", " ", "-", ".", "(", ")", "+", "/", "\t", "\n", "A", "B",
     "G", "X", "Z", "é", "ſ", "K", "phone", "PHONE", "Tel", "tel:", "ring", "SMS", "llámame",
     "número", "电话", "फ़ोन", "call", "reach", "x", "\x00", "+1 555 0100 234", "(555) 010-0234",
     "123-45-6789", "4111 1111 1111 1111", "GB82WEST12345698765432", "AB 12 34 56 C",
     "RSSMRA85T10A562S", "1 85 05 78 006 084 36", "XR1234567"]
)  # fmt: skip


@settings(max_examples=1000, deadline=None)
@given(st.lists(_PIECES, max_size=80), st.integers(0, 40), st.integers(0, 40))
def test_gated_scans_find_what_the_plain_patterns_find(pieces: list[str], start: int, cut: int) -> None:
    text = "".join(pieces)
    end = max(start, len(text) - cut)
    for name, plain, scan in PAIRS:
        assert [m.span() for m in scan.finditer(text, start, end)] == [
            m.span() for m in plain.finditer(text, start, end)
        ], name
        found, expected = scan.search(text, start, end), plain.search(text, start, end)
        assert (found and found.span()) == (expected and expected.span()), name


# Runs of digits and the card's separators, doubled and mixed, some 10-20 digits long: where
# the card scan's possessive separators would differ from the plain pattern if giving one back
# could ever let a match succeed.
_CARD_PIECES = st.sampled_from(
    ["1", "4", "0", "9", "٣", " ", "-", "  ", "--", " -", ":", "x", "4111", "0000 "]
)


@settings(max_examples=2000, deadline=None)
@given(st.lists(_CARD_PIECES, max_size=60), st.integers(0, 10))
def test_card_scan_with_possessive_separators_finds_what_the_plain_pattern_finds(
    pieces: list[str], start: int
) -> None:
    text = "".join(pieces)
    expected = [m.span() for m in pii.CARD_CANDIDATE.finditer(text, start)]
    assert [m.span() for m in pii._CARD_SCAN.finditer(text, start)] == expected
    if text.isascii():
        assert [m.span() for m in pii.ASCII_DIGIT_SCANS.card.finditer(text, start)] == expected
