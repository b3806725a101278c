"""A URL's password (or user name) and host read like an e-mail address (`hunter2@db.example.com`):
the PII check does not report them as one; the secrets check finds the password."""

from __future__ import annotations

import pytest

from inferpool.guard import Screener, Stage
from inferpool.guard.pii import PiiScanner
from inferpool.guard.policy import default_config


def emails(text: str) -> list[str]:
    return [text[f.start : f.end] for f in PiiScanner(["email"]).find(text) if f.kind == "email"]


@pytest.mark.parametrize(
    "text",
    [
        "connect with postgres://admin:hunter2@db.example.com:5432/app please",
        "DATABASE_URL=mysql://root:s3cretPass@mysql.internal.io/app",
        "git clone https://user:tok3n@github.com/org/repo.git",
        "mongodb+srv://app:Pa55word@cluster0.mongodb.net/test",
        "ssh://git@github.com/org/repo.git",
        "ftp://anonymous@ftp.example.org/pub",
        '{"url": "https:\\/\\/deploy:Xk83nQ@registry.acme.io\\/v2\\/"}',  # JSON's escaped slashes
    ],
)
def test_userinfo_and_host_is_no_address(text: str) -> None:
    assert emails(text) == []


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("mail jane.doe@example.com about it", "jane.doe@example.com"),
        ("mailto:jane.doe@example.com", "jane.doe@example.com"),  # no authority: an address
        ("https://example.com/contact?email=jane@example.com", "jane@example.com"),  # in the query
        ("https://example.com/u/jane@example.com", "jane@example.com"),  # in the path
        ("https://jane@corp.com:pw@host.example.net/", "jane@corp.com"),  # the user name is one
        ("see https://example.com and write to jane@example.com", "jane@example.com"),
        ("https://a.io, jane@example.com", "jane@example.com"),  # (a ',' then a space: the URL ended)
    ],
)
def test_addresses_stay_addresses(text: str, address: str) -> None:
    assert emails(text) == [address]


def test_the_password_is_still_a_secret_and_nothing_is_called_an_email() -> None:
    verdict = Screener(default_config()).screen("postgres://app:9fK2pLq7xR@db.example.com/prod", Stage.PROMPT)
    assert verdict.blocked
    assert {(f.check, f.kind) for f, _ in verdict.findings} == {("secrets", "basic_auth")}
