"""What a detector reports: which check, what kind, and where in the text."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    check: str  # pii | secrets | injection | denylist | hook
    kind: str  # e.g. email, credit_card, aws_access_key, override_instructions
    start: int
    end: int
