"""The gateway's added latency: the same open-loop trace sent to a sim replica directly and through
`inferpool serve`, side by side in one run; prints p50/p99 of both and the difference.

    .venv/bin/python bench/gateway_overhead.py [--rate 200] [--seconds 10] [--max-tokens 8] [--speed 1000]

The replica (`inferpool sim`) and the gateway (`inferpool serve`) run as separate processes on
loopback; this script is the client (aiohttp, one pooled session per target). Arrivals are
Poisson at --rate; each request is sent at its scheduled time whether or not earlier ones
finished (open loop), so queueing in the gateway shows up in the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp

BIN = Path(sys.executable).parent
MANIFESTS = """
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {name: bench}
spec: {selector: {app: bench}, targetPortNumber: 8000, extensionRef: {name: bench-epp}}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: base}
spec: {modelName: bench-model, criticality: Critical, poolRef: {name: bench}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: inferpool
  listeners: [{name: http, protocol: HTTP, port: PORT}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: all}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: bench, group: inference.networking.x-k8s.io, kind: InferencePool}]}]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(url)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_trace(url: str, arrivals: list[float], body: dict[str, object]) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(at: float, start: float) -> None:
            nonlocal errors
            await asyncio.sleep(max(0.0, start + at - time.perf_counter()))
            t0 = time.perf_counter()
            async with session.post(url, json=body) as resp:
                await resp.read()
                if resp.status != 200:
                    errors += 1
                    return
            latencies.append(time.perf_counter() - t0)

        start = time.perf_counter()
        await asyncio.gather(*(one(at, start) for at in arrivals))
    return latencies, errors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument(
        "--speed", type=float, default=1000.0, help="sim clock speed-up (fast replica: overhead shows)"
    )
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    rng = random.Random(args.seed)
    arrivals, t = [], 0.0
    while True:
        t += rng.expovariate(args.rate)
        if t >= args.seconds:
            break
        arrivals.append(t)
    body = {"model": "bench-model", "prompt": "Say something about pizza.", "max_tokens": args.max_tokens}

    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            sim_port, gw_port = free_port(), free_port()
            procs.append(subprocess.Popen(
                [str(BIN / "inferpool"), "sim", "--port", str(sim_port), "--model", "bench-model", "--speed", str(args.speed)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))  # fmt: skip
            wait_http(f"http://127.0.0.1:{sim_port}/health")
            Path(tmp, "gw.yaml").write_text(MANIFESTS.replace("PORT", str(gw_port)))
            Path(tmp, "ep.yaml").write_text(
                f"endpoints: [{{address: 127.0.0.1, port: {sim_port}, labels: {{app: bench}}}}]\n"
            )
            procs.append(subprocess.Popen(
                [str(BIN / "inferpool"), "serve", "--no-auth", "-f", str(Path(tmp, "gw.yaml")), "--endpoints", str(Path(tmp, "ep.yaml")),
                 "--admin-port", str(free_port()), "--no-access-log", "--no-admission"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))  # fmt: skip
            wait_http(f"http://127.0.0.1:{gw_port}/v1/models")
            direct_url = f"http://127.0.0.1:{sim_port}/v1/completions"
            gw_url = f"http://127.0.0.1:{gw_port}/v1/completions"
            # warm both paths (connection pools, first-request costs) before measuring
            asyncio.run(run_trace(direct_url, [0.0] * 20, body))
            asyncio.run(run_trace(gw_url, [0.0] * 20, body))
            direct, direct_err = asyncio.run(run_trace(direct_url, arrivals, body))
            via_gw, gw_err = asyncio.run(run_trace(gw_url, arrivals, body))
        finally:
            for p in procs:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGINT)
            for p in procs:
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)

    print(f"open-loop trace: {len(arrivals)} requests, Poisson {args.rate:g} req/s for {args.seconds:g}s, "
          f"max_tokens {args.max_tokens}, sim speed x{args.speed:g}")  # fmt: skip
    print(f"{'':<10}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}{'errors':>8}")
    for name, lat, err in (("direct", direct, direct_err), ("gateway", via_gw, gw_err)):
        print(
            f"{name:<10}{pct(lat, 0.5) * 1e3:>10.2f}{pct(lat, 0.99) * 1e3:>10.2f}{statistics.mean(lat) * 1e3:>10.2f}{err:>8}"
        )
    print(f"{'added':<10}{(pct(via_gw, .5) - pct(direct, .5)) * 1e3:>10.2f}{(pct(via_gw, .99) - pct(direct, .99)) * 1e3:>10.2f}"
          f"{(statistics.mean(via_gw) - statistics.mean(direct)) * 1e3:>10.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
