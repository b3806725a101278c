"""Signed URLs and shared-access keys (docs/security.md). The held-out set
(`tests/data/guard/heldout/signed-urls.jsonl`: 20 Azure SAS URLs and connection strings,
Service Bus, Event Hubs and IoT Hub keys, GCS V4 and S3 presigned URLs and a CloudFront
signature; 20 benign texts with placeholders, variables, redacted values, public URLs, prose
about signatures and the Azurite emulator's documented key) was written and committed before the
rules: the secrets check found 1/20 and flagged 1/20 before, 20/20 and 0/20 after. The benign text
flagged before was the Azurite key; treating vendors' published emulator keys as no secret was
added after that was seen."""

from __future__ import annotations

import pytest
from heldout import found_by_label  # pytest puts this folder on sys.path

from inferpool.guard import Screener
from inferpool.guard.credentials import SecretScanner
from inferpool.guard.policy import default_config

SCANNER = SecretScanner()
SIG = "Zq7vB2xLm9pQr4Tt8Wn3kL%2BaBcDeFgHiJkLmNoP%3D"
HEX64 = "4f3c2b1a09e8d7c6b5a4f3e2d1c0b9a84f3c2b1a09e8d7c6b5a4f3e2d1c0b9a8"


def test_the_held_out_set() -> None:
    assert found_by_label("signed-urls", "secrets", Screener(default_config())) == {
        "harmful": 20,
        "benign": 0,
    }


@pytest.mark.parametrize(
    ("text", "value", "kind"),
    [
        (f"https://a.blob.core.windows.net/c/f?sv=2022-11-02&sp=r&se=2026-12-31&sig={SIG}", SIG, "signed_url"),
        (f"https://s.s3.amazonaws.com/k?X-Amz-Expires=900&X-Amz-Signature={HEX64}", HEX64, "signed_url"),
        (f"https://storage.googleapis.com/b/o?X-Goog-Expires=900&X-Goog-Signature={HEX64}", HEX64, "signed_url"),
        ("Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;"
         "SharedAccessKey=Zq7vB2xLm9pQr4Tt8Wn3kL+aBcDeFgHiJkLmNoPqRsT0uVw=", "Zq7vB2xLm9pQr4Tt8Wn3kL+aBcDeFgHiJkLmNoPqRsT0uVw=",
         "shared_access_key"),
    ],
)  # fmt: skip
def test_a_signature_or_key_is_found_as_its_value(text: str, value: str, kind: str) -> None:
    (finding,) = SCANNER.find(text)
    assert (finding.kind, text[finding.start : finding.end]) == (kind, value)


@pytest.mark.parametrize(
    "text",
    ["https://a.blob.core.windows.net/c?sv=2022-11-02&sig=<signature>", "https://a.blob.core.windows.net/c?sig=REDACTED",
     "https://example.com/search?q=sig&page=2", "https://s.s3.amazonaws.com/k?X-Amz-Signature=...",
     "SharedAccessKey=<your-key>", "?sig=1 turns the signature panel on"],
)  # fmt: skip
def test_placeholders_and_short_values_are_none(text: str) -> None:
    assert SCANNER.find(text) == []


def test_a_published_emulator_key_is_no_secret() -> None:
    azurite = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
    assert (
        SCANNER.find(f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={azurite}") == []
    )
