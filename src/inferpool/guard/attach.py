"""GuardPolicy manifests -> screeners, and which one applies to a request.

An HTTPRoute-level policy beats a Gateway-level one (like Gateway API policy attachment:
the more specific target wins); among equals, the first in file order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from inferpool.api.guard import GuardCheck, GuardPolicy
from inferpool.guard.policy import Action, CheckConfig, GuardConfig, HookConfig, Stage
from inferpool.guard.screen import Screener

_CHECK = {"PII": "pii", "Secrets": "secrets", "PromptInjection": "injection", "DenyList": "denylist"}
_PII = {"Email": "email", "Phone": "phone", "CreditCard": "credit_card", "SSN": "ssn", "IBAN": "iban"}


def _stages(names: Iterable[str]) -> frozenset[Stage]:
    return frozenset(Stage(n.lower()) for n in names)


def _check(c: GuardCheck) -> CheckConfig:
    return CheckConfig(
        _CHECK[c.type],
        Action(c.action.lower()),
        _stages(c.stages),
        tuple(_PII[t] for t in c.pii_types),
        tuple(c.terms),
    )


def to_config(policy: GuardPolicy) -> GuardConfig:
    spec = policy.spec
    hook = None
    if spec.webhook is not None:
        w = spec.webhook
        hook = HookConfig(w.url, w.timeout_ms / 1000, w.failure_policy == "FailOpen", _stages(w.stages))
    return GuardConfig(
        name=f"{policy.namespace}/{policy.name}",
        checks=tuple(_check(c) for c in spec.checks),
        hook=hook,
        models=tuple(spec.models),
        stream_window_chars=spec.stream_window_chars,
    )


@dataclass(frozen=True)
class _Attached:
    kind: str  # Gateway | HTTPRoute
    key: str  # namespace/name of the target
    screener: Screener


class GuardSet:
    """Every GuardPolicy of the manifests, compiled; `for_request` picks the one that applies."""

    def __init__(self, policies: Iterable[GuardPolicy] = ()) -> None:
        self._attached: list[_Attached] = []
        for policy in policies:
            screener = Screener(to_config(policy))
            for ref in policy.spec.target_refs:
                self._attached.append(_Attached(ref.kind, f"{policy.namespace}/{ref.name}", screener))

    def __bool__(self) -> bool:
        return bool(self._attached)

    def for_request(self, gateway: str, route: str | None, model: str) -> Screener | None:
        for kind, key in (("HTTPRoute", route), ("Gateway", gateway)):
            for a in self._attached:
                if a.kind == kind and a.key == key and a.screener.config.applies_to(model):
                    return a.screener
        return None
