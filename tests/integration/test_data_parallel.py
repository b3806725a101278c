"""A v1 InferencePool with one targetPort per data-parallel rank, in front of one `inferpool sim
--data-parallel-size 2`: the gateway sees `<pod>-rank-<i>` endpoints and routes to both ranks."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import orjson

from .conftest import (
    K8S_GROUP,
    free_port,
    gateway_manifests,
    http_ok,
    port_is_free,
    sim_endpoint,
    start_serve,
    start_sims,
    wait_until,
)

POOL = """
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: dp}
spec:
  selector: {matchLabels: {app: sim}}
  targetPorts: [{number: RANK0}, {number: RANK1}]
  endpointPickerRef: {name: dp-epp, port: {number: 9002}}
"""


def _free_pair() -> int:
    """A port whose successor is free too (the sim's ranks take consecutive ports)."""
    for _ in range(50):
        port = free_port()
        if port < 65535 and port_is_free(port + 1):
            return port
    raise RuntimeError("no two consecutive free ports")


async def test_a_pool_with_two_rank_ports_routes_to_both_ranks_of_one_sim(spawn, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base = _free_pair()
    start_sims(spawn, [base], "--speed", "20", "--data-parallel-size", "2")
    wait_until(lambda: http_ok(f"http://127.0.0.1:{base + 1}/health"), 60, what=f"sim rank on {base + 1}")
    async with aiohttp.ClientSession() as s:
        for rank, port in enumerate((base, base + 1)):
            async with s.get(f"http://127.0.0.1:{port}/metrics") as resp:
                text = await resp.text()
            assert (
                f'engine="{rank}"' in text and f'engine="{1 - rank}"' not in text
            )  # vLLM's per-engine label
    pool = POOL.replace("RANK0", str(base)).replace("RANK1", str(base + 1))
    manifests = gateway_manifests(pool, free_port(), routes=[(None, "dp")], group=K8S_GROUP)
    # One server, no port: it joins the pool on each of the pool's target ports, as a pod would.
    gw = start_serve(spawn, tmp_path, manifests, [sim_endpoint(None, "sim-dp")], "--profile", "round-robin")
    url, admin = gw.url, gw.admin
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:

        async def one(i: int) -> str:
            body = {"model": "tiny", "prompt": f"request {i}", "max_tokens": 3}
            async with s.post(f"{url}/v1/completions", json=body) as resp:
                assert resp.status == 200, await resp.text()
                return resp.headers["x-gateway-destination-endpoint-served"]

        served = await asyncio.gather(*(one(i) for i in range(8)))
        async with s.get(f"{admin}/api/state") as resp:
            state = await resp.json()
    assert set(served) == {f"127.0.0.1:{base}", f"127.0.0.1:{base + 1}"}
    [pool] = state["pools"]
    assert pool["target_ports"] == [base, base + 1]
    assert sorted((e["name"], e["port"]) for e in pool["endpoints"]) == [
        ("sim-dp-rank-0", base),
        ("sim-dp-rank-1", base + 1),
    ]
    log = [orjson.loads(line) for line in gw.proc.output().splitlines() if line.startswith("{")]
    assert {e["endpoint"] for e in log if e.get("path") == "/v1/completions"} == set(served)
