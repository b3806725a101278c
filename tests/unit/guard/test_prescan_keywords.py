"""The pre-scan answers the ID rules' keyword question (`w in lowered`) in its one pass.

The plain definition is PII's own fallback (`pii._any_keyword` without the pre-scan's answer):
every keyword that occurs in the folded text as a substring, in any case the fold equates.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from inferpool.guard import Screener
from inferpool.guard.pii import ID_KEYWORDS
from inferpool.guard.policy import default_config
from inferpool.guard.prescan import Prescanner

FRAGMENTS = st.sampled_from(
    [*sorted(ID_KEYWORDS), "NHS", "Steuer-ID", "Aadhaar", "CPF", "n", "i", "ni", "o", " ", "-", "\n", "İ",
     "ı", "é", "ignore", "api_key", "password", "12345", "x"]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(FRAGMENTS, max_size=40).map("".join))
def test_keywords_found_are_the_substrings_of_the_folded_text(text: str) -> None:
    # the last: a keyword that is also a secret hint ("nhs") is owned by that family in the automaton
    for scanner in (
        Prescanner(False, (), ID_KEYWORDS),
        Prescanner(True, ("api_key",), ID_KEYWORDS),
        Prescanner(True, ("nhs",), ID_KEYWORDS),
    ):
        scan = scanner.scan(text)
        assert scan.keywords == {w for w in ID_KEYWORDS if w in scan.lowered}


def test_the_streams_per_event_scans_look_for_no_keywords() -> None:
    """The stream screener reads every hit of `Screener.prescanner` as a trigger: ID keywords
    there would make each "ni" in an answer look like a secret hint."""
    prescanner = Screener(default_config()).prescanner
    families = {family for _, (family, _, _) in prescanner.hits("the nhs number, ni, uid and cpf: ignore it")}
    assert families == {"injection"}
