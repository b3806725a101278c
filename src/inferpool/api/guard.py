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
      - {type: PII, action: Redact, piiTypes: [Email, CreditCard]}
      - {type: Secrets, action: Block}
      - {type: PromptInjection, action: Block, stages: [Prompt]}
      - {type: DenyList, action: Block, terms: [project-x]}
      webhook: {url: "http://127.0.0.1:9500/screen", timeoutMs: 500, failurePolicy: FailClosed}
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from inferpool.api.common import Group, Model, ObjectName, Resource

CheckType = Literal["PII", "Secrets", "PromptInjection", "DenyList"]
ActionName = Literal["Block", "Redact", "Log"]
StageName = Literal["Prompt", "Response"]
PIIType = Literal["Email", "Phone", "CreditCard", "SSN", "IBAN"]


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

    @model_validator(mode="after")
    def _fields_fit_type(self) -> GuardCheck:
        if self.pii_types and self.type != "PII":
            raise ValueError("piiTypes is only valid for type PII")
        if self.type == "DenyList" and not self.terms:
            raise ValueError("a DenyList check needs at least one term")
        if self.terms and self.type != "DenyList":
            raise ValueError("terms is only valid for type DenyList")
        return self


class GuardWebhook(Model):
    url: Annotated[str, Field(pattern=r"^https?://")]
    timeout_ms: Annotated[int, Field(ge=1, le=60_000)] = 1000
    failure_policy: Literal["FailOpen", "FailClosed"] = "FailClosed"
    stages: Annotated[list[StageName], Field(min_length=1)] = Field(default_factory=_prompt)


class GuardPolicySpec(Model):
    target_refs: Annotated[list[PolicyTargetRef], Field(min_length=1, max_length=16)]
    models: list[ObjectName] = Field(default_factory=list)
    checks: list[GuardCheck] = Field(default_factory=list)
    webhook: GuardWebhook | None = None
    stream_window_chars: Annotated[int, Field(ge=64, le=1_000_000)] = 4096


class GuardPolicy(Resource):
    api_version: Literal["inferpool.io/v1alpha1"]
    kind: Literal["GuardPolicy"]
    spec: GuardPolicySpec
