"""The Helm chart: rendered and linted offline with Helm 4's SDK, every object validated.

InferencePool and HealthCheckPolicy go through inferpool's own resource models (the same
rules `inferpool validate` applies); the built-in Kubernetes kinds through
`kubernetes-validate`'s OpenAPI schemas; the Deployment's args through `inferpool epp`'s parser.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

helm = pytest.importorskip("helm_python", reason="helm-python-sdk (test extra) is not installed")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

from inferpool.api import load_text  # noqa: E402
from inferpool.extproc.command import epp  # noqa: E402
from inferpool.sources.convert import to_state  # noqa: E402

CHART = Path(__file__).resolve().parents[3] / "deploy" / "helm" / "inferpool"
RELEASE = "vllm-llama3-8b-instruct"
CUSTOM_KINDS = {
    "InferencePool",
    "HealthCheckPolicy",
    "GCPBackendPolicy",
    "ClusterPodMonitoring",
    "DestinationRule",
}
K8S_VERSION = "1.33.0"


def values(provider: str = "none", **pool: Any) -> dict[str, Any]:
    return {
        "inferencePool": {"modelServers": {"matchLabels": {"app": RELEASE}}, **pool},
        "provider": {"name": provider},
    }


def render(vals: dict[str, Any], namespace: str = "default") -> tuple[list[dict[str, Any]], str]:
    manifests = helm.Chart.load(str(CHART)).render(vals, name=RELEASE, namespace=namespace)
    text = "\n---\n".join(body for path, body in sorted(manifests.items()) if path.endswith(".yaml"))
    objects = [doc for doc in yaml.safe_load_all(text) if doc]
    return objects, text


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


@pytest.mark.parametrize("provider", ["none", "gke", "istio"])
@pytest.mark.parametrize(
    "pool",
    [
        {},
        {"apiVersion": "inference.networking.k8s.io/v1", "targetPorts": [{"number": 8000}, {"number": 8001}]},
    ],
    ids=["v1alpha2", "v1"],
)
def test_render_validates_for_each_provider(provider: str, pool: dict[str, Any]) -> None:
    objects, _ = render(values(provider, **pool))
    kinds = sorted(o["kind"] for o in objects)
    expected = {
        "InferencePool",
        "Deployment",
        "Service",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ClusterRole",
        "ClusterRoleBinding",
    }
    assert expected <= set(kinds)
    assert ("HealthCheckPolicy" in kinds) == ("GCPBackendPolicy" in kinds) == (provider == "gke")
    assert ("DestinationRule" in kinds) == (provider == "istio")

    # built-in kinds: the Kubernetes OpenAPI schema, unknown fields rejected
    for obj in objects:
        if obj["kind"] not in CUSTOM_KINDS:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)

    # InferencePool and HealthCheckPolicy: inferpool's own models, then to the state the EPP uses
    ours = [o for o in objects if o["kind"] in ("InferencePool", "HealthCheckPolicy")]
    loaded = load_text(yaml.safe_dump_all(ours), "rendered")
    assert loaded.errors == [], [str(e) for e in loaded.errors]
    state = to_state(loaded)
    [state_pool] = state.pools
    assert state_pool.key == f"default/{RELEASE}"
    assert state_pool.selector == {"app": RELEASE}
    assert state_pool.target_ports == ([8000, 8001] if pool else [8000])
    assert state_pool.endpoint_picker == f"{RELEASE}-epp"
    if provider == "gke":
        assert state_pool.health_check is not None and state_pool.health_check.path == "/health"
        [backend] = by_kind(objects, "GCPBackendPolicy")
        assert backend["spec"]["targetRef"] == {
            "group": loaded.pools[0].api_version.split("/")[0],
            "kind": "InferencePool",
            "name": RELEASE,
        }
        assert backend["spec"]["default"]["timeoutSec"] == 300
    if provider == "istio":
        [rule] = by_kind(objects, "DestinationRule")
        assert rule["spec"]["host"] == f"{RELEASE}-epp.default.svc.cluster.local"
        assert rule["spec"]["trafficPolicy"]["tls"]["mode"] == "SIMPLE"


def test_epp_deployment_service_and_rbac_fit_together() -> None:
    objects, _ = render(values("gke"), namespace="inference")
    [deployment] = by_kind(objects, "Deployment")
    [service] = by_kind(objects, "Service")
    [account] = by_kind(objects, "ServiceAccount")
    pod_spec = deployment["spec"]["template"]["spec"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels == {"app": f"{RELEASE}-epp"}  # the guide's `app: vllm-llama3-8b-instruct-epp`
    assert service["spec"]["selector"] == labels
    assert pod_spec["serviceAccountName"] == account["metadata"]["name"]
    assert {p["port"] for p in service["spec"]["ports"]} == {9002, 9090}
    [container] = pod_spec["containers"]
    assert container["readinessProbe"]["grpc"] == {"port": 9003, "service": "readiness"}

    # every flag the chart passes is one `inferpool epp` accepts, with the pool's name and namespace
    app = typer.Typer(add_completion=False)
    app.command()(epp)
    click_command = typer.main.get_command(app)
    ctx = click_command.make_context("epp", list(container["args"]), resilient_parsing=False)
    assert ctx.params["pool_name"] == RELEASE
    assert ctx.params["pool_namespace"] == "inference"
    assert ctx.params["pool_group"] == "inference.networking.x-k8s.io"

    # RBAC covers every API call the EPP makes
    [role] = by_kind(objects, "Role")
    granted = {
        (g, r, v)
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    needed = [
        ("inference.networking.x-k8s.io", "inferencepools", "watch"),
        ("inference.networking.x-k8s.io", "inferencemodels", "list"),
        ("inference.networking.x-k8s.io", "inferenceobjectives", "watch"),
        ("inference.networking.x-k8s.io", "inferencemodelrewrites", "watch"),
        ("llm-d.ai", "inferenceobjectives", "watch"),
        ("llm-d.ai", "inferencemodelrewrites", "list"),
        ("inference.networking.x-k8s.io", "inferencemodels/status", "patch"),
        ("", "pods", "watch"),
        ("coordination.k8s.io", "leases", "update"),
    ]
    for need in needed:
        assert need in granted, need
    [cluster_role] = by_kind(objects, "ClusterRole")
    cluster = {(r["apiGroups"][0], r["resources"][0]) for r in cluster_role["rules"]}
    assert cluster == {
        ("authentication.k8s.io", "tokenreviews"),
        ("authorization.k8s.io", "subjectaccessreviews"),
    }
    [binding] = by_kind(objects, "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": f"{RELEASE}-epp", "namespace": "inference"}
    ]


def test_flags_env_replicas_and_plugins_config() -> None:
    vals = values()
    vals["inferenceExtension"] = {
        "replicas": 3,
        "enableLeaderElection": True,
        "failureMode": "FailOpen",
        "flags": [{"name": "refresh-metrics-interval", "value": "100ms"}],
        "env": [{"name": "EXTRA", "value": "1"}],
        "pluginsConfigFile": "epp.yaml",
        "pluginsCustomConfig": {
            "apiVersion": "inference.networking.x-k8s.io/v1alpha1",
            "kind": "EndpointPickerConfig",
        },
    }
    objects, _ = render(vals)
    [deployment] = by_kind(objects, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert deployment["spec"]["replicas"] == 3
    assert "--ha-enable-leader-election" in args
    assert args[args.index("--refresh-metrics-interval") + 1] == "100ms"
    assert args[args.index("--config-file") + 1] == "/config/epp.yaml"
    assert {"name": "EXTRA", "value": "1"} in container["env"]
    [config_map] = by_kind(objects, "ConfigMap")
    assert yaml.safe_load(config_map["data"]["epp.yaml"])["kind"] == "EndpointPickerConfig"
    [pool] = by_kind(objects, "InferencePool")
    assert pool["spec"]["extensionRef"]["failureMode"] == "FailOpen"
    for obj in objects:
        if obj["kind"] not in CUSTOM_KINDS:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_replicas_are_active_active_behind_a_headless_service() -> None:
    """replicas > 1: every pod serves (the Service resolves to each, so streams spread), the
    Lease is held for status writes only, and `workers` runs several pickers per pod."""
    single, _ = render(values())
    [service] = by_kind(single, "Service")
    assert "clusterIP" not in service["spec"]
    [deployment] = by_kind(single, "Deployment")
    assert (
        "--ha-enable-leader-election" not in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    )

    vals = values()
    vals["inferenceExtension"] = {"replicas": 2, "workers": 4}
    objects, _ = render(vals)
    [service] = by_kind(objects, "Service")
    assert service["spec"]["clusterIP"] == "None"
    [deployment] = by_kind(objects, "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert deployment["spec"]["replicas"] == 2
    assert "--ha-enable-leader-election" in args
    assert args[args.index("--workers") + 1] == "4"
    app = typer.Typer(add_completion=False)
    app.command()(epp)
    ctx = typer.main.get_command(app).make_context("epp", list(args), resilient_parsing=False)
    assert ctx.params["workers"] == 4 and ctx.params["ha_enable_leader_election"] is True
    for obj in objects:
        if obj["kind"] not in CUSTOM_KINDS:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_lint_is_clean() -> None:
    for provider in ("none", "gke", "istio"):
        report = helm.lint(str(CHART), values(provider), strict=True)
        assert report["errors"] == []
        assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_missing_match_labels_fails_with_a_clear_message() -> None:
    with pytest.raises(helm.HelmError, match="matchLabels is required"):
        helm.Chart.load(str(CHART)).render({"provider": {"name": "gke"}}, name=RELEASE, namespace="default")
    with pytest.raises(helm.HelmError, match=r"provider\.name"):
        render(values("aws"))


def test_example_manifests_match_the_chart() -> None:
    """The chart renders the same pool as examples/gke-quickstart/inferencepool.yaml (the guide's)."""
    example = CHART.parents[2] / "examples" / "gke-quickstart" / "inferencepool.yaml"
    ours = [o for o in yaml.safe_load_all(example.read_text()) if o and o["kind"] == "InferencePool"]
    objects, _ = render(values())
    [rendered] = by_kind(objects, "InferencePool")
    assert rendered["apiVersion"] == ours[0]["apiVersion"]
    assert rendered["spec"]["selector"] == ours[0]["spec"]["selector"]
    assert rendered["spec"]["targetPortNumber"] == ours[0]["spec"]["targetPortNumber"]
    assert rendered["spec"]["extensionRef"]["name"] == ours[0]["spec"]["extensionRef"]["name"]
