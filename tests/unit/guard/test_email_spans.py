"""`pii.email_spans` searches for e-mail addresses only from where one can begin (the next '@'
that EMAIL's domain part matches from, less 64 characters) and stops when no such '@' is
left: it must give exactly `EMAIL.finditer`'s
matches over the same range, on the guard corpus and on hypothesis-made texts dense in '@',
dots, dashes, long local parts and non-ASCII word characters."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from test_findings_unchanged import corpus  # pytest puts this folder on sys.path

from inferpool.guard import pii


def finditer_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    return [m.span() for m in pii.EMAIL.finditer(text, start, end)]


def test_the_same_spans_in_the_corpus() -> None:
    texts = [t for t in corpus() if "@" in t]
    assert len(texts) > 20
    found = 0
    for text in texts:
        for start, end in ((0, len(text)), (1, len(text) - 1), (len(text) // 3, len(text))):
            spans = pii.email_spans(text, start, end)
            assert spans == finditer_spans(text, start, end), text
            found += len(spans)
    assert found > 20


PIECES = st.sampled_from(
    ["@", "@@", "a", "Z", "0", "_", ".", "-", "+", "%", " ", "\n", ",", "é", "ß", "x" * 30, "x" * 32, "x" * 63, "x" * 64, "y" * 70, "com",
     ".org", "mail.example.com", "@18.2.0", "react@18.2.0", "@x.c0m", "@-.io", "jo.doe", "a@b.co", "first.last+tag@sub.example.co.uk", "@example.com",
     "-", "..", "\u00a0"]
)  # fmt: skip


@settings(max_examples=2000, deadline=None)
@given(st.lists(PIECES, max_size=40).map("".join), st.integers(0, 80), st.integers(0, 80))
def test_the_same_spans(text: str, start: int, cut: int) -> None:
    end = max(start, len(text) - cut)
    assert pii.email_spans(text, start, end) == finditer_spans(text, start, end)
