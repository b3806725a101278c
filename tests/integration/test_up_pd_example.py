"""`inferpool up -f examples/pd`: the P/D example runs locally on simulated replicas.

The prefill and decode Deployments become NixlConnector sims (their `--kv-transfer-config`),
their `llm-d.ai/role` labels make `up` run the `pd` profile, and the built-in gateway runs
both legs itself (no sidecar locally): one ordinary answer, the prefill leg recorded, the
decode replica pulling the prompt's KV blocks from the prefill replica.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import orjson

from inferpool.local.stack import LocalStack, UpConfig

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pd"
MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def long_prompt(topic: str) -> str:
    """About 900 estimated tokens: above the `pd` profile's split threshold (512 uncached)."""
    return f"Background on {topic}. " + " ".join(f"{topic} fact {i} is worth noting." for i in range(120))


async def test_up_runs_the_pd_example() -> None:
    stack = LocalStack(UpConfig(paths=(str(EXAMPLE),), admin_port=0, speed=20, access_log=False))
    await stack.start()
    try:
        assert stack.profile == "pd"
        assert stack.runtime is not None and stack.runtime.gateway is not None
        url = stack.runtime.gateway.bound[0].url
        admin = stack.runtime.gateway.admin_url
        roles = {r.name: r.labels.get("llm-d.ai/role") for r in stack.replicas}
        assert roles == {
            "vllm-llama3-8b-prefill-0": "prefill",
            "vllm-llama3-8b-decode-0": "decode",
            "vllm-llama3-8b-decode-1": "decode",
        }
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            body = {"model": MODEL, "prompt": long_prompt("granite"), "max_tokens": 5, "ignore_eos": True}
            async with http.post(f"{url}/v1/completions", json=body) as resp:
                answer = await resp.json()
                assert resp.status == 200, answer
            assert answer["usage"]["completion_tokens"] == 5

            chat: dict[str, Any] = {
                "model": MODEL,
                "messages": [{"role": "user", "content": long_prompt("basalt")}],
                "max_tokens": 4,
                "ignore_eos": True,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            async with http.post(f"{url}/v1/chat/completions", json=chat) as resp:
                assert resp.status == 200
                raw = (await resp.read()).decode()
            events = [line[6:] for line in raw.splitlines() if line.startswith("data: ")]
            assert events[-1] == "[DONE]"
            usages = [orjson.loads(e)["usage"] for e in events[:-1] if orjson.loads(e).get("usage")]
            assert len(usages) == 1 and usages[0]["completion_tokens"] == 4

            async with http.get(f"{admin}/api/decisions") as resp:
                data = await resp.json()
            decisions = data["decisions"] if isinstance(data, dict) else data
            split = [d for d in decisions if d["prefill"] is not None]
            assert len(split) == 2
            assert all(d["prefill"]["endpoint"] == "vllm-llama3-8b-prefill-0" for d in split)
            assert all(
                not d["prefill"]["fell_back"] and d["picked"].startswith("vllm-llama3-8b-decode")
                for d in split
            )

            pulled = 0.0
            for replica in stack.replicas:
                if roles[replica.name] == "decode":
                    async with http.get(f"http://127.0.0.1:{replica.port}/metrics") as resp:
                        for line in (await resp.text()).splitlines():
                            if line.startswith("vllm:nixl_bytes_transferred_count"):
                                pulled += float(line.rsplit(" ", 1)[1])
            assert pulled == 2
    finally:
        await stack.stop()
