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
from inferpool.extproc.upstream_flags import GoFlagsCommand  # noqa: E402
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
        ("inferpool.io", "guardpolicies", "watch"),
        ("inferpool.io", "guardpolicies", "list"),
        ("gateway.networking.k8s.io", "httproutes", "watch"),
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
        "flags": [{"name": "refresh-metrics-interval", "value": "100ms"}, {"name": "every-response-status"}],
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
    assert "--refresh-metrics-interval=100ms" in args
    bare = args.index("--every-response-status")  # a flag without a value renders alone
    assert bare == len(args) - 1 or args[bare + 1].startswith("--")
    assert _epp_params(args)["every_response_status"] is True
    assert args[args.index("--config-file") + 1] == "/config/epp.yaml"
    assert {"name": "EXTRA", "value": "1"} in container["env"]
    [config_map] = by_kind(objects, "ConfigMap")
    assert yaml.safe_load(config_map["data"]["epp.yaml"])["kind"] == "EndpointPickerConfig"
    [pool] = by_kind(objects, "InferencePool")
    assert pool["spec"]["extensionRef"]["failureMode"] == "FailOpen"
    for obj in objects:
        if obj["kind"] not in CUSTOM_KINDS:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def _epp_params(args: list[str]) -> dict[str, Any]:
    """What `inferpool epp` makes of the rendered args (upstream's Go-style flags included)."""
    app = typer.Typer(add_completion=False)
    app.command(cls=GoFlagsCommand)(epp)
    return typer.main.get_command(app).make_context("epp", list(args), resilient_parsing=False).params


@pytest.mark.parametrize(
    "flags",
    [
        {"v": 4, "health-checking": True, "refresh-metrics-interval": "100ms", "lora-info-metric": ""},
        [{"name": "v", "value": 4}, {"name": "health-checking", "value": True},
         {"name": "refresh-metrics-interval", "value": "100ms"}, {"name": "lora-info-metric", "value": ""}],
    ],
    ids=["upstream-map", "list"],
)  # fmt: skip
def test_flags_in_either_of_upstreams_forms_reach_the_picker(flags: Any) -> None:
    vals = values()
    vals["inferenceExtension"] = {"flags": flags}
    objects, _ = render(vals)
    [deployment] = by_kind(objects, "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--health-checking=true" in args  # a boolean as one argument: `--health-checking true` fails
    params = _epp_params(args)
    assert params["verbosity"] == 4 and params["health_checking"] is True
    assert params["refresh_metrics_interval"] == "100ms" and params["lora_info_metric"] == ""


def test_upstreams_plugins_custom_config_form_mounts_the_file() -> None:
    config = "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\nplugins: []\n"
    vals = values()
    vals["inferenceExtension"] = {
        "pluginsConfigFile": "custom-plugins.yaml",
        "pluginsCustomConfig": {"custom-plugins.yaml": config},
    }
    objects, _ = render(vals)
    [config_map] = by_kind(objects, "ConfigMap")
    assert config_map["data"] == {"custom-plugins.yaml": config}
    [deployment] = by_kind(objects, "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--config-file") + 1] == "/config/custom-plugins.yaml"
    vals["inferenceExtension"]["pluginsConfigFile"] = "other.yaml"
    with pytest.raises(Exception, match=r'has no "other\.yaml"'):
        render(vals)


def test_gke_health_check_uses_the_pools_first_target_port() -> None:
    vals = values(
        "gke", apiVersion="inference.networking.k8s.io/v1", targetPorts=[{"number": 8200}, {"number": 8201}]
    )
    objects, _ = render(vals)
    [policy] = by_kind(objects, "HealthCheckPolicy")
    assert policy["spec"]["default"]["config"]["httpHealthCheck"]["port"] == 8200


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


def pd_values(**pd: Any) -> dict[str, Any]:
    vals = values()
    vals["pd"] = {"enabled": True, **pd}
    return vals


def test_pd_deploys_role_labelled_model_servers_the_sidecar_and_the_pd_profile() -> None:
    from inferpool.gateway.pd_sidecar import pd_sidecar

    objects, _ = render(pd_values(), namespace="inference")
    for obj in objects:
        if obj["kind"] not in CUSTOM_KINDS:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    deployments = {d["metadata"]["name"]: d for d in by_kind(objects, "Deployment")}
    assert set(deployments) == {f"{RELEASE}-epp", f"{RELEASE}-prefill", f"{RELEASE}-decode"}

    # the EPP runs the pd profile
    epp_args = deployments[f"{RELEASE}-epp"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert epp_args[epp_args.index("--scheduler") + 1] == "pd"

    # both roles are pool members (the pool's selector matches them) with llm-d's role label
    [pool] = by_kind(objects, "InferencePool")
    selector = pool["spec"]["selector"]
    for role in ("prefill", "decode"):
        labels = deployments[f"{RELEASE}-{role}"]["spec"]["template"]["metadata"]["labels"]
        assert labels == {**selector, "llm-d.ai/role": role}

    # prefill pods: vLLM on the pool's port; decode pods: the sidecar there, vLLM behind it on 8200
    def containers(role: str) -> dict[str, dict[str, Any]]:
        spec = deployments[f"{RELEASE}-{role}"]["spec"]["template"]["spec"]
        return {c["name"]: c for c in spec["containers"]}

    [prefill_vllm] = containers("prefill").values()
    assert prefill_vllm["args"][prefill_vllm["args"].index("--port") + 1] == "8000"
    decode = containers("decode")
    assert set(decode) == {"pd-sidecar", "vllm"}
    for vllm in (prefill_vllm, decode["vllm"]):
        kv = vllm["args"][vllm["args"].index("--kv-transfer-config") + 1]
        assert yaml.safe_load(kv)["kv_connector"] == "NixlConnector"
    assert decode["vllm"]["args"][decode["vllm"]["args"].index("--port") + 1] == "8200"
    sidecar = decode["pd-sidecar"]
    assert sidecar["command"] == ["inferpool", "pd-sidecar"]
    assert sidecar["ports"] == [{"name": "http", "containerPort": 8000}]

    # every sidecar flag is one `inferpool pd-sidecar` accepts; its allowlist is this pool
    app = typer.Typer(add_completion=False)
    app.command()(pd_sidecar)
    ctx = typer.main.get_command(app).make_context(
        "pd-sidecar", list(sidecar["args"]), resilient_parsing=False
    )
    assert (ctx.params["port"], ctx.params["vllm_port"], ctx.params["connector"]) == (8000, 8200, "nixlv2")
    assert (ctx.params["pool_name"], ctx.params["pool_namespace"]) == (RELEASE, "inference")

    # the sidecars may read the pool and its pods, nothing more
    [role] = [r for r in by_kind(objects, "Role") if r["metadata"]["name"] == f"{RELEASE}-pd"]
    granted = {
        (g, r, v)
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    assert ("inference.networking.x-k8s.io", "inferencepools", "watch") in granted
    assert ("", "pods", "watch") in granted
    assert not [v for _, _, v in granted if v not in ("get", "watch", "list")]
    for role_name in ("prefill", "decode"):
        spec = deployments[f"{RELEASE}-{role_name}"]["spec"]["template"]["spec"]
        assert spec["serviceAccountName"] == f"{RELEASE}-pd"


def test_pd_follows_the_pools_port_and_an_explicit_plugins_config() -> None:
    vals = pd_values(scheduler="pd-random-prefill")
    vals["inferencePool"].update(
        {"apiVersion": "inference.networking.k8s.io/v1", "targetPorts": [{"number": 8080}]}
    )
    objects, _ = render(vals)
    deployments = {d["metadata"]["name"]: d for d in by_kind(objects, "Deployment")}
    decode = deployments[f"{RELEASE}-decode"]["spec"]["template"]["spec"]["containers"]
    [sidecar] = [c for c in decode if c["name"] == "pd-sidecar"]
    assert sidecar["args"][sidecar["args"].index("--port") + 1] == "8080"
    assert sidecar["args"][sidecar["args"].index("--pool-group") + 1] == "inference.networking.k8s.io"
    epp_args = deployments[f"{RELEASE}-epp"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert epp_args[epp_args.index("--scheduler") + 1] == "pd-random-prefill"

    vals["inferenceExtension"] = {
        "pluginsConfigFile": "pd.yaml",
        "pluginsCustomConfig": {"kind": "EndpointPickerConfig"},
    }
    objects, _ = render(vals)
    [epp_deployment] = [
        d for d in by_kind(objects, "Deployment") if d["metadata"]["name"] == f"{RELEASE}-epp"
    ]
    epp_args = epp_deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--scheduler" not in epp_args and "--config-file" in epp_args
    report = helm.lint(str(CHART), pd_values(), strict=True)
    assert report["errors"] == [] and [m for m in report["messages"] if m["severity"] >= 2] == []


def test_the_guard_policy_crd_serves_what_the_epp_watches() -> None:
    """The chart's crds/ (installed by Helm before the templates): the GuardPolicy CRD, at the
    group, version and plural the EPP lists and watches, and the docs' example policy fits it."""
    from inferpool.sources.kubernetes.source import GUARD_GROUP, GUARD_PLURAL, GUARD_VERSION

    [crd] = list(yaml.safe_load_all((CHART / "crds" / "guardpolicies.inferpool.io.yaml").read_text()))
    kubernetes_validate.validate(crd, K8S_VERSION, strict=True)
    spec = crd["spec"]
    assert (spec["group"], spec["names"]["plural"], spec["scope"]) == (
        GUARD_GROUP,
        GUARD_PLURAL,
        "Namespaced",
    )
    [version] = spec["versions"]
    assert version["name"] == GUARD_VERSION and version["served"] and version["storage"]
    docs = (CHART.parents[2] / "docs" / "security.md").read_text()
    example = yaml.safe_load(docs.split("```yaml\n", 1)[1].split("```", 1)[0])
    assert (
        example["apiVersion"] == f"{GUARD_GROUP}/{GUARD_VERSION}" and example["kind"] == spec["names"]["kind"]
    )
    schema = version["schema"]["openAPIV3Schema"]
    assert set(schema["required"]) <= set(example) and set(schema["properties"]["spec"]["required"]) <= set(
        example["spec"]
    )


def test_guard_policy_namespaces_get_a_role_to_read_guard_policies() -> None:
    """`inferenceExtension.guardPolicyNamespaces`: the EPP may list and watch the GuardPolicies of
    a shared Gateway's namespace (the EPP watches the namespace of each Gateway its pool's routes
    attach to), and nothing more there."""
    vals = values("gke")
    vals["inferenceExtension"] = {"guardPolicyNamespaces": ["gateway-system"]}
    objects, _ = render(vals, namespace="inference")
    for obj in objects:
        if obj["kind"] not in CUSTOM_KINDS:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    roles = {r["metadata"]["namespace"]: r for r in by_kind(objects, "Role")}
    assert set(roles) == {"inference", "gateway-system"}
    assert roles["gateway-system"]["rules"] == [
        {"apiGroups": ["inferpool.io"], "resources": ["guardpolicies"], "verbs": ["get", "watch", "list"]}
    ]
    [binding] = [b for b in by_kind(objects, "RoleBinding") if b["metadata"]["namespace"] == "gateway-system"]
    assert binding["roleRef"]["name"] == roles["gateway-system"]["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": f"{RELEASE}-epp", "namespace": "inference"}
    ]
    assert len(by_kind(render(values("gke"), namespace="inference")[0], "Role")) == 1  # (none by default)


def test_route_namespaces_are_passed_to_the_picker_and_granted() -> None:
    """`inferenceExtension.routeNamespaces`: `--route-namespace` for each (a flag `inferpool epp`
    takes), and list/watch on httproutes and guardpolicies there; a namespace in both lists
    gets one Role."""
    vals = values("gke")
    vals["inferenceExtension"] = {
        "routeNamespaces": ["team-a"],
        "guardPolicyNamespaces": ["gateway-system", "team-a"],
    }
    objects, _ = render(vals, namespace="inference")
    for obj in objects:
        if obj["kind"] not in CUSTOM_KINDS:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    [deployment] = by_kind(objects, "Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    app = typer.Typer(add_completion=False)
    app.command()(epp)
    ctx = typer.main.get_command(app).make_context("epp", list(container["args"]), resilient_parsing=False)
    assert ctx.params["route_namespaces"] == ["team-a"]
    roles = {r["metadata"]["namespace"]: r for r in by_kind(objects, "Role")}
    assert set(roles) == {"inference", "gateway-system", "team-a"}
    granted = {(rule["apiGroups"][0], rule["resources"][0]) for rule in roles["team-a"]["rules"]}
    assert granted == {("inferpool.io", "guardpolicies"), ("gateway.networking.k8s.io", "httproutes")}
    assert {(rule["apiGroups"][0], rule["resources"][0]) for rule in roles["gateway-system"]["rules"]} == {
        ("inferpool.io", "guardpolicies")
    }
