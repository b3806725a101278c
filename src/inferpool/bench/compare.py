"""Side by side: one simulated fleet, each contender in front of it in turn, one replayed trace.

For every contender the fleet is started fresh (empty prefix caches, no adapters warm beyond
the startup ones), the contender is started and polled until ready, the identical trace is
replayed, replica load is sampled from each replica's `/load`, and both are stopped.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson

from inferpool.bench.client import ClientConfig, RequestResult
from inferpool.bench.loadgen import run_load
from inferpool.bench.peers import Peer, ensure_installed
from inferpool.bench.procs import Child, free_ports, spawn, wait_ready
from inferpool.bench.stats import Slo, Summary
from inferpool.bench.workloads import BenchRequest

INFERPOOL_PROFILES = ("default", "legacy-v0.3", "round-robin", "random", "least-request", "prefix-aware")
PEER_ALIASES = {
    "sglang-router": Peer("sglang-router", "cache_aware"),
    "vllm-router": Peer("vllm-router", "cache_aware"),
    "vllm-router-rr": Peer("vllm-router", "round_robin"),
}


@dataclass(frozen=True)
class Contender:
    name: str
    profile: str | None = None  # inferpool serve --profile
    peer: Peer | None = None


def parse_contenders(text: str) -> list[Contender]:
    """'default,round-robin,sglang-router,vllm-router,vllm-router:round_robin' → contenders."""
    out: list[Contender] = []
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        if item in INFERPOOL_PROFILES or item.endswith((".yaml", ".yml")):
            out.append(Contender(item, profile=item))
        elif item in PEER_ALIASES:
            peer = PEER_ALIASES[item]
            out.append(Contender(peer.label, peer=peer))
        elif ":" in item and item.split(":")[0] in ("sglang-router", "vllm-router"):
            package, policy = item.split(":", 1)
            out.append(Contender(f"{package} {policy}", peer=Peer(package, policy)))
        else:
            raise ValueError(f"unknown contender {item!r}")
    return out


@dataclass(frozen=True)
class FleetSpec:
    replicas: int
    model: str  # served model name: a local path, so no router looks it up online
    adapters: tuple[str, ...] = ()
    max_loras: int = 4
    max_cpu_loras: int = 8
    speed: float = 1.0
    seed: int = 0


@dataclass
class ContenderRun:
    contender: Contender
    summary: Summary
    results: list[RequestResult]
    load: list[tuple[float, list[int]]] = field(default_factory=list)  # (sim seconds, per-replica in-flight)
    error: str | None = None


def inferpool_argv() -> list[str]:
    return [sys.executable, "-m", "inferpool.cli"]


def start_fleet(spec: FleetSpec, ports: list[int], logdir: Path, tag: str) -> Child:
    argv = [*inferpool_argv(), "sim", "--port", str(ports[0]), "--replicas", str(spec.replicas),
            "--model", spec.model, "--speed", str(spec.speed), "--seed", str(spec.seed),
            "--max-loras", str(spec.max_loras), "--max-cpu-loras", str(spec.max_cpu_loras)]  # fmt: skip
    for name in spec.adapters:
        argv += ["--lora", name]
    child = spawn(f"fleet-{tag}", argv, logdir)
    wait_ready(child, [f"http://127.0.0.1:{p}/health" for p in ports], 180)
    return child


MANIFESTS = """\
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {{name: bench}}
spec:
  selector: {{matchLabels: {{app: bench-fleet}}}}
  targetPorts: [{{number: {port}}}]
  endpointPickerRef: {{name: bench-epp, port: {{number: 9002}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: bench}}
spec:
  gatewayClassName: inferpool
  listeners: [{{name: http, protocol: HTTP, port: {listener}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: bench}}
spec:
  parentRefs: [{{name: bench}}]
  rules:
  - backendRefs: [{{name: bench, group: inference.networking.k8s.io, kind: InferencePool}}]
"""
OBJECTIVES = (("critical", 1), ("standard", 0), ("sheddable", -1))


def write_manifests(workdir: Path, ports: list[int], listener: int) -> tuple[Path, Path]:
    """A v1 pool over the fleet (no InferenceModels: models pass through) plus the three objectives."""
    text = MANIFESTS.format(port=ports[0], listener=listener)
    for name, priority in OBJECTIVES:
        text += (
            "---\napiVersion: inference.networking.x-k8s.io/v1alpha2\nkind: InferenceObjective\n"
            f"metadata: {{name: {name}}}\nspec: {{priority: {priority}, poolRef: {{name: bench}}}}\n"
        )
    manifests = workdir / "gateway.yaml"
    manifests.write_text(text)
    endpoints = [
        {"address": "127.0.0.1", "port": p, "name": f"replica-{i}", "labels": {"app": "bench-fleet"}}
        for i, p in enumerate(ports)
    ]
    endpoints_file = workdir / "endpoints.yaml"
    endpoints_file.write_bytes(orjson.dumps({"endpoints": endpoints}))
    return manifests, endpoints_file


def serve_needs_no_auth() -> bool:
    """Newer `inferpool serve` refuses to start without an auth choice; benchmarks run without auth."""
    import subprocess

    help_text = subprocess.run([*inferpool_argv(), "serve", "--help"], capture_output=True, text=True).stdout
    return "--no-auth" in help_text


def start_contender(contender: Contender, ports: list[int], workdir: Path, tag: str) -> tuple[Child, str]:
    """Start the router in front of the fleet; returns it and its base URL once it routes."""
    listener, admin = free_ports(1)[0], free_ports(1)[0]
    if contender.peer is not None:
        ensure_installed(contender.peer)
        workers = [f"http://127.0.0.1:{p}" for p in ports]
        child = spawn(f"{tag}", contender.peer.argv(listener, workers), workdir / "logs")
        url = f"http://127.0.0.1:{listener}"
        wait_ready(child, [f"{url}/health"], 120)
        return child, url
    manifests, endpoints = write_manifests(workdir, ports, listener)
    argv = [*inferpool_argv(), "serve", "-f", str(manifests), "--endpoints", str(endpoints),
            "--admin-port", str(admin), "--profile", contender.profile or "default", "--no-access-log"]  # fmt: skip
    if serve_needs_no_auth():
        argv.append("--no-auth")
    child = spawn(tag, argv, workdir / "logs")
    wait_ready(child, [f"http://127.0.0.1:{admin}/readyz"], 120)
    return child, f"http://127.0.0.1:{listener}"


async def sample_load(
    ports: list[int], speed: float, stop: asyncio.Event, interval: float = 0.5
) -> list[tuple[float, list[int]]]:
    """Each replica's in-flight count (`/load`) every `interval` wall seconds, stamped in sim seconds."""
    samples: list[tuple[float, list[int]]] = []
    start = time.perf_counter()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:

        async def one(port: int) -> int:
            try:
                async with session.get(f"http://127.0.0.1:{port}/load") as resp:
                    return int((await resp.json())["server_load"])
            except (TimeoutError, aiohttp.ClientError, KeyError, ValueError):
                return -1

        while not stop.is_set():
            loads = await asyncio.gather(*(one(p) for p in ports))
            samples.append(((time.perf_counter() - start) * speed, list(loads)))
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except TimeoutError:
                pass
    return samples


async def _measure(
    url: str, ports: list[int], trace: list[BenchRequest], client: ClientConfig, slo: Slo, progress: bool
) -> tuple[list[RequestResult], Summary, list[tuple[float, list[int]]]]:
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_load(ports, client.speed, stop))
    try:
        results, summary = await run_load(url, trace, client, slo, progress)
    finally:
        stop.set()
        load = await sampler
    return results, summary, load


def run_contender(
    contender: Contender,
    fleet: FleetSpec,
    trace: list[BenchRequest],
    client: ClientConfig,
    slo: Slo,
    workdir: Path,
    progress: bool = True,
) -> ContenderRun:
    """Fresh fleet, this contender, the trace; everything stopped afterwards."""
    tag = contender.name.replace(" ", "-").replace("/", "_")
    ports = free_ports(fleet.replicas)
    fleet_child = start_fleet(fleet, ports, workdir / "logs", tag)
    router: Child | None = None
    try:
        router, url = start_contender(contender, ports, workdir, tag)
        results, summary, load = asyncio.run(_measure(url, ports, trace, client, slo, progress))
        return ContenderRun(contender, summary, results, load)
    finally:
        if router is not None:
            router.stop()
        fleet_child.stop()
