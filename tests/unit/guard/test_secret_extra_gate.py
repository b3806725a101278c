"""SecretScanner.find skips its extra patterns (EXTRA_PATTERNS) when the pre-scan found none of
EXTRA_HINT_WORDS. Each pattern must still run whenever one of its own hints is there, and
alone among the hints: a word left out of the gate would drop that pattern's findings."""

from __future__ import annotations

import pytest
from test_prefixed_tokens import TOKENS  # pytest puts this folder on sys.path

from inferpool.guard.credentials import EXTRA_HINT_WORDS, EXTRA_HINTS, PREFIXED_TOKENS, SecretScanner

SCANNER = SecretScanner()
# One secret per extra pattern, in a line that holds every hint of that pattern.
EXAMPLES = {
    "google_api_key": "aiza key AIza" + "B" * 35,
    "openai_key": "sk- sk-proj-" + "a1B2" * 6,
    "anthropic_key": "sk-ant- sk-ant-" + "a1B2" * 6,
    "huggingface_token": "hf_ hf_" + "a1B2c3" * 6,
    "inferpool_key": "ipk- ipk-" + "a1B2" * 11,
    "telegram_bot_token": ":aa 123456789:AA" + "b" * 33,
    "discord_webhook": "/api/webhooks/ https://discord.com/api/webhooks/351197181478158069/" + "fc8z-Rx_" * 9,
    "teams_webhook": "webhook.office.com office.com/webhook office365.com/webhook "
    "https://acme.webhook.office.com/webhookb2/3f2504e0-4f89-11d3-9a0c-0305e82c3301@9a1b2c3d-4e5f-6789-abcd-ef0123456789"
    "/IncomingWebhook/0123456789abcdef0123456789abcdef/3f2504e0-4f89-11d3-9a0c-0305e82c3301",
    "npm_token": "npm_ npm_" + "a1B2c3" * 6,
    "github_fine_grained_token": "github_pat_ github_pat_" + "a1B2c3_" * 11,
    "command_line_password": "mysql mariadb sshpass: mysql -u root -phunter22",
    **{kind: " ".join(hints) + " " + TOKENS[kind] for kind, (hints, _pattern) in PREFIXED_TOKENS.items()},
}


def test_every_extra_hint_opens_the_gate() -> None:
    assert set(EXAMPLES) == set(EXTRA_HINTS)
    assert {h for hs in EXTRA_HINTS.values() for h in hs} <= EXTRA_HINT_WORDS


@pytest.mark.parametrize(("kind", "hint"), [(k, h) for k, hs in EXTRA_HINTS.items() for h in hs])
def test_a_pattern_runs_with_any_one_of_its_hints(kind: str, hint: str) -> None:
    text = EXAMPLES[kind]
    assert hint in text.lower()
    found = SCANNER.find(text, hints={hint: [text.lower().find(hint)]}, tokens=())
    assert kind in {f.kind for f in found}


def test_without_an_extra_hint_no_extra_pattern_runs() -> None:
    text = EXAMPLES["google_api_key"]
    assert not [f for f in SCANNER.find(text, hints={}, tokens=()) if f.kind in EXTRA_HINTS]
