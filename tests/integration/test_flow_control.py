"""`inferpool serve --profile flow-control` in front of two `inferpool sim` replicas driven past saturation.

The replicas run a batch of 2 each, so a burst of mixed-priority requests fills their
queues: the gateway must hold the rest (queue gauges above zero on /metrics), serve every
Critical request, shed nothing (no 429s: with flow control, saturation queues instead),
fail nothing with a 5xx other than a queue TTL, and let Critical requests go before
Sheddable ones.
"""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
from importlib import resources
from pathlib import Path

import aiohttp
import yaml

from .conftest import free_port, gateway_manifests, sim_endpoint, start_serve, start_sims

POOL = """
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {name: pool}
spec:
  selector: {app: sim}
  targetPortNumber: 8000
  extensionRef: {name: pool-epp}
"""
MODEL = """
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: NAME}
spec:
  modelName: NAME
  criticality: CRITICALITY
  poolRef: {name: pool}
  targetModels: [{name: tiny, weight: 100}]
"""
CLASSES = {"Critical": "chat", "Standard": "assist", "Sheddable": "batch"}
PER_CLASS = 20
QUEUE_SIZE = re.compile(
    r'^inference_extension_flow_control_queue_size\{[^}]*priority="(-?\d+)"\} (\S+)$', re.M
)


def small_batch_profile(tmp_path: Path) -> Path:
    """The built-in sim profile with 2 sequences per batch, so a few dozen requests saturate it."""
    text = resources.files("inferpool.sim").joinpath("profiles/llama-3.1-8b-h100.yaml").read_text("utf-8")
    profile = yaml.safe_load(text)
    profile.update(name="tiny-batch", model="tiny", max_num_seqs=2)
    path = tmp_path / "sim-profile.yaml"
    path.write_text(yaml.safe_dump(profile))
    return path


def start_stack(spawn, tmp_path: Path) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    profile = small_batch_profile(tmp_path)
    ports = [free_port(), free_port()]
    start_sims(spawn, ports, "--profile", str(profile), timeout=90)
    manifests = POOL
    for criticality, name in CLASSES.items():
        manifests += MODEL.replace("NAME", name).replace("CRITICALITY", criticality)
    endpoints = [sim_endpoint(p, f"sim-{i}") for i, p in enumerate(ports)]
    gw = start_serve(
        spawn, tmp_path, gateway_manifests(manifests, free_port()), endpoints,
        "--no-access-log", "--profile", "flow-control", ready=True, timeout=90,
    )  # fmt: skip
    url, admin = gw.url, gw.admin
    return url, admin


async def drive(url: str, admin: str) -> tuple[list[tuple[str, int, str, float]], dict[int, float]]:
    """Send every class at once; returns (class, status, body, finished_at) per request and peak queue sizes."""
    peaks: dict[int, float] = {}
    done = asyncio.Event()

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=180)) as session:

        async def watch_queues() -> None:
            while not done.is_set():
                async with session.get(f"{admin}/metrics") as resp:
                    for priority, value in QUEUE_SIZE.findall(await resp.text()):
                        peaks[int(priority)] = max(peaks.get(int(priority), 0.0), float(value))
                await asyncio.sleep(0.05)

        async def one(criticality: str, i: int) -> tuple[str, int, str, float]:
            body = {
                "model": CLASSES[criticality],
                "prompt": f"request {i} of {criticality}",
                "max_tokens": 40,
            }
            async with session.post(f"{url}/v1/completions", json=body) as resp:
                text = await resp.text()
                return criticality, resp.status, text, time.monotonic()

        watcher = asyncio.create_task(watch_queues())
        requests = [one(c, i) for i in range(PER_CLASS) for c in CLASSES]  # interleaved arrivals
        results = await asyncio.gather(*requests)
        done.set()
        await watcher
    return results, peaks


def test_saturated_pool_queues_by_priority_and_serves_critical(spawn, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, admin = start_stack(spawn, tmp_path)
    results, peaks = asyncio.run(drive(url, admin))

    statuses = {c: [s for cls, s, _, _ in results if cls == c] for c in CLASSES}
    assert statuses["Critical"] == [200] * PER_CLASS, statuses
    for criticality, status, text, _ in results:
        assert status == 200 or (status == 503 and "timed out in queue" in text), (criticality, status, text)
    assert 429 not in statuses["Sheddable"]  # queued, not shed at once as without flow control

    # Lower bands waited in the gateway: the queue gauges were above zero while the pool was full.
    assert max(peaks.get(0, 0.0), peaks.get(-1, 0.0)) > 0, peaks

    # Strict priority: among requests that finished, Critical ones finished earlier on the whole.
    order = [cls for cls, status, _, _ in sorted(results, key=lambda r: r[3]) if status == 200]
    mean_rank = {
        c: sum(i for i, cls in enumerate(order) if cls == c) / max(1, order.count(c)) for c in CLASSES
    }
    assert mean_rank["Critical"] < mean_rank["Sheddable"], mean_rank

    with urllib.request.urlopen(f"{admin}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    dispatched = re.findall(
        r'^inference_extension_flow_control_request_queue_duration_seconds_count\{[^}]*outcome="Dispatched"[^}]*\} (\S+)$',
        text,
        re.M,
    )
    assert sum(float(v) for v in dispatched) >= sum(s == 200 for _, s, _, _ in results)
