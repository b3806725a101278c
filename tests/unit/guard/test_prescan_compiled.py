"""The pre-scan's trigger words come from one Hyperscan pass (ASCII words) and `str.find` (the
few non-ASCII ones) for texts of COMPILED_SCAN_CHARS or more; the definition is the
Aho-Corasick automaton over the same fold (`Prescanner.hits`, which shorter texts and the stream
screener use), and for injection phrases of several words also any other run of spacing
between them (tabs, two spaces, a non-ASCII character such as a no-break space: `spaced`),
reported where the phrase with single spaces would start if it ended there, in a text with
such a run that may split a phrase (SPLIT_PHRASE) or a Unicode space. Every hit must be
a hit of the compiled pass, at the same offset and in the same order (a dropped word, a wrong
offset or a hit out of order fails), and it finds nothing else.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st
from test_findings_unchanged import corpus  # pytest puts this folder on sys.path

from inferpool.guard.credentials import SECRET_HINTS
from inferpool.guard.disguise import UNICODE_SPACES
from inferpool.guard.pii import ID_KEYWORDS
from inferpool.guard.prescan import (
    COMPILED_SCAN_CHARS,
    INJECTION_WORDS,
    SPLIT_PHRASE,
    Prescanner,
    _ends_with,
    ascii_chars,
    fold,
)

# Each injection phrase of several words, with the spacing the compiled pass allows
SPACED = {
    w: re.compile(
        "[ \t\x0b\x0c?]+".join(map(re.escape, w.encode("ascii", "replace").decode().split(" "))) + r"\Z"
    )
    for w in INJECTION_WORDS
    if " " in w
}


def unicode_spaced(text: str) -> bool:
    return any(c in text for c in UNICODE_SPACES)


def expected_hits(scanner: Prescanner, lowered: str) -> list[tuple[int, tuple[str, str, int]]]:
    """The automaton's hits, and those of each injection phrase spaced otherwise."""
    hits = set(scanner.hits(lowered))
    chars = ascii_chars(lowered).decode()
    if not scanner._injection or not (
        any(re.search(e, chars) for e in SPLIT_PHRASE) or unicode_spaced(lowered)
    ):
        return sorted(hits, key=lambda h: (h[0], -h[1][2], h[1][1]))
    for word, pattern in SPACED.items():
        last = word.rsplit(" ", 1)[1]
        at = lowered.find(last)
        while at >= 0:
            end = at + len(last)
            if pattern.search(chars, 0, end) and (word.isascii() or _ends_with(lowered, word, end)):
                hits.add((end - 1, ("injection", word, len(word))))
            at = lowered.find(last, at + 1)
    return sorted(hits, key=lambda h: (h[0], -h[1][2], h[1][1]))


SCANNERS = (
    Prescanner(True, SECRET_HINTS),  # the stream's and blocking screens' pre-scan
    Prescanner(True, SECRET_HINTS, ID_KEYWORDS),  # where PII runs
    Prescanner(False, (), ID_KEYWORDS),
    Prescanner(True, ("nhs",), ID_KEYWORDS),  # a keyword that is also a secret hint
)


def check(text: str) -> None:
    lowered, _exact = fold(text)
    for scanner in SCANNERS:
        expected = expected_hits(scanner, lowered)
        compiled = scanner._hits(lowered, phrases_spaced=unicode_spaced(lowered))
        # the same trigger words at the same places, in the same order; a pure keyword is
        # reported once (the pre-scan only asks whether it occurs)
        assert [h for h in compiled if h[1][0] != "keyword"] == [h for h in expected if h[1][0] != "keyword"]
        assert {h[1] for h in compiled if h[1][0] == "keyword"} == {
            h[1] for h in expected if h[1][0] == "keyword"
        }
        # and the pre-scan built from them, on the compiled pass whatever the text's length
        # (a short text reads phrases spaced otherwise only if its spacing is odd: a phrase
        # whose words a non-ASCII letter separates is found in the long text alone)
        long = text + " " * COMPILED_SCAN_CHARS  # (its spaces may let the phrase pass run)
        long_expected = expected_hits(scanner, fold(long)[0])
        starts = tuple(
            last + 1 - length for last, (family, _w, length) in long_expected if family == "injection"
        )
        assert scanner.scan(long).injection_hits == starts
        assert set(scanner.scan(text).injection_hits) <= set(starts)
        # (with a space after the text too: a hint may end in one, "bearer ", which the long
        # text's padding completes)
        assert scanner.scan(long).secret_hints == scanner.scan(text + " ").secret_hints


def test_the_compiled_pass_finds_what_the_automaton_finds_on_the_guard_corpus() -> None:
    texts = corpus()
    assert len(texts) > 500
    for text in texts:
        check(text)


FRAGMENTS = st.sampled_from(
    [*INJECTION_WORDS, *sorted(SECRET_HINTS), *sorted(ID_KEYWORDS), "PROMPT SYSTÈME", "prompt systÈme", "Ignore",
     "İ", "ı", "ſ", "\u212a", "é", "ü", " ", "\n", "-", "x", "a", "?", "1", "\ud800", "\t", "  ", "\u00a0",
     "\u3000", "prompt\u00a0système"]
)  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(st.lists(FRAGMENTS, max_size=30).map("".join))
def test_the_compiled_pass_finds_what_the_automaton_finds(text: str) -> None:
    check(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_the_compiled_pass_on_any_text(text: str) -> None:
    check(text)
