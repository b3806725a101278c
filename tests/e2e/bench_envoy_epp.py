"""Benchmark (prints, asserts nothing): picker decisions/s through Envoy -> EPP, and the
latency the EPP adds: Envoy -> EPP -> replicas vs. the same Envoy routing to one fixed replica
without ext_proc (and vs. calling that replica directly).

Replicas are the hand-written ones (replica.py): no model time at all, so only the proxy path
is measured; a simulated vLLM would add milliseconds of fake decode that drown it.

    .venv/bin/python -m tests.e2e.bench_envoy_epp
"""

from __future__ import annotations

import asyncio
import statistics
import time
from contextlib import AsyncExitStack

import aiohttp

from .envoy_harness import Envoy, EnvoyConfig, find_envoy
from .epp_stack import open_stack
from .replica import Replica

BODY = {"model": "meta-llama/Llama-3.1-8B-Instruct", "prompt": "hello", "max_tokens": 1}


async def measure(url: str, total: int, concurrency: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    queue = iter(range(total))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def worker() -> None:
            for _ in queue:
                t0 = time.perf_counter()
                async with http.post(url, json=BODY) as resp:
                    await resp.read()
                    assert resp.status == 200, resp.status
                latencies.append(time.perf_counter() - t0)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return total / (time.perf_counter() - start), latencies


async def main() -> None:
    async with AsyncExitStack() as stack:
        s = await open_stack(stack, [Replica("r0"), Replica("r1"), Replica("r2")])
        binary = find_envoy()
        assert binary is not None
        fixed_config = EnvoyConfig(epp_port=s.epp.grpc_port, pool_ports=[s.replicas[0].port], ext_proc=False)
        fixed = await stack.enter_async_context(Envoy(binary, fixed_config))
        via = f"{s.base_url}/completions"
        plain = f"{fixed.url}/v1/completions"
        direct = f"http://127.0.0.1:{s.replicas[0].port}/v1/completions"
        for url in (via, plain, direct):
            await measure(url, 50, 4)  # warm-up
        for concurrency in (1, 16):
            rps, lat = await measure(via, 1000, concurrency)
            p_rps, p_lat = await measure(plain, 1000, concurrency)
            d_rps, d_lat = await measure(direct, 1000, concurrency)
            p50, p50_plain, p50_direct = (statistics.median(x) * 1e3 for x in (lat, p_lat, d_lat))
            p99, p99_plain = (statistics.quantiles(x, n=100)[98] * 1e3 for x in (lat, p_lat))
            print(
                f"concurrency {concurrency}: Envoy->EPP {rps:.0f} decisions/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms"
                f" | Envoy->one replica {p_rps:.0f} req/s, p50 {p50_plain:.2f} ms, p99 {p99_plain:.2f} ms"
                f" | direct {d_rps:.0f} req/s, p50 {p50_direct:.2f} ms"
                f" | EPP adds p50 {p50 - p50_plain:.2f} ms"
            )


if __name__ == "__main__":
    asyncio.run(main())
