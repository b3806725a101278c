"""Opaque tokens in HTTP headers, and hex digests that are no secret (docs/security.md). The
held-out set (`tests/data/guard/heldout/header-tokens.jsonl`: 20 tokens after Bearer, token and
Api-Key schemes and API-key headers, as curl, wget, httpie, code, HTTP dumps, HAR, nginx and
kubectl write them; 20 benign headers with variables, templates, placeholders, RFC examples,
request and trace ids, ETags and digests) was written and committed before the rules: the
secrets check found 1/20 and flagged 1/20 before, 20/20 and 0/20 after. The benign text flagged
before was an ETag (a quoted hex digest); the rule for digests a line labels was added after
that was seen.

And opaque tokens in token-named variables, fields and query parameters, and URL passwords with
no user name. The held-out set (`tests/data/guard/heldout/token-variables.jsonl`: 20 tokens in
`.env` lines and exports, JSON and YAML fields, Python assignments, query parameters, a
`gitlab-runner --token` and Redis URLs without a user; 20 benign texts with token counts,
tokenizer settings, variables, templates, placeholders and a page token) was written and
committed before the rules: the secrets check found 5/20 and flagged 0/20 before, 20/20 and 0/20
after."""

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


def test_the_token_variables_held_out_set() -> None:
    assert found_by_label("token-variables", "secrets", Screener(default_config())) == {
        "harmful": 20,
        "benign": 0,
    }


@pytest.mark.parametrize(
    "template",
    ["export GITHUB_TOKEN={}", '{{"access_token": "{}"}}', "refresh_token: {}", "ACCESS_TOKEN = '{}'",
     "https://hooks.example.com/in?token={}", 'config.set("auth.token", "{}")'],
)  # fmt: skip
def test_a_token_named_value_is_found_as_its_value(template: str) -> None:
    text = template.format(TOKEN)
    (finding,) = SCANNER.find(text)
    assert (finding.kind, text[finding.start : finding.end]) == ("token_assignment", TOKEN)


@pytest.mark.parametrize(
    "text",
    [f"next_page_token: {TOKEN}", f"eos_token={TOKEN}", f"max_tokens={TOKEN}", "prompt_tokens: 1234567890123456789",
     "GITHUB_TOKEN=$(gh auth token)", "ACCESS_TOKEN = os.environ['ACCESS_TOKEN']"],
)  # fmt: skip
def test_counts_tokenizer_and_page_tokens_and_variables_are_none(text: str) -> None:
    assert kinds(text) == []


def test_a_url_password_without_a_user() -> None:
    text = "REDIS_URL=redis://:Zq7vB2xLm9pQr4Tt@cache.internal:6379/0"
    (finding,) = SCANNER.find(text)
    assert (finding.kind, text[finding.start : finding.end]) == ("url_password", "Zq7vB2xLm9pQr4Tt")
    assert kinds("redis://:password@localhost:6379/0") == []  # the docs' example


def test_a_value_on_the_next_line_is_not_the_names() -> None:
    """Every rule reads one line (a stream judges its recent text line by line; found by its
    random streams: `GITHUB_TOKEN=` at a line's end took the IBAN on the next line as its value)."""
    assert "token_assignment" not in kinds("GITHUB_TOKEN=\nGB82WEST12345698765432 ")
