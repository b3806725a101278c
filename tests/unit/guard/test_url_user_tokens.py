"""A token written as a URL's user name is a secret (`git clone https://<token>@github.com/...`).

The held-out set (`tests/data/guard/heldout/url-user-tokens.jsonl`, committed before the rule:
0/20 tokens covered by a finding, 0/20 benign URLs flagged): 20 tokens as user names (GitHub's
hex OAuth tokens, Azure DevOps and Bitbucket tokens, package indexes and registries; no
password, an empty one or GitHub's dummy `x-oauth-basic`) and 20 user names that are no secret
(`git@`, `jsmith@`, build bots, placeholders, variables). With the rule: 19/20 and 0/20; the
miss is a 26-character token with one digit, whose letters and digits alternate only twice.
"""

from __future__ import annotations

import pytest
from heldout import kinds_and_values, values_covered  # pytest puts this folder on sys.path

from inferpool.guard import Screener
from inferpool.guard.policy import default_config

SCREENER = Screener(default_config())
TOKEN = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b"


def test_the_held_out_tokens_are_covered_and_the_user_names_are_not_flagged() -> None:
    assert values_covered("url-user-tokens", "secrets", SCREENER) == (19, 0)


@pytest.mark.parametrize("password", ["", ":", ":x-oauth-basic", ":x-oauth-token", ":x"])
def test_the_token_is_the_secret_not_the_dummy_password(password: str) -> None:
    text = f"git clone https://{TOKEN}{password}@github.com/acme/infra.git"
    assert kinds_and_values(SCREENER, text) == [("url_user_token", TOKEN)]


@pytest.mark.parametrize(
    "text",
    [
        "git clone https://jonathanrichardson1985@bitbucket.org/acme/app.git",  # a name and a year
        "https://build-bot-2024-eu-west-1@dev.azure.com/acme/_git/infra",  # words and numbers
        "git clone https://YOUR_PERSONAL_ACCESS_TOKEN@github.com/org/repo.git",
        "https://release-automation-bot@github.com/acme/api.git",
        # a Sentry DSN's key is public (Sentry's docs put it in browser code)
        "Sentry.init({ dsn: 'https://5f2c9a1be04d4b7e8a6c3d21f0e9b7a4@o450123.ingest.sentry.io/5512345' })",
        "SENTRY_DSN=https://5f2c9a1be04d4b7e8a6c3d21f0e9b7a4@o450123.ingest.us.sentry.io/5512345",
    ],
)
def test_a_long_user_name_made_of_words_or_a_public_key_is_no_token(text: str) -> None:
    assert kinds_and_values(SCREENER, text) == []


def test_a_real_password_beside_the_user_is_still_the_secret() -> None:
    text = "postgres://app_user:Xq7!9vLm2#pR@db.example.com:5432/app"
    assert [kind for kind, _value in kinds_and_values(SCREENER, text)] == ["url_password"]
