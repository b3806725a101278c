"""session-affinity-scorer through `inferpool serve` in front of three `inferpool sim` replicas:
a session sticks to the endpoint its token names, and moves (with a new token) when that
endpoint goes unready."""

from __future__ import annotations

import base64
import json
import os
import signal
import urllib.request
from pathlib import Path

import aiohttp
import orjson

from .conftest import (
    K8S_GROUP,
    free_port,
    gateway_manifests,
    sim_endpoint,
    start_serve,
    start_sims,
    wait_until,
)

POOL = """
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: pool}
spec:
  selector: {matchLabels: {app: sim}}
  targetPorts: [{number: 8000}]
  endpointPickerRef: {name: pool-epp, port: {number: 9002}}
"""

# Affinity outweighs load; without a token the least-loaded replica wins, at random on ties.
PROFILE = """
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: session-affinity-scorer
- type: queue-scorer
- type: least-request-scorer
schedulingProfiles:
- name: default
  plugins:
  - {pluginRef: session-affinity-scorer, weight: 10}
  - {pluginRef: queue-scorer, weight: 1}
  - {pluginRef: least-request-scorer, weight: 1}
"""


def endpoint_ready(admin: str, name: str) -> bool:
    with urllib.request.urlopen(f"{admin}/api/state", timeout=5) as resp:
        state = json.loads(resp.read())
    (pool,) = state["pools"]
    return any(e["name"] == name and e["ready"] for e in pool["endpoints"])


async def test_session_sticks_to_its_endpoint_and_moves_when_it_goes_unready(spawn, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ports = [free_port() for _ in range(3)]
    sims = dict(zip((f"sim-{i}" for i in range(3)), start_sims(spawn, ports, "--speed", "20"), strict=True))
    (tmp_path / "profile.yaml").write_text(PROFILE)
    manifests = gateway_manifests(POOL, free_port(), routes=[(None, "pool")], group=K8S_GROUP)
    endpoints = [sim_endpoint(p, f"sim-{i}") for i, p in enumerate(ports)]
    gw = start_serve(spawn, tmp_path, manifests, endpoints, "--profile", str(tmp_path / "profile.yaml"))
    url, admin = gw.url, gw.admin
    by_port = {f"127.0.0.1:{p}": f"sim-{i}" for i, p in enumerate(ports)}
    stopped: int | None = None

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:

        async def ask(token: str | None, i: int) -> tuple[str, str]:
            """(the replica that served, the session token the gateway answered)."""
            headers = {"x-session-token": token} if token else {}
            body = {"model": "tiny", "prompt": f"turn {i}", "max_tokens": 4}
            async with s.post(f"{url}/v1/completions", json=body, headers=headers) as resp:
                assert resp.status == 200, await resp.text()
                await resp.read()
                return by_port[resp.headers["x-gateway-destination-endpoint-served"]], resp.headers[
                    "x-session-token"
                ]

        try:
            first, token = await ask(None, 0)
            assert base64.b64decode(token).decode() == f"default/{first}"  # llm-d's token: base64 of ns/name
            turns = [await ask(token, i) for i in range(1, 9)]
            assert turns == [(first, token)] * 8  # every turn on the same replica, same token back
            # Without a token, load (or the picker's random tie-break) spreads the requests: the pin
            # was the token. Sequential requests tie, so each lands at random: 24 of them all on
            # one replica has chance 3^-23 (6, as before, had 1 in 243 and did fail once).
            fresh = {(await ask(None, 100 + i))[0] for i in range(24)}
            assert len(fresh) > 1

            stopped = sims[first].pid
            os.kill(stopped, signal.SIGSTOP)  # alive but silent: scrapes time out, it goes unready
            wait_until(lambda: not endpoint_ready(admin, first), 30, what=f"{first} unready")
            moved, new_token = await ask(token, 9)
            assert moved != first and base64.b64decode(new_token).decode() == f"default/{moved}"
            assert [await ask(new_token, 10 + i) for i in range(4)] == [(moved, new_token)] * 4
        finally:
            if stopped is not None:
                os.kill(stopped, signal.SIGCONT)

    log = [orjson.loads(line) for line in gw.proc.output().splitlines() if line.startswith("{")]
    routed = [e for e in log if e.get("status") == 200]
    assert routed and all(e.get("attempts") == 1 for e in routed)  # moved by scheduling, not by a retry
