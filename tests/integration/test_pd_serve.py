"""`inferpool serve --profile pd` in front of simulated vLLM replicas with llm-d's P/D roles.

Real processes on loopback: a prefill replica and a decode replica (`inferpool sim
--kv-transfer-config`, NixlConnector), labelled `llm-d.ai/role` in a static endpoints file.
The gateway runs vLLM's disaggregated protocol itself; the client sees one ordinary answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import orjson
from prometheus_client.parser import text_string_to_metric_families

from .conftest import free_port, gateway_manifests, sim_endpoint, start_serve, start_sims

POOL = """
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {name: pool}
spec:
  selector: {app: sim}
  targetPortNumber: 8000
  extensionRef: {name: pool-epp}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: base}
spec:
  modelName: tiny
  criticality: Critical
  poolRef: {name: pool}
"""
KV = '{"kv_connector":"NixlConnector","kv_role":"kv_both"}'


def long_prompt(topic: str) -> str:
    """About 900 estimated tokens: above the `pd` profile's 512-token split threshold."""
    return f"Background on {topic}. " + " ".join(f"{topic} fact {i} is worth noting." for i in range(120))


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


async def test_serve_runs_prefill_then_decode_and_falls_back(spawn, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ports = {"prefill": free_port(), "decode": free_port()}
    procs = start_sims(
        spawn, list(ports.values()), "--speed", "10", "--seed", "3", "--kv-transfer-config", KV
    )
    sims = dict(zip(ports, procs, strict=True))
    endpoints = [sim_endpoint(port, f"sim-{role}", **{"llm-d.ai/role": role}) for role, port in ports.items()]
    gw = start_serve(spawn, tmp_path, gateway_manifests(POOL, free_port()), endpoints, "--profile", "pd")
    url, admin = gw.url, gw.admin
    decode_hostport = f"127.0.0.1:{ports['decode']}"

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:

        async def decisions() -> list[dict[str, Any]]:
            async with s.get(f"{admin}/api/decisions") as resp:
                data = await resp.json()
            return data["decisions"] if isinstance(data, dict) else data

        # unstreamed: one ordinary answer, decoded on the decode replica, usage once
        body = {"model": "tiny", "prompt": long_prompt("granite"), "max_tokens": 6, "ignore_eos": True}
        async with s.post(f"{url}/v1/completions", json=body) as resp:
            answer = await resp.json()
            assert resp.status == 200, answer
            assert resp.headers["x-gateway-destination-endpoint-served"] == decode_hostport
        assert answer["object"] == "text_completion", answer
        assert answer.get("kv_transfer_params") is None, answer  # vLLM's decode answer: null
        assert answer["usage"]["completion_tokens"] == 6 and answer["usage"]["prompt_tokens"] > 512
        # cached tokens as the prefill server counted them (a new prompt: none), not the decoder's
        # count, which includes every pulled block (as llm-d's sidecar reports them)
        assert answer["usage"]["prompt_tokens_details"]["cached_tokens"] == 0

        # streamed, with usage: the decode server's stream, one usage chunk, [DONE]
        body = {
            "model": "tiny",
            "messages": [{"role": "user", "content": long_prompt("basalt")}],
            "max_tokens": 5,
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        async with s.post(f"{url}/v1/chat/completions", json=body) as resp:
            assert resp.status == 200 and resp.headers["content-type"].startswith("text/event-stream")
            raw = (await resp.read()).decode()
        events = [line[6:] for line in raw.splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        chunks = [orjson.loads(e) for e in events[:-1]]
        usages = [c["usage"] for c in chunks if c.get("usage")]
        assert len(usages) == 1 and usages[0]["completion_tokens"] == 5
        assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])

        # a short prompt is not worth a remote prefill
        async with s.post(
            f"{url}/v1/completions", json={"model": "tiny", "prompt": "hi", "max_tokens": 2}
        ) as resp:
            assert resp.status == 200

        recent = await decisions()
        split = [d for d in recent if d["prefill"] is not None]
        assert len(split) == 2 and all(d["picked"] == "sim-decode" for d in split)
        assert all(d["prefill"]["endpoint"] == "sim-prefill" and not d["prefill"]["fell_back"] for d in split)
        assert all(d["prefill"]["status"] == 200 for d in split)
        assert [d["prefill"] for d in recent if d["prefill"] is None and d["status"] == 200]  # the short one

        # the decoder pulled the prefill's KV blocks instead of computing them
        async with s.get(f"http://{decode_hostport}/metrics") as resp:
            decode_metrics = await resp.text()
        assert metric(decode_metrics, "vllm:nixl_bytes_transferred_count") >= 2

        # the prefill replica goes away: the decoder prefills locally, the client sees nothing amiss
        sims["prefill"].kill()
        body = {"model": "tiny", "prompt": long_prompt("obsidian"), "max_tokens": 4, "ignore_eos": True}
        async with s.post(f"{url}/v1/completions", json=body) as resp:
            answer = await resp.json()
            assert resp.status == 200, answer
        assert answer["usage"]["completion_tokens"] == 4
        fell_back = (await decisions())[-1]  # newest last
        assert fell_back["picked"] == "sim-decode" and fell_back["prefill"]["fell_back"] is True
        assert fell_back["prefill"]["error"]
        # a refused prefill endpoint leaves the rotation: the next long prompt is not split
        body = {"model": "tiny", "prompt": long_prompt("pumice"), "max_tokens": 4, "ignore_eos": True}
        async with s.post(f"{url}/v1/completions", json=body) as resp:
            assert resp.status == 200
        assert (await decisions())[-1]["prefill"] is None

        async with s.get(f"{admin}/metrics") as resp:
            gw_metrics = await resp.text()
    assert metric(gw_metrics, "inferpool_pd_legs_total", leg="prefill", outcome="ok") == 2
    assert metric(gw_metrics, "inferpool_pd_legs_total", leg="prefill", outcome="fallback") == 1
    assert (
        metric(gw_metrics, "inferpool_pd_legs_total", leg="decode", endpoint="sim-decode", outcome="ok") == 3
    )
    assert metric(gw_metrics, "inference_model_request_total") == 5  # requests, not legs
    log = [orjson.loads(line) for line in gw.proc.output().splitlines() if line.startswith("{")]
    assert sum(1 for e in log if "prefill" in e) == 3
