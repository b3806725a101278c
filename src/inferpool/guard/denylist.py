"""The deny-list check: whole-word, case-insensitive terms of a policy."""

from __future__ import annotations

import re
from collections.abc import Iterable

from inferpool.guard.findings import Finding


def compile_terms(terms: Iterable[str]) -> re.Pattern[str] | None:
    """Whole-word, case-insensitive alternation of deny-listed terms (None when the list is empty)."""
    words = sorted({t.strip() for t in terms if t.strip()}, key=len, reverse=True)
    if not words:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(w) for w in words) + r")(?!\w)", re.IGNORECASE)


def find_terms(text: str, pattern: re.Pattern[str] | None) -> list[Finding]:
    if pattern is None:
        return []
    return [Finding("denylist", m.group().lower(), m.start(), m.end()) for m in pattern.finditer(text)]
