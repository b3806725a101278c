"""Tenancy in the built-in gateway: who is calling (API key), what they may use, and how much.

Behind Envoy this is the gateway's own job, so it lives here and not in the request core.
A request's key is checked before anything else is read into it; its RPM/TPM limits answer
429 with the usual `x-ratelimit-*` headers, and its actual token use is charged once its
record says what the model server reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from inferpool.gateway.auth import ApiKey, KeyStore, authorize_model
from inferpool.gateway.ratelimit import RateLimiter
from inferpool.records import RequestRecord
from inferpool.request.resolve import FAIRNESS_HEADER, OBJECTIVE_HEADER


@dataclass
class Tenant:
    """One keyed request's caller, and the headers its answer carries (rate-limit state)."""

    key: ApiKey
    answer_headers: dict[str, str] = field(default_factory=dict)


class Tenancy:
    """API keys and their limits; `None` from `identify` means authentication is off."""

    def __init__(self, keys_file: str | Path | None) -> None:
        self.keys = KeyStore(Path(keys_file)) if keys_file else None
        self.limiter = RateLimiter() if self.keys is not None else None

    def identify(self, headers: dict[str, str]) -> Tenant | None:
        """The caller's key (401 if missing or unknown); strips it, the model server has no use for it."""
        if self.keys is None:
            return None
        key = self.keys.authenticate(headers)
        headers.pop("authorization", None)
        return Tenant(key)

    def admit(self, tenant: Tenant, model: str, headers: dict[str, str]) -> None:
        """Model grant (403), then the key's RPM/TPM (429), then its priority and fairness identity."""
        authorize_model(tenant.key, model)
        if self.limiter is not None:
            tenant.answer_headers.update(self.limiter.admit(tenant.key).headers())
        if tenant.key.objective is not None:
            headers[OBJECTIVE_HEADER] = tenant.key.objective
        headers[FAIRNESS_HEADER] = (
            tenant.key.name
        )  # one fairness flow per tenant; clients cannot pose as another

    def charge(self, tenant: Tenant, record: RequestRecord) -> None:
        """Charge the actual token use (the model server's usage, else the estimate)."""
        if self.limiter is None:
            return
        prompt = record.prompt_tokens if record.prompt_tokens is not None else record.prompt_tokens_estimate
        self.limiter.charge(tenant.key, int(prompt or 0) + int(record.completion_tokens or 0))
