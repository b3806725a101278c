"""One cheap pass over a text that decides which detectors run at all.

Most prompts hold no e-mail address, no long digit run, no key prefix and none of the words
an injection needs; for them screening is a lower-casing, one Aho-Corasick pass for every
trigger word at once, and a digit search. Each detector family runs only when its trigger
fired (the secret scanner, further, only on the lines holding its hints).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import ahocorasick

# Shortest number-based PII: a 7-digit phone number with separators.
DIGIT_RUN = re.compile(r"\d[\d \-.()/]{5,}\d")
# The shape both alphanumeric IDs share: two capitals, then capitals or digits, a digit among them.
ALNUM_ID = re.compile(r"[A-Z]{2}[A-Z0-9]{4,}\d")
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
    number_spans: tuple[tuple[int, int], ...]  # digit runs long enough for a phone, card, IBAN or ID
    alnum_ids: bool  # an upper-case run with digits, as codice fiscale and passport numbers are
    email: bool
    injection_hits: tuple[int, ...]  # where injection trigger words start
    secret_hints: dict[str, list[int]]  # hint -> offsets where it occurs

    @property
    def numbers(self) -> bool:
        return bool(self.number_spans)

    @property
    def injection(self) -> bool:
        return bool(self.injection_hits)


class Prescanner:
    """One Aho-Corasick automaton (pyahocorasick, C) over every trigger word of a policy's checks:
    a single pass over the lower-cased text, whatever the number of words."""

    def __init__(self, injection: bool, secret_hints: Iterable[str] = ()) -> None:
        self._automaton = ahocorasick.Automaton()
        words: dict[str, str] = {h: "secret" for h in secret_hints}
        if injection:
            words.update({w: "injection" for w in INJECTION_WORDS if w not in words})
        for word, family in words.items():
            self._automaton.add_word(word, (family, word))
        self._empty = not words
        if words:
            self._automaton.make_automaton()

    def scan(self, text: str) -> Prescan:
        lowered = text.lower()
        injection: list[int] = []
        hints: dict[str, list[int]] = {}
        if not self._empty:
            for end, (family, word) in self._automaton.iter(lowered):
                start = end - len(word) + 1
                if family == "injection":
                    injection.append(start)
                else:
                    hints.setdefault(word, []).append(start)
        spans = tuple(m.span() for m in DIGIT_RUN.finditer(text))
        return Prescan(
            lowered=lowered,
            number_spans=spans,
            alnum_ids=ALNUM_ID.search(text) is not None,
            email="@" in text,
            injection_hits=tuple(injection),
            secret_hints=hints,
        )
