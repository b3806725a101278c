"""A simulated vLLM replica (`inferpool.sim`) for the Envoy tests, recording what it served.

The simulator speaks vLLM's API and metrics (queue, KV cache, LoRA adapters in
`vllm:lora_requests_info`), so the EPP schedules on real signals. Which replica served a
request is read from its engine's finish hook, not from anything the test injects.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import aiohttp
import yaml

from inferpool.sim import SimConfig, SimReplica
from inferpool.sim.engine import SimRequest

BASE = "meta-llama/Llama-3.1-8B-Instruct"
GUIDE_ADAPTERS = ["food-review", "cad-fabricator"]


@dataclass
class SimNode:
    name: str
    config: SimConfig = field(default_factory=lambda: SimConfig(lora_modules=list(GUIDE_ADAPTERS)))
    served: list[str] = field(default_factory=list)  # adapter name, or BASE, per request run to the end
    aborted: list[str] = field(default_factory=list)  # requests whose client went away
    replica: SimReplica | None = None
    port: int = 0

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.hostport}"

    async def start(self) -> None:
        """Start once; a second call is a no-op (a test may start replicas before the stack)."""
        if self.replica is not None:
            return
        self.replica = SimReplica(replace(self.config, host="127.0.0.1", port=0))
        self.replica.engine.finish_hooks.append(self._finished)
        await self.replica.start()
        await asyncio.wait_for(self.replica.wait_ready(), 30)
        self.port = self.replica.port

    def _finished(self, req: SimRequest) -> None:
        (self.aborted if req.finish_reason == "abort" else self.served).append(req.lora or BASE)

    async def stop(self) -> None:
        replica, self.replica = self.replica, None
        if replica is not None:
            await replica.stop()


def sims(count: int, **config: object) -> list[SimNode]:
    """`count` simulated replicas with the guide's adapters; fast clock so tests stay short."""
    settings: dict[str, object] = {"lora_modules": list(GUIDE_ADAPTERS), "speed": 5.0, **config}
    return [SimNode(f"r{i}", SimConfig(seed=i, **settings)) for i in range(count)]  # type: ignore[arg-type]


def small_gpu_profile(directory: Path) -> str:
    """A tiny GPU: 4 sequences at once and 1,024 tokens of KV cache, so a burst saturates it."""
    path = directory / "small-gpu.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "small-gpu",
                "num_gpu_blocks": 64,
                "max_num_seqs": 4,
                "max_num_batched_tokens": 512,
                "max_model_len": 4096,
            }
        )
    )
    return str(path)


_INFERENCE_HTTP = re.compile(
    r'^http_requests_total\{handler="/v1/(?:chat/)?completions",method="POST",status="(\dxx)"\} (\S+)$', re.M
)


async def inference_requests(node: SimNode) -> Counter[str]:
    """What the replica answered on its inference routes, by status class ("2xx", "4xx"...), from its /metrics."""
    async with aiohttp.ClientSession() as http, http.get(f"{node.url}/metrics") as response:
        text = await response.text()
    counts: Counter[str] = Counter()
    for status, value in _INFERENCE_HTTP.findall(text):
        counts[status] += int(float(value))
    return +counts
