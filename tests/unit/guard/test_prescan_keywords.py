"""The pre-scan answers the ID rules' keyword question in its one pass.

The plain definition is PII's own fallback (`pii._any_keyword` without the pre-scan's answer):
every keyword that occurs in the folded text as a substring, in any case the fold equates.
A text of COMPILED_SCAN_CHARS or more with an exact fold gets fewer: its ASCII keywords only
where one begins or ends a word (ASCII `\\b` over its `ascii_chars`); test_keyword_edges checks
that this loses no finding.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from inferpool.guard import Screener
from inferpool.guard.pii import ID_KEYWORDS
from inferpool.guard.policy import default_config
from inferpool.guard.prescan import COMPILED_SCAN_CHARS, Prescanner, ascii_chars


def at_an_edge(word: str, lowered: str) -> bool:
    # (a word that begins or ends with a non-word character, "ss#", wherever it occurs: as
    # prescan.at_an_edge documents it)
    if not word.isascii() or not all(c.isalnum() or c == "_" for c in (word[0], word[-1])):
        return word in lowered
    w = re.escape(word)
    return re.search(rf"\b{w}|{w}\b", ascii_chars(lowered).decode(), re.ASCII) is not None


FRAGMENTS = st.sampled_from(
    [*sorted(ID_KEYWORDS), "NHS", "Steuer-ID", "Aadhaar", "CPF", "n", "i", "ni", "o", " ", "-", "\n", "İ",
     "ı", "é", "ignore", "api_key", "password", "12345", "x"]
)  # fmt: skip


# Built once, as the screener builds its own (a scanner compiles its automata: ≈85 ms each on a
# slow core, which per example made this the suite's slowest test). The last: a keyword that is
# also a secret hint ("nhs") is owned by that family in the automaton, looked for as a substring.
SCANNERS = (
    (Prescanner(False, (), ID_KEYWORDS), set()),
    (Prescanner(True, ("api_key",), ID_KEYWORDS), set()),
    (Prescanner(True, ("nhs",), ID_KEYWORDS), {"nhs"}),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(FRAGMENTS, max_size=40).map("".join))
def test_keywords_found_are_those_of_the_folded_text(text: str) -> None:
    for scanner, substrings_only in SCANNERS:
        for scanned in (text, text + " " * COMPILED_SCAN_CHARS):
            scan = scanner.scan(scanned)
            lowered = scan.lowered
            if scan.exact and len(scanned) >= COMPILED_SCAN_CHARS:
                assert scan.keywords == {
                    w
                    for w in ID_KEYWORDS
                    if (w in lowered if w in substrings_only else at_an_edge(w, lowered))
                }
            else:
                assert scan.keywords == {w for w in ID_KEYWORDS if w in lowered}


def test_the_streams_per_event_scans_look_for_no_keywords() -> None:
    """The stream screener reads every hit of `Screener.prescanner` as a trigger: ID keywords
    there would make each "ni" in an answer look like a secret hint."""
    prescanner = Screener(default_config()).prescanner
    families = {family for _, (family, _, _) in prescanner.hits("the nhs number, ni, uid and cpf: ignore it")}
    assert families == {"injection"}
