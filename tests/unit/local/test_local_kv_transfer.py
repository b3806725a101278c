"""`inferpool up`: a Deployment's `--kv-transfer-config` reaches its simulated replicas."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferpool.api import load_manifests
from inferpool.local.stack import UpConfig, sim_configs
from inferpool.sim import SimConfig
from inferpool.sources.manifest import ManifestLoadFailed

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: vllm-prefill
spec:
  replicas: 2
  selector:
    matchLabels: {{app: vllm-prefill}}
  template:
    metadata:
      labels: {{app: vllm-prefill, llm-d.ai/role: prefill}}
    spec:
      containers:
        - name: vllm
          image: vllm/vllm-openai:latest
          args: ["--model", "meta-llama/Llama-3.1-8B-Instruct", "--port", "8200",
                 "--kv-transfer-config", '{kv}']
"""


def _configs(tmp_path: Path, kv: str) -> list[SimConfig]:
    path = tmp_path / "prefill.yaml"
    path.write_text(DEPLOYMENT.format(kv=kv))
    manifests = load_manifests([str(path)])
    assert not manifests.errors, manifests.errors
    (deployment,) = manifests.deployments
    return sim_configs(deployment, manifests, UpConfig(paths=(str(path),)), set())


def test_kv_transfer_config_reaches_each_replica_with_its_own_engine(tmp_path: Path) -> None:
    configs = _configs(tmp_path, '{"kv_connector":"NixlConnector","kv_role":"kv_producer"}')
    assert len(configs) == 2
    kvs = [c.kv_transfer for c in configs]
    assert all(kv is not None and kv.kv_role == "kv_producer" for kv in kvs)
    assert kvs[0].engine_id != kvs[1].engine_id  # type: ignore[union-attr]


def test_a_bad_kv_transfer_config_is_a_manifest_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestLoadFailed, match=r"prefill\.yaml:\d+: Deployment/vllm-prefill: args: "
                       r"--kv-transfer-config: .*models only NixlConnector"):  # fmt: skip
        _configs(tmp_path, '{"kv_connector":"P2pNcclConnector","kv_role":"kv_producer"}')
