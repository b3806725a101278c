"""Opaque tokens in HTTP headers, and hex digests that are no secret (docs/security.md). The
held-out set (`tests/data/guard/heldout/header-tokens.jsonl`: 20 tokens after Bearer, token and
Api-Key schemes and API-key headers, as curl, wget, httpie, code, HTTP dumps, HAR, nginx and
kubectl write them; 20 benign headers with variables, templates, placeholders, RFC examples,
request and trace ids, ETags and digests) was written and committed before the rules: the
secrets check found 1/20 and flagged 1/20 before, 20/20 and 0/20 after. The benign text flagged
before was an ETag (a quoted hex digest); the rule for digests a line labels was added after
that was seen."""

from __future__ import annotations

import pytest
from heldout import found_by_label  # pytest puts this folder on sys.path

from inferpool.guard import Screener
from inferpool.guard.credentials import SecretScanner
from inferpool.guard.policy import default_config

SCANNER = SecretScanner()
TOKEN = "9f8e7d6c.5b4a39281706.f5e4d3c2b1a0"  # (a "." the entropy plugins do not read)


def kinds(text: str) -> list[str]:
    return [f.kind for f in SCANNER.find(text)]


def test_the_held_out_set() -> None:
    assert found_by_label("header-tokens", "secrets", Screener(default_config())) == {
        "harmful": 20,
        "benign": 0,
    }


@pytest.mark.parametrize(
    "template",
    [
        'curl -H "Authorization: Bearer {}" https://api.example.com',
        "Authorization: token {}",
        'curl -H "X-API-Key: {}" https://api.example.com',
        "client = httpx.Client(headers={{'api-key': '{}'}})",
        '{{"name": "X-Auth-Token", "value": "{}"}}',
        "kubectl --token={} get pods",
    ],
)
def test_a_header_token_is_found_as_its_value(template: str) -> None:
    text = template.format(TOKEN)
    (finding,) = SCANNER.find(text)
    assert (finding.kind, text[finding.start : finding.end]) == ("http_header_token", TOKEN)


@pytest.mark.parametrize(
    "value",
    ["$TOKEN", "${ACCESS_TOKEN}", "<your-token>", "{{token}}", "xxxxxxxxxxxxxxxxxxxxxxxx", "your-api-key-here",
     "mF_9.B5f-4.1JqM", "aaaabbbbaaaabbbbaaaabbbb"],
)  # fmt: skip
def test_variables_placeholders_and_short_or_plain_values_are_none(value: str) -> None:
    assert kinds(f'curl -H "Authorization: Bearer {value}" https://api.example.com') == []


def test_a_token_a_plugin_knows_is_found_as_that() -> None:
    jwt = (
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
        "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
    )
    assert kinds(f"Authorization: Bearer {jwt}") == ["jwt"]


def test_a_digest_its_line_labels_is_no_secret() -> None:
    digest = "33a64df551425fcc55e4d42a148795d9f25f89d4"
    for labelled in (f'{{"sha": "{digest}"}}', f'ETag: "{digest}"', f'"commit": "{digest}"'):
        assert kinds(labelled) == [], labelled
    # quoted hex with no such label, or of no digest's length, is still a high-entropy string
    assert kinds(f'token = "{digest}"') == ["high_entropy_hex"]
    assert kinds(f'"sha": "{digest[:36]}"') == ["high_entropy_hex"]
