"""A .netrc entry's password, and a password piped into a registry login's `--password-stdin`.

The held-out set (`tests/data/guard/heldout/netrc-and-stdin.jsonl`, committed before the rules:
2/20 covered, 0/20 benign flagged): ten .netrc entries (one line, or `password` on a line of its
own), ten `echo '…' | docker/podman/helm/oras/skopeo/nerdctl login --password-stdin` pipes, and
20 benign texts (variables and command substitutions piped in, `aws ecr get-login-password`,
placeholders, anonymous FTP, prose). With the rules: 20/20 and 0/20.
"""

from __future__ import annotations

import pytest
from heldout import kinds_and_values, values_covered  # pytest puts this folder on sys.path

from inferpool.guard import Screener
from inferpool.guard.policy import default_config

SCREENER = Screener(default_config())
PASSWORD = "Y-n27U%2inUzp%5D"


def test_the_held_out_passwords_are_covered_and_the_benign_texts_are_not_flagged() -> None:
    assert values_covered("netrc-and-stdin", "secrets", SCREENER) == (20, 0)


@pytest.mark.parametrize(
    ("template", "kind"),
    [
        ("machine nexus.acme.io login ci password {} account ops", "netrc_password"),
        ("machine nexus.acme.io\n  login ci\n  password {}\n", "netrc_password"),
        ("echo '{}' | docker login -u acme --password-stdin", "command_line_password"),
        (
            "printf '%s' \"{}\" | helm registry login r.acme.io --username ci --password-stdin",
            "command_line_password",
        ),
        ("cat <<< '{}' | sudo podman login quay.io -u bot --password-stdin", "command_line_password"),
    ],
)
def test_the_password_is_found_alone(template: str, kind: str) -> None:
    text = template.format(PASSWORD)
    assert (kind, PASSWORD) in kinds_and_values(SCREENER, text)


@pytest.mark.parametrize(
    "text",
    [
        "machine api.example.com login deploy password $API_TOKEN",
        "default login anonymous password anonymous@",
        "Password reset link sent\npassword reset again",
        'echo "$(pass show registry/acme)" | docker login -u acme --password-stdin',
        "echo $CR_PAT | docker login ghcr.io -u USERNAME --password-stdin",
        "aws ecr get-login-password | docker login --username AWS --password-stdin 1234.dkr.ecr.us-east-1.amazonaws.com",
        "echo 'hello' | docker run -i alpine cat",
    ],
)
def test_variables_conventions_and_prose_are_no_password(text: str) -> None:
    assert kinds_and_values(SCREENER, text) == []
