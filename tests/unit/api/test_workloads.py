"""vLLM Deployments, LoRA ConfigMaps and TLS Secrets parsed into typed records."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from inferpool.api import load_text
from inferpool.api.lora_config import LoRAConfigError, load_lora_config

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: d, namespace: ns}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: m}}}}
  template:
    metadata: {{labels: {{app: m, tier: gpu}}}}
    spec:
      containers:
      - name: server
        image: {image}
        {extra}
"""


def deployment(image: str = "vllm/vllm-openai:v0.9.0", extra: str = "", replicas: int = 1):  # type: ignore[no-untyped-def]
    ms = load_text(DEPLOYMENT.format(image=image, extra=extra, replicas=replicas))
    assert ms.errors == [], [str(e) for e in ms.errors]
    assert len(ms.deployments) == 1, ms.ignored
    return ms.deployments[0]


def test_model_and_flags_from_args() -> None:
    d = deployment(
        extra='args: ["--model=Qwen/Qwen3-0.6B", "--served-model-name", "qwen", "--max_loras", "4", "--enable-lora", "--port", "9000"]'
    )
    assert (d.model, d.served_model_name, d.port, d.max_loras, d.enable_lora) == (
        "Qwen/Qwen3-0.6B",
        "qwen",
        9000,
        4,
        True,
    )
    assert (d.name, d.namespace, d.replicas, d.labels) == ("d", "ns", 1, {"app": "m", "tier": "gpu"})
    assert d.max_cpu_loras is None and d.lora_config_map is None


def test_vllm_serve_positional_model_any_image() -> None:
    d = deployment(
        image="python:3.12",
        extra='command: ["vllm", "serve", "meta-llama/Llama-3.1-8B-Instruct", "--port", "8001"]',
    )
    assert (d.model, d.port, d.enable_lora) == ("meta-llama/Llama-3.1-8B-Instruct", 8001, False)
    assert d.served_model_name == "meta-llama/Llama-3.1-8B-Instruct"


def test_shell_command_is_split_and_env_expanded() -> None:
    extra = (
        'command: ["sh", "-c", "exec vllm serve $(MODEL) --port $(PORT) --max-loras 3"]\n'
        '        env: [{name: MODEL, value: org/model}, {name: PORT, value: "8123"}]'
    )
    d = deployment(image="ubuntu", extra=extra)
    assert (d.model, d.port, d.max_loras) == ("org/model", 8123, 3)


def test_port_falls_back_to_env_then_container_port_then_8000() -> None:
    assert deployment(extra='env: [{name: PORT, value: "7000"}]').port == 7000
    assert deployment(extra="ports: [{containerPort: 7100}]").port == 7100
    assert deployment().port == 8000


def test_missing_model_is_a_warning() -> None:
    ms = load_text(DEPLOYMENT.format(image="vllm/vllm-openai", extra="", replicas=2))
    assert ms.errors == [] and len(ms.deployments) == 1
    assert [w.message for w in ms.warnings] == [
        "vLLM container names no model (--model or `vllm serve MODEL`)"
    ]


def test_non_vllm_deployment_is_ignored() -> None:
    ms = load_text(DEPLOYMENT.format(image="nginx", extra='args: ["--port", "80"]', replicas=1))
    assert ms.deployments == [] and ms.errors == []
    assert ms.ignored[0].kind == "Deployment"


def test_deployment_errors() -> None:
    ms = load_text(
        DEPLOYMENT.format(
            image="vllm/vllm-openai", extra='args: ["--max-loras", "4", "--max-cpu-loras", "2"]', replicas=-1
        )
    )
    assert sorted((e.field, e.line) for e in ms.errors) == [
        ("spec.replicas", 5),
        ("spec.template.spec.containers[0].args", 13),
    ]


def test_lora_config_map_found_through_syncer_mount(tmp_path: Path) -> None:
    text = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
spec:
  template:
    metadata: {labels: {app: m}}
    spec:
      initContainers:
      - name: syncer
        image: lora-syncer
        env: [{name: DYNAMIC_LORA_ROLLOUT_CONFIG, value: /cfg/adapters.yaml}]
        volumeMounts: [{name: cfg, mountPath: /cfg/}]
      containers:
      - name: vllm
        image: vllm/vllm-openai
        args: [--model, base]
      volumes:
      - name: cfg
        configMap: {name: adapters}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: adapters}
data:
  adapters.yaml: |
    vLLMLoRAConfig:
      host: 127.0.0.1
      port: 8001
      ensureExist:
        models:
        - {id: a, source: org/a, base-model: base}
      ensureNotExist:
        models:
        - {id: old, source: org/old}
"""
    ms = load_text(text)
    assert ms.errors == [] and ms.warnings == []
    d = ms.deployments[0]
    assert (d.lora_config_map, d.lora_config_key) == ("adapters", "adapters.yaml")
    found = ms.lora_config_for(d)
    assert found is not None
    config = found.config
    assert (config.host, config.port) == ("127.0.0.1", 8001)
    assert config.ensure_exist.models[0].base_model == "base"
    assert [a.id for a in config.ensure_not_exist.models] == ["old"]

    renamed = load_text(text.replace("configMap: {name: adapters}", "configMap: {name: other}"))
    assert [w.field for w in renamed.warnings] == ["spec.template.spec.volumes"]
    # a broken config is one error, not also a warning that the ConfigMap is missing
    broken = load_text(text.replace("      ensureExist:", "      ensureExists:"))
    assert [e.field for e in broken.errors] == ["data[adapters.yaml].vLLMLoRAConfig.ensureExists"]
    assert broken.warnings == []
    # a key given twice inside the embedded config is an error on its own line
    twice = load_text(text.replace("      port: 8001\n", "      port: 8001\n      port: 8002\n"))
    assert [(e.line, e.field) for e in twice.errors] == [(29, "data[adapters.yaml].vLLMLoRAConfig.port")]


def test_lora_env_without_matching_mount_is_an_error() -> None:
    text = DEPLOYMENT.format(
        image="vllm/vllm-openai",
        extra="args: [--model, m]\n        env: [{name: DYNAMIC_LORA_ROLLOUT_CONFIG, value: /config/x.yaml}]",
        replicas=1,
    )
    ms = load_text(text)
    assert [e.field for e in ms.errors] == ["spec.template.spec.containers[0].env"]


def test_load_lora_config_file(tmp_path: Path) -> None:
    path = tmp_path / "configmap.yaml"
    path.write_text(
        "vLLMLoRAConfig:\n  name: x\n  defaultBaseModel: base\n  ensureExist:\n    models:\n"
        "    - id: a\n      source: org/a\n"
    )
    config = load_lora_config(path)
    assert (config.host, config.port, config.name) == ("localhost", 8000, "x")
    assert config.base_model_of(config.ensure_exist.models[0]) == "base"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("other: 1\n", "no top-level 'vLLMLoRAConfig'"),
        ("vLLMLoRAConfig: {port: 0}\n", "port"),
        ("vLLMLoRAConfig: [\n", "YAML syntax error"),
        (
            "vLLMLoRAConfig:\n  ensureExist: {models: [{id: a, source: s}]}\n  ensureNotExist: {models: [{id: a, source: s}]}\n",
            "both ensureExist and ensureNotExist",
        ),
        ("vLLMLoRAConfig:\n  ensureExist: {models: [{id: a, source: s}, {id: a, source: t}]}\n", "unique"),
    ],
)
def test_load_lora_config_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(content)
    with pytest.raises(LoRAConfigError, match=message):
        load_lora_config(path)
    with pytest.raises(LoRAConfigError, match="cannot read"):
        load_lora_config(tmp_path / "absent.yaml")


CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
KEY = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_tls_secret_base64_and_string_data() -> None:
    text = (
        "apiVersion: v1\nkind: Secret\nmetadata: {name: a}\ntype: kubernetes.io/tls\n"
        f"data: {{tls.crt: {b64(CERT)}, tls.key: {b64(KEY)}}}\n---\n"
        "apiVersion: v1\nkind: Secret\nmetadata: {name: b, namespace: edge}\ntype: kubernetes.io/tls\n"
        f"stringData: {{tls.crt: {json.dumps(CERT)}, tls.key: {json.dumps(KEY)}}}\n"
    )
    ms = load_text(text)
    assert ms.errors == []
    assert [(s.name, s.namespace, s.cert_pem, s.key_pem) for s in ms.secrets] == [
        ("a", "default", CERT, KEY),
        ("b", "edge", CERT, KEY),
    ]


def test_tls_secret_errors_and_other_types() -> None:
    ms = load_text(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: a}\ntype: kubernetes.io/tls\n"
        f"stringData: {{tls.crt: not-pem, tls.key: {json.dumps(KEY)}}}\n---\n"
        "apiVersion: v1\nkind: Secret\nmetadata: {name: o}\nstringData: {password: x}\n"
    )
    assert [(e.name, e.field) for e in ms.errors] == [("a", "data[tls.crt]")]
    assert [(i.name, i.reason) for i in ms.ignored] == [("o", "Secret type Opaque is not used by inferpool")]


def test_tls_for_listener_uses_ref_namespace() -> None:
    text = (
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: g}\n"
        "spec: {gatewayClassName: c, listeners: [{name: s, protocol: HTTPS, port: 443, "
        "tls: {certificateRefs: [{name: missing}, {name: cert, namespace: edge}]}}]}\n---\n"
        "apiVersion: v1\nkind: Secret\nmetadata: {name: cert, namespace: edge}\ntype: kubernetes.io/tls\n"
        f"stringData: {{tls.crt: {json.dumps(CERT)}, tls.key: {json.dumps(KEY)}}}\n"
    )
    ms = load_text(text)
    assert ms.errors == [] and ms.warnings == []
    gateway = ms.gateways[0]
    secret = ms.tls_for_listener(gateway, gateway.spec.listeners[0])
    assert secret is not None and secret.namespace == "edge"
