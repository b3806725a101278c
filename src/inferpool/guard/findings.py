"""What a detector reports: which check, what kind, and where in the text."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    check: str  # pii | secrets | injection | denylist | hook
    kind: str  # e.g. email, credit_card, aws_access_key, override_instructions
    start: int
    end: int


def without_overlaps(found: list[Finding]) -> list[Finding]:
    """Earliest, then longest span wins (a card number is not also a phone number)."""
    out: list[Finding] = []
    for f in sorted(found, key=lambda f: (f.start, -(f.end - f.start))):
        if out and f.start < out[-1].end:
            continue
        out.append(f)
    return out
