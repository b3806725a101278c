"""The simulator's fitted profile against the real servers: the same placement and the same
ordering of load, through `inferpool serve`. Never timing: the timed comparison is
bench/fidelity_vllm.py (docs/simulator.md, "Against a real engine")."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from inferpool.bench import fidelity as fid
from inferpool.bench.arrivals import arrival_times
from inferpool.bench.client import ClientConfig, run_trace
from inferpool.bench.compare import FleetPorts
from inferpool.bench.procs import Child
from realvllm.conftest import Assets
from realvllm.servers import VLLMServer

# Well below either fleet's saturation (≈26 req/s real, docs/simulator.md): placement, not
# queueing, decides. ≈30 lora-a requests, so that "most on replica 1" (≈85 % of them on both
# fleets, bench/results/2026-12-04/fidelity) does not rest on a handful.
RATE = 8.0
SECONDS = 15.0


def placement_through_gateway(
    ports: list[int], adapters: dict[str, Path], workdir: Path
) -> dict[str, list[int]]:
    """Place the adapters as fid.PLACEMENT says, put a gateway in front, send the open-loop mix."""
    children: list[Child] = []
    try:
        fid.place_adapters([f"http://127.0.0.1:{p}" for p in ports], adapters)
        gateway = fid.start_gateway(FleetPorts(ports), workdir, children, "gateway")
        assert gateway.admin is not None
        fid.wait_gateway_sees_placement(gateway.admin, ports)
        trace = fid.open_loop_trace(arrival_times("poisson", RATE, SECONDS, random.Random(1)), seed=1)
        results, _ = asyncio.run(run_trace(gateway.url, trace, ClientConfig(timeout_s=300.0)))
        failed = [r for r in results if not r.ok]
        assert not failed, f"{len(failed)} failed, e.g. {failed[0].status} {failed[0].error}"
        return fid.placement(results, ports)
    finally:
        for child in reversed(children):
            child.stop()


def majority_replica(counts: list[int]) -> int:
    return max(range(len(counts)), key=lambda i: counts[i])


def test_sim_places_and_loads_replicas_as_the_real_servers_do(
    vllm_pair: list[VLLMServer], assets: Assets, tmp_path: Path
) -> None:
    adapters = {name: assets.adapters[name] for name in fid.ADAPTERS}
    real = placement_through_gateway([s.port for s in vllm_pair], adapters, tmp_path / "real")
    children: list[Child] = []
    try:
        ports = fid.start_sim_fleet(tmp_path / "sim", children)
        sim = placement_through_gateway(ports.http, adapters, tmp_path / "sim")
    finally:
        for child in reversed(children):
            child.stop()

    for fleet, where in (("real", real), ("sim", sim)):
        # lora-b lives only on replica 0, so replica 0 carries the most and saturates first
        assert where["lora-b"][1] == 0, (fleet, where)
        totals = [sum(counts[i] for counts in where.values()) for i in range(2)]
        assert totals[0] > totals[1], (fleet, where)
    # the gateway moves lora-a (on both replicas) to the less loaded replica 1, on both fleets
    assert majority_replica(real["lora-a"]) == majority_replica(sim["lora-a"]) == 1, (real, sim)


@pytest.fixture(autouse=True)
def _restore_single_adapter_layout(vllm_pair: list[VLLMServer], assets: Assets):  # type: ignore[no-untyped-def]
    """Leave the shared servers as the tier's other tests load them (lora-a only): lora-b off."""
    yield
    fid.place_adapters(
        [s.url for s in vllm_pair],
        {"lora-a": assets.adapters["lora-a"]},
        placement=(("lora-a",), ("lora-a",)),
    )
