"""GuardPolicy (inferpool.io/v1alpha1): prompt and response screening attached to a Gateway, an
HTTPRoute or an InferencePool.

It plays the part GCPTrafficExtension + Model Armor play on GKE: the policy names its
targets, and every request through them is screened. Documented in docs/security.md.

    apiVersion: inferpool.io/v1alpha1
    kind: GuardPolicy
    metadata: {name: screening}
    spec:
      targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: inference-gateway}]
      models: [food-review]            # optional: only these incoming model names
      checks:
      - {type: PII, action: Redact, piiTypes: [Email, CreditCard, Phone], phoneRegions: [US, GB]}
      - {type: Secrets, action: Block, base64EntropyLimit: 4.5, hexEntropyLimit: 3.0}
      - {type: PromptInjection, action: Block, stages: [Prompt], threshold: 0.5}
      - {type: DenyList, action: Block, terms: [project-x]}
      webhook: {url: "http://127.0.0.1:9500/screen", timeoutMs: 500, failurePolicy: FailClosed}
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Literal, NoReturn
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from inferpool.api.common import Group, Model, ObjectName, Resource
from inferpool.api.gateway import HTTPRoute

CheckType = Literal["PII", "Secrets", "PromptInjection", "DenyList"]
ActionName = Literal["Block", "Redact", "Log"]
StageName = Literal["Prompt", "Response"]
PIIType = Literal[
    "Email",
    "Phone",
    "CreditCard",
    "SSN",
    "IBAN",
    "Passport",  # Dutch passports and ID cards (the only ones python-stdnum validates), near a keyword
    "InAadhaar",  # Verhoeff check; needs a keyword near it
    "BrCPF",  # needs a keyword near it
    "CnResidentID",
    "GbNINO",  # format and HMRC prefix rules only; needs a keyword near it
    "GbNHS",  # needs a keyword near it
    "EsDNI",  # needs a keyword near it
    "EsNIE",  # the foreigner's identity number; needs a keyword near it
    "ItCodiceFiscale",
    "FrNIR",
    "DeTaxID",  # needs a keyword near it
    "NlBSN",  # needs a keyword near it
    "PlPESEL",  # needs a keyword near it
    "InPAN",  # India's income-tax number (format only, in capitals); needs a keyword near it
]


def _both() -> list[StageName]:
    return ["Prompt", "Response"]


def _prompt() -> list[StageName]:
    return ["Prompt"]


POOL_GROUPS = ("inference.networking.x-k8s.io", "inference.networking.k8s.io")


class PolicyTargetRef(Model):
    group: Group = "gateway.networking.k8s.io"
    kind: Literal["Gateway", "HTTPRoute", "InferencePool"]
    name: ObjectName

    @model_validator(mode="after")
    def _group_fits_kind(self) -> PolicyTargetRef:
        if self.kind == "InferencePool" and self.group not in POOL_GROUPS:
            raise ValueError(f"an InferencePool target needs group {' or '.join(POOL_GROUPS)}")
        if self.kind != "InferencePool" and self.group != "gateway.networking.k8s.io":
            raise ValueError(f"a {self.kind} target needs group gateway.networking.k8s.io")
        return self


class GuardCheck(Model):
    type: CheckType
    action: ActionName = "Block"
    stages: Annotated[list[StageName], Field(min_length=1)] = Field(default_factory=_both)
    pii_types: list[PIIType] = Field(default_factory=list)
    terms: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(default_factory=list)
    # PII: regions whose national phone formats are read (numbers written with +CC always are).
    phone_regions: list[str] | None = None
    # Secrets: entropy (bits per character) above which a quoted string counts as a key.
    base64_entropy_limit: Annotated[float, Field(ge=0.0, le=8.0)] | None = None
    hex_entropy_limit: Annotated[float, Field(ge=0.0, le=8.0)] | None = None
    # PromptInjection: the score (0-1] from which the check acts.
    threshold: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    # PromptInjection: the score (0-1] from which its reading of tool definitions for tool
    # poisoning acts (default: `threshold`; 1 turns that reading off, as no score reaches it).
    tool_threshold: Annotated[float, Field(gt=0.0, le=1.0)] | None = None

    @field_validator("phone_regions")
    @classmethod
    def _known_regions(cls, regions: list[str] | None) -> list[str] | None:
        if regions is None:
            return None
        if not regions:
            raise ValueError("phoneRegions needs at least one region when given")
        import phonenumbers  # here: only a policy naming regions needs it (≈35 ms of every start)

        unknown = [r for r in regions if r.upper() not in phonenumbers.SUPPORTED_REGIONS]
        if unknown:
            raise ValueError(
                f"unknown phone regions {unknown}: use ISO 3166-1 alpha-2 codes such as US, GB, IN"
            )
        return [r.upper() for r in regions]

    @model_validator(mode="after")
    def _fields_fit_type(self) -> GuardCheck:
        if self.pii_types and self.type != "PII":
            raise ValueError("piiTypes is only valid for type PII")
        if self.phone_regions is not None and self.type != "PII":
            raise ValueError("phoneRegions is only valid for type PII")
        if (
            self.base64_entropy_limit is not None or self.hex_entropy_limit is not None
        ) and self.type != "Secrets":
            raise ValueError("base64EntropyLimit and hexEntropyLimit are only valid for type Secrets")
        if self.threshold is not None and self.type != "PromptInjection":
            raise ValueError("threshold is only valid for type PromptInjection")
        if self.tool_threshold is not None and self.type != "PromptInjection":
            raise ValueError("toolThreshold is only valid for type PromptInjection")
        if self.type == "DenyList" and not self.terms:
            raise ValueError("a DenyList check needs at least one term")
        if self.terms and self.type != "DenyList":
            raise ValueError("terms is only valid for type DenyList")
        return self


_HOST_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*\.?$", re.I)


def _check_webhook_url(url: str) -> str:
    """The URL as given, or ValueError saying in words what is wrong with it (a URL that cannot
    be reached would block every prompt under FailClosed, at run time)."""
    if any(c.isspace() or not c.isprintable() for c in url):
        return _bad_url(url, "must not contain spaces or control characters (percent-encode them)")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        return _bad_url(url, "must start with http:// or https://")
    host = parts.hostname
    if not host:
        return _bad_url(url, "has no host (write e.g. http://127.0.0.1:9500/screen)")
    try:
        port = parts.port  # ValueError: not a number, or above 65535
    except ValueError:
        port = 0
    if port == 0:
        given = parts.netloc.rpartition("]")[2].rpartition(":")[2]  # after an IPv6 literal's ]
        return _bad_url(url, f"has an invalid port {given!r} (a number from 1 to 65535)")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOST_NAME.match(host):
            return _bad_url(url, f"has an invalid host {host!r}")
    return url


def _bad_url(url: str, problem: str) -> NoReturn:
    raise ValueError(f"webhook URL {url!r} {problem}")


class GuardWebhook(Model):
    url: Annotated[str, AfterValidator(_check_webhook_url)]
    timeout_ms: Annotated[int, Field(ge=1, le=60_000)] = 1000
    failure_policy: Literal["FailOpen", "FailClosed"] = "FailClosed"
    stages: Annotated[list[StageName], Field(min_length=1)] = Field(default_factory=_prompt)
    # Streamed answers: asked each time this many more characters have streamed, and at the end
    stream_step_chars: Annotated[int, Field(ge=1, le=1_000_000)] = 256


class GuardPolicySpec(Model):
    target_refs: Annotated[list[PolicyTargetRef], Field(min_length=1, max_length=16)]
    models: list[ObjectName] = Field(default_factory=list)
    checks: list[GuardCheck] = Field(default_factory=list)
    webhook: GuardWebhook | None = None
    stream_window_chars: Annotated[int, Field(ge=64, le=1_000_000)] = 4096
    # Streamed answers: how many characters of screened text are kept from the client behind
    # the word being streamed (0: none, events pass as they come).
    stream_hold_back_chars: Annotated[int, Field(ge=0, le=1_000_000)] = 0

    @field_validator("stream_hold_back_chars")
    @classmethod
    def _hold_back_fits_window(cls, hold_back: int, info: ValidationInfo) -> int:
        # (a field validator, so the error names this field's line; the window is read first)
        window = info.data.get("stream_window_chars")
        if window is not None and hold_back >= window:
            raise ValueError(
                f"streamHoldBackChars ({hold_back}) must be less than streamWindowChars ({window}): "
                "held text is screened within the window"
            )
        return hold_back


# (kind, "namespace/name"): an object a policy attaches to.
Attachment = tuple[str, str]


class GuardPolicy(Resource):
    api_version: Literal["inferpool.io/v1alpha1"]
    kind: Literal["GuardPolicy"]
    spec: GuardPolicySpec

    def attachments(self) -> list[Attachment]:
        """Its targets; a targetRef has no namespace, so each is in the policy's own."""
        return [(ref.kind, f"{self.namespace}/{ref.name}") for ref in self.spec.target_refs]


# -- which pools a policy reaches ----------------------------------------------------
# Here, below both users, so `inferpool validate` and the data planes (guard/attach.py)
# answer "does this policy screen that pool?" with the same code.


@dataclass(frozen=True)
class PoolRoute:
    """An HTTPRoute that sends traffic to a pool, and the Gateways it attaches to."""

    route: str  # namespace/name
    gateways: tuple[str, ...]  # namespace/name


def pool_routes(routes: Iterable[HTTPRoute]) -> dict[str, list[PoolRoute]]:
    """pool key -> the HTTPRoutes (file order) with an InferencePool backendRef to it."""
    out: dict[str, list[PoolRoute]] = {}
    for route in routes:
        gateways = tuple(f"{p.namespace or route.namespace}/{p.name}" for p in route.spec.parent_refs)
        pools = {
            f"{b.namespace or route.namespace}/{b.name}"
            for rule in route.spec.rules
            for b in rule.backend_refs
            if b.kind == "InferencePool"
        }
        for pool in sorted(pools):
            out.setdefault(pool, []).append(PoolRoute(f"{route.namespace}/{route.name}", gateways))
    return out


def pool_attachments(pool: str, routes: Mapping[str, Sequence[PoolRoute]]) -> list[Attachment]:
    """Where a policy attaches to screen `pool`'s traffic, most specific first: the pool, the
    HTTPRoutes that send traffic to it (file order), then their Gateways."""
    leading = routes.get(pool, ())
    points: list[Attachment] = [("InferencePool", pool)]
    points += [("HTTPRoute", r.route) for r in leading]
    points += [("Gateway", gateway) for r in leading for gateway in r.gateways]
    return list(dict.fromkeys(points))
