"""`inferpool up` on the guide's manifests, driven by the openai SDK and raw HTTP."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator

import aiohttp
import openai
import pytest

from .conftest import INFERPOOL, Proc, free_port

BASE = "meta-llama/Llama-3.1-8B-Instruct"


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[str, str]]:
    admin = free_port()
    proc = Proc(
        [INFERPOOL, "up", "-f", "examples/gke-quickstart", "--speed", "50", "--admin-port", str(admin)]
    )
    try:
        proc.wait_for_line(r"^ready\.", timeout=90)
        url = re.search(r"^gateway\s+(http://\S+)", proc.output(), re.M)
        assert url, proc.output()
        yield url.group(1), f"http://127.0.0.1:{admin}"
    finally:
        proc.close()


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)


def test_sync_completion_on_lora_model(stack: tuple[str, str]) -> None:
    out = client(stack[0]).completions.create(model="food-review", prompt="Best pizza?", max_tokens=16)
    assert out.model == "food-review" and out.choices[0].text
    assert out.usage is not None and 0 < out.usage.completion_tokens <= 16


def test_sync_chat_on_base_model(stack: tuple[str, str]) -> None:
    out = client(stack[0]).chat.completions.create(
        model=BASE, messages=[{"role": "user", "content": "Hello"}], max_tokens=8
    )
    assert out.choices[0].message.role == "assistant" and out.choices[0].message.content


def test_sync_streaming_completion_with_usage(stack: tuple[str, str]) -> None:
    chunks = list(
        client(stack[0]).completions.create(
            model="food-review",
            prompt="Tell me about pizza",
            max_tokens=12,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert len(chunks) >= 2
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == len(
        [c for c in chunks if c.choices]
    )


async def test_async_streaming_chat_and_models(stack: tuple[str, str]) -> None:
    aclient = openai.AsyncOpenAI(base_url=f"{stack[0]}/v1", api_key="unused", max_retries=0, timeout=60)
    try:
        stream = await aclient.chat.completions.create(
            model="food-review", messages=[{"role": "user", "content": "Hi"}], max_tokens=6, stream=True
        )
        text = [c.choices[0].delta.content or "" async for c in stream if c.choices]
        assert "".join(text)
        plain = await aclient.completions.create(model=BASE, prompt="x", max_tokens=4)
        assert plain.choices[0].text
        models = [m.id async for m in aclient.models.list()]
        assert set(models) == {"food-review", BASE}
    finally:
        await aclient.close()


def test_unknown_model_is_openai_not_found(stack: tuple[str, str]) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client(stack[0]).completions.create(model="no-such-model", prompt="x", max_tokens=2)
    assert err.value.status_code == 404
    assert err.value.body["message"] == "The model `no-such-model` does not exist."  # type: ignore[index]


async def test_raw_http_errors_are_vllm_shaped(stack: tuple[str, str]) -> None:
    url = stack[0]
    async with aiohttp.ClientSession() as s:
        cases = [
            (await s.post(f"{url}/v1/completions", data=b'{"model":"food-review","prompt":'), 400),
            (await s.post(f"{url}/v1/completions", json={"model": "zzz", "prompt": "x"}), 404),
            (await s.post(f"{url}/v1/chat/completions", json={"model": "food-review", "max_tokens": 2}), 400),
        ]
        for resp, status in cases:
            body = await resp.json()
            assert resp.status == status, body
            assert (
                set(body["error"]) == {"message", "type", "param", "code"} and body["error"]["code"] == status
            )
            assert resp.headers["x-request-id"]


def test_admin_metrics_after_traffic(stack: tuple[str, str]) -> None:
    client(stack[0]).completions.create(model="food-review", prompt="count me", max_tokens=4)
    with pytest.raises(openai.NotFoundError):
        client(stack[0]).completions.create(model="nobody", prompt="x", max_tokens=2)
    with urllib.request.urlopen(f"{stack[1]}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    assert re.search(
        r'^inference_model_request_total\{model_name="food-review",target_model_name="food-review"\} \d',
        text,
        re.M,
    )
    assert 'inference_pool_ready_pods{name="vllm-llama3-8b-instruct"} 3.0' in text
    assert "inference_model_time_to_first_token_seconds_bucket" in text
    assert (
        'inference_model_request_error_total{error_code="404",model_name="nobody",target_model_name="nobody"} 1.0'
        in text
    )
