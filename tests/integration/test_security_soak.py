"""Bounded soak: Poisson load at 80 % of the measured capacity through `inferpool serve`.

Checks steady memory (RSS of the gateway process) and that no in-flight count leaks.
INFERPOOL_SOAK_S sets the duration (default 20 s in the test suite; the figures in
docs/security.md come from a 180 s run).
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import time
from pathlib import Path

import aiohttp
import orjson

from .conftest import INFERPOOL, free_port, http_ok, sim_argv, wait_until
from .test_gateway_serve import manifests


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def test_soak_at_80_percent(spawn, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    duration = float(os.environ.get("INFERPOOL_SOAK_S", "20"))
    ports = [free_port() for _ in range(3)]
    for p in ports:
        spawn(sim_argv(p, "--model", "tiny", "--speed", "10", "--seed", str(p)))
    for p in ports:
        wait_until(lambda p=p: http_ok(f"http://127.0.0.1:{p}/health"), 60, what=f"sim {p}")
    (tmp_path / "gw.yaml").write_text(manifests(free_port()))
    endpoints = [
        {"address": "127.0.0.1", "port": p, "name": f"sim-{i}", "labels": {"app": "sim"}}
        for i, p in enumerate(ports)
    ]
    (tmp_path / "endpoints.yaml").write_text(orjson.dumps({"endpoints": endpoints}).decode())
    admin_port = free_port()
    gw = spawn(
        [INFERPOOL, "serve", "--no-auth", "-f", str(tmp_path / "gw.yaml"), "--endpoints", str(tmp_path / "endpoints.yaml"),
         "--admin-port", str(admin_port), "--no-access-log"]
    )  # fmt: skip
    url = gw.wait_for_line(r"^gateway\s+(http://\S+)", 60).group(1)
    rng = random.Random(3)
    statuses: dict[int, int] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as s:

        async def one(i: int) -> int:
            stream = i % 2 == 0
            body = {"model": "tiny", "prompt": f"soak {i} " * rng.randint(1, 30), "max_tokens": rng.randint(16, 96),
                    "stream": stream}  # fmt: skip
            async with s.post(f"{url}/v1/completions", json=body) as resp:
                raw = await resp.read()
                if stream and resp.status == 200 and not raw.endswith(b"data: [DONE]\n\n"):
                    return 599
                return resp.status

        for _ in range(600):  # until every replica is scraped and ready
            if await one(0) == 200:
                break
            await asyncio.sleep(0.1)

        # capacity: closed loop with many clients
        done = 0
        stop_at = time.monotonic() + 5

        async def client() -> None:
            nonlocal done
            while time.monotonic() < stop_at:
                await one(done)
                done += 1

        t0 = time.monotonic()
        await asyncio.gather(*(client() for _ in range(48)))
        capacity = done / (time.monotonic() - t0)
        rate = 0.8 * capacity

        rss: list[float] = []
        tasks: list[asyncio.Task[int]] = []
        end = time.monotonic() + duration
        next_sample = time.monotonic()
        i = 0
        while time.monotonic() < end:
            tasks.append(asyncio.create_task(one(i)))
            i += 1
            if time.monotonic() >= next_sample:
                rss.append(rss_mib(gw.pid))
                next_sample += 1.0
            await asyncio.sleep(rng.expovariate(rate))
        results = await asyncio.gather(*tasks)
        for st in results:
            statuses[st] = statuses.get(st, 0) + 1
        await asyncio.sleep(0.5)
        async with s.get(f"http://127.0.0.1:{admin_port}/api/state") as resp:
            state = await resp.json()
    in_flight = sum(e["in_flight"] for p in state["pools"] for e in p["endpoints"])
    quarter = max(1, len(rss) // 4)
    early, late = statistics.median(rss[quarter : 2 * quarter] or rss), statistics.median(rss[-quarter:])
    print(
        f"\nsoak {duration:g}s: capacity {capacity:.1f} req/s, offered {rate:.1f} req/s, {len(results)} requests, "
        f"statuses {statuses}, RSS {rss[0]:.1f} -> {early:.1f} -> {late:.1f} MiB (start, 2nd quarter, last quarter), "
        f"in-flight after {in_flight}"
    )
    assert statuses == {200: len(results)}
    assert in_flight == 0
    assert late <= early * 1.25 + 10, (early, late)  # steady, not growing with the request count
