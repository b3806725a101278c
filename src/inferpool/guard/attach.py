"""GuardPolicy manifests -> screeners, and which one applies to a request.

The more specific target wins, as in Gateway API policy attachment: a policy on the
InferencePool (the backend) beats one on the HTTPRoute, which beats one on the Gateway;
among equals, the first in file order. Both data planes ask the same set: the built-in
gateway knows the request's Gateway, route and pool; the EPP knows only its pool, so for it
the route and Gateway policies are those of the HTTPRoutes that send traffic to the pool
(the first such route in file order with a policy, when several do).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from inferpool.api import ManifestSet
from inferpool.api.guard import (
    Attachment,
    GuardCheck,
    GuardPolicy,
    PoolRoute,
    pool_attachments,
    pool_routes,
)
from inferpool.guard.policy import Action, CheckConfig, GuardConfig, HookConfig, Stage
from inferpool.guard.screen import Screener

_CHECK = {"PII": "pii", "Secrets": "secrets", "PromptInjection": "injection", "DenyList": "denylist"}
_PII = {
    "Email": "email",
    "Phone": "phone",
    "CreditCard": "credit_card",
    "SSN": "ssn",
    "IBAN": "iban",
    "Passport": "passport",
    "InAadhaar": "in_aadhaar",
    "BrCPF": "br_cpf",
    "CnResidentID": "cn_ric",
    "GbNINO": "gb_nino",
    "GbNHS": "gb_nhs",
    "EsDNI": "es_dni",
    "EsNIE": "es_nie",
    "ItCodiceFiscale": "it_codicefiscale",
    "FrNIR": "fr_nir",
    "DeTaxID": "de_idnr",
    "NlBSN": "nl_bsn",
    "PlPESEL": "pl_pesel",
    "InPAN": "in_pan",
}


def _stages(names: Iterable[str]) -> frozenset[Stage]:
    return frozenset(Stage(n.lower()) for n in names)


def _given(value: float | None, default: float) -> float:
    return default if value is None else value


def _check(c: GuardCheck) -> CheckConfig:
    defaults = CheckConfig("pii")
    return CheckConfig(
        _CHECK[c.type],
        Action(c.action.lower()),
        _stages(c.stages),
        tuple(_PII[t] for t in c.pii_types),
        tuple(c.terms),
        phone_regions=tuple(c.phone_regions) if c.phone_regions else defaults.phone_regions,
        base64_entropy_limit=_given(c.base64_entropy_limit, defaults.base64_entropy_limit),
        hex_entropy_limit=_given(c.hex_entropy_limit, defaults.hex_entropy_limit),
        threshold=_given(c.threshold, defaults.threshold),
        tool_threshold=c.tool_threshold,
    )


def to_config(policy: GuardPolicy) -> GuardConfig:
    spec = policy.spec
    hook = None
    if spec.webhook is not None:
        w = spec.webhook
        hook = HookConfig(
            w.url, w.timeout_ms / 1000, w.failure_policy == "FailOpen", _stages(w.stages), w.stream_step_chars
        )
    return GuardConfig(
        name=f"{policy.namespace}/{policy.name}",
        checks=tuple(_check(c) for c in spec.checks),
        hook=hook,
        models=tuple(spec.models),
        stream_window_chars=spec.stream_window_chars,
        stream_hold_back_chars=spec.stream_hold_back_chars,
    )


@dataclass(frozen=True)
class _Attached:
    kind: str  # Gateway | HTTPRoute | InferencePool
    key: str  # namespace/name of the target
    screener: Screener

    @property
    def policy(self) -> str:
        return self.screener.config.name  # namespace/name of the GuardPolicy


class GuardSet:
    """Every GuardPolicy of the manifests, compiled; `for_request` and `for_pool` pick the one that applies."""

    def __init__(
        self, policies: Iterable[GuardPolicy] = (), routes: Mapping[str, list[PoolRoute]] | None = None
    ) -> None:
        self._attached: list[_Attached] = []
        self._routes = dict(routes or {})
        self._screens_responses: dict[str, bool] = {}  # pool -> may_screen_responses, computed once
        # pool -> where a policy attaches to screen it: the EPP asks per request, the routes are
        # fixed for this set (a manifest change builds a new one), so each pool's is built once
        self._points: dict[str, list[Attachment]] = {}
        self.policies: list[str] = []  # namespace/name, file order
        for policy in policies:
            screener = Screener(to_config(policy))
            self.policies.append(screener.config.name)
            for kind, key in policy.attachments():
                self._attached.append(_Attached(kind, key, screener))

    @classmethod
    def from_manifests(cls, manifests: ManifestSet) -> GuardSet:
        return cls(manifests.guard_policies, pool_routes(manifests.routes))

    def __bool__(self) -> bool:
        return bool(self._attached)

    def reach(self, pools: Iterable[str]) -> dict[str, list[tuple[str, Attachment]]]:
        """pool -> the policies that can screen its traffic, each with the target it is reached
        through (the lookup `for_pool` walks; which one screens a request depends on its model)."""
        out: dict[str, list[tuple[str, Attachment]]] = {}
        for pool in pools:
            found = out.setdefault(pool, [])
            for point in self._attachments(pool):
                found += [(a.policy, point) for a in self._attached if (a.kind, a.key) == point]
        return out

    def describe(self, pools: Iterable[str]) -> tuple[str, list[str]]:
        """One log line saying which policies screen which pool, and a warning line for each
        policy that screens none of `pools` (its targets are missing or lead to no pool)."""
        reach = self.reach(pools)
        parts = []
        for pool, found in reach.items():
            via = [f"{policy} (via {kind} {key})" for policy, (kind, key) in found]
            parts.append(f"pool {pool}: {', '.join(via) if via else 'none'}")
        line = "GuardPolicies by pool: " + ("; ".join(parts) if parts else "no InferencePool loaded")
        reaching = {policy for found in reach.values() for policy, _ in found}
        warnings = []
        for policy in self.policies:
            if policy not in reaching:
                targets = ", ".join(f"{a.kind} {a.key}" for a in self._attached if a.policy == policy)
                warnings.append(
                    f"GuardPolicy {policy} applies to no InferencePool loaded here (targets {targets}), "
                    "so it screens no pool's traffic; `inferpool validate` says why"
                )
        return line, warnings

    def _first(self, kind: str, key: str | None, model: str) -> Screener | None:
        for a in self._attached:
            if a.kind == kind and a.key == key and a.screener.config.applies_to(model):
                return a.screener
        return None

    def for_request(
        self, gateway: str, route: str | None, model: str, pool: str | None = None
    ) -> Screener | None:
        """The built-in gateway's lookup: it knows the request's Gateway, route and backend pool."""
        for kind, key in (("InferencePool", pool), ("HTTPRoute", route), ("Gateway", gateway)):
            if key is not None and (found := self._first(kind, key, model)) is not None:
                return found
        return None

    def may_screen_responses(self, pool: str) -> bool:
        """Whether a policy that screens answers applies to some model of `pool` (through the pool,
        its routes or their Gateways): the EPP then reads every answer's headers, since it
        learns the model only after it had to choose."""
        found = self._screens_responses.get(pool)
        if found is None:
            keys = set(self._attachments(pool))
            found = self._screens_responses[pool] = any(
                (a.kind, a.key) in keys and a.screener.config.screens(Stage.RESPONSE) for a in self._attached
            )
        return found

    def for_pool(self, pool: str, model: str) -> Screener | None:
        """The EPP's lookup: it knows only its pool; routes and Gateways are those that lead to it."""
        if not self._attached:
            return None
        for kind, key in self._attachments(pool):
            if (found := self._first(kind, key, model)) is not None:
                return found
        return None

    def _attachments(self, pool: str) -> list[Attachment]:
        points = self._points.get(pool)
        if points is None:
            points = self._points[pool] = pool_attachments(pool, self._routes)
        return points
