"""`inferpool epp --pool-name` against the fake API server: kubeconfig, watches, TokenReview auth, Lease."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from test_kubernetes_fakeapi import V1, XK, FakeApiServer, inference_model, pod, pool_v1
from test_kubernetes_source import eventually

from inferpool.extproc.app import EppApp, EppConfig
from inferpool.extproc.server import GrpcConfig
from inferpool.sim import SimConfig, SimReplica
from inferpool.sources.kubernetes.client import client_for
from inferpool.sources.kubernetes.leader import LeaderElector

LABELS = {"app": "vllm-llama3-8b-instruct"}
LEASES = "/apis/coordination.k8s.io/v1/namespaces/default/leases"


@pytest.fixture
async def api() -> AsyncIterator[FakeApiServer]:
    server = FakeApiServer()
    await server.start()
    yield server
    await server.stop()


def kubeconfig(tmp_path: Path, url: str) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster: {{server: "{url}"}}
users:
- name: epp
  user: {{token: epp-service-account-token}}
contexts:
- name: fake
  context: {{cluster: fake, user: epp, namespace: default}}
current-context: fake
"""
    )
    return str(path)


async def test_epp_kubernetes_mode_endpoints_and_metrics_auth(
    api: FakeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    replica = SimReplica(SimConfig(port=0, lora_modules=["food-review"]))
    await replica.start()
    await replica.wait_ready()
    api.put(
        FakeApiServer.custom(V1, "v1", "inferencepools"),
        pool_v1("vllm-llama3-8b-instruct", LABELS, [replica.port]),
    )
    api.put(FakeApiServer.pods(), pod("vllm-0", "127.0.0.1", LABELS))
    api.put(
        FakeApiServer.custom(XK, "v1alpha2", "inferencemodels"),
        inference_model("food", "food-review", "vllm-llama3-8b-instruct"),
    )
    api.tokens = {
        "prometheus-token": {
            "username": "system:serviceaccount:monitoring:prometheus",
            "uid": "1",
            "groups": ["g"],
        },
        "nobody-token": {"username": "system:serviceaccount:default:nobody", "groups": []},
    }
    api.allowed_users = {"system:serviceaccount:monitoring:prometheus"}
    config = EppConfig(
        pool_name="vllm-llama3-8b-instruct",
        grpc=GrpcConfig(host="127.0.0.1", port=0, health_port=0, secure=False),
        metrics_host="127.0.0.1",
        metrics_port=0,
        kubeconfig=kubeconfig(tmp_path, api.url),
        leader_election=True,
        sync_timeout_s=20,
    )
    app = EppApp(config)
    try:
        await asyncio.wait_for(app.start(), 30)
        assert app.pool_key == "default/vllm-llama3-8b-instruct"
        assert [e.hostport for e in app.datastore.ready_endpoints(app.pool_key)] == [
            f"127.0.0.1:{replica.port}"
        ]
        assert [m.model_name for m in app.datastore.models()] == ["food-review"]
        # the scraper reads the pod's metrics through the watched endpoint
        endpoint = app.datastore.endpoints(app.pool_key)[0]
        await eventually(lambda: endpoint.metrics.scraped_at > 0)
        # the leader writes the InferenceModel's Accepted condition
        await eventually(lambda: any(name == "food" for name, _ in api.patches))
        assert "epp-leader" in next(iter(api.collections[LEASES]))

        metrics = f"http://127.0.0.1:{app.metrics_port}/metrics"
        async with aiohttp.ClientSession() as http:
            async with http.get(metrics) as response:
                assert response.status == 401
            for token, status in (("prometheus-token", 200), ("nobody-token", 403), ("forged", 403)):
                async with http.get(metrics, headers={"Authorization": f"Bearer {token}"}) as response:
                    assert response.status == status, token
                    if status == 200:
                        assert "inference_pool_ready_pods" in await response.text()
            reviews = api.reviews
            async with http.get(metrics, headers={"Authorization": "Bearer prometheus-token"}) as response:
                assert response.status == 200
            assert api.reviews == reviews  # cached
        # a pod going away in the cluster leaves the pool
        api.delete(FakeApiServer.pods(), "vllm-0")
        await eventually(lambda: not app.datastore.endpoints("default/vllm-llama3-8b-instruct"))
    finally:
        await app.stop()
        await replica.stop()
    # a clean stop gave the Lease up for the next replica
    [lease] = api.collections[LEASES].values()
    assert lease["spec"]["holderIdentity"] == ""


async def test_leader_election_one_leader_then_takeover(api: FakeApiServer) -> None:
    clients = [client_for(api.url), client_for(api.url)]
    a = LeaderElector(
        clients[0],
        "default",
        "pool-epp",
        "epp-a",
        lease_duration_s=0.6,
        renew_deadline_s=0.4,
        retry_period_s=0.05,
    )
    b = LeaderElector(
        clients[1],
        "default",
        "pool-epp",
        "epp-b",
        lease_duration_s=0.6,
        renew_deadline_s=0.4,
        retry_period_s=0.05,
    )
    try:
        a.start()
        await eventually(a.is_leader)
        b.start()
        for _ in range(10):  # b keeps trying but a keeps renewing
            await asyncio.sleep(0.05)
            assert a.is_leader() and not b.is_leader()
        await a.stop(release=False)  # a dies without releasing: b takes over once the lease expires
        await eventually(b.is_leader)
        lease = api.collections[LEASES]["pool-epp"]
        assert lease["spec"]["holderIdentity"] == "epp-b" and lease["spec"]["leaseTransitions"] == 1
        # a clean shutdown gives the Lease up: a restarted a takes over without waiting for expiry
        await b.stop()
        assert api.collections[LEASES]["pool-epp"]["spec"]["holderIdentity"] == ""
        a.start()
        await eventually(a.is_leader)
        assert api.collections[LEASES]["pool-epp"]["spec"]["leaseTransitions"] == 2
    finally:
        await a.stop()
        await b.stop()
        for c in clients:
            await c.close()


def test_cli_without_any_cluster_config_fails_clearly(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"}
    env["KUBECONFIG"] = str(tmp_path / "missing")
    env["HOME"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "inferpool.cli", "epp", "--pool-name", "p", "--host", "127.0.0.1",
         "--grpc-port", "0", "--grpc-health-port", "0", "--metrics-port", "0"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert done.returncode == 1
    assert "no usable Kubernetes configuration" in done.stderr
    assert "Traceback" not in done.stderr
