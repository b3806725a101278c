"""The injection scorer skips a passage when the compiled pass (every signal in Hyperscan's
prefilter mode, `injection._signal_ends`) says no signal, or too few to reach the threshold,
can match in it. That is exact only if the pass reports an end inside the passage for every
match `re` finds there: checked on every passage of the guard corpus and on hypothesis-made
texts, cut anywhere (a passage's edges are a string's edges to `re`), with the pass over the
whole text and over the passage alone. A signal dropped from the compiled pass, or one whose
rewrite matches less than `re`, fails here.
"""

from __future__ import annotations

from bisect import bisect_left
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st
from test_findings_unchanged import corpus  # pytest puts this folder on sys.path

from inferpool.guard.injection import SIGNALS, _signal_ends, passages
from inferpool.guard.prescan import INJECTION_WORDS, Prescanner, has_case_exotic

PRESCANNER = Prescanner(True)


def check(text: str, spans: list[tuple[int, int]]) -> int:
    """Asserts the superset on each span of `text` without a CASE_EXOTIC letter, from the pass over
    the whole text and from the pass over that span alone (long prompts with few trigger words);
    the matches seen."""
    whole = _signal_ends(text)
    seen = 0
    for start, end in spans:
        passage = text[start:end]
        if has_case_exotic(passage):
            continue  # scored by the plain definition, never skipped
        alone = _signal_ends(text, None, [(start, end)])
        for i, signal in enumerate(SIGNALS):
            for m in signal.pattern.finditer(passage):
                for ends in (whole, alone):
                    at = bisect_left(ends, (start + m.end(), i))
                    assert at < len(ends) and ends[at] == (start + m.end(), i), (signal.family, passage)
                seen += 1
    return seen


def test_the_compiled_pass_reports_every_signal_match_in_the_corpus_passages() -> None:
    texts = corpus()
    assert len(texts) > 2000
    seen = 0
    for text in texts:
        scan = PRESCANNER.scan(text)
        spans = passages(scan.lowered, scan.injection_hits)
        seen += check(text, [*spans, (0, len(text))])
    assert seen > 800  # the corpus exercises the signals


FRAGMENTS = st.sampled_from(
    [*INJECTION_WORDS, "IGNORE", "Ignore all", " previous ", "instructions", "rules", "guidelines", " your ",
     "prompt", "DAN", "system", "System", ":", "\n", "#", " ", "  ", "\x1c", "\u00a0", "\u2003", "é", "’", "'",
     "instruções", "règles", "prompt système", "PROMPT SYSTÈME", "tell me", " the ", "text above", "act as",
     "from now on", "no ", "any ", "filters", "mode", "dev", "evil", "i'm your admin", "admin says", "you",
     "-", ".", "x", "ü", "_", "1", "never refuse", "treat them as void", "were a test", "ı", "K"]
)  # fmt: skip


@settings(max_examples=600, deadline=None)
@given(st.lists(FRAGMENTS, max_size=25).map("".join), st.lists(st.integers(0, 400), min_size=2, max_size=8))
def test_the_compiled_pass_reports_every_signal_match(text: str, cuts: list[int]) -> None:
    cuts = sorted(min(c, len(text)) for c in cuts)
    check(text, [(0, len(text)), *pairwise(cuts)])
