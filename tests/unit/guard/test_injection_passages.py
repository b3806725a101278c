"""InjectionScorer.find scores a passage the text repeats once per call and reuses its score.
Its finding must be the one the reference gives: every passage around a trigger word scored
on its own with `score()` (regular expressions over the passage, nothing skipped or reused),
the best one deciding. Checked on texts made of the guard corpus's lines (injections among
them), repeated and shuffled, with and without a system prompt before them.
"""

from __future__ import annotations

import re
from functools import cache

from hypothesis import given, settings
from hypothesis import strategies as st
from test_findings_unchanged import corpus  # pytest puts this folder on sys.path

from inferpool.guard.disguise import UNICODE_SPACES, disguised, readings
from inferpool.guard.findings import Finding
from inferpool.guard.injection import SIGNALS, InjectionScore, InjectionScorer, passages, rule_noun_near
from inferpool.guard.prescan import INJECTION_WORDS, SPLIT_PHRASE, ascii_chars, fold, occurrences

# Each injection phrase of several words with other spacing between them (what the pre-scan
# also finds: test_prescan_compiled.py); where it ends, less its length with single spaces
SPACED = {
    w: re.compile("[ \t\x0b\x0c?]+".join(map(re.escape, w.split(" "))))
    for w in INJECTION_WORDS
    if " " in w and w.isascii()
}

SCORER = InjectionScorer()


def reference(text: str, after_system: bool, undone: bool = False) -> list[Finding]:
    if not undone and disguised(text):  # read as a model reads it, the finding pointing into the text
        for plain in readings(text):
            found = reference(plain.text, after_system, undone=True)
            if found:
                return [Finding(f.check, f.kind, *plain.source_span(f.start, f.end)) for f in found]
        return []
    lowered, _exact = fold(text)
    chars = ascii_chars(lowered).decode()
    hits = {i for w in INJECTION_WORDS for i in occurrences(lowered, w)}
    if any(re.search(e, chars) for e in SPLIT_PHRASE) or any(c in text for c in UNICODE_SPACES):
        hits |= {m.end() - len(w) for w, p in SPACED.items() for m in p.finditer(chars)}
    best: InjectionScore | None = None
    for start, end in passages(text, sorted(hits)):
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


SPACING = ("  ", "\t", "\u00a0", " \t ", "\u3000")
DISGUISES = ("\u200b", "\u00ad", "\ufeff")


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_spaced_and_disguised_lines_score_as_the_reference_does(data: st.DataObject) -> None:
    """Lines with their spaces made other spacing, or an invisible character put into a word."""
    lines_drawn = data.draw(st.lists(st.sampled_from(lines()), min_size=1, max_size=6))
    out = []
    for line in lines_drawn:
        spacing = data.draw(st.sampled_from(("", *SPACING)))
        if spacing:
            line = line.replace(" ", spacing)
        hidden = data.draw(st.sampled_from(("", *DISGUISES)))
        if hidden and len(line) > 2:
            at = data.draw(st.integers(1, len(line) - 1))
            line = line[:at] + hidden + line[at:]
        out.append(line)
    check("\n".join(out))
