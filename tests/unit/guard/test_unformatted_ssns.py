"""US social security numbers written without dashes (docs/security.md): nine digits run
together, spaced or dotted, found as "ssn" only next to a word that names them (they carry no
check digit). The held-out set (`tests/data/guard/heldout/unformatted-ssns.jsonl`: 20 such
numbers after SSN, social security number/#, Soc. Sec. No., SS#, in prose, JSON, SQL, query
strings and records; 20 benign nine-digit numbers and SSN talk) was written and committed
before the rule: the PII check found 0/20 and flagged 0/20 before."""

from __future__ import annotations

import pytest
from heldout import found_by_label  # pytest puts this folder on sys.path

from inferpool.guard import Screener, Stage
from inferpool.guard.pii import PII_TYPES, PiiScanner
from inferpool.guard.policy import default_config

SCREENER = Screener(default_config())


def test_the_held_out_set() -> None:
    # flagged: "Build 202310151 fixed the SSN masking bug." (a valid number beside the word)
    assert found_by_label("unformatted-ssns", "pii", SCREENER) == {"harmful": 20, "benign": 1}


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("SSN: 536228417", "SSN: [REDACTED:ssn]"),
        ('{"ssn": "287654321"}', '{"ssn": "[REDACTED:ssn]"}'),
        ("social security number 536 22 8417, thanks", "social security number [REDACTED:ssn], thanks"),
        ("SSN 412.67.9035 (verified)", "SSN [REDACTED:ssn] (verified)"),
    ],
)
def test_an_undashed_number_is_an_ssn_beside_its_name(text: str, redacted: str) -> None:
    assert SCREENER.screen(text, Stage.PROMPT).text == redacted


@pytest.mark.parametrize(
    "text",
    [
        "Order #536228417 shipped on Monday.",  # no word that names an SSN
        "SSN 000 00 0000 is a placeholder.",  # area 000: never issued
        "ITIN 912 70 1234, not an SSN.",  # area 9xx: an ITIN
        "SSN 536 2284 17",  # not grouped 3-2-4
        "SSN 536.22 8417",  # two different separators
    ],
)
def test_no_ssn(text: str) -> None:
    assert [f.kind for f, _action in SCREENER.screen(text, Stage.PROMPT).findings] == []


def test_the_rule_is_no_type_of_its_own() -> None:
    assert "us_ssn_undashed" not in PII_TYPES  # a policy names "ssn"
    assert "us_ssn_undashed" in PiiScanner(["ssn"]).types
    assert "us_ssn_undashed" not in PiiScanner(["email"]).types
