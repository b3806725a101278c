"""PiiScanner keeps, per set of ID keywords the pre-scan found, which of its types pass their
keyword gate (`_kinds_passing`). Each answer must be the gate's own, in the policy's order,
for every set in any sequence (a stale or shared answer would drop or add a rule)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from inferpool.guard import pii

SCANNER = pii.PiiScanner()  # one scanner for every example: its kept answers build up
NARROW = pii.PiiScanner(["phone", "gb_nino", "passport", "email"])
KEYWORD_SETS = st.frozensets(st.sampled_from(sorted(pii.ID_KEYWORDS)), max_size=4)


def by_the_gate(
    scanner: pii.PiiScanner, lowered: str, keywords: frozenset[str] | None
) -> tuple[list[str], list[str]]:
    passing = [
        k
        for k in scanner.types
        if k not in pii.ID_RULES or pii._any_keyword(pii.ID_RULES[k], lowered, keywords)
    ]
    return [k for k in passing if k in pii.ALNUM_TYPES], [k for k in passing if k not in pii.ALNUM_TYPES]


@settings(max_examples=500, deadline=None)
@given(st.lists(KEYWORD_SETS, min_size=1, max_size=6))
def test_each_keyword_set_gets_the_gates_answer(sets: list[frozenset[str]]) -> None:
    for keywords in sets:
        for scanner in (SCANNER, NARROW):
            alnum, numbers = scanner._kinds_passing("", keywords)
            assert (list(alnum), list(numbers)) == by_the_gate(scanner, "", keywords)


def test_without_the_pre_scan_the_text_decides() -> None:
    for lowered in ("", "my pesel is", "passport and nhs"):
        alnum, numbers = SCANNER._kinds_passing(lowered, None)
        assert (list(alnum), list(numbers)) == by_the_gate(SCANNER, lowered, None)
    assert "pl_pesel" in SCANNER._kinds_passing("my pesel is", None)[1]
    assert "pl_pesel" not in SCANNER._kinds_passing("", None)[1]
