"""The guide's manifests in examples/gke-quickstart/ load clean and mean what the guide says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from inferpool.api import load_manifests
from inferpool.sources.convert import to_state
from inferpool.state import Criticality, HealthCheck, TargetModel

from .cli_app import app

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "gke-quickstart"


def test_example_has_no_problems() -> None:
    manifests = load_manifests(EXAMPLE)
    assert manifests.errors == []
    assert manifests.warnings == []
    assert {i.kind for i in manifests.ignored} == {
        "ClusterRole",
        "ClusterRoleBinding",
        "ServiceAccount",
        "Secret",
    }


def test_example_objects() -> None:
    manifests = load_manifests(EXAMPLE)
    state = to_state(manifests)
    (pool,) = state.pools
    assert (pool.name, pool.selector, pool.target_ports) == (
        "vllm-llama3-8b-instruct",
        {"app": "vllm-llama3-8b-instruct"},
        [8000],
    )
    assert pool.endpoint_picker == "vllm-llama3-8b-instruct-epp"
    assert pool.failure_mode == "FailClose"
    # port 8000 is the pool's target port: each endpoint is probed on its own serving port
    assert pool.health_check == HealthCheck(path="/health", port=None)
    models = {m.name: m for m in state.models}
    assert models["food-review"].criticality is Criticality.STANDARD
    assert models["food-review"].targets == [TargetModel("food-review", 100)]
    assert models["llama3-base-model"].model_name == "meta-llama/Llama-3.1-8B-Instruct"
    assert models["llama3-base-model"].criticality is Criticality.CRITICAL

    (deployment,) = manifests.deployments
    assert deployment.replicas == 3 and deployment.port == 8000
    assert deployment.model == "meta-llama/Llama-3.1-8B-Instruct"
    assert (deployment.enable_lora, deployment.max_loras, deployment.max_cpu_loras) == (True, 2, 12)
    assert deployment.readiness_path == "/health"
    lora = manifests.lora_config_for(deployment)
    assert lora is not None and lora.key == "configmap.yaml"
    assert [a.id for a in lora.config.ensure_exist.models] == ["food-review", "cad-fabricator"]
    assert lora.config.base_model_of(lora.config.ensure_exist.models[0]) == "meta-llama/Llama-3.1-8B-Instruct"

    (gateway,) = manifests.gateways
    assert gateway.spec.gateway_class_name == "gke-l7-regional-external-managed"
    assert [(listener.protocol, listener.port) for listener in gateway.spec.listeners] == [("HTTP", 80)]
    (route,) = manifests.routes_for(gateway)
    assert route.name == "my-route"
    rule = route.spec.rules[0]
    assert rule.matches[0].path is not None and rule.matches[0].path.value == "/"
    assert rule.backend_refs[0].is_inference_pool and rule.backend_refs[0].weight == 1


def test_validate_cli_clean() -> None:
    result = CliRunner().invoke(app, ["validate", "-f", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert "0 error(s), 0 warning(s), 6 ignored" in result.output
    assert result.output.count("note: ") == 6


def test_validate_subprocess_clean() -> None:
    exe = Path(sys.executable).parent / "inferpool"
    proc = subprocess.run(
        [str(exe), "validate", "-f", str(EXAMPLE)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
