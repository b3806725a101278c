"""A secret a detect-secrets plugin finds is found whole, so that a redaction removes all of it.

detect-secrets reports what its patterns' `findall` returns: for the GitHub and GitLab plugins,
whose one group is the token's prefix (`(ghp|gho|...)_...`), that was "ghp" or "glpat", and a
redacting policy then printed `[REDACTED:github_token]_R4nd0m...`, the token itself. Every
prefix the GitLab plugin's patterns know is a pre-scan hint too (six were none, so those tokens
never reached the plugin), and a value a plugin reports twice in a line is found twice. The JWT
plugin's pattern ends lazily (its matches stopped before the signature) and Artifactory's holds
the delimiters around the token. The private-key plugin finds a key's BEGIN line's label only;
the key is the block it opens.
"""

from __future__ import annotations

import pytest

from inferpool.guard import Screener, Stage
from inferpool.guard.credentials import SecretScanner
from inferpool.guard.policy import Action, CheckConfig, GuardConfig

SCANNER = SecretScanner()
REDACTING = Screener(GuardConfig("redact", (CheckConfig("secrets", Action.REDACT),)))

BODY = "R4nd0mT0k3nV4lu3AbcdefghijKLMNOP0123456789qrstUVWXyz_-0123456789abcdefghij"

TOKENS = [
    *(("github_token", f"{prefix}_{BODY[:36]}") for prefix in ("ghp", "gho", "ghu", "ghs", "ghr")),
    *(("gitlab_token", f"{prefix}-{BODY[:26]}") for prefix in ("glpat", "gldt", "glft", "glsoat", "glrt")),
    ("gitlab_token", f"GR1348941{BODY[:24]}"),
    ("gitlab_token", f"glcbt-{BODY[:24]}"),
    ("gitlab_token", f"glcbt-64_{BODY[:24]}"),
    ("gitlab_token", f"glimt-{BODY[:25]}"),
    ("gitlab_token", f"glptt-{BODY[:40]}"),
    ("gitlab_token", f"glagent-{BODY[:50]}"),
    ("gitlab_token", f"gloas-{BODY[:64]}"),
]


@pytest.mark.parametrize(("kind", "token"), TOKENS, ids=[t[:9] for _k, t in TOKENS])
@pytest.mark.parametrize(
    "template",
    ["my token is {} , keep it safe", "git clone https://{}@example.com/acme/infra.git", "{}"],
)
def test_the_finding_spans_the_whole_token(kind: str, token: str, template: str) -> None:
    text = template.format(token)
    found = [(f.kind, text[f.start : f.end]) for f in SCANNER.find(text)]
    assert (kind, token) in found, found
    verdict = REDACTING.screen(text, Stage.PROMPT)
    assert verdict.text is not None and token[8:] not in verdict.text  # nothing of it is left


def test_a_value_reported_twice_in_a_line_is_found_at_both_places() -> None:
    key = "AKIAZ7Q2L4M9P3R8T6VW"
    text = f"export AWS_ACCESS_KEY_ID={key}; echo {key}"
    spans = sorted((f.start, f.end) for f in SCANNER.find(text) if f.kind == "aws_access_key")
    assert spans == [(text.index(key), text.index(key) + 20), (text.rindex(key), len(text))]
    verdict = REDACTING.screen(text, Stage.PROMPT)
    assert verdict.text is not None and key not in verdict.text


JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0"
    ".dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
)
ARTIFACTORY = "AKCp8jQ8Xa9bY7cZ6dE5fG4hJ3kL2mN1pQ0rS9tU8vW7xY6zA5bC4dE3fG2hJ1kL0mN9pQ8rS7tU6"


@pytest.mark.parametrize(
    ("kind", "text", "token"),
    [
        ("jwt", f"session cookie {JWT} expired", JWT),
        ("jwt", f'{{"id_token": "{JWT}"}}', JWT),
        ("artifactory", f"artifactory token={ARTIFACTORY} in CI", ARTIFACTORY),
        ("artifactory", f'ARTIFACTORY_API_KEY: "{ARTIFACTORY}"', ARTIFACTORY),
    ],
)
def test_a_jwt_is_found_with_its_signature_and_a_token_without_the_delimiters_around(
    kind: str, text: str, token: str
) -> None:
    found = [(f.kind, text[f.start : f.end]) for f in SCANNER.find(text)]
    assert (kind, token) in found, found
    verdict = REDACTING.screen(text, Stage.PROMPT)
    assert verdict.text == text.replace(token, f"[REDACTED:{kind}]")


LINE_A = "MIIEowIBAAKCAQEA1c7+9z5Pad7OejecsQ0bu3aozN3tihPmljnnudb9G3HECdnH"
LINE_B = "lWu2/a1gB9JW5TBQ+AVpum9Okx7KfqkfBKL9mcHgSVYFnMnD+cMWnBXLQ4M8kzfO"
PEM = f"-----BEGIN RSA PRIVATE KEY-----\n{LINE_A}\n{LINE_B}\n-----END RSA PRIVATE KEY-----"
ENCRYPTED_PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n"
    f"DEK-Info: AES-128-CBC,3F17F5316E2BAC89B5E1F4D7A5A3C1E2\n\n{LINE_A}\n{LINE_B}\n-----END RSA PRIVATE KEY-----"
)
PUTTY = (
    f"PuTTY-User-Key-File-2: ssh-rsa\nEncryption: none\nComment: rsa-key\nPublic-Lines: 1\n{LINE_A}\n"
    f"Private-Lines: 2\n{LINE_A}\n{LINE_B}\nPrivate-MAC: 4f2c0b1e5d7a9c3b8e6f1a2d4c5b7e9f0a1b2c3d"
)
CUT_OFF = f"-----BEGIN OPENSSH PRIVATE KEY-----\n{LINE_A}\n{LINE_B}"
ESCAPED = PEM.replace("\n", "\\n")  # in a JSON string (a service account's key file)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (f"here is my key:\n{PEM}\nthanks", PEM),
        (ENCRYPTED_PEM, ENCRYPTED_PEM),
        (f"{PUTTY}\nis this format right?", PUTTY),
        (f"cut off:\n{CUT_OFF}\nthanks, what now?", CUT_OFF),
        (f'{{"private_key": "{ESCAPED}\\n", "client_email": "x@example.iam"}}', ESCAPED),
    ],
    ids=["pem", "encrypted-pem", "putty", "cut-off", "json-escaped"],
)
def test_a_private_key_is_the_block_its_begin_line_opens(text: str, key: str) -> None:
    (finding,) = [f for f in SCANNER.find(text) if f.kind == "private_key"]
    assert text[finding.start : finding.end] == key
    verdict = REDACTING.screen(text, Stage.PROMPT)
    assert verdict.text is not None and LINE_B not in verdict.text
