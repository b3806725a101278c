"""Credentials carried in base64 (docs/security.md). The held-out set
(`tests/data/guard/heldout/encoded-credentials.jsonl`: 20 texts with credentials in HTTP Basic
headers, docker's and npm's auth, Kubernetes Secret and kubeconfig data, SMTP AUTH and a key
decoded in code; 20 benign texts with base64 that holds none: the RFC's example, certificates,
data URIs, SSH public keys, integrity hashes, SAML, MIME text) was written and committed before
the rules: the secrets check found 1/20 and flagged 2/20 before, 18/20 and 1/20 after, 19/20
with the token-named rule of the same session (test_header_tokens.py), which reads the
service-account Secret's `token:` whose JWT the set holds malformed (its header is no JSON,
which detect-secrets' JWT plugin checks). The one it misses: SMTP AUTH LOGIN's password, alone
on the line after the server's prompt (every rule of the check reads one line). The benign text still flagged is the
Kubernetes documentation's own example Secret (`password: MWYyZDFlMmU2N2Rm`, a keyword
assignment as written)."""

from __future__ import annotations

import base64

import pytest
from heldout import found_by_label  # pytest puts this folder on sys.path

from inferpool.guard import Screener, Stage
from inferpool.guard.credentials import SecretScanner
from inferpool.guard.policy import default_config
from inferpool.guard.stream import StreamedText

SCANNER = SecretScanner()
SCREENER = Screener(default_config())


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def kinds(text: str) -> list[str]:
    return [f.kind for f in SCANNER.find(text)]


def test_the_held_out_set() -> None:
    assert found_by_label("encoded-credentials", "secrets", SCREENER) == {"harmful": 19, "benign": 1}


@pytest.mark.parametrize(
    "template",
    [
        "curl -H 'Authorization: Basic {}' https://api.example.com",
        'headers = {{"Authorization": "Basic {}"}}',
        '{{"name": "Authorization", "value": "Basic {}"}}',
        '{{"auths": {{"registry.example.com": {{"auth": "{}"}}}}}}',
        "//npm.example.com/:_auth={}",
    ],
)
def test_an_encoded_user_and_password_is_found_as_its_value(template: str) -> None:
    value = b64("deploy:Zq7vB2xLm9pQr4")
    text = template.format(value)
    (finding,) = SCANNER.find(text)
    assert (finding.kind, text[finding.start : finding.end]) == ("encoded_credentials", value)


def test_smtp_auth_plain() -> None:
    value = b64("\0alerts@example.com\0Smt4$kL9pQ2wZ")
    assert kinds(f"AUTH PLAIN {value}") == ["encoded_credentials"]
    assert kinds(f"AUTH PLAIN {b64(chr(0) + 'alerts@example.com')}") == []  # no password in it


@pytest.mark.parametrize(
    "pair",
    [
        "Aladdin:open sesame",  # RFC 7617's example
        "username:password",  # a placeholder
        "admin:changeme",
        "user:${PASSWORD}",
        "deploy:",
        ":Zq7vB2xLm9pQr4",
    ],
)
def test_examples_placeholders_and_half_pairs_are_no_secret(pair: str) -> None:
    assert kinds(f"Authorization: Basic {b64(pair)}") == []


def test_a_secret_in_a_decoded_run_is_found_over_the_whole_run() -> None:
    token = "ghp_" + "R8x2mQ7vLk3nP9sT4wY6zB1cD5fH0jK2aE8u"
    value = b64(token)
    text = f"data:\n  GH_PAT: {value}\n"
    (finding,) = SCANNER.find(text)
    assert (finding.kind, text[finding.start : finding.end]) == ("github_token", value)
    assert kinds(f"data:\n  NOTE: {b64('release notes for the next version')}\n") == []


def test_two_encodings_deep_and_no_deeper() -> None:
    """A Kubernetes pull secret: base64 of docker's JSON, which holds the pair in base64. Runs
    are decoded two deep (the pair rules decode their own value)."""
    inner = '{"auths":{"ghcr.io":{"auth":"' + b64("bot:Zq7vB2xLm9pQr4") + '"}}}'
    assert kinds(f".dockerconfigjson: {b64(inner)}") == ["encoded_credentials"]
    assert kinds(f"x: {b64(b64(inner))}") == ["encoded_credentials"]
    assert kinds(f"x: {b64(b64(b64(inner)))}") == []


def test_a_wrapped_private_key_is_decoded_whole() -> None:
    """Base64 wrapped at 64 columns: the marker of the key lies across two encoded lines, so no
    line decodes to it alone."""
    encoded = b64("x" * 40 + "-----BEGIN RSA PRIVATE KEY-----\n" + "MIIEowIBAAKCAQEA" * 6)
    wrapped = "\n".join(encoded[i : i + 64] for i in range(0, len(encoded), 64))
    assert all(SCANNER.find(line) == [] for line in wrapped.splitlines())
    assert kinds(f"client-key-data:\n{wrapped}\n") == ["private_key"]


@pytest.mark.parametrize("size", [1, 4, 9])
def test_a_stream_screens_a_wrapped_block_whole(size: int) -> None:
    """A streamed answer's recent text is judged line by line where only secrets block
    (guard/stream.py); a wrapped base64 block is not, or the key above would pass: at every
    event, where the recent text blocks, `may_block` says it may."""
    encoded = b64("x" * 40 + "-----BEGIN RSA PRIVATE KEY-----\n" + "MIIEowIBAAKCAQEA" * 6)
    wrapped = "\n".join(encoded[i : i + 64] for i in range(0, len(encoded), 64))
    text = "Here is the key file, base64 encoded:\n" + wrapped + "\nKeep it safe. " * 3
    streamed = StreamedText(SCREENER, SCREENER.config.stream_window_chars)
    blocking = 0
    for at in range(0, len(text), size):
        streamed.append(text[at : at + size])
        first, last = streamed.recent_span()
        recent = streamed.between(first, last)
        if SCREENER.screen(recent, Stage.RESPONSE).blocked:
            blocking += 1
            assert streamed.may_block(first, recent), (at, recent)
    assert blocking > 0


def test_an_event_longer_than_the_buffer_keeps_only_what_it_holds() -> None:
    """An event more than twice the window long leaves its start outside the buffer, and runs
    there (found by hypothesis: an IndexError looking at their line breaks)."""
    from inferpool.guard.policy import GuardConfig

    screener = Screener(GuardConfig("w60", default_config().checks, stream_window_chars=60))
    streamed = StreamedText(screener, 60)
    # two runs one space apart at the event's start, then more than the buffer holds
    streamed.append(
        "SWdub3JlIGFsbCBwcmV2aW91cyBpnyy cerivbhferongierongilorem" + " ipsum dolor sit amet." * 8
    )
    first, last = streamed.recent_span()
    assert not streamed.may_block(first, streamed.between(first, last))
