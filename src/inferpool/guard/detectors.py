"""Built-in detectors: each finds spans of one kind of sensitive or hostile text.

Patterns are deliberately narrow and numbers are validated (Luhn for cards, mod-97 for
IBANs, the SSA's reserved ranges for SSNs), because a false positive blocks a real user.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    check: str  # pii | secrets | injection | denylist | hook
    kind: str  # e.g. email, credit_card, aws_access_key, ignore_instructions
    start: int
    end: int


EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}\b")
PHONE = re.compile(
    r"(?<![\w+])(?<!\d[ .-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])\d{3,4}[ .-]\d{3,4}"
    r"(?![\w-])(?![ .]\d)"
)
CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
SSN = re.compile(r"(?<![\d-])(\d{3})-(\d{2})-(\d{4})(?![\d-])")
IBAN = re.compile(r"\b([A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?)\b")

SECRETS: dict[str, re.Pattern[str]] = {
    "private_key": re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----"),
    "aws_access_key": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "github_token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})\b"),
    "openai_key": re.compile(r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}\b"),
    "google_api_key": re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),
    "slack_token": re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b"),
    "stripe_key": re.compile(r"\b(?:sk|rk)_live_[A-Za-z0-9]{20,}\b"),
    "jwt": re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\b"),
    "inferpool_key": re.compile(r"\bipk-[A-Za-z0-9_-]{40,}\b"),
    "password_assignment": re.compile(
        r"(?i)\b(?:password|passwd|api[_-]?key|secret[_-]?key|access[_-]?token)\s*[:=]\s*['\"]?[^\s'\"]{8,}"
    ),
}

_INJECTION_PHRASES = [
    (
        "ignore_instructions",
        r"\b(?:ignore|disregard|forget|override|bypass)\b(?:\s+\w+){0,3}?\s+"
        r"(?:previous|prior|above|earlier|preceding|all|your|system|initial|original)\s+"
        r"(?:\w+\s+){0,2}(?:instructions?|prompts?|rules?|directives?|guidelines?|guardrails?)",
    ),
    (
        "reveal_system_prompt",
        r"\b(?:reveal|print|show|repeat|output|leak|tell me|display)\b(?:\s+\w+){0,4}?\s+"
        r"(?:system|hidden|initial|secret|original)\s+(?:prompt|instructions?|message)",
    ),
    ("dan_jailbreak", r"\b(?:DAN|do anything now)\b.{0,40}\b(?:mode|jailbreak|no restrictions|prompt)"),
    (
        "jailbreak_request",
        r"\b(?:let'?s|try|use|enable|activate|start|run|this is)\s+(?:a\s+|the\s+|an?\s+)?jailbreak\b"
        r"|\bjailbreak\s+(?:prompt|mode)\b",
    ),
    ("developer_mode", r"\b(?:developer|god|sudo|unrestricted|evil)\s+mode\b"),
    (
        "no_restrictions",
        r"\b(?:without|no|free (?:of|from))\s+(?:any\s+)?(?:restrictions|filters|limitations|censorship|"
        r"ethical (?:guidelines|constraints)|safety (?:guidelines|rules))\b",
    ),
    (
        "pretend_unfiltered",
        r"\b(?:pretend|act|roleplay|behave)\b.{0,30}\b(?:as|like|to be)\b.{0,30}"
        r"\b(?:unfiltered|uncensored|unrestricted|no (?:rules|limits))",
    ),
    ("new_system_prompt", r"(?:^|\n)\s*(?:###\s*)?(?:system|SYSTEM)\s*(?:prompt)?\s*:\s*you are now\b"),
]
INJECTION = [(kind, re.compile(p, re.IGNORECASE | re.DOTALL)) for kind, p in _INJECTION_PHRASES]


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    """ISO 13616 check: move the first four characters to the end, letters to numbers, mod 97 == 1."""
    s = iban.replace(" ", "").upper()
    if not 15 <= len(s) <= 34 or not s[:2].isalpha() or not s[2:4].isdigit():
        return False
    rearranged = s[4:] + s[:4]
    number = "".join(str(int(c, 36)) for c in rearranged)
    return int(number) % 97 == 1


def ssn_ok(area: str, group: str, serial: str) -> bool:
    """Excludes numbers the SSA never issues (000, 666, 9xx areas; 00 groups; 0000 serials)."""
    return area not in ("000", "666") and not area.startswith("9") and group != "00" and serial != "0000"


def _emails(text: str) -> Iterable[Finding]:
    for m in EMAIL.finditer(text):
        yield Finding("pii", "email", m.start(), m.end())


def _cards(text: str) -> Iterable[Finding]:
    for m in CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 13 <= len(digits) <= 19 and luhn_ok(digits) and len(set(digits)) > 1:
            yield Finding("pii", "credit_card", m.start(), m.end())


def _ssns(text: str) -> Iterable[Finding]:
    for m in SSN.finditer(text):
        if ssn_ok(*m.groups()):
            yield Finding("pii", "ssn", m.start(), m.end())


def _ibans(text: str) -> Iterable[Finding]:
    for m in IBAN.finditer(text):
        if iban_ok(m.group(1)):
            yield Finding("pii", "iban", m.start(1), m.end(1))


def _phones(text: str) -> Iterable[Finding]:
    for m in PHONE.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 10 <= len(digits) <= 15:
            yield Finding("pii", "phone", m.start(), m.end())


PII_DETECTORS: dict[str, Callable[[str], Iterable[Finding]]] = {
    "email": _emails,
    "credit_card": _cards,
    "ssn": _ssns,
    "iban": _ibans,
    "phone": _phones,
}
PII_TYPES = tuple(PII_DETECTORS)


def find_pii(text: str, types: Iterable[str] = PII_TYPES) -> list[Finding]:
    found: list[Finding] = []
    for t in types:
        found.extend(PII_DETECTORS[t](text))
    return _without_overlaps(found)


def find_secrets(text: str) -> list[Finding]:
    return [
        Finding("secrets", kind, m.start(), m.end()) for kind, p in SECRETS.items() for m in p.finditer(text)
    ]


def find_injection(text: str) -> list[Finding]:
    return [Finding("injection", kind, m.start(), m.end()) for kind, p in INJECTION for m in p.finditer(text)]


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


def find(text: str) -> list[Finding]:
    """Every built-in detector with default settings (handy for reports and tests)."""
    return find_pii(text) + find_secrets(text) + find_injection(text)


def _without_overlaps(found: list[Finding]) -> list[Finding]:
    """Earliest, then longest span wins (a card number is not also a phone number)."""
    out: list[Finding] = []
    for f in sorted(found, key=lambda f: (f.start, -(f.end - f.start))):
        if out and f.start < out[-1].end:
            continue
        out.append(f)
    return out
