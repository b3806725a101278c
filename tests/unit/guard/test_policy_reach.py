"""A GuardPolicy that screens nothing is said so: `validate` warns, the data planes log it.

Both answer from the same lookup (api/guard.py's pool_attachments), so they agree.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from test_policy_manifest import ROUTE  # the same HTTPRoute to the pool

from inferpool.admission import AdmissionConfig
from inferpool.api import ManifestSet, load_manifests, load_text
from inferpool.guard.attach import GuardSet
from inferpool.request.core import Core, CoreConfig

ROOT = Path(__file__).resolve().parents[3]
QUICKSTART = ROOT / "examples/gke-quickstart"

POOL = """
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {name: pool}
spec: {selector: {app: m}, targetPortNumber: 8000, extensionRef: {name: epp}}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: food-review}
spec: {modelName: food-review, poolRef: {name: pool}}
"""
GATEWAY = """
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec: {gatewayClassName: inferpool, listeners: [{name: http, protocol: HTTP, port: 8080}]}
"""


def policy(target: str, models: str = "", name: str = "p", namespace: str = "default") -> str:
    return f"""
apiVersion: inferpool.io/v1alpha1
kind: GuardPolicy
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  targetRefs: [{target}]
  {models}
  checks: [{{type: Secrets}}]
"""


def docs(*parts: str) -> str:
    return "---".join(parts)


def guard_warnings(m: ManifestSet) -> list[str]:
    return [str(w) for w in m.warnings if w.kind == "GuardPolicy"]


def runtime_warnings(m: ManifestSet) -> list[str]:
    return GuardSet.from_manifests(m).describe(f"{p.namespace}/{p.name}" for p in m.pools)[1]


def test_the_documented_policy_with_the_quickstart_is_clean(tmp_path: Path) -> None:
    text = (ROOT / "docs/security.md").read_text()
    example = re.search(
        r"```yaml\n(apiVersion: inferpool.io/v1alpha1\nkind: GuardPolicy\n.*?)```", text, re.S
    )
    assert example is not None
    (tmp_path / "guard.yaml").write_text(example.group(1))
    m = load_manifests([QUICKSTART, tmp_path])
    assert m.ok and not m.warnings, m.errors + m.warnings
    assert runtime_warnings(m) == []


@pytest.mark.parametrize(
    ("target", "words"),
    [
        ("{kind: Gateway, name: gw-typo}", "Gateway 'gw-typo' not found in namespace 'default'"),
        ("{kind: HTTPRoute, name: no-route}", "HTTPRoute 'no-route' not found in namespace 'default'"),
        (
            "{group: inference.networking.x-k8s.io, kind: InferencePool, name: no-pool}",
            "InferencePool 'no-pool' not found in namespace 'default'",
        ),
    ],
)
def test_a_missing_target_is_named_with_its_line(target: str, words: str) -> None:
    m = load_text(docs(POOL, GATEWAY, ROUTE, policy(target)), "guard.yaml")
    assert m.ok, m.errors
    (warning,) = guard_warnings(m)
    # POOL, GATEWAY and ROUTE take lines 1-23 (a "---" each between); the policy's targetRefs is line 28
    assert warning.startswith("guard.yaml:28: GuardPolicy/p: spec.targetRefs[0].name: warning: " + words)
    assert len(runtime_warnings(m)) == 1


def test_a_target_in_another_namespace_is_not_found_and_says_where_it_is() -> None:
    m = load_text(docs(POOL, GATEWAY, ROUTE, policy("{kind: Gateway, name: gw}", namespace="other")))
    (warning,) = guard_warnings(m)
    assert "Gateway 'gw' not found in namespace 'other' (there is one in namespace 'default'" in warning
    assert len(runtime_warnings(m)) == 1


def test_a_gateway_with_no_route_to_a_pool_screens_nothing() -> None:
    m = load_text(docs(POOL, GATEWAY, policy("{kind: Gateway, name: gw}")))
    (warning,) = guard_warnings(m)
    assert (
        "spec.targetRefs[0].name: warning: no HTTPRoute in the manifests leads from Gateway 'gw'" in warning
    )
    assert runtime_warnings(m) == [
        "GuardPolicy default/p applies to no InferencePool loaded here (targets Gateway default/gw), "
        "so it screens no pool's traffic; `inferpool validate` says why"
    ]
    with_route = load_text(docs(POOL, GATEWAY, ROUTE, policy("{kind: Gateway, name: gw}")))
    assert guard_warnings(with_route) == [] and runtime_warnings(with_route) == []


def test_the_epp_given_only_the_pool_and_models_warns_about_a_gateway_policy() -> None:
    m = load_text(docs(POOL, policy("{kind: Gateway, name: gw}")))
    assert guard_warnings(m) and runtime_warnings(m)
    assert GuardSet.from_manifests(m).for_pool("default/pool", "food-review") is None


def test_a_model_name_nothing_declares_is_named_with_a_guess() -> None:
    m = load_text(
        docs(POOL, GATEWAY, ROUTE, policy("{kind: Gateway, name: gw}", "models: [food-review, food-reveiw]"))
    )
    (warning,) = guard_warnings(m)
    assert (
        "spec.models[1]: warning: no InferenceModel, InferenceModelRewrite or model server declares"
        in warning
    )
    assert warning.endswith("did you mean 'food-review'?")


def test_a_pool_without_inference_models_passes_any_name_so_no_name_is_flagged() -> None:
    # its servers (from --endpoints, or found at run time) serve names the manifests do not hold
    open_pool = """
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: open}
spec: {selector: {matchLabels: {app: o}}, targetPorts: [{number: 8000}], endpointPickerRef: {name: e, port: {number: 9002}}}
"""
    m = load_text(
        docs(
            POOL, open_pool, GATEWAY, ROUTE, policy("{kind: Gateway, name: gw}", "models: [served-elsewhere]")
        )
    )
    assert m.ok, m.errors
    assert [w for w in guard_warnings(m) if "spec.models" in w] == []


def test_a_rewrite_declares_the_names_it_matches() -> None:
    rewrite = """
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModelRewrite
metadata: {name: rw}
spec:
  poolRef: {name: pool}
  rules: [{matches: [{model: {value: chat}}], targets: [{modelRewrite: food-review}]}]
"""
    m = load_text(docs(POOL, GATEWAY, ROUTE, rewrite, policy("{kind: Gateway, name: gw}", "models: [chat]")))
    assert m.ok, m.errors
    assert guard_warnings(m) == []


def test_validate_and_the_data_planes_agree_on_which_policies_screen_nothing() -> None:
    m = load_manifests(ROOT / "tests/data/manifests-broken")
    warned_targets: dict[str, set[str]] = {}  # the corpus's policy names are unique
    for w in m.warnings:
        if w.kind == "GuardPolicy" and w.name and w.field and w.field.startswith("spec.targetRefs"):
            warned_targets.setdefault(w.name, set()).add(w.field)
    nothing = {
        f"{p.namespace}/{p.name}"
        for p in m.guard_policies
        if len(warned_targets.get(p.name, ())) == len(p.spec.target_refs)
    }
    assert nothing  # the corpus has such policies
    warned = {w.split()[1] for w in runtime_warnings(m)}
    assert warned == nothing


async def test_the_core_logs_which_policies_screen_which_pool(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "m.yaml").write_text(
        docs(
            POOL,
            GATEWAY,
            ROUTE,
            policy("{kind: Gateway, name: gw}", name="on-gw"),
            policy("{kind: Gateway, name: typo}", name="lost"),
        )
    )
    core = Core(
        CoreConfig(
            scheduler="round-robin",
            admission=AdmissionConfig(enabled=False),
            scrape=None,
            manifests=[tmp_path],
        )
    )
    with caplog.at_level(logging.INFO, logger="inferpool.request.core"):
        await core.start()
    await core.stop()
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "inferpool.request.core"]
    assert (
        "INFO",
        "GuardPolicies by pool: pool default/pool: default/on-gw (via Gateway default/gw)",
    ) in lines
    assert (
        "WARNING",
        "GuardPolicy default/lost applies to no InferencePool loaded here (targets Gateway default/typo), "
        "so it screens no pool's traffic; `inferpool validate` says why",
    ) in lines
