"""A v1 InferencePool with one targetPort per data-parallel rank, in front of one `inferpool sim
--data-parallel-size 2`: the gateway sees `<pod>-rank-<i>` endpoints and routes to both ranks."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import orjson

from .conftest import INFERPOOL, free_port, http_ok, port_is_free, sim_argv, wait_until

MANIFESTS = """
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: dp}
spec:
  selector: {matchLabels: {app: sim}}
  targetPorts: [{number: RANK0}, {number: RANK1}]
  endpointPickerRef: {name: dp-epp, port: {number: 9002}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: inferpool
  listeners:
  - {name: http, protocol: HTTP, port: LISTENER_PORT}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: route}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: [{name: dp, group: inference.networking.k8s.io, kind: InferencePool}]
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
    spawn(sim_argv(base, "--model", "tiny", "--speed", "20", "--data-parallel-size", "2"))
    for port in (base, base + 1):
        wait_until(lambda p=port: http_ok(f"http://127.0.0.1:{p}/health"), 60, what=f"sim rank on {port}")
    async with aiohttp.ClientSession() as s:
        for rank, port in enumerate((base, base + 1)):
            async with s.get(f"http://127.0.0.1:{port}/metrics") as resp:
                text = await resp.text()
            assert (
                f'engine="{rank}"' in text and f'engine="{1 - rank}"' not in text
            )  # vLLM's per-engine label
    manifests = MANIFESTS.replace("RANK0", str(base)).replace("RANK1", str(base + 1))
    (tmp_path / "gw.yaml").write_text(manifests.replace("LISTENER_PORT", str(free_port())))
    # One server, no port: it joins the pool on each of the pool's target ports, as a pod would.
    (tmp_path / "endpoints.yaml").write_text(
        orjson.dumps(
            {"endpoints": [{"address": "127.0.0.1", "name": "sim-dp", "labels": {"app": "sim"}}]}
        ).decode()
    )
    admin = free_port()
    gw = spawn(
        [INFERPOOL, "serve", "--no-auth", "-f", str(tmp_path / "gw.yaml"), "--endpoints", str(tmp_path / "endpoints.yaml"),
         "--admin-port", str(admin), "--profile", "round-robin"]
    )  # fmt: skip
    url = gw.wait_for_line(r"^gateway\s+(http://\S+)", 60).group(1)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:

        async def one(i: int) -> str:
            body = {"model": "tiny", "prompt": f"request {i}", "max_tokens": 3}
            async with s.post(f"{url}/v1/completions", json=body) as resp:
                assert resp.status == 200, await resp.text()
                return resp.headers["x-gateway-destination-endpoint-served"]

        served = await asyncio.gather(*(one(i) for i in range(8)))
        async with s.get(f"http://127.0.0.1:{admin}/api/state") as resp:
            state = await resp.json()
    assert set(served) == {f"127.0.0.1:{base}", f"127.0.0.1:{base + 1}"}
    [pool] = state["pools"]
    assert pool["target_ports"] == [base, base + 1]
    assert sorted((e["name"], e["port"]) for e in pool["endpoints"]) == [
        ("sim-dp-rank-0", base),
        ("sim-dp-rank-1", base + 1),
    ]
    log = [orjson.loads(line) for line in gw.output().splitlines() if line.startswith("{")]
    assert {e["endpoint"] for e in log if e.get("path") == "/v1/completions"} == set(served)
