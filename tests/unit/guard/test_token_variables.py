"""Opaque tokens in token-named variables, fields and query parameters, and URL passwords with no
user name (docs/security.md). The held-out set (`tests/data/guard/heldout/token-variables.jsonl`:
20 tokens in `.env` lines and exports, JSON and YAML fields, Python assignments, query
parameters, a `gitlab-runner --token` and Redis URLs without a user; 20 benign texts with token
counts, tokenizer settings, variables, templates, placeholders and a page token) was written and
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
