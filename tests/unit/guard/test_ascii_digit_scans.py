"""PII runs the phone, card and SSN scans with `\\d` spelled `[0-9]` over joined windows that
hold no non-ASCII digit (`pii.ASCII_DIGIT_SCANS`): there they must find exactly what the scans
with `\\d` find, and windows with a non-ASCII digit must keep the `\\d` form."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_findings_unchanged import corpus  # pytest puts this folder on sys.path

from inferpool.guard import Screener, Stage, pii
from inferpool.guard.policy import default_config
from inferpool.guard.prescan import unicode_digits

PAIRS = list(zip(pii.CandidateScans._fields, pii.ANY_DIGIT_SCANS, pii.ASCII_DIGIT_SCANS, strict=True))


def spans(
    pattern: re.Pattern[str], text: str, start: int = 0, end: int | None = None
) -> list[tuple[int, int]]:
    return [m.span() for m in pattern.finditer(text, start, len(text) if end is None else end)]


def test_the_rewrite_spells_every_digit_class_in_ascii() -> None:
    for _name, _any, ascii_form in PAIRS:
        assert r"\d" not in ascii_form.pattern
    assert pii.with_ascii_digits(re.compile(r"\d[\d-]x[^\d]")).pattern == r"[0-9][0-9-]x[^0-9]"


def test_same_matches_in_the_guard_corpus_without_non_ascii_digits() -> None:
    texts = [t for t in corpus() if not unicode_digits(t)]
    assert len(texts) > 1000
    for text in texts:
        for name, any_digit, ascii_digit in PAIRS:
            assert spans(ascii_digit, text) == spans(any_digit, text), (name, text)


_PIECES = st.sampled_from(
    ["0", "1", "2", "4", "5", "9", " ", "-", ".", "(", ")", "+", "/", "\t", "\n", "\x1c", "A", "x", "_",
     "é", "ſ", "\x00", "+1 555 0100 234", "(555) 010-0234", "123-45-6789", "4111 1111 1111 1111"]
)  # fmt: skip


@settings(max_examples=1000, deadline=None)
@given(st.lists(_PIECES, max_size=80), st.integers(0, 40), st.integers(0, 40))
def test_same_matches_without_non_ascii_digits(pieces: list[str], start: int, cut: int) -> None:
    text = "".join(pieces)
    end = max(start, len(text) - cut)
    for name, any_digit, ascii_digit in PAIRS:
        assert spans(ascii_digit, text, start, end) == spans(any_digit, text, start, end), name


@pytest.mark.parametrize(
    ("text", "kind"),
    [("ssn ０７８-０５-１１２０ ok", "ssn"), ("call me at (٢٠٢) ٥٥٥-٠١٣٤ please", "phone")],
)
def test_windows_with_non_ascii_digits_keep_the_unicode_scans(text: str, kind: str) -> None:
    """The ASCII form would miss these (it differs here), so PII must not use it for them."""
    scan = getattr(pii.ASCII_DIGIT_SCANS, kind)
    assert scan.search(text) is None
    verdict = Screener(default_config()).screen(text, Stage.PROMPT)
    assert [f.kind for f, _ in verdict.findings] == [kind]
