"""`PiiScanner._phones` runs the phone scan once over its ranges copied end to end
(`pii._ranges_copied`) when it has many (`COPY_RANGES_FROM`), not once per range. The matches,
mapped back, must be exactly those of `finditer` over each range of the joined windows, for the ranges `candidate_segments` gives and
for whole windows; and the phone findings those of the per-range scan. Checked on the guard
corpus and on hypothesis-made texts where letters, '+' and '(' sit right before digit runs
(the character before a range, which the look-behinds read).
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st
from test_candidate_segments import FRAGMENTS  # pytest puts this folder on sys.path
from test_findings_unchanged import corpus
from test_pii_prefilter import joined_windows

from inferpool.guard import pii
from inferpool.guard.findings import Finding
from inferpool.guard.prescan import ascii_chars

SCANNERS = [pii.PiiScanner(phone_regions=r) for r in (("US",), ("GB",), ("US", "DE"))]
SCAN = pii.ASCII_DIGIT_SCANS.phone


def per_range_phones(
    scanner: pii.PiiScanner, text: str, bounds: pii._Segments, ranges: list[tuple[int, int]]
) -> list[Finding]:
    """The scan as it was: one `finditer` per range, the same checks after it."""
    out: list[Finding] = []
    for start, end in ranges:
        for m in SCAN.finditer(text, start, end):
            span, at = m.group(), m.start()
            shape = scanner._phone_shape(span)
            if shape is None:
                continue
            international, bare = shape
            if bare and not pii._phone_word_near(text, bounds, at):
                continue
            for i, region in enumerate(scanner.phone_regions):
                hits = pii._phone_hits(span, region)
                if not hits:
                    continue
                if international or bare or i == 0 or pii._phone_word_near(text, bounds, at):
                    out += [Finding("pii", "phone", at + a, at + b) for a, b in hits]
                break
    return out


def copied_matches(text: str, ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    copied, piece_starts, shifts = pii._ranges_copied(text, ranges)
    out = []
    for m in SCAN.finditer(copied):
        i = next(i for i in range(len(shifts)) if piece_starts[i] <= m.start() < piece_starts[i + 1])
        out.append((m.start() + shifts[i], m.end() + shifts[i]))
        assert text[out[-1][0] : out[-1][1]] == m.group()
    return out


def check(text: str) -> int:
    searched = joined_windows(text)
    if searched is None:
        return 0
    joined, bounds = searched
    windows = [bounds.segment(i) for i in range(len(bounds.starts))]
    matched = 0
    for scanner in SCANNERS:
        segments = pii.candidate_segments(ascii_chars(joined), scanner._national_digits)["phone"]
        for ranges in (segments, windows, [(0, len(joined))]):
            expected = [m.span() for s, e in ranges for m in SCAN.finditer(joined, s, e)]
            assert copied_matches(joined, ranges) == expected, (ranges, text)
            expected_phones = per_range_phones(scanner, joined, bounds, ranges)
            # both ways `_phones` runs its scan: over the copy (from any number of ranges on) and per range
            for copy_from in (0, len(ranges) + 1):
                saved, pii.COPY_RANGES_FROM = pii.COPY_RANGES_FROM, copy_from
                try:
                    phones = scanner._phones(joined, bounds, ranges, SCAN)
                finally:
                    pii.COPY_RANGES_FROM = saved
                assert phones == expected_phones, (scanner.phone_regions, copy_from, text)
            matched += len(expected)
    return matched


def test_copied_ranges_match_as_each_range_does_in_the_corpus() -> None:
    assert sum(check(t) for t in corpus()) > 100


LEADS = st.sampled_from(["a", "Z", "_", "+", "(", "é", "x+", "v", ":", "#"])


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.one_of(FRAGMENTS, LEADS), max_size=40).map("".join))
def test_copied_ranges_match_as_each_range_does(text: str) -> None:
    check(text)


def test_a_letter_before_a_range_still_stops_a_match() -> None:
    # "a1234567": the look-behind sees the 'a' before the segment and the scan finds nothing
    text = "x 555 0100 a1234567890 b(555) 010-0234 +44 20 7946 0958"
    assert check(text) > 0
    joined, _bounds = joined_windows(text) or ("", None)
    assert re.search("a1234567890", joined)
    assert not any(
        joined[s:e].startswith("1234567890") for s, e in copied_matches(joined, [(0, len(joined))])
    )
