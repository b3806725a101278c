"""A scored prompt-injection detector: several weak signals add up; a policy threshold decides.

One phrase is not one block. Each signal family (overriding earlier instructions, declaring
them void, asking for the hidden prompt, an unrestricted persona, jailbreak names, claimed
authority, role switches) has a weight; families combine as a noisy-OR, so two independent
signals score higher than either. Then:

- imperative form (a signal opening a sentence, or after "please"/"now") adds a little, so
  "Act as an AI with no rules" outweighs "can you act as a tour guide";
- a user turn right after the system prompt adds a little (that is where injections sit);
- discussion ("explain how prompt injection works", "write a blog post about jailbreaks")
  multiplies the score down, unless the text also claims authority or opens with an order.

Signals are matched only in the sentences around the pre-scan's keywords, so a long prompt
costs little. It cannot understand meaning: docs/security.md lists what it misses.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from inferpool.guard.findings import Finding
from inferpool.guard.prescan import INJECTION_WORDS

DEFAULT_THRESHOLD = 0.5
_TARGET = (
    r"(?:instructions?|directions|rules|guidelines|guidance|directives?|constraints|restrictions|"
    r"polic(?:y|ies)|safety(?: \w+)?|persona|role|programming|training|system (?:prompt|message)|"
    r"prompt|configuration|filters?|guardrails?|orders|what you were told|everything (?:above|before))"
)
_W = r"(?:\s+[\w'’-]+){0,6}?\s+"  # up to six words in between
_FLAGS = re.IGNORECASE


@dataclass(frozen=True)
class Signal:
    family: str
    weight: float
    pattern: re.Pattern[str]
    anchors: tuple[str, ...]  # lower-case words one of which any match contains: else skip the regex


SIGNALS: tuple[Signal, ...] = tuple(
    Signal(family, weight, re.compile(pattern, _FLAGS), anchors)
    for (family, weight, pattern), anchors in zip(
        (
            (
                "override_instructions",
                0.6,
                r"\b(?:ignore|disregard|forget|set aside|pay no attention to|abandon|drop|skip|discard|bypass|"
                r"override|overrule|(?:do not|don't|stop|no longer) (?:follow|obey|apply)(?:ing)?)(?:s|d|ing)?"
                + _W
                + _TARGET,
            ),
            (
                "override_instructions",
                0.6,
                r"\b(?:ignora|olvida|ignorez?|oublie[sz]?|vergiss|ignoriere|ignorar|esquece)\b.{0,40}?"
                r"\b(?:instrucciones|instructions|anweisungen|instruktionen|instruções|regeln|reglas|règles)",
            ),
            (
                "instructions_void",
                0.5,
                r"\b(?:no longer appl(?:y|ies)|(?:been |are |is )?(?:revoked|cancell?ed|void|outdated|obsolete|lifted)|"
                r"supersedes?|were (?:just )?a test|(?:added|given) by mistake|never (?:installed|existed|given any)|"
                r"(?:switched|turned) off|exempt from|freed from|not bound by|released from|"
                r"(?:consider|treat) (?:them|it|those|these|everything [\w ]{0,30}?) (?:as )?(?:gone|void|cancell?ed|lifted))\b",
            ),
            (
                "exfiltrate_prompt",
                0.6,
                r"\b(?:reveal|print|show|repeat|output|share|quote|copy|dump|tell me|display|leak|write out|list|"
                r"give me|what (?:exact )?(?:words|text))\b.{0,40}?(?:"
                r"\b(?:system|hidden|initial|secret|original|confidential|exact)\s+(?:\w+\s+)?"
                r"(?:prompt|instructions|message|rules|preamble|configuration)"
                r"|\binstructions you (?:were|have been)? ?(?:given|received)"
                r"|\b(?:text|words|everything) (?:above|before|that appears before)"
                r"|\byour (?:prompt|instructions|rules|preamble|configuration|context window|hidden rules)"
                r"|\bcontext window|mensaje de sistema|systemprompt|prompt système)",
            ),
            (
                "unrestricted_persona",
                0.4,
                r"\b(?:no|without|free (?:of|from)|exempt from|not bound by|never (?:been )?given any|drop|switch off)"
                r"\s+(?:any\s+|all\s+|the\s+|your\s+|its\s+)?(?:\w+\s+)?"
                r"(?:restrictions?|rules|limits|limitations|filters?|censorship|guidelines|polic(?:y|ies)|"
                r"constraints|warnings|ethics)\b|\b(?:unfiltered|uncensored|unrestricted)\b|\bnever refuses?\b",
            ),
            (
                "jailbreak_name",
                0.25,
                r"\bDAN\b|\bdo anything now\b|\bjailbreak\b|\b(?:developer|god|maintenance|dev|sudo|evil) mode\b|"
                r"\bevil (?:assistant|ai|twin)\b|\balter ego\b",
            ),
            (
                "claimed_authority",
                0.35,
                r"\b(?:i am|i'm) your (?:developer|creator|admin|administrator|operator|owner)\b|"
                r"(?:^|\n)\s*(?:#+\s*)?(?:system|instruction)\s*:|\bnew (?:instructions|orders|rules|task)\b|"
                r"\bupdated instructions?\b|\b(?:the )?admin (?:has|says)\b|\bnote to the (?:ai|assistant|model)\b|"
                r"\bauthori[sz](?:e|ing|ed) you\b",
            ),
            (
                "role_switch",
                0.2,
                r"\b(?:you are now|from now on|from this point on|for this (?:conversation|session)|act (?:as|like)|"
                r"pretend (?:to be|you are|you're)|roleplay as|respond (?:only )?as|"
                r"imagine (?:your|you have no)|let's play a game where you|obey only|do what i say|comply with all)\b",
            ),
        ),
        (
            (
                "ignor",
                "disregard",
                "forget",
                "set aside",
                "pay no attention",
                "abandon",
                "drop",
                "skip",
                "discard",
                "bypass",
                "overrid",
                "overrul",
                "follow",
                "obey",
                "apply",
            ),
            ("ignor", "olvida", "oubli", "vergiss", "esquece"),
            (
                "no longer",
                "revoked",
                "cancel",
                "void",
                "outdated",
                "obsolete",
                "lifted",
                "supersede",
                "a test",
                "mistake",
                "never",
                "switched off",
                "turned off",
                "exempt",
                "freed",
                "bound by",
                "released from",
                "consider",
                "treat",
            ),
            (
                "reveal",
                "print",
                "show",
                "repeat",
                "output",
                "share",
                "quote",
                "copy",
                "dump",
                "tell me",
                "display",
                "leak",
                "write out",
                "list",
                "give me",
                "what",
            ),
            (
                "no ",
                "without",
                "free ",
                "exempt",
                "bound by",
                "never",
                "drop",
                "switch off",
                "unfiltered",
                "uncensored",
                "unrestricted",
                "refuse",
            ),
            ("dan", "do anything", "jailbreak", " mode", "evil", "alter ego"),
            ("i am", "i'm", "system", "instruction", "new ", "updated", "admin", "note to", "authori"),
            (
                "you are now",
                "from now on",
                "from this point",
                "for this",
                "act ",
                "pretend",
                "roleplay",
                "respond",
                "imagine",
                "let's play",
                "obey only",
                "do what i say",
                "comply with",
            ),
        ),
        strict=True,
    )
)
_DISCUSSION = re.compile(
    r"\b(?:explain|describe|what (?:is|are)|what's|how (?:does|do|can|would|should|to)|why (?:do|does|did)|"
    r"summari[sz]e|overview|history|historical|research|defen[cs]e|defend|detect|mitigat\w*|test plan|"
    r"red team\w*|examples? of|difference between|blog post|article|essay|attacks?|phenomenon)\b",
    _FLAGS,
)
_IMPERATIVE_START = re.compile(r"(?:^|[.!?;:\n]\s*|\b(?:please|kindly|now|just|and|then)\s+)$", _FLAGS)
IMPERATIVE_BONUS = 0.15
AFTER_SYSTEM_BONUS = 0.1
DISCUSSION_FACTOR = 0.35


@dataclass(frozen=True)
class InjectionScore:
    score: float
    families: tuple[str, ...]
    span: tuple[int, int]


class InjectionScorer:
    """One policy's injection check: the signals above and its threshold."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"injection threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold

    def score(self, text: str, after_system: bool = False) -> InjectionScore:
        weights: dict[str, float] = {}
        first, last, imperative = len(text), 0, False
        lowered = text.lower()
        for signal in SIGNALS:
            if not any(a in lowered for a in signal.anchors):
                continue
            for m in signal.pattern.finditer(text):
                weights[signal.family] = max(weights.get(signal.family, 0.0), signal.weight)
                first, last = min(first, m.start()), max(last, m.end())
                if _IMPERATIVE_START.search(text, max(0, m.start() - 12), m.start()):
                    imperative = True
        if not weights:
            return InjectionScore(0.0, (), (0, 0))
        miss = 1.0
        for w in weights.values():
            miss *= 1.0 - w
        score = 1.0 - miss
        if imperative:
            score += IMPERATIVE_BONUS
        if after_system:
            score += AFTER_SYSTEM_BONUS
        if _DISCUSSION.search(text) and "claimed_authority" not in weights and not imperative:
            score *= DISCUSSION_FACTOR
        return InjectionScore(min(score, 1.0), tuple(sorted(weights)), (first, last))

    def find(
        self,
        text: str,
        after_system: bool = False,
        lowered: str | None = None,
        hits: Iterable[int] | None = None,
    ) -> list[Finding]:
        """Scores each passage around a trigger word on its own (signals from unrelated
        sentences of a long prompt do not add up); the best passage decides. `hits`: where the
        pre-scan found trigger words (found here when not given)."""
        lowered = text.lower() if lowered is None else lowered
        if hits is None:
            hits = sorted(i for w in INJECTION_WORDS for i in _all(lowered, w))
        best: InjectionScore | None = None
        for start, end in passages(lowered, hits):
            result = self.score(text[start:end], after_system and start == 0)
            if result.score >= self.threshold and (best is None or result.score > best.score):
                best = InjectionScore(
                    result.score, result.families, (start + result.span[0], start + result.span[1])
                )
        if best is None:
            return []
        kind = max(best.families, key=lambda f: next(s.weight for s in SIGNALS if s.family == f))
        return [Finding("injection", kind, *best.span)]


_SENTENCE_END = re.compile(r"[.!?\n]")
PASSAGE_SENTENCES = 0  # further sentences kept on each side of the one holding a trigger word
PASSAGE_MAX_CHARS = 400  # per side, for text without sentence ends


def passages(lowered: str, hits: Iterable[int]) -> list[tuple[int, int]]:
    """Merged spans around each trigger word: its sentence and PASSAGE_SENTENCES either side."""
    merged: list[tuple[int, int]] = []
    for at in sorted(hits):
        if merged and at < merged[-1][1]:
            continue  # already inside the previous passage
        start, end = _around(lowered, at)
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _all(text: str, word: str) -> Iterable[int]:
    at = text.find(word)
    while at >= 0:
        yield at
        at = text.find(word, at + 1)


def _around(lowered: str, at: int) -> tuple[int, int]:
    start = at
    for _ in range(PASSAGE_SENTENCES + 1):
        cut = max(lowered.rfind(c, max(0, start - PASSAGE_MAX_CHARS), start) for c in ".!?\n")
        if cut < 0:
            start = max(0, start - PASSAGE_MAX_CHARS) if start - PASSAGE_MAX_CHARS > 0 else 0
            break
        start = cut
    end = at
    for _ in range(PASSAGE_SENTENCES + 1):
        m = _SENTENCE_END.search(lowered, end + 1, end + 1 + PASSAGE_MAX_CHARS)
        if m is None:
            end = min(len(lowered), end + PASSAGE_MAX_CHARS)
            break
        end = m.end()
    return start, end
