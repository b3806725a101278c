"""`inferpool pd-sidecar --pool-name` against the fake API server: its allowlist follows the pool's pods."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_kubernetes_epp import kubeconfig
from test_kubernetes_fakeapi import V1, FakeApiServer, pod, pool_v1
from test_kubernetes_source import eventually

from inferpool.gateway.pd_sidecar import PdSidecar, SidecarConfig

LABELS = {"app": "vllm-pd"}
POOLS = FakeApiServer.custom(V1, "v1", "inferencepools")


@pytest.fixture
async def api() -> AsyncIterator[FakeApiServer]:
    server = FakeApiServer()
    await server.start()
    yield server
    await server.stop()


async def test_allowlist_follows_the_pools_pods(
    api: FakeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    api.put(POOLS, pool_v1("pd-pool", LABELS, [8000]))
    api.put(POOLS, pool_v1("other-pool", {"app": "other"}, [8000]))
    api.put(FakeApiServer.pods(), pod("prefill-0", "10.0.0.7", {**LABELS, "llm-d.ai/role": "prefill"}))
    api.put(FakeApiServer.pods(), pod("other-0", "10.0.0.99", {"app": "other"}))
    sidecar = PdSidecar(
        SidecarConfig(
            host="127.0.0.1",
            port=0,
            pool_name="pd-pool",
            pool_group=V1,
            kubeconfig=kubeconfig(tmp_path, api.url),
        )
    )
    await sidecar.start()
    try:
        allow = sidecar.allowlist
        assert allow.allows("10.0.0.7:8000") and allow.allows("prefill-0:8000")
        assert not allow.allows("10.0.0.99:8000")  # a pod, but not of this pool

        # a new pod of the pool is allowed once the watch brings it; a deleted one no longer
        api.put(FakeApiServer.pods(), pod("prefill-1", "10.0.0.8", {**LABELS, "llm-d.ai/role": "prefill"}))
        await eventually(lambda: allow.allows("10.0.0.8:8000"))
        api.delete(FakeApiServer.pods(), "prefill-0")
        await eventually(lambda: not allow.allows("10.0.0.7:8000"))
        assert api.patches == []  # read-only: the picker writes the pool's status, never a sidecar
    finally:
        await sidecar.stop()


async def test_an_unknown_pool_stops_the_start(
    api: FakeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    config = SidecarConfig(
        host="127.0.0.1", port=0, pool_name="nope", pool_group=V1, kubeconfig=kubeconfig(tmp_path, api.url)
    )
    config.sync_timeout_s = 0.5
    with pytest.raises(ValueError, match="InferencePool nope not found"):
        await PdSidecar(config).start()
