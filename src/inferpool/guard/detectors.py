"""The built-in detectors behind one interface (the deny-list is `denylist.py`).

PII (`pii.py`: phonenumbers + python-stdnum), secrets (`credentials.py`: detect-secrets) and
prompt injection (`injection.py`: a scored detector) each have a scanner class holding one
policy's settings. The functions here run them with default settings (reports and tests).
"""

from __future__ import annotations

from collections.abc import Iterable

from inferpool.guard.credentials import SecretScanner
from inferpool.guard.findings import Finding
from inferpool.guard.injection import InjectionScorer
from inferpool.guard.pii import PII_TYPES, PiiScanner, without_overlaps


def find_pii(
    text: str, types: Iterable[str] = PII_TYPES, phone_regions: Iterable[str] = ("US",)
) -> list[Finding]:
    return PiiScanner(types, phone_regions).find(text)


def find_secrets(text: str) -> list[Finding]:
    return SecretScanner().find(text)


def find_injection(text: str, after_system: bool = False) -> list[Finding]:
    return InjectionScorer().find(text, after_system)


def find(text: str) -> list[Finding]:
    """Every built-in detector with default settings (handy for reports and tests)."""
    return find_pii(text) + find_secrets(text) + find_injection(text)


__all__ = [
    "PII_TYPES",
    "Finding",
    "find",
    "find_injection",
    "find_pii",
    "find_secrets",
    "without_overlaps",
]
