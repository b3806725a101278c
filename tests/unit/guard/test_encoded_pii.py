"""Personal data carried in base64 (docs/security.md). The held-out set
(`tests/data/guard/heldout/encoded-pii.jsonl`: 20 texts with SSNs, cards, IBANs, phone numbers,
emails and Aadhaar numbers in base64: records, exports, mail bodies, cookies and query values, a
model's answer; 20 benign texts with base64 of numbers that are none: orders, builds, flights,
readings, an address, images, keys) was written and committed before the change: the PII check
found 0/20 and flagged 0/20 before, 19/20 and 0/20 after. The one it misses: an SSN whose base64
is 20 characters, shorter than a long token (24), which is all the pre-scan offers to decode."""

from __future__ import annotations

import base64

from heldout import found_by_label  # pytest puts this folder on sys.path

from inferpool.guard import Screener, Stage
from inferpool.guard.policy import Action, CheckConfig, GuardConfig, default_config
from inferpool.guard.screen import FixedTriggers

SCREENER = Screener(default_config())


def test_the_held_out_set() -> None:
    assert found_by_label("encoded-pii", "pii", SCREENER) == {"harmful": 19, "benign": 0}


def test_an_encoded_value_is_redacted_whole() -> None:
    """A cookie's value (a key=value token: its value is read), URL-safe base64 without padding."""
    value = base64.urlsafe_b64encode(b'{"uid":4411,"ssn":"536-22-8765"}').decode().rstrip("=")
    verdict = SCREENER.screen(f"Cookie: profile={value}", Stage.PROMPT)
    assert verdict.text == "Cookie: profile=[REDACTED:ssn]"
    benign = base64.b64encode(b'{"uid":4411,"theme":"dark","page":12}').decode()
    assert SCREENER.screen(f"Cookie: prefs={benign}", Stage.PROMPT).findings == []


def test_a_long_token_triggers_the_pii_check() -> None:
    """The triggers must never rule out a check that finds something (a stream asks them before
    screening): base64 may hold personal data with no digit or '@' showing."""
    pii_only = Screener(GuardConfig("pii", (CheckConfig("pii", Action.REDACT, frozenset({Stage.RESPONSE})),)))
    # (the triggers of a text whose only shape is a long token: base64 of an email may be that)
    assert pii_only.triggered(FixedTriggers(long_tokens=True), Stage.RESPONSE)
    assert not pii_only.triggered(FixedTriggers(), Stage.RESPONSE)
