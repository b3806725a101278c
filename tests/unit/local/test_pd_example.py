"""examples/pd/ loads clean, labels its pods by role as llm-d does, and makes `up` run `pd`."""

from __future__ import annotations

from pathlib import Path

from inferpool.api import load_manifests
from inferpool.local.stack import default_profile
from inferpool.roles import ROLE_LABEL
from inferpool.sim.nixl import KVTransferConfig
from inferpool.sources.convert import to_state

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "pd"
GUIDE = EXAMPLE.parent / "gke-quickstart"


def test_pd_example_loads_clean_with_both_roles_in_one_pool() -> None:
    manifests = load_manifests(EXAMPLE)
    assert manifests.errors == [] and manifests.warnings == []
    (pool,) = to_state(manifests).pools
    assert pool.target_ports == [8000] and pool.endpoint_picker == "vllm-llama3-8b-pd-epp"
    deployments = {d.name: d for d in manifests.deployments}
    assert set(deployments) == {"vllm-llama3-8b-prefill", "vllm-llama3-8b-decode"}
    for name, role, vllm_port in (
        ("vllm-llama3-8b-prefill", "prefill", 8000),
        ("vllm-llama3-8b-decode", "decode", 8200),
    ):
        deployment = deployments[name]
        assert pool.selects(deployment.labels) and deployment.labels[ROLE_LABEL] == role
        assert deployment.container == "vllm" and deployment.port == vllm_port
        kv = KVTransferConfig.from_vllm_args(deployment.args)
        assert kv is not None and kv.kv_connector == "NixlConnector"


def test_up_runs_pd_for_role_labelled_pods_only() -> None:
    assert default_profile(load_manifests(EXAMPLE)) == "pd"
    assert default_profile(load_manifests(GUIDE)) is None
