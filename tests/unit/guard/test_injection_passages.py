"""InjectionScorer.find scores a passage the text repeats once per call and reuses its score.
Its finding must be the one the reference gives: every passage around a trigger word scored
on its own with `score()` (regular expressions over the passage, nothing skipped or reused),
the best one deciding. Checked on texts made of the guard corpus's lines (injections among
them), repeated and shuffled, with and without a system prompt before them.
"""

from __future__ import annotations

from functools import cache

from hypothesis import given, settings
from hypothesis import strategies as st
from test_findings_unchanged import corpus  # pytest puts this folder on sys.path

from inferpool.guard.findings import Finding
from inferpool.guard.injection import SIGNALS, InjectionScore, InjectionScorer, passages, rule_noun_near
from inferpool.guard.prescan import INJECTION_WORDS, fold, occurrences

SCORER = InjectionScorer()


def reference(text: str, after_system: bool) -> list[Finding]:
    lowered, _exact = fold(text)
    hits = sorted(i for w in INJECTION_WORDS for i in occurrences(lowered, w))
    best: InjectionScore | None = None
    for start, end in passages(lowered, hits):
        result = SCORER.score(text[start:end], after_system and start == 0, rule_noun_near(text, start, end))
        if result.score >= SCORER.threshold and (best is None or result.score > best.score):
            best = InjectionScore(
                result.score, result.families, (start + result.span[0], start + result.span[1])
            )
    if best is None:
        return []
    kind = max(best.families, key=lambda f: next(s.weight for s in SIGNALS if s.family == f))
    return [Finding("injection", kind, *best.span)]


@cache
def lines() -> list[str]:
    """The corpus's lines that hold a trigger word (some of them injections)."""
    found = {
        line
        for text in corpus()
        for line in text.split("\n")
        if any(w in fold(line)[0] for w in INJECTION_WORDS)
    }
    return sorted(found)


def check(text: str) -> bool:
    found = False
    for after_system in (False, True):
        expected = reference(text, after_system)
        assert SCORER.find(text, after_system) == expected, (after_system, text)
        found = found or bool(expected)
    return found


def test_repeated_passages_score_as_the_reference_does() -> None:
    pool = lines()
    assert len(pool) > 200
    texts = ["\n".join(pool[i : i + 12] * 3) for i in range(0, len(pool), 12)]
    assert sum(check(t) for t in texts) > 10


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_repeated_passages_score_as_the_reference_does_shuffled(data: st.DataObject) -> None:
    pool = st.sampled_from(lines()) | st.sampled_from(["", "Thanks.", "ok"])
    check("\n".join(data.draw(st.lists(pool, max_size=20))))
