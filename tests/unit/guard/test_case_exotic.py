"""`prescan.has_case_exotic` (an ASCII test, then one class search) must answer as its
definition does: whether any CASE_EXOTIC character occurs in the text."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from test_findings_unchanged import corpus  # pytest puts this folder on sys.path

from inferpool.guard.prescan import CASE_EXOTIC, has_case_exotic


def defined(text: str) -> bool:
    return any(c in text for c in CASE_EXOTIC)


def test_as_defined_in_the_corpus() -> None:
    texts = corpus()
    assert sum(defined(t) for t in texts) > 0
    for text in texts:
        assert has_case_exotic(text) == defined(text), text


@settings(max_examples=2000, deadline=None)
@given(
    st.text(alphabet=st.sampled_from([*CASE_EXOTIC, "i", "I", "k", "K", "s", "S", "é", "\u0307", " ", "x"]))
)
def test_as_defined(text: str) -> None:
    assert has_case_exotic(text) == defined(text)
