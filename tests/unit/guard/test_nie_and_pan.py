"""Spain's NIE and India's PAN: the number, validated by python-stdnum, next to its name.

The held-out set (`tests/data/guard/heldout/nie-and-pan.jsonl`, committed before the rules: 0/20
covered, 0/20 flagged): 10 NIEs and 10 PANs with their keywords (Spanish, English, Hindi) and 20
look-alikes. With the rules: 19/20 and 0/20; the miss is a PAN in lower case.
"""

from __future__ import annotations

import pytest
from heldout import kinds_and_values, values_covered  # pytest puts this folder on sys.path

from inferpool.guard import Screener
from inferpool.guard.attach import _PII
from inferpool.guard.pii import PII_TYPES
from inferpool.guard.policy import Action, CheckConfig, GuardConfig, default_config

SCREENER = Screener(default_config())
ONLY_THESE = Screener(
    GuardConfig("ids", (CheckConfig("pii", Action.REDACT, pii_types=("es_nie", "in_pan")),))
)


def test_the_held_out_numbers_are_covered_and_the_look_alikes_are_not() -> None:
    assert values_covered("nie-and-pan", "pii", SCREENER) == (19, 0)


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("Mi NIE es X1234567L, gracias", ("es_nie", "X1234567L")),
        ("NIE: Y-7654321-G", ("es_nie", "Y-7654321-G")),
        ("My PAN is AAAPL1234C", ("in_pan", "AAAPL1234C")),
        ("Permanent Account Number: ABCPE1234F", ("in_pan", "ABCPE1234F")),
    ],
)
def test_a_number_next_to_its_name_is_found(text: str, found: tuple[str, str]) -> None:
    assert found in kinds_and_values(ONLY_THESE, text, "pii")


@pytest.mark.parametrize(
    "text",
    [
        "Order X1234567L shipped yesterday",  # a valid NIE's shape with no name near it
        "NIE X1234567A",  # the check letter is wrong
        "Ticket AAAPL1234C is closed",  # a PAN's shape with no name near it
        "The example PAN in the docs is ABCDE1234F.",  # D is no holder kind
    ],
)
def test_without_its_name_or_its_check_it_is_no_number(text: str) -> None:
    assert kinds_and_values(ONLY_THESE, text, "pii") == []


def test_every_pii_type_has_a_policy_name() -> None:
    assert sorted(_PII.values()) == sorted(PII_TYPES)
