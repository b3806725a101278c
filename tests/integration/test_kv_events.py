"""KV-cache events end to end: `inferpool sim --kv-events-config` publishes them, `inferpool serve
--profile precise-prefix` subscribes and routes by what each replica's cache really holds."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import yaml
import zmq
import zmq.asyncio

from inferpool.bench.procs import free_ports
from inferpool.kvwire import AllBlocksCleared, BlockRemoved, BlockStored, decode_batch, decode_seq
from inferpool.sim.profile import load_profile

from .conftest import free_port, gateway_manifests, http_ok, sim_argv, sim_endpoint, start_serve, wait_until

MODEL = "tiny"
LONG = "the shared system prompt that every request of this tenant starts with, word for word; " * 12


def _kv_config(events_port: int) -> str:
    return json.dumps(
        {"enable_kv_cache_events": True, "publisher": "zmq", "endpoint": f"tcp://*:{events_port}"}
    )


def _start_sims(spawn: Any, tmp_path: Path, *extra: str) -> tuple[list[int], list[int]]:
    http = free_ports(2)
    events = free_ports(2, exclude=http)
    argv = sim_argv(http[0], "--replicas", "2", "--model", MODEL, "--speed", "20")
    spawn([*argv, "--kv-events-config", _kv_config(events[0]), *extra])
    for port in http:
        wait_until(lambda p=port: http_ok(f"http://127.0.0.1:{p}/health"), 60, what=f"sim on {port}")
    return http, events


async def _complete(s: aiohttp.ClientSession, url: str, prompt: str) -> aiohttp.ClientResponse:
    body = {"model": MODEL, "prompt": prompt, "max_tokens": 2, "ignore_eos": True}
    async with s.post(f"{url}/v1/completions", json=body) as resp:
        await resp.read()
        assert resp.status == 200, await resp.text()
        return resp


class Subscriber:
    """A raw ZMQ SUB on one replica's events port, as any vLLM KV-event consumer would be."""

    def __init__(self, port: int) -> None:
        self.ctx = zmq.asyncio.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.connect(f"tcp://127.0.0.1:{port}")
        self.seqs: list[int] = []

    async def events(self, wait_s: float) -> list[Any]:
        out: list[Any] = []
        while await self.sock.poll(int(wait_s * 1000)):
            topic, seq, payload = await self.sock.recv_multipart()
            assert topic == b""
            self.seqs.append(decode_seq(seq))
            out.extend(decode_batch(payload).events)
            wait_s = 0.3
        return out

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


async def test_sim_publishes_stored_removed_and_cleared(spawn: Any, tmp_path: Path) -> None:
    small = load_profile("llama-3.1-8b-h100").model_dump()
    # room for one long prompt only (17 blocks of 16 tokens): the next one evicts it
    small.update(name="small-cache", num_gpu_blocks=1 + 17)
    profile = tmp_path / "small.yaml"
    profile.write_text(yaml.safe_dump(small))
    http, events = _start_sims(spawn, tmp_path, "--profile", str(profile))
    url = f"http://127.0.0.1:{http[1]}"  # replica 1 publishes on the events port + 1
    sub = Subscriber(events[1])
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
            for attempt in range(100):  # the SUB may join after the first batches (ZMQ's slow joiner)
                await _complete(s, url, f"warm-up {attempt}: {LONG}")
                if await sub.events(0.5):
                    break
            else:
                raise AssertionError("no KV events reached the subscriber")

            async with s.post(f"{url}/reset_prefix_cache") as resp:
                assert (await resp.json()) == {"success": True}
            # vLLM publishes the reset with the next step's batch
            await _complete(s, url, f"tenant A: {LONG}")
            received = await sub.events(10)
            assert received[0] == AllBlocksCleared()
            stored = [e for e in received if isinstance(e, BlockStored)]
            assert stored and stored[0].parent_block_hash is None and stored[0].block_size == 16
            assert sum(len(e.token_ids) for e in stored) == 16 * sum(len(e.block_hashes) for e in stored)
            held = {h for e in stored for h in e.block_hashes}

            await _complete(s, url, f"tenant B: {LONG}")
            removed = [h for e in await sub.events(10) if isinstance(e, BlockRemoved) for h in e.block_hashes]
            assert set(removed) == held  # all of tenant A's blocks were evicted for tenant B's
            async with s.get(f"{url}/kv_event_sources") as resp:
                sources = await resp.json()
            assert sources["0"]["endpoint"] == f"tcp://*:{events[1]}"
        assert sub.seqs == list(range(sub.seqs[0], sub.seqs[0] + len(sub.seqs)))  # no gaps
    finally:
        sub.close()


POOL = """
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {name: pool}
spec:
  selector: {app: sim}
  targetPortNumber: 8000
  extensionRef: {name: pool-epp}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: base}
spec:
  modelName: tiny
  criticality: Critical
  poolRef: {name: pool}
"""


async def test_gateway_routes_to_the_replica_whose_cache_holds_the_prompt(spawn: Any, tmp_path: Path) -> None:
    """Each prompt is first sent to one replica directly, behind the gateway's back: only its
    KV events can tell the gateway where the prompt's blocks are (the approximate index never saw it)."""
    http, events = _start_sims(spawn, tmp_path)
    endpoints = [
        sim_endpoint(p, f"sim-{i}", **{"inferpool.io/kv-events-port": str(e)})
        for i, (p, e) in enumerate(zip(http, events, strict=True))
    ]
    gw = start_serve(
        spawn, tmp_path, gateway_manifests(POOL, free_port(), routes=[(None, "pool")]), endpoints,
        "--profile", "precise-prefix",
    )  # fmt: skip
    url, admin = gw.url, gw.admin

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:

        async def via_gateway(prompt: str) -> tuple[str, dict[str, dict[str, float]]]:
            resp = await _complete(s, url, prompt)
            async with s.get(f"{admin}/api/decisions") as got:
                decision = (await got.json())["decisions"][-1]
            scores = {r["endpoint"]: r["scores"] for r in decision["ranked"]}
            return resp.headers["x-gateway-destination-endpoint-served"], scores

        async def warm_then_route(replica: int, tag: str) -> tuple[str, dict[str, dict[str, float]]]:
            prompt = f"{tag}: {LONG}"
            await _complete(s, f"http://127.0.0.1:{http[replica]}", prompt)
            await asyncio.sleep(0.2)  # the batch crosses the socket; a miss is retried below, not failed
            return await via_gateway(prompt)

        # the gateway's subscriptions may miss the first batches (slow joiner): warm until one is live
        for attempt in range(60):
            served, scores = await warm_then_route(1, f"tenant {attempt}")
            if scores["sim-1"]["precise-prefix-cache-scorer"] == 1.0:
                break
        else:
            raise AssertionError(f"replica 1 never scored as holding the prompt: {scores}")
        assert served == f"127.0.0.1:{http[1]}"
        assert scores["sim-0"]["precise-prefix-cache-scorer"] == 0.0

        # and the other way round, once both streams are live (replica 0 has published by now
        # whenever the gateway sent it a request; warm it directly until it is)
        for attempt in range(60):
            served, scores = await warm_then_route(0, f"other tenant {attempt}")
            if scores["sim-0"]["precise-prefix-cache-scorer"] == 1.0:
                break
        else:
            raise AssertionError(f"replica 0 never scored as holding the prompt: {scores}")
        assert served == f"127.0.0.1:{http[0]}"
        assert scores["sim-1"]["precise-prefix-cache-scorer"] == 0.0
