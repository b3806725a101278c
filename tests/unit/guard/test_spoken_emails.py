"""Email addresses spoken with a one-word name ("john at gmail dot com"): an address where a word
about mail or contact stands before the name in its sentence, or where it is a line of its own.
The held-out set (`tests/data/guard/heldout/spoken-emails.jsonl`: 20 such addresses, 20 benign
texts with "at <site> dot com") was written and committed before the rule: the PII check found
0/20 and flagged 0/20 before."""

from __future__ import annotations

import re

import pytest
from heldout import found_by_label  # pytest puts this folder on sys.path
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferpool.guard import Screener, Stage
from inferpool.guard.disguise import OBFUSCATED_EMAIL_EXPRESSIONS, obfuscated_emails
from inferpool.guard.pii import ID_KEYWORDS
from inferpool.guard.policy import default_config
from inferpool.guard.prescan import COMPILED_SCAN_CHARS, Prescanner, fold

SCREENER = Screener(default_config())


def test_the_held_out_set() -> None:
    # missed: "drop a line to sam at …" and "the recruiter is hannah at …" (no contact word before
    # the name), "I'm jsmith at gmail.com" (nor a spoken domain)
    assert found_by_label("spoken-emails", "pii", SCREENER) == {"harmful": 17, "benign": 0}


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("You can reach me at john at gmail dot com.", "You can reach me at [REDACTED:email]."),
        ("my e-mail: maria at yahoo dot com", "my e-mail: [REDACTED:email]"),
        ("EMAIL ME AT CARLOS AT HOTMAIL DOT ES", "EMAIL ME AT [REDACTED:email]"),
        (
            "Best,\nJohn Smith\njohn at gmail dot com\n",
            "Best,\nJohn Smith\n[REDACTED:email]\n",
        ),  # a line alone
        # a rejected name ("me", with "jane.doe" read as its domain) hides no address after it
        ("Contact me at jane.doe [at] gmail [dot] com", "Contact me at [REDACTED:email]"),
        # (a long text: the marker comes from the pre-scan's compiled pass)
        ("Notes from the call.\n" * 8 + "Send the scans to kwame at protonmail dot com.", None),
    ],
)
def test_a_spoken_address_is_redacted(text: str, redacted: str | None) -> None:
    result = SCREENER.screen(text, Stage.PROMPT).text
    if redacted is None:
        assert result.endswith("Send the scans to [REDACTED:email].")
    else:
        assert result == redacted


@pytest.mark.parametrize(
    "text",
    [
        "Log in at gmail dot com and open Settings.",  # no contact word
        "Send it to me at gmail dot com.",  # "me" is no name
        "Email support. Then sign up at github dot com.",  # the contact word ended its sentence
        "Email the team the plan; we shop at amazon dot com.",
        "Tap Forgot password at outlook dot com to reset it by email.",  # the word comes after
        "Meet at noon.\nDinner at eight.",  # lines of their own, no domain
        "Email me when it is up at staging.example.com",  # a one-word name needs a spoken domain
    ],
)
def test_no_address(text: str) -> None:
    assert SCREENER.screen(text, Stage.PROMPT).findings == []


# Pieces of texts for the comparison below: names, "at"s, domains, contact words and prose
_PIECES = (
    "john", "jane.doe", "rachel dot green", "s.nakamura", "me", "in", "v1.2", "EMAIL", "Mail",
    " at ", " AT ", " [at] ", "(at)", " {at} ", "[@]", "[ at]", "gmail dot com", "yahoo.com",
    "sony dot co dot jp", "acme [dot] io", "example.org", "email me:", "reach", "write to",
    "contact", "log in", "shop", "\n", ". ", "; ", ", ", " ", "the plan was", "ÿ", "ı", "日本",
    " [dot] ", " [.] ", "> ", "- ", "GMAıL", "x" * 40,
)  # fmt: skip
# (single spaces around "at": an address written with other spacing is read only where a marker
# is near it, which a reading of the whole text does not ask)


# The markers as `re` reads them: the reference for the compiled scans
MARKERS = re.compile("|".join(OBFUSCATED_EMAIL_EXPRESSIONS))


def expected(text: str) -> tuple[tuple[int, int, str], ...]:
    """What reading the whole text finds, where one of the markers is in it (an address whose
    "at" has other spacing than the markers allow is read only near another's marker:
    docs/security.md)."""
    return tuple(obfuscated_emails(text)) if MARKERS.search(fold(text)[0]) else ()


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_PIECES), min_size=1, max_size=80), st.integers(0, 900))
def test_the_text_around_the_markers_holds_every_address_the_whole_text_does(
    pieces: list[str], padding: int
) -> None:
    """The pre-scan's compiled pass (a text of COMPILED_SCAN_CHARS or more) reports where the
    obfuscated-address markers end, and only the text around those ends is read: it must find
    exactly what reading the whole text finds."""
    text = "x" * padding + " " + "".join(pieces) + " " + "word " * 30
    scan = Prescanner(injection=True, keywords=ID_KEYWORDS).scan(text)
    assert len(text) >= COMPILED_SCAN_CHARS
    assert scan.obfuscated == expected(text)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), min_size=1, max_size=12))
def test_a_short_texts_check_lets_every_address_be_read(pieces: list[str]) -> None:
    """Below COMPILED_SCAN_CHARS the pre-scan asks `may_hold_obfuscated_email` (substring tests,
    then a compiled scan of the markers): the texts the markers as `re` reads them find get read."""
    text = "".join(pieces)[: COMPILED_SCAN_CHARS - 1]
    assert Prescanner(injection=True).scan(text).obfuscated == expected(text)
