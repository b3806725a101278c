"""One test per CRD validation rule: the problem is reported at the right field, and the valid
neighbour of each bad value passes."""

from __future__ import annotations

import pytest

from inferpool.api import ManifestSet, load_text
from inferpool.durations import parse_gateway_duration as parse_duration

POOL_A2 = """\
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {{name: p}}
spec:
  selector: {selector}
  targetPortNumber: {port}
  extensionRef: {{name: epp{extension}}}
"""

POOL_V1 = """\
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {{name: p}}
spec:
  selector: {{matchLabels: {labels}}}
  targetPorts: {ports}
  endpointPickerRef: {ref}
"""

MODEL = """\
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {{name: m}}
spec:
  modelName: {model_name}
  poolRef: {{name: p}}
{extra}"""


def errors(ms: ManifestSet) -> list[tuple[str | None, str]]:
    return [(e.field, e.message) for e in ms.errors]


def only_error(text: str) -> tuple[str | None, str]:
    ms = load_text(text)
    assert len(ms.errors) == 1, [str(e) for e in ms.errors]
    return ms.errors[0].field, ms.errors[0].message


def pool_a2(selector: str = "{app: vllm}", port: str = "8000", extension: str = "") -> str:
    return POOL_A2.format(selector=selector, port=port, extension=extension)


# -- InferencePool v1alpha2 -------------------------------------------------------------


def test_valid_pool_a2() -> None:
    ms = load_text(pool_a2(extension=", failureMode: FailOpen, portNumber: 9002"))
    assert ms.errors == [] and len(ms.pools) == 1


@pytest.mark.parametrize("port", ["0", "65536", "-1"])
def test_target_port_range(port: str) -> None:
    assert only_error(pool_a2(port=port))[0] == "spec.targetPortNumber"


@pytest.mark.parametrize("port", ["1", "65535"])
def test_target_port_bounds_ok(port: str) -> None:
    assert load_text(pool_a2(port=port)).errors == []


def test_extension_port_range() -> None:
    assert only_error(pool_a2(extension=", portNumber: 0"))[0] == "spec.extensionRef.portNumber"


def test_failure_mode_enum() -> None:
    field, message = only_error(pool_a2(extension=", failureMode: failopen"))
    assert field == "spec.extensionRef.failureMode" and "FailOpen" in message


def test_extension_kind_pattern() -> None:
    assert only_error(pool_a2(extension=", kind: 'bad/kind'"))[0] == "spec.extensionRef.kind"


def test_extension_group_pattern() -> None:
    assert only_error(pool_a2(extension=", group: Bad.Group"))[0] == "spec.extensionRef.group"


@pytest.mark.parametrize(
    "key", ["app~", "-app", "example.com.", "Example.com/app", "a/b/c", "x" * 64, "/app"]
)
def test_label_key_pattern(key: str) -> None:
    field, message = only_error(pool_a2(selector=f"{{'{key}': v}}"))
    assert field is not None and field.startswith("spec.selector")
    assert "label key" in message


@pytest.mark.parametrize("key", ["app", "example.com/app", "app.kubernetes.io/name", "A_b.c-d", "x" * 63])
def test_label_key_valid(key: str) -> None:
    assert load_text(pool_a2(selector=f"{{'{key}': v}}")).errors == []


@pytest.mark.parametrize("value", ["-v", "v-", "a b", "v" * 64, "ü"])
def test_label_value_pattern(value: str) -> None:
    field, message = only_error(pool_a2(selector=f"{{app: '{value}'}}"))
    assert field == "spec.selector.app" and "label value" in message


@pytest.mark.parametrize("value", ["", "v", "my.name", "123-my_value", "v" * 63])
def test_label_value_valid(value: str) -> None:
    assert load_text(pool_a2(selector=f"{{app: '{value}'}}")).errors == []


def test_selector_required() -> None:
    text = pool_a2().replace("  selector: {app: vllm}\n", "")
    assert only_error(text) == ("spec.selector", "required field is missing")


def test_unknown_spec_field_rejected() -> None:
    assert only_error(pool_a2() + "  replicas: 2\n") == ("spec.replicas", "unknown field")


@pytest.mark.parametrize("name", ["Upper", "under_score", "-lead", "a" * 254, ""])
def test_metadata_name_is_dns_subdomain(name: str) -> None:
    text = pool_a2().replace("metadata: {name: p}", f"metadata: {{name: '{name}'}}")
    assert only_error(text)[0] == "metadata.name"


def test_metadata_name_required() -> None:
    text = pool_a2().replace("metadata: {name: p}", "metadata: {}")
    assert only_error(text) == ("metadata.name", "required field is missing")


def test_namespace_is_dns_label() -> None:
    text = pool_a2().replace("metadata: {name: p}", "metadata: {name: p, namespace: a.b}")
    assert only_error(text)[0] == "metadata.namespace"


# -- InferencePool v1 ---------------------------------------------------------------------


def pool_v1(
    labels: str = "{app: vllm}",
    ports: str = "[{number: 8000}]",
    ref: str = "{name: epp, port: {number: 9002}}",
) -> str:
    return POOL_V1.format(labels=labels, ports=ports, ref=ref)


def test_valid_pool_v1() -> None:
    ms = load_text(pool_v1() + "  appProtocol: http\n")
    assert ms.errors == [] and len(ms.pools) == 1


def test_v1_target_ports_unique() -> None:
    assert only_error(pool_v1(ports="[{number: 8000}, {number: 8000}]")) == (
        "spec.targetPorts",
        "port numbers must be unique",
    )


def test_v1_target_ports_at_most_8() -> None:
    nine = "[" + ", ".join(f"{{number: {8000 + i}}}" for i in range(9)) + "]"
    eight = "[" + ", ".join(f"{{number: {8000 + i}}}" for i in range(8)) + "]"
    assert only_error(pool_v1(ports=nine))[0] == "spec.targetPorts"
    assert load_text(pool_v1(ports=eight)).errors == []


def test_v1_target_ports_at_least_1() -> None:
    assert only_error(pool_v1(ports="[]"))[0] == "spec.targetPorts"


def test_v1_port_number_range() -> None:
    assert only_error(pool_v1(ports="[{number: 0}]"))[0] == "spec.targetPorts[0].number"


def test_v1_match_labels_required_nonempty() -> None:
    assert only_error(pool_v1(labels="{}"))[0] == "spec.selector.matchLabels"


def test_v1_endpoint_picker_port_required_for_service() -> None:
    field, message = only_error(pool_v1(ref="{name: epp}"))
    assert field == "spec.endpointPickerRef" and "port is required" in message
    assert load_text(pool_v1(ref="{name: epp, kind: Pod, group: example.com}")).errors == []


def test_v1_app_protocol_enum() -> None:
    assert only_error(pool_v1() + "  appProtocol: grpc\n")[0] == "spec.appProtocol"


# -- InferenceModel ---------------------------------------------------------------------


def model(model_name: str = "m", extra: str = "") -> str:
    return (
        POOL_A2.format(selector="{app: v}", port=8000, extension="")
        + "---\n"
        + MODEL.format(model_name=model_name, extra=extra)
    )


def test_valid_model() -> None:
    ms = load_text(
        model(
            extra="  criticality: Sheddable\n  targetModels: [{name: a, weight: 1}, {name: b, weight: 1000000}]\n"
        )
    )
    assert ms.errors == [] and ms.warnings == []


def test_criticality_enum() -> None:
    assert only_error(model(extra="  criticality: critical\n"))[0] == "spec.criticality"


def test_model_name_max_256() -> None:
    assert load_text(model(model_name="a" * 256)).errors == []
    assert only_error(model(model_name="a" * 257))[0] == "spec.modelName"


def test_pool_ref_required() -> None:
    text = model().replace("  poolRef: {name: p}\n", "")
    assert only_error(text) == ("spec.poolRef", "required field is missing")


@pytest.mark.parametrize("weight", ["0", "1000001", "-5"])
def test_target_weight_range(weight: str) -> None:
    assert (
        only_error(model(extra=f"  targetModels: [{{name: a, weight: {weight}}}]\n"))[0]
        == "spec.targetModels[0].weight"
    )


def test_weights_all_or_none() -> None:
    field, message = only_error(model(extra="  targetModels: [{name: a, weight: 1}, {name: b}]\n"))
    assert field == "spec.targetModels" and "all models, or none" in message
    assert load_text(model(extra="  targetModels: [{name: a}, {name: b}]\n")).errors == []


def test_at_most_10_target_models() -> None:
    ten = "[" + ", ".join(f"{{name: a{i}}}" for i in range(10)) + "]"
    eleven = "[" + ", ".join(f"{{name: a{i}}}" for i in range(11)) + "]"
    assert load_text(model(extra=f"  targetModels: {ten}\n")).errors == []
    assert only_error(model(extra=f"  targetModels: {eleven}\n"))[0] == "spec.targetModels"


def test_target_name_max_253() -> None:
    assert (
        only_error(model(extra=f"  targetModels: [{{name: {'a' * 254}}}]\n"))[0]
        == "spec.targetModels[0].name"
    )


# InferenceObjective and InferenceModelRewrite (both API groups): test_objective_rules.py


# -- Gateway --------------------------------------------------------------------------

GATEWAY = """\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: g}}
spec:
  gatewayClassName: c
  listeners: {listeners}
"""


def gateway(listeners: str) -> str:
    return GATEWAY.format(listeners=listeners)


def test_gateway_valid_http_and_https() -> None:
    secret = (
        "---\napiVersion: v1\nkind: Secret\nmetadata: {name: cert}\ntype: kubernetes.io/tls\n"
        "stringData: {tls.crt: '-----BEGIN CERTIFICATE-----', tls.key: '-----BEGIN PRIVATE KEY-----'}\n"
    )
    ms = load_text(
        gateway(
            "[{name: http, protocol: HTTP, port: 80}, {name: https, protocol: HTTPS, port: 443, hostname: '*.example.com', tls: {certificateRefs: [{name: cert}]}}]"
        )
        + secret
    )
    assert ms.errors == [] and ms.warnings == []
    gw = ms.gateways[0]
    found = ms.tls_for_listener(gw, gw.spec.listeners[1])
    assert found is not None and found.cert_pem.startswith("-----BEGIN CERTIFICATE")
    assert ms.tls_for_listener(gw, gw.spec.listeners[0]) is None


def test_listener_protocol_enum() -> None:
    assert only_error(gateway("[{name: a, protocol: TCP, port: 80}]"))[0] == "spec.listeners[0].protocol"


def test_listener_port_range() -> None:
    assert only_error(gateway("[{name: a, protocol: HTTP, port: 0}]"))[0] == "spec.listeners[0].port"


def test_https_needs_certificate_refs() -> None:
    field, message = only_error(gateway("[{name: a, protocol: HTTPS, port: 443}]"))
    assert field == "spec.listeners[0]" and "certificateRefs" in message


def test_http_must_not_have_tls() -> None:
    field, message = only_error(
        gateway("[{name: a, protocol: HTTP, port: 80, tls: {certificateRefs: [{name: c}]}}]")
    )
    assert field == "spec.listeners[0]" and "tls must not be specified" in message


def test_https_listener_with_missing_secret_warns() -> None:
    ms = load_text(gateway("[{name: a, protocol: HTTPS, port: 443, tls: {certificateRefs: [{name: nope}]}}]"))
    assert ms.errors == []
    assert [w.field for w in ms.warnings] == ["spec.listeners[0].tls.certificateRefs"]


def test_listener_names_unique() -> None:
    text = gateway("[{name: a, protocol: HTTP, port: 80}, {name: a, protocol: HTTP, port: 81}]")
    assert only_error(text) == ("spec.listeners", "listener name must be unique within the Gateway")


def test_listener_port_protocol_hostname_unique() -> None:
    text = gateway("[{name: a, protocol: HTTP, port: 80}, {name: b, protocol: HTTP, port: 80}]")
    assert "combination of port, protocol and hostname" in only_error(text)[1]


def test_listeners_required_non_empty() -> None:
    assert only_error(gateway("[]"))[0] == "spec.listeners"


@pytest.mark.parametrize("hostname", ["Example.com", "*", "a..b", "-a.com", "*.*.a.com"])
def test_listener_hostname_pattern(hostname: str) -> None:
    text = gateway(f"[{{name: a, protocol: HTTP, port: 80, hostname: '{hostname}'}}]")
    assert only_error(text)[0] == "spec.listeners[0].hostname"


def test_listener_name_pattern() -> None:
    assert only_error(gateway("[{name: Http, protocol: HTTP, port: 80}]"))[0] == "spec.listeners[0].name"


# -- HTTPRoute ------------------------------------------------------------------------

ROUTE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r}}
spec:
  parentRefs: [{{name: g}}]
  rules:
  - {rule}
"""


def route(rule: str) -> str:
    return ROUTE.format(rule=rule)


def route_error(rule: str) -> tuple[str | None, str]:
    return only_error(route(rule))


def test_route_defaults() -> None:
    ms = load_text(ROUTE.format(rule="backendRefs: [{name: svc, port: 80}]"))
    assert ms.errors == []
    rule = ms.routes[0].spec.rules[0]
    assert rule.matches[0].path is not None
    assert (rule.matches[0].path.type, rule.matches[0].path.value) == ("PathPrefix", "/")
    assert rule.backend_refs[0].weight == 1 and rule.backend_refs[0].kind == "Service"
    ref = ms.routes[0].spec.parent_refs[0]
    assert (ref.group, ref.kind) == ("gateway.networking.k8s.io", "Gateway")
    empty = load_text(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {}\n"
    )
    assert empty.errors == [] and len(empty.routes[0].spec.rules) == 1


def test_path_default_type_is_prefix() -> None:
    ms = load_text(route("matches: [{path: {value: /v1}}]"))
    assert ms.routes[0].spec.rules[0].matches[0].path.type == "PathPrefix"  # type: ignore[union-attr]


@pytest.mark.parametrize("value", ["v1", "/a//b", "/a/./b", "/a/../b", "/a#x", "/a/.."])
def test_path_value_rules(value: str) -> None:
    assert (
        route_error(f"matches: [{{path: {{type: Exact, value: '{value}'}}}}]")[0]
        == "spec.rules[0].matches[0].path"
    )


def test_path_regex_compiles() -> None:
    assert load_text(route("matches: [{path: {type: RegularExpression, value: '^/v1/.*$'}}]")).errors == []
    assert (
        route_error("matches: [{path: {type: RegularExpression, value: '('}}]")[0]
        == "spec.rules[0].matches[0].path"
    )


def test_path_type_enum() -> None:
    assert (
        route_error("matches: [{path: {type: Prefix, value: /}}]")[0] == "spec.rules[0].matches[0].path.type"
    )


def test_header_match_rules() -> None:
    assert (
        load_text(
            route(
                "matches: [{headers: [{name: x-user, value: a}, {type: RegularExpression, name: x-b, value: 'b.*'}]}]"
            )
        ).errors
        == []
    )
    assert (
        route_error("matches: [{headers: [{name: 'bad header', value: a}]}]")[0]
        == "spec.rules[0].matches[0].headers[0].name"
    )
    assert (
        route_error("matches: [{headers: [{name: x, value: a, type: Prefix}]}]")[0]
        == "spec.rules[0].matches[0].headers[0].type"
    )
    assert (
        route_error("matches: [{headers: [{name: X-A, value: a}, {name: x-a, value: b}]}]")[0]
        == "spec.rules[0].matches[0].headers"
    )


def test_query_param_rules() -> None:
    assert load_text(route("matches: [{queryParams: [{name: debug, value: '1'}]}]")).errors == []
    assert (
        route_error("matches: [{queryParams: [{name: a, value: '1'}, {name: a, value: '2'}]}]")[0]
        == "spec.rules[0].matches[0].queryParams"
    )


def test_method_enum() -> None:
    assert load_text(route("matches: [{method: POST}]")).errors == []
    assert route_error("matches: [{method: post}]")[0] == "spec.rules[0].matches[0].method"


def test_backend_weight_range() -> None:
    assert (
        load_text(
            route("backendRefs: [{name: s, port: 80, weight: 0}, {name: t, port: 80, weight: 1000000}]")
        ).errors
        == []
    )
    assert (
        route_error("backendRefs: [{name: s, port: 80, weight: 1000001}]")[0]
        == "spec.rules[0].backendRefs[0].weight"
    )


def test_service_backend_needs_port() -> None:
    field, message = route_error("backendRefs: [{name: s}]")
    assert field == "spec.rules[0].backendRefs[0]" and "port is required" in message


def test_inference_pool_backend_needs_no_port() -> None:
    ms = load_text(route("backendRefs: [{name: p, group: inference.networking.k8s.io, kind: InferencePool}]"))
    assert ms.errors == [] and ms.routes[0].spec.rules[0].backend_refs[0].is_inference_pool


def test_request_header_modifier() -> None:
    ok = "filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-a, value: '1'}], add: [{name: x-b, value: '2'}], remove: [x-c]}}]"
    ms = load_text(route(ok))
    assert ms.errors == []
    modifier = ms.routes[0].spec.rules[0].filters[0].request_header_modifier
    assert modifier is not None and modifier.remove == ["x-c"]
    assert "must be specified" in route_error("filters: [{type: RequestHeaderModifier}]")[1]
    both = "filters: [{type: RequestHeaderModifier, requestHeaderModifier: {}, urlRewrite: {}}]"
    assert "must be nil" in route_error(both)[1]
    dup = "filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: a, value: '1'}, {name: A, value: '2'}]}}]"
    assert route_error(dup)[0] == "spec.rules[0].filters[0].requestHeaderModifier"
    twice = "filters: [{type: RequestHeaderModifier, requestHeaderModifier: {}}, {type: RequestHeaderModifier, requestHeaderModifier: {}}]"
    assert route_error(twice)[0] == "spec.rules[0].filters"


def test_filter_type_enum() -> None:
    assert route_error("filters: [{type: Rewrite}]")[0] == "spec.rules[0].filters[0].type"


def test_timeouts() -> None:
    ms = load_text(route("timeouts: {request: 1m30s, backendRequest: 500ms}"))
    assert ms.errors == []
    timeouts = ms.routes[0].spec.rules[0].timeouts
    assert timeouts is not None and timeouts.request_s == 90.0 and timeouts.backend_request_s == 0.5
    assert route_error("timeouts: {request: 10}")[0] == "spec.rules[0].timeouts.request"
    assert route_error("timeouts: {request: 5s, backendRequest: 6s}")[0] == "spec.rules[0].timeouts"
    assert load_text(route("timeouts: {request: 0s, backendRequest: 6s}")).errors == []


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10.0), ("1m30s", 90.0), ("1h", 3600.0), ("250ms", 0.25), ("1h1m1s1ms", 3661.001)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "1.5s", "1d", "123456s", "1h1m1s1ms1s", "-1s"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_route_limits() -> None:
    many_hosts = "[" + ", ".join(f"h{i}.example.com" for i in range(17)) + "]"
    text = ROUTE.format(rule="{}").replace("  parentRefs:", f"  hostnames: {many_hosts}\n  parentRefs:")
    assert only_error(text)[0] == "spec.hostnames"
    backends = "[" + ", ".join(f"{{name: s{i}, port: 80}}" for i in range(17)) + "]"
    assert route_error(f"backendRefs: {backends}")[0] == "spec.rules[0].backendRefs"


# -- HealthCheckPolicy -----------------------------------------------------------------

HCP = """\
apiVersion: networking.gke.io/v1
kind: HealthCheckPolicy
metadata: {{name: h}}
spec:
  targetRef: {{group: inference.networking.x-k8s.io, kind: InferencePool, name: p}}
  default: {default}
"""


def test_health_check_policy_rules() -> None:
    assert (
        load_text(
            HCP.format(
                default="{checkIntervalSec: 5, config: {type: HTTP, httpHealthCheck: {requestPath: /health, port: 8000}}}"
            )
        ).errors
        == []
    )
    assert only_error(HCP.format(default="{checkIntervalSec: 301}"))[0] == "spec.default.checkIntervalSec"
    assert only_error(HCP.format(default="{unhealthyThreshold: 11}"))[0] == "spec.default.unhealthyThreshold"
    assert only_error(HCP.format(default="{config: {type: HTTP, httpHealthCheck: {requestPath: health}}}"))[
        0
    ] == ("spec.default.config.httpHealthCheck.requestPath")
    assert only_error(HCP.format(default="{config: {type: HTTP, httpHealthCheck: {port: 0}}}"))[0] == (
        "spec.default.config.httpHealthCheck.port"
    )
    assert only_error(HCP.format(default="{config: {type: UDP}}"))[0] == "spec.default.config.type"


def test_health_check_policy_target_ref_required() -> None:
    text = HCP.format(default="{}").replace(
        "  targetRef: {group: inference.networking.x-k8s.io, kind: InferencePool, name: p}\n", ""
    )
    assert only_error(text) == ("spec.targetRef", "required field is missing")
