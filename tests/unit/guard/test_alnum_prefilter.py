"""In a text without non-ASCII digits, the alphanumeric IDs (pii.ALNUM_TYPES) are looked for only
where a Hyperscan pass (their patterns in prefilter mode) says a match may end, one
`pattern.match` at each such end less the type's fixed width. That must give exactly the
matches of `pattern.finditer` over the whole text: a match missed would be a finding lost, one
too many a finding added. Checked on every text of the guard corpus and on hypothesis texts
made of IDs, their near misses and what may stand next to them.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from test_findings_unchanged import corpus  # pytest puts this folder on sys.path

from inferpool.guard import pii
from inferpool.guard.prescan import ascii_chars, unicode_digits


def check(text: str) -> int:
    """Asserts the compiled pass's matches are finditer's; the number of them."""
    if unicode_digits(text):
        return 0  # PiiScanner.find runs the patterns over the whole text then
    ends = pii._alnum_id_ends(ascii_chars(text))
    found = 0
    for kind in pii.ALNUM_TYPES:
        rule = pii.ID_RULES[kind]
        expected = [m.span() for m in rule.pattern.finditer(text)]
        assert [m.span() for m in pii._alnum_id_matches(text, rule, ends[kind])] == expected, (kind, text)
        assert all(e - s == pii.ALNUM_WIDTHS[kind] for s, e in expected)
        found += len(expected)
    return found


def test_the_compiled_pass_finds_every_alphanumeric_id_in_the_corpus() -> None:
    texts = corpus()
    assert len(texts) > 500
    assert sum(check(t) for t in texts) > 5  # the corpus holds codici fiscali and passports


FRAGMENTS = st.sampled_from(
    ["RSSMRA85T10A562S", "RSSMRA85T10A562", "SPECI2014", "SPECI20140", "AB1234567", "XYZ", "A", "Q", "0", "7",
     "LM", " ", "\n", "-", "_", "x", "é", "É", "ß", "\u00a0", "?", "٣", "Ⅸ"]
)  # fmt: skip


@settings(max_examples=1500, deadline=None)
@given(st.lists(FRAGMENTS, max_size=30).map("".join))
def test_the_compiled_pass_finds_every_alphanumeric_id(text: str) -> None:
    check(text)
