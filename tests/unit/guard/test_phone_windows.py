"""Phone candidates are looked for only in the windows (pii._stretches) with a run of as many
digits as the policy's regions' shortest national number (separators deleted), or with a '+'
and seven: anywhere else every candidate fails the shape check (`_phone_shape`), so skipping
the window loses nothing. Checked for several region sets on every text of the guard corpus
and on hypothesis-made digit-heavy texts: each window holding a candidate that passes the
shape check must be searched.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from test_findings_unchanged import corpus  # pytest puts this folder on sys.path
from test_pii_prefilter import joined_windows

from inferpool.guard import pii

SCANNERS = [pii.PiiScanner(phone_regions=r) for r in (("US",), ("GB",), ("US", "DE"), ("AT",), ("IN", "BR"))]


def check(text: str) -> int:
    """Asserts every window with a shape-passing candidate is searched; the number of those."""
    searched = joined_windows(text)
    if searched is None:
        return 0  # _stretches searches every window then
    joined, bounds = searched
    kept = 0
    for scanner in SCANNERS:
        odd = pii.unicode_digits(joined)
        stretches = dict(pii._stretches(["phone"], joined, bounds, scanner._national_digits, odd)).get(
            "phone", []
        )
        for i in range(len(bounds.starts)):
            start, end = bounds.segment(i)
            shaped = [
                m.group()
                for m in pii.PHONE_CANDIDATE.finditer(joined, start, end)
                if scanner._phone_shape(m.group()) is not None
            ]
            if shaped:
                assert any(s <= start and end <= e for s, e in stretches), (
                    scanner.phone_regions,
                    shaped,
                    text,
                )
            kept += len(shaped)
    return kept


def test_every_window_with_a_phone_shaped_candidate_is_searched_in_the_corpus() -> None:
    texts = corpus()
    assert len(texts) > 500
    assert sum(check(t) for t in texts) > 100


FRAGMENTS = st.sampled_from(
    ["0", "1", "2", "5", "9", "123", "4567", "555", "0100", " ", "-", ".", "/", "(", ")", "+", "+1 ", "+44 ",
     "\t", "\n", "x", "A", "é", "\u00a0", "(555) 010-0234", "+44 20 7946 0958", "020 7946 0958",
     "030 123456", "98765 43210", "2024-06-01 12:20:44"]
)  # fmt: skip


@settings(max_examples=1500, deadline=None)
@given(st.lists(FRAGMENTS, max_size=40).map("".join))
def test_every_window_with_a_phone_shaped_candidate_is_searched(text: str) -> None:
    check(text)
