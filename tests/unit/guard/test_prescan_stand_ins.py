"""The compiled pre-scan looks for a non-ASCII trigger word with ASCII letters ("prompt système")
as its one-byte form ("prompt syst?me", non-ASCII characters as '?'), checking each report
against the fold. It must find the word wherever the automaton does, in any case variant, and
nothing where only the one-byte form matches (a real '?', another accented letter)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from inferpool.guard.credentials import SECRET_HINTS
from inferpool.guard.pii import ID_KEYWORDS
from inferpool.guard.prescan import COMPILED_SCAN_CHARS, Prescanner, fold

SCANNER = Prescanner(True, SECRET_HINTS, ID_KEYWORDS)
PAD = "." * COMPILED_SCAN_CHARS  # long enough for the compiled pass


def test_the_stand_in_is_checked_against_the_text() -> None:
    assert SCANNER._stand_ins  # "prompt système" goes through one
    for near_miss in ("prompt syst?me", "prompt systéme", "PROMPT SYSTEME", "prompt syst电me"):
        assert SCANNER.scan(PAD + near_miss).injection_hits == ()
    for word in ("prompt système", "Prompt Système", "PROMPT SYSTÈME"):
        assert SCANNER.scan(PAD + word).injection_hits == (len(PAD),)


_FRAGMENTS = st.sampled_from(
    ["prompt syst", "PROMPT SYST", "è", "È", "é", "?", "me", "ME", "prompt système", " ", "\n", "आधार", "आधा",
     "र", "电", "ignore", "x"]
)  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(st.lists(_FRAGMENTS, max_size=30).map("".join))
def test_the_compiled_pass_finds_what_the_automaton_finds(text: str) -> None:
    lowered, _exact = fold(PAD + text)
    expected = [h for h in SCANNER.hits(lowered) if h[1][0] != "keyword"]
    assert [h for h in SCANNER._hits(lowered) if h[1][0] != "keyword"] == expected
