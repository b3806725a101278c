"""`inferpool envoy-config`: what it renders from a pool's manifests, and the choices it refuses
with a message naming the flag (the rendered file is run by a real Envoy in
tests/e2e/test_envoy_config_command.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from inferpool.extproc.envoy_command import envoy_config

ROOT = Path(__file__).resolve().parents[3]
QUICKSTART = ROOT / "examples" / "gke-quickstart"

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command("envoy-config")(envoy_config)


@app.callback()
def _root() -> None:
    """Keep envoy-config a subcommand, as in the real CLI."""


POOL = """\
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {{name: {name}}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  targetPorts: [{{number: 8000}}]
  endpointPickerRef: {{name: {name}-epp, port: {{number: 9002}}, failureMode: {mode}}}
"""


def pool_file(tmp_path: Path, *pools: tuple[str, str]) -> Path:
    path = tmp_path / "pools.yaml"
    path.write_text("---\n".join(POOL.format(name=name, mode=mode) for name, mode in pools))
    return path


def endpoints_file(tmp_path: Path, app_label: str, *addresses: str) -> Path:
    path = tmp_path / "endpoints.yaml"
    path.write_text(
        yaml.safe_dump({"endpoints": [{"address": a, "labels": {"app": app_label}} for a in addresses]})
    )
    return path


def run(*args: str | Path) -> Any:
    return CliRunner().invoke(app, ["envoy-config", *map(str, args)])


def manager(text: str) -> dict[str, Any]:
    config = yaml.safe_load(text)
    return config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]


def clusters(text: str) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in yaml.safe_load(text)["static_resources"]["clusters"]}


def socket_addresses(cluster: dict[str, Any]) -> list[tuple[str, int]]:
    return [
        (
            e["endpoint"]["address"]["socket_address"]["address"],
            e["endpoint"]["address"]["socket_address"]["port_value"],
        )
        for group in cluster["load_assignment"]["endpoints"]
        for e in group["lb_endpoints"]
    ]


def test_the_guides_pool_with_its_endpoints(tmp_path: Path) -> None:
    endpoints = endpoints_file(tmp_path, "vllm-llama3-8b-instruct", "10.0.0.11", "10.0.0.12")
    result = run(
        "-f", QUICKSTART, "--endpoints", endpoints, "--epp", "10.0.0.5:9002", "--epp", "10.0.0.6:9002"
    )
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert text.startswith(
        "# rendered by inferpool envoy-config: InferencePool default/vllm-llama3-8b-instruct"
    )
    hcm = manager(text)
    ext_proc = next(f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.ext_proc")
    assert ext_proc["typed_config"]["failure_mode_allow"] is False  # the guide's pool is FailClose
    found = clusters(text)
    # the pool's target port for each endpoint that names none; both picker replicas
    assert socket_addresses(found["pool_endpoints"]) == [("10.0.0.11", 8000), ("10.0.0.12", 8000)]
    assert socket_addresses(found["ext_proc"]) == [("10.0.0.5", 9002), ("10.0.0.6", 9002)]
    picked = hcm["route_config"]["virtual_hosts"][0]["routes"][0]
    assert picked["route"]["cluster"] == "pool_endpoints"  # honours --fallback-endpoints lists
    assert "FailClose, 2 endpoint(s)" in result.stderr


def test_without_endpoints_only_the_picked_address_is_reached(tmp_path: Path) -> None:
    result = run("-f", QUICKSTART)
    assert result.exit_code == 0, result.output
    picked = manager(result.stdout)["route_config"]["virtual_hosts"][0]["routes"][0]
    assert picked["route"]["cluster"] == "original_destination_cluster"


def test_a_fail_open_pool(tmp_path: Path) -> None:
    pools = pool_file(tmp_path, ("open", "FailOpen"))
    refused = run("-f", pools)
    assert refused.exit_code == 1
    assert "FailOpen sends unpicked requests to them" in refused.stderr and "--endpoints" in refused.stderr
    endpoints = endpoints_file(tmp_path, "open", "10.0.0.11")
    result = run("-f", pools, "--endpoints", endpoints)
    assert result.exit_code == 0, result.output
    hcm = manager(result.stdout)
    ext_proc = next(f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.ext_proc")
    assert ext_proc["typed_config"]["failure_mode_allow"] is True
    unpicked = hcm["route_config"]["virtual_hosts"][0]["routes"][-1]
    assert unpicked["route"]["cluster"] == "pool_endpoints"
    streamed = run("-f", pools, "--endpoints", endpoints, "--accounting", "stream")
    assert streamed.exit_code == 0 and "fails every request while the picker is down" in streamed.stderr


def test_accounting_modes_name_the_picker_flags_they_need(tmp_path: Path) -> None:
    result = run("-f", QUICKSTART, "--accounting", "status", "--no-epp-tls")
    assert result.exit_code == 0, result.output
    assert "--every-response-status" in result.stderr and "--secure-serving=false" in result.stderr
    assert "transport_socket" not in clusters(result.stdout)["ext_proc"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--listen", "8081"], "--listen '8081': expected IP:PORT"),
        (["--epp", "picker:9002"], "'picker' is not an IP address"),
        (["--accounting", "full"], "--accounting 'full': one of sampled, stream, status"),
        (["--failure-mode", "Open"], "--failure-mode 'Open': FailOpen or FailClose"),
        (["--picked-cluster", "any"], "--picked-cluster 'any': one of original-destination, pool-endpoints"),
        (["--picked-cluster", "pool-endpoints"], "the pool-endpoints cluster lists them"),
        (["--pool-name", "other"], "no InferencePool default/other in the manifests"),
    ],
)
def test_refused_choices_name_the_flag(args: list[str], message: str) -> None:
    result = run("-f", QUICKSTART, *args)
    assert result.exit_code == 1
    assert message in result.stderr and "Traceback" not in result.output


def test_several_pools_need_a_name_and_host_names_are_refused(tmp_path: Path) -> None:
    pools = pool_file(tmp_path, ("a", "FailClose"), ("b", "FailClose"))
    result = run("-f", pools)
    assert result.exit_code == 1 and "several InferencePools (default/a, default/b)" in result.stderr
    named = endpoints_file(tmp_path, "b", "vllm-0.example")
    result = run("-f", pools, "--pool-name", "b", "--endpoints", named)
    assert result.exit_code == 1 and "'vllm-0.example' is a host name" in result.stderr


def test_manifests_that_do_not_validate(tmp_path: Path) -> None:
    broken = tmp_path / "pool.yaml"
    broken.write_text(POOL.format(name="a", mode="FailClose").replace("8000", '"8000"'))
    result = run("-f", broken)
    assert result.exit_code == 1
    assert "the manifests do not validate" in result.stderr
    assert "pool.yaml:6: InferencePool/a: spec.targetPorts[0].number: must be an integer" in result.stderr


def test_an_endpoints_file_that_matches_nothing_is_said(tmp_path: Path) -> None:
    endpoints = endpoints_file(tmp_path, "some-other-app", "10.0.0.11")
    result = run("-f", QUICKSTART, "--endpoints", endpoints)
    assert result.exit_code == 0, result.output
    assert "warning: no endpoint of" in result.stderr and "vllm-llama3-8b-instruct" in result.stderr
    picked = manager(result.stdout)["route_config"]["virtual_hosts"][0]["routes"][0]
    assert picked["route"]["cluster"] == "original_destination_cluster"


def test_an_ipv6_listener_renders_whatever_else_is_chosen() -> None:
    # --no-epp-tls makes the renderer read its own output back as YAML: "::1" must be quoted
    for extra in ([], ["--no-epp-tls"]):
        result = run("-f", QUICKSTART, "--listen", "[::1]:8081", *extra)
        assert result.exit_code == 0, result.output
        listener = yaml.safe_load(result.stdout)["static_resources"]["listeners"][0]
        assert listener["address"]["socket_address"] == {"address": "::1", "port_value": 8081}
