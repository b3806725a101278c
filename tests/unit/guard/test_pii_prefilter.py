"""The number types in pii.PREFILTERED search only the windows a Hyperscan pass (their candidate
patterns in prefilter mode) picks. That pass must pick every window in which Python's `re` finds
a candidate, whatever the validators then say: a window dropped here would be a finding lost.
Checked on every text of the guard corpus and on hypothesis-made digit-heavy texts.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from test_findings_unchanged import corpus  # pytest puts this folder on sys.path

from inferpool.guard import pii
from inferpool.guard.prescan import digit_runs, unicode_digits


def joined_windows(text: str) -> tuple[str, pii._Segments] | None:
    """The text's digit-run windows joined as PiiScanner joins them, and their bounds; None
    where _stretches searches every window anyway (no window, a non-ASCII digit, the separator)."""
    windows = pii._windows(digit_runs(text), len(text))
    if not windows:
        return None
    joined = pii.WINDOW_SEPARATOR.join([text[s:e] for s, e in windows])
    if joined.count(pii.WINDOW_SEPARATOR) >= len(windows) or unicode_digits(joined):
        return None
    return joined, pii._Segments(windows)


def check(text: str) -> int:
    """Asserts the pick is a superset of the windows with a candidate; the number of those."""
    searched = joined_windows(text)
    if searched is None:
        return 0
    joined, bounds = searched
    picked = pii.prefiltered_windows(joined.encode("ascii", "replace"), bounds)
    candidates = 0
    for kind in pii.PREFILTERED:
        pattern = pii._PREFILTER_PATTERNS[kind]
        with_candidate = {pii.bisect_right(bounds.starts, m.start()) - 1 for m in pattern.finditer(joined)}
        assert with_candidate <= picked[kind], (kind, text)
        candidates += len(with_candidate)
    return candidates


def test_the_prefilter_picks_every_window_with_a_candidate_in_the_corpus() -> None:
    texts = corpus()
    assert len(texts) > 500
    assert sum(check(t) for t in texts) > 50  # the corpus holds candidates of these types


FRAGMENTS = st.sampled_from(
    ["0", "1", "2", "5", "9", "123", "4567", "12345678", " ", "-", ".", "/", "(", ")", "+", "X", "Z", "A", "B",
     "GB", "DE", "QQ", "é", "\u00a0", "\x1c", "_", "x", "\n", "\x00", "٣", "2A", "2B"]
)  # fmt: skip


@settings(max_examples=1500, deadline=None)
@given(st.lists(FRAGMENTS, max_size=60).map("".join))
def test_the_prefilter_picks_every_window_with_a_candidate(text: str) -> None:
    check(text)
