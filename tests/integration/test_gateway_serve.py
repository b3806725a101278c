"""`inferpool serve --endpoints` in front of `inferpool sim` processes: failover and gateway errors."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp
import orjson

from .conftest import free_port, gateway_manifests, sim_endpoint, start_serve, start_sims

POOLS = """
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {name: pool}
spec:
  selector: {app: sim}
  targetPortNumber: 8000
  extensionRef: {name: pool-epp}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {name: empty}
spec:
  selector: {app: nothing-has-this-label}
  targetPortNumber: 8000
  extensionRef: {name: empty-epp}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: base}
spec:
  modelName: tiny
  criticality: Critical
  poolRef: {name: pool}
"""


def manifests(listener: int) -> str:
    """Two pools (one that matches no server) behind one gateway: /empty → empty, /v1 → pool."""
    return gateway_manifests(POOLS, listener, routes=[("/empty", "empty"), ("/v1", "pool")])


def start_stack(spawn, tmp_path: Path) -> tuple[str, list, object]:  # type: ignore[no-untyped-def, type-arg]
    ports = [free_port(), free_port()]
    sims = start_sims(spawn, ports, "--speed", "5")
    manifests = gateway_manifests(POOLS, free_port(), routes=[("/empty", "empty"), ("/v1", "pool")])
    endpoints = [sim_endpoint(p, f"sim-{i}") for i, p in enumerate(ports)]
    gw = start_serve(
        spawn, tmp_path, manifests, endpoints, "--max-body-bytes", "4096", "--profile", "round-robin"
    )
    return gw.url, sims, gw.proc


async def test_killed_replica_requests_are_retried_elsewhere(spawn, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, sims, gw = start_stack(spawn, tmp_path)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as s:

        async def one(i: int) -> tuple[int, str]:
            body = {"model": "tiny", "prompt": f"request {i}", "max_tokens": 400, "ignore_eos": True}
            async with s.post(f"{url}/v1/completions", json=body) as resp:
                await resp.read()
                return resp.status, resp.headers.get("x-gateway-destination-endpoint-served", "")

        warm = await asyncio.gather(*(one(i) for i in range(4)))
        assert {status for status, _ in warm} == {200}
        assert len({served for _, served in warm}) == 2  # round-robin used both replicas

        tasks = [asyncio.create_task(one(i)) for i in range(24)]
        await asyncio.sleep(0.5)  # requests are now in flight on both replicas, none finished
        sims[1].kill()  # SIGKILL: connections drop with no answer
        results = await asyncio.gather(*tasks)
        more = await asyncio.gather(*(one(100 + i) for i in range(6)))

    statuses = [status for status, _ in results + more]
    assert statuses == [200] * len(statuses)  # every non-streaming request was retried on the survivor
    survivor = re.search(r"--port', '(\d+)", str(sims[0].argv)) or re.search(
        r"--port (\d+)", " ".join(sims[0].argv)
    )
    assert survivor
    assert {served for _, served in more} == {f"127.0.0.1:{survivor.group(1)}"}
    log = [orjson.loads(line) for line in gw.output().splitlines() if line.startswith("{")]
    retried = [e for e in log if e.get("attempts", 0) >= 2]
    assert retried and all(e["status"] == 200 for e in retried)  # some were in flight on the killed one


async def test_gateway_made_errors(spawn, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, _, _ = start_stack(spawn, tmp_path)
    async with aiohttp.ClientSession() as s:
        cases = [
            (await s.post(f"{url}/v1/completions", json={"model": "tiny", "prompt": "x" * 5000}), 413),
            (await s.post(f"{url}/empty/v1/completions", json={"model": "tiny", "prompt": "x"}), 503),
            (await s.post(f"{url}/nowhere", json={}), 404),
            (await s.post(f"{url}/v1/completions", json={"model": "other", "prompt": "x"}), 404),
            (await s.post(f"{url}/v1/completions", data=b"not json"), 400),
        ]
        for resp, status in cases:
            body = await resp.json()
            assert resp.status == status, body
            assert (
                set(body["error"]) == {"message", "type", "param", "code"} and body["error"]["code"] == status
            )
        ok = await s.post(f"{url}/v1/completions", json={"model": "tiny", "prompt": "fine", "max_tokens": 3})
        assert ok.status == 200


async def _raw_exchange(url: str, head: str, body: bytes | None) -> tuple[bytes, bytes]:
    """Send `head`, read what comes back before any body (a 100 Continue or a final answer
    headed by Connection), then send `body` if given and read the rest; (first part, rest)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head.encode())
        await writer.drain()
        first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        rest = b""
        if body is not None:
            writer.write(body)
            await writer.drain()
            rest = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        return first, rest
    finally:
        writer.close()


async def test_expect_100_continue(spawn, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The listeners answer `Expect: 100-continue` themselves (aiohttp's low-level server has no
    router to do it): 100 before the body when the body is wanted, a JSON 413 without it when the
    declared size is too large, a JSON 417 for another expectation."""
    url, _, _ = start_stack(spawn, tmp_path)
    body = orjson.dumps({"model": "tiny", "prompt": "fine", "max_tokens": 3})

    def head(length: int, expect: str) -> str:
        return (
            "POST /v1/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\nExpect: {expect}\r\n\r\n"
        )

    first, rest = await _raw_exchange(url, head(len(body), "100-continue"), body)
    assert first == b"HTTP/1.1 100 Continue\r\n\r\n" and rest.startswith(b"HTTP/1.1 200 "), (first, rest)
    first, _ = await _raw_exchange(url, head(5000, "100-continue"), None)
    assert first.startswith(b"HTTP/1.1 413 "), first
    first, _ = await _raw_exchange(url, head(len(body), "something-else"), None)
    assert first.startswith(b"HTTP/1.1 417 ") and b"application/json" in first, first
