"""The `openai` SDK, as our users run it, against the simulator: completions, chat streaming, models."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import openai
import pytest

from inferpool.sim import SimConfig, SimReplica

MODEL = "meta-llama/Llama-3.1-8B-Instruct"


@pytest.fixture
async def replica() -> AsyncIterator[SimReplica]:
    rep = SimReplica(SimConfig(port=0, lora_modules=["food-review"], speed=50.0))
    await rep.start()
    yield rep
    await rep.stop()


def _sync_calls(base_url: str) -> tuple[str, str, list[str], str]:
    client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=60)
    completion = client.completions.create(model=MODEL, prompt="Say hello", max_tokens=5, temperature=0)
    text = completion.choices[0].text
    assert completion.usage is not None and completion.usage.completion_tokens >= 1
    stream = client.chat.completions.create(
        model="food-review",
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=6,
        stream=True,
        stream_options={"include_usage": True},
    )
    parts = []
    usage_seen = False
    for chunk in stream:
        if chunk.choices:
            parts.append(chunk.choices[0].delta.content or "")
        if chunk.usage is not None:
            usage_seen = True
    assert usage_seen
    models = [m.id for m in client.models.list()]
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="nope", prompt="x", max_tokens=1)
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model=MODEL, prompt="x", max_tokens=-1)
    return text, "".join(parts), models, completion.id


async def test_sync_client(replica: SimReplica) -> None:
    text, chat_text, models, cid = await asyncio.to_thread(_sync_calls, replica.url + "/v1")
    assert text and chat_text
    assert models == [MODEL, "food-review"]
    assert cid.startswith("cmpl-")


async def test_async_client(replica: SimReplica) -> None:
    client = openai.AsyncOpenAI(base_url=replica.url + "/v1", api_key="unused", max_retries=0, timeout=60)
    chat = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hello"}],
                                                max_tokens=8)  # fmt: skip
    assert chat.choices[0].message.role == "assistant"
    assert chat.choices[0].finish_reason in ("stop", "length")
    assert chat.usage is not None and chat.usage.prompt_tokens_details is not None
    stream = await client.completions.create(model="food-review", prompt="Once upon", max_tokens=4,
                                             stream=True, extra_body={"ignore_eos": True})  # fmt: skip
    texts = [c.choices[0].text async for c in stream if c.choices]
    assert len(texts) == 4
    models = await client.models.list()
    assert {m.id for m in models.data} == {MODEL, "food-review"}
    await client.close()
