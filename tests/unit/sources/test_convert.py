"""ManifestSet -> state objects, for both InferencePool versions and every routing kind."""

from __future__ import annotations

from inferpool.api import load_text
from inferpool.sources.convert import to_state
from inferpool.state import Criticality, HealthCheck, PoolBinding, RewriteRule, RewriteTarget

TEXT = """\
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: p1, namespace: team}
spec:
  selector: {matchLabels: {app: a}}
  targetPorts: [{number: 8000}, {number: 8001}]
  endpointPickerRef: {name: epp, port: {number: 9002}, failureMode: FailOpen}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {name: p2}
spec:
  selector: {app: b}
  targetPortNumber: 9000
  extensionRef: {name: epp2}
---
apiVersion: networking.gke.io/v1
kind: HealthCheckPolicy
metadata: {name: h, namespace: team}
spec:
  targetRef: {group: inference.networking.k8s.io, kind: InferencePool, name: p1}
  default:
    checkIntervalSec: 3
    timeoutSec: 2
    healthyThreshold: 2
    unhealthyThreshold: 4
    config: {type: HTTP, httpHealthCheck: {requestPath: /ready, port: 8080}}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: m}
spec:
  modelName: public
  criticality: Sheddable
  poolRef: {name: p2}
  targetModels: [{name: v1, weight: 3}, {name: v2, weight: 1}]
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {name: batch, namespace: team}
spec: {priority: -1, poolRef: {name: p1}}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {name: unset, namespace: team}
spec: {poolRef: {name: p1}}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModelRewrite
metadata: {name: r, namespace: team}
spec:
  poolRef: {group: inference.networking.k8s.io, name: p1}
  rules:
  - matches: [{model: {value: alias}}, {model: {value: alias2}}]
    targets: [{modelRewrite: real-v1, weight: 9}, {modelRewrite: real-v2, weight: 1}]
  - targets: [{modelRewrite: fallback}]
"""


def test_to_state() -> None:
    ms = load_text(TEXT)
    assert ms.errors == [] and ms.warnings == []
    state = to_state(ms)
    p1, p2 = state.pools
    assert (p1.key, p1.selector, p1.target_ports, p1.failure_mode, p1.endpoint_picker) == (
        "team/p1",
        {"app": "a"},
        [8000, 8001],
        "FailOpen",
        "epp",
    )
    assert p1.api_version == "inference.networking.k8s.io/v1"
    assert p1.health_check == HealthCheck(
        path="/ready", port=8080, interval_s=3.0, timeout_s=2.0, unhealthy_threshold=4, healthy_threshold=2
    )
    assert (p2.key, p2.target_ports, p2.failure_mode, p2.health_check) == (
        "default/p2",
        [9000],
        "FailClose",
        None,
    )

    (model,) = state.models
    assert (model.model_name, model.pool_key, model.criticality) == (
        "public",
        "default/p2",
        Criticality.SHEDDABLE,
    )
    assert [(t.name, t.weight) for t in model.targets] == [("v1", 3), ("v2", 1)]

    assert [(o.name, o.priority, o.binding) for o in state.objectives] == [
        ("batch", -1, PoolBinding(("p1",))),
        ("unset", 0, PoolBinding(("p1",))),
    ]
    assert all(o.applies_to(p1) and not o.applies_to(p2) for o in state.objectives)
    (rewrite,) = state.rewrites
    assert rewrite.binding == PoolBinding(("p1",)) and rewrite.applies_to(p1)
    assert rewrite.rules == [
        RewriteRule(
            models=["alias", "alias2"], targets=[RewriteTarget("real-v1", 9), RewriteTarget("real-v2", 1)]
        ),
        RewriteRule(models=[], targets=[RewriteTarget("fallback", None)]),
    ]


def test_tcp_health_check_is_not_probed() -> None:
    text = TEXT.replace(
        "config: {type: HTTP, httpHealthCheck: {requestPath: /ready, port: 8080}}", "config: {type: TCP}"
    )
    assert to_state(load_text(text)).pools[0].health_check is None


def test_health_check_defaults_when_unset() -> None:
    text = TEXT.replace(
        "    checkIntervalSec: 3\n    timeoutSec: 2\n    healthyThreshold: 2\n    unhealthyThreshold: 4\n"
        "    config: {type: HTTP, httpHealthCheck: {requestPath: /ready, port: 8080}}\n",
        "    config: {type: HTTP}\n",
    )
    assert to_state(load_text(text)).pools[0].health_check == HealthCheck()


def test_model_without_criticality_or_targets() -> None:
    text = TEXT.replace("  criticality: Sheddable\n", "").replace(
        "  targetModels: [{name: v1, weight: 3}, {name: v2, weight: 1}]\n", ""
    )
    (model,) = to_state(load_text(text)).models
    assert model.criticality is None and model.targets == []
