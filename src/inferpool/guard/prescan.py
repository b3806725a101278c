"""One cheap pass over a text that decides which detectors run at all.

Most prompts hold no e-mail address, no long digit run, no key prefix and none of the words
an injection needs; for them screening is a lower-casing, a few dozen substring searches and
one regular-expression search. Each detector family is run only when its trigger fired.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Shortest number-based PII: a 7-digit phone number with separators.
DIGIT_RUN = re.compile(r"\d[\d \-.()/]{5,}\d")
# Words without which no injection signal can reach a threshold (see injection.SIGNALS).
INJECTION_WORDS = (
    "ignor", "disregard", "forget", "set aside", "pay no attention", "abandon", "bypass", "overrid",
    "overrul", "discard", "obey", "t follow", "not follow", "stop follow", "no longer", "revoked",
    "cancel", "void", "outdated", "obsolete", "supersede", "a test", "by mistake", "never installed",
    "never existed", "never given", "switched off", "turned off", "exempt", "freed from", "bound by",
    "released from", "reveal", "repeat", "print", "dump", "leak", "quote", "copy", "preamble",
    "context window", "system prompt", "system message", "hidden", "confidential", "initial",
    "unfilter", "uncensor", "unrestrict", "never refuse", "restriction", "censorship", "your developer",
    "admin", "system:", "instruction:", "new instructions", "new orders", "new rules", "updated instruction",
    "note to the", "authoris", "authoriz", "olvida", "oubli", "vergiss", "ignora", "esquece",
    "mensaje de sistema", "systemprompt", "prompt système", "words above", "text above", "everything above",
    "appears before", "drop the", "drop your", "skip your", "jailbreak", "do anything now", "alter ego",
    "no rule", "no limit", "no filter", "no polic", "no guideline", "no ethic", "free from", "free of", "without",
    "not bound", "never refuse", "consider them", "consider it", "treat them", "treat it", "treat everything",
)  # fmt: skip


@dataclass(frozen=True)
class Prescan:
    lowered: str
    numbers: bool  # a digit run long enough for a phone, card, IBAN or ID number
    email: bool
    injection: bool

    @property
    def anything(self) -> bool:
        return self.numbers or self.email or self.injection


def prescan(text: str) -> Prescan:
    lowered = text.lower()
    return Prescan(
        lowered=lowered,
        numbers=DIGIT_RUN.search(text) is not None,
        email="@" in text,
        injection=any(w in lowered for w in INJECTION_WORDS),
    )
