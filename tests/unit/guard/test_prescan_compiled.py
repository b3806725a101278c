"""The pre-scan's trigger words come from one Hyperscan pass (ASCII words) and `str.find` (the
few non-ASCII ones) for texts of COMPILED_SCAN_CHARS or more; the definition is the
Aho-Corasick automaton over the same fold (`Prescanner.hits`, which shorter texts and the stream
screener use). Every hit of the automaton must be a hit of the compiled pass, at the same offset
and in the same order (a dropped word, a wrong offset or a hit out of order fails), and it finds
nothing the automaton does not.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from test_findings_unchanged import corpus  # pytest puts this folder on sys.path

from inferpool.guard.credentials import SECRET_HINTS
from inferpool.guard.pii import ID_KEYWORDS
from inferpool.guard.prescan import COMPILED_SCAN_CHARS, INJECTION_WORDS, Prescanner, fold

SCANNERS = (
    Prescanner(True, SECRET_HINTS),  # the stream's and blocking screens' pre-scan
    Prescanner(True, SECRET_HINTS, ID_KEYWORDS),  # where PII runs
    Prescanner(False, (), ID_KEYWORDS),
    Prescanner(True, ("nhs",), ID_KEYWORDS),  # a keyword that is also a secret hint
)


def check(text: str) -> None:
    lowered, _exact = fold(text)
    for scanner in SCANNERS:
        expected = list(scanner.hits(lowered))
        compiled = scanner._hits(lowered)
        # the same trigger words at the same places, in the same order; a pure keyword is
        # reported once (the pre-scan only asks whether it occurs)
        assert [h for h in compiled if h[1][0] != "keyword"] == [h for h in expected if h[1][0] != "keyword"]
        assert {h[1] for h in compiled if h[1][0] == "keyword"} == {
            h[1] for h in expected if h[1][0] == "keyword"
        }
        # and the pre-scan built from them, on the compiled pass whatever the text's length
        long = text + " " * COMPILED_SCAN_CHARS
        assert scanner.scan(long).injection_hits == scanner.scan(text).injection_hits
        assert scanner.scan(long).secret_hints == scanner.scan(text).secret_hints


def test_the_compiled_pass_finds_what_the_automaton_finds_on_the_guard_corpus() -> None:
    texts = corpus()
    assert len(texts) > 500
    for text in texts:
        check(text)


FRAGMENTS = st.sampled_from(
    [*INJECTION_WORDS, *sorted(SECRET_HINTS), *sorted(ID_KEYWORDS), "PROMPT SYSTÈME", "prompt systÈme", "Ignore",
     "İ", "ı", "ſ", "\u212a", "é", "ü", " ", "\n", "-", "x", "a", "?", "1", "\ud800"]
)  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(st.lists(FRAGMENTS, max_size=30).map("".join))
def test_the_compiled_pass_finds_what_the_automaton_finds(text: str) -> None:
    check(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_the_compiled_pass_on_any_text(text: str) -> None:
    check(text)
