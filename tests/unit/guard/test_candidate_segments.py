"""Phone and card candidates are looked for only in the ranges `pii.candidate_segments` gives
(segments of the joined windows holding a run of digits that a candidate which counts needs).
There the scans must find exactly the matches the scan of each whole window finds, and no match
that counts may lie outside them: for a phone one that passes the shape check (`_phone_shape`),
for a card any match. So the findings are those of scanning every window. Checked for several
region sets on every text of the guard corpus and on hypothesis-made texts dense in digits,
separators, whitespace and non-ASCII characters.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st
from test_findings_unchanged import corpus  # pytest puts this folder on sys.path
from test_pii_prefilter import joined_windows

from inferpool.guard import pii
from inferpool.guard.prescan import ascii_chars

SCANNERS = [pii.PiiScanner(phone_regions=r) for r in (("US",), ("GB",), ("US", "DE"), ("AT",), ("IN", "BR"))]
SCANS = pii.ASCII_DIGIT_SCANS  # what runs over joined windows without a non-ASCII digit


def check(text: str) -> int:
    """Asserts the ranges give the window scans' matches and findings; the matches that count."""
    searched = joined_windows(text)
    if searched is None:
        return 0  # _stretches searches every window then
    joined, bounds = searched
    windows = [bounds.segment(i) for i in range(len(bounds.starts))]
    counted = 0
    for scanner in SCANNERS:
        ranges = pii.candidate_segments(ascii_chars(joined), scanner._national_digits)
        counts: dict[str, Callable[[str], bool]] = {
            "phone": lambda span, scanner=scanner: scanner._phone_shape(span) is not None,
            "credit_card": lambda _span: True,
        }
        for kind, scan in (("phone", SCANS.phone), ("credit_card", SCANS.card)):
            where = ranges[kind]
            assert all(a < b <= c for (a, b), (c, _) in pairwise(where)), where
            whole = [m.span() for s, e in windows for m in scan.finditer(joined, s, e)]
            found = [m.span() for s, e in where for m in scan.finditer(joined, s, e)]
            assert found == [m for m in whole if any(s <= m[0] and m[1] <= e for s, e in where)], (kind, text)
            counting = [m for m in whole if counts[kind](joined[m[0] : m[1]])]
            assert set(counting) <= set(found), (kind, scanner.phone_regions, text)
            counted += len(counting)
        assert pii._cards(joined, ranges["credit_card"], SCANS.card) == pii._cards(
            joined, windows, SCANS.card
        )
        phones = scanner._phones(joined, bounds, ranges["phone"], SCANS.phone)
        assert phones == scanner._phones(joined, bounds, windows, SCANS.phone), (scanner.phone_regions, text)
    return counted


def test_the_segments_hold_every_candidate_that_counts_in_the_corpus() -> None:
    texts = corpus()
    assert len(texts) > 500
    assert sum(check(t) for t in texts) > 100


FRAGMENTS = st.sampled_from(
    ["0", "1", "2", "5", "9", "123", "4567", "555", "0100", " ", "  ", "-", ".", "/", "(", ")", "+", "+1 ",
     "+44 ", "\t", "\n", "\x0b", "\x1c", "x", "A", "_", ":", "?", "é", "\u00a0", "\u2003", "\u0131",
     "(555) 010-0234", "+44 20 7946 0958", "020 7946 0958", "030 123456", "98765 43210",
     "2024-06-01 12:20:44", "4111 1111 1111 1111", "4111-1111-1111-1111", "5500 0000 0000 0004",
     "1234567890123", "call ", "phone: "]
)  # fmt: skip


@settings(max_examples=1500, deadline=None)
@given(st.lists(FRAGMENTS, max_size=40).map("".join))
def test_the_segments_hold_every_candidate_that_counts(text: str) -> None:
    check(text)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from("0123456789 -./()+\t\n"), min_size=7, max_size=120).map("".join))
def test_the_segments_in_dense_digits(text: str) -> None:
    check(text)
