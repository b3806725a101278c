"""Email addresses written obfuscated (docs/security.md): "jane.doe [at] gmail [dot] com",
"(at)", "{at}", "<at>", "[@]", defanged "[.]", upper-case AT/DOT, the words "at" and "dot" after
a handle, and a full-width ＠. The held-out set (`tests/data/guard/heldout/obfuscated-emails.jsonl`:
20 such addresses, 20 benign texts with "at", "dot", [AT], @handles, AT&T, modem AT commands
and a spoken URL) was written and committed before the rules: the PII check found 0/20 and
flagged 0/20 before."""

from __future__ import annotations

import pytest
from heldout import found_by_label  # pytest puts this folder on sys.path

from inferpool.guard import Screener, Stage
from inferpool.guard.policy import default_config

SCREENER = Screener(default_config())


def test_the_held_out_set() -> None:
    # flagged: "Use the format name [at] domain [dot] tld", as name@domain.tld written plainly is
    assert found_by_label("obfuscated-emails", "pii", SCREENER) == {"harmful": 20, "benign": 1}


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("Mail jane.doe [at] gmail [dot] com today", "Mail [REDACTED:email] today"),
        ("Email: mark_owens(at)outlook(dot)com", "Email: [REDACTED:email]"),
        ("ping devon.price at gmail dot com", "ping [REDACTED:email]"),
        ("tom.baker AT yahoo DOT co DOT uk, thanks", "[REDACTED:email], thanks"),
        ("sarah.connor[@]skynet[.]io", "[REDACTED:email]"),
        # (a long text: the marker comes from the pre-scan's compiled pass)
        ("Notes from the call.\n" * 8 + "Reach s.nakamura at sony dot co dot jp.", None),
    ],
)
def test_an_obfuscated_address_is_redacted(text: str, redacted: str | None) -> None:
    result = SCREENER.screen(text, Stage.PROMPT).text
    if redacted is None:
        assert result.endswith("Reach [REDACTED:email].")
    else:
        assert result == redacted


def test_a_full_width_at_sign_is_read_as_one() -> None:
    assert SCREENER.screen("maria.garcia\uff20gmail\uff0ecom", Stage.PROMPT).text == "[REDACTED:email]"


@pytest.mark.parametrize(
    "text",
    [
        "Look at www dot example dot com for the docs.",  # a spoken URL: no handle before "at"
        "Version 3.2 at commit a1b2c3 was released.",
        "Release v1.2 at github.com today.",  # a version, not a handle
        "The price is 5 at 2.99 each.",
        "The AT command set: AT DT 5551234 dials a number.",
    ],
)
def test_no_address(text: str) -> None:
    assert SCREENER.screen(text, Stage.PROMPT).findings == []
