"""Benchmark (prints, asserts nothing): picker decisions/s through Envoy -> EPP, and the
latency Envoy + EPP add over calling one replica directly.

    .venv/bin/python -m tests.e2e.bench_envoy_epp
"""

from __future__ import annotations

import asyncio
import statistics
import time
from contextlib import AsyncExitStack

import aiohttp

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
        via = f"{s.base_url}/completions"
        direct = f"http://{s.replicas[0].hostport}/v1/completions"
        await measure(via, 50, 4)  # warm-up
        for concurrency in (1, 16):
            rps, lat = await measure(via, 1000, concurrency)
            d_rps, d_lat = await measure(direct, 1000, concurrency)
            print(
                f"concurrency {concurrency}: Envoy->EPP {rps:.0f} decisions/s, p50 {statistics.median(lat) * 1e3:.2f} ms"
                f" | direct {d_rps:.0f} req/s, p50 {statistics.median(d_lat) * 1e3:.2f} ms"
                f" | added p50 {(statistics.median(lat) - statistics.median(d_lat)) * 1e3:.2f} ms"
            )


if __name__ == "__main__":
    asyncio.run(main())
