"""Memory under a long soak: does `inferpool serve`'s RSS plateau once its bounded state is full?

    .venv/bin/python bench/soak_memory.py [--minutes 20] [--replicas 3] [--out bench/results/DATE/soak]

Simulated replicas (`inferpool sim`, fast clock) behind `inferpool serve` (default profile, so the
approximate prefix index is on). First a closed-loop burst measures the fleet's capacity behind
the gateway, then Poisson arrivals at 80 % of it for the whole soak. Every prompt is unique and
long (≈40 prefix blocks), so the prefix index fills to its bound early and keeps evicting. The
gateway's RSS is sampled every second; the verdict compares the median of the last quarter with
the median of the second quarter (after warm-up): flat means ≤ 5 % above it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

BIN = Path(sys.executable).parent
MANIFESTS = """
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {name: soak}
spec: {selector: {app: soak}, targetPortNumber: 8000, extensionRef: {name: soak-epp}}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: tiny}
spec: {modelName: tiny, criticality: Critical, poolRef: {name: soak}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec: {gatewayClassName: inferpool, listeners: [{name: http, protocol: HTTP, port: PORT}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: all}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: soak, group: inference.networking.x-k8s.io, kind: InferencePool}]}]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def wait_ok(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as s:
        while True:
            try:
                async with s.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(url)
            await asyncio.sleep(0.2)


def start_stack(replicas: int, procs: list[subprocess.Popen[bytes]]) -> tuple[list[int], int, int, int]:
    """Simulated replicas and the gateway over them: (replica ports, listener, admin port, gateway pid)."""
    tmp = Path(tempfile.mkdtemp(prefix="inferpool-soak-"))
    ports = [free_port() for _ in range(replicas)]
    for p in ports:
        argv = [str(BIN / "inferpool"), "sim", "--port", str(p), "--model", "tiny", "--speed", "10",
                "--seed", str(p)]  # fmt: skip
        procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    listener, admin = free_port(), free_port()
    (tmp / "gw.yaml").write_text(MANIFESTS.replace("PORT", str(listener)))
    endpoints = [{"address": "127.0.0.1", "port": p, "name": f"sim-{i}", "labels": {"app": "soak"}}
                 for i, p in enumerate(ports)]  # fmt: skip
    (tmp / "endpoints.yaml").write_text(json.dumps({"endpoints": endpoints}))
    gw = subprocess.Popen(
        [str(BIN / "inferpool"), "serve", "--no-auth", "--no-access-log", "-f", str(tmp / "gw.yaml"),
         "--endpoints", str(tmp / "endpoints.yaml"), "--admin-port", str(admin)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    procs.append(gw)
    return ports, listener, admin, gw.pid


async def soak(minutes: float, ports: list[int], listener: int, admin: int, gw_pid: int) -> dict[str, object]:
    for p in ports:
        await wait_ok(f"http://127.0.0.1:{p}/health", 120)
    await wait_ok(f"http://127.0.0.1:{admin}/readyz", 120)
    url = f"http://127.0.0.1:{listener}/v1/completions"
    rng = random.Random(7)
    statuses: dict[int, int] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as s:

        async def one(i: int) -> None:
            # unique from the first block on: nothing is shared, every prompt adds index entries
            words = " ".join(f"w{i}-{k}-{rng.randrange(10**6)}" for k in range(300))
            body = {"model": "tiny", "prompt": words, "max_tokens": rng.randint(8, 48), "stream": i % 2 == 0}
            async with s.post(url, json=body) as resp:
                await resp.read()
                statuses[resp.status] = statuses.get(resp.status, 0) + 1

        done = 0
        stop_at = time.monotonic() + 10

        async def client() -> None:
            nonlocal done
            while time.monotonic() < stop_at:
                await one(done)
                done += 1

        t0 = time.monotonic()
        await asyncio.gather(*(client() for _ in range(48)))
        capacity = done / (time.monotonic() - t0)
        rate = 0.8 * capacity
        print(f"capacity {capacity:.1f} req/s behind the gateway; soaking at {rate:.1f} req/s", flush=True)
        samples: list[tuple[float, float]] = []
        tasks: set[asyncio.Task[None]] = set()
        start = time.monotonic()
        end = start + minutes * 60
        next_sample = start
        i = 0
        while time.monotonic() < end:
            task = asyncio.create_task(one(i))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
            now = time.monotonic()
            if now >= next_sample:
                samples.append((now - start, rss_mib(gw_pid)))
                next_sample += 1.0
            await asyncio.sleep(rng.expovariate(rate))
        await asyncio.gather(*tasks)
    rss = [m for _, m in samples]
    quarter = max(1, len(rss) // 4)
    second, last = statistics.median(rss[quarter : 2 * quarter]), statistics.median(rss[-quarter:])
    return {
        "minutes": minutes, "replicas": len(ports), "capacity_rps": capacity, "offered_rps": rate,
        "requests": i, "statuses": statuses, "rss_start_mib": rss[0], "rss_second_quarter_mib": second,
        "rss_last_quarter_mib": last, "growth": last / second - 1, "flat": last <= second * 1.05,
        "samples": samples,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument(
        "--out", type=Path, default=Path("bench/results") / time.strftime("%Y-%m-%d") / "soak"
    )
    args = parser.parse_args()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        result = asyncio.run(soak(args.minutes, *start_stack(args.replicas, procs)))
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(result, indent=1))
    second, last = result["rss_second_quarter_mib"], result["rss_last_quarter_mib"]
    print(
        f"{result['requests']} requests, statuses {result['statuses']}; RSS {result['rss_start_mib']:.1f} → "
        f"{second:.1f} (2nd quarter) → {last:.1f} MiB (last quarter): {result['growth']:+.1%}, "
        f"{'flat' if result['flat'] else 'GROWING'}; {args.out / 'soak.json'}"
    )
    sys.exit(0 if result["flat"] else 1)


if __name__ == "__main__":
    main()
