"""The simulator's /v1/embeddings, /v1/responses and /v1/messages: vLLM's shapes, read by the `openai` SDK."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator

import aiohttp
import openai
import orjson
import pytest

from inferpool.scheduling.plugins.precise_prefix import SimPromptTokenizer
from inferpool.sim import SimConfig, SimReplica
from inferpool.sim.apis import EMBEDDING_DIM

MODEL = "meta-llama/Llama-3.1-8B-Instruct"


@pytest.fixture
async def replica() -> AsyncIterator[SimReplica]:
    rep = SimReplica(SimConfig(port=0, speed=50.0, seed=3))
    await rep.start()
    yield rep
    await rep.stop()


def _sdk_calls(base_url: str) -> None:
    client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=60)
    # The SDK asks for base64 unless told otherwise, and decodes it back to floats.
    first = client.embeddings.create(model=MODEL, input=["the same text", "another text"])
    again = client.embeddings.create(model=MODEL, input="the same text", encoding_format="float")
    assert [d.index for d in first.data] == [0, 1]
    assert len(first.data[0].embedding) == EMBEDDING_DIM
    assert math.isclose(sum(x * x for x in first.data[0].embedding), 1.0, rel_tol=1e-5)
    assert first.data[0].embedding == pytest.approx(again.data[0].embedding, rel=1e-6)  # deterministic
    assert first.data[0].embedding != pytest.approx(first.data[1].embedding)
    assert first.usage.prompt_tokens > again.usage.prompt_tokens > 0

    response = client.responses.create(
        model=MODEL, instructions="Be brief.", input="Say hi", max_output_tokens=4
    )
    assert response.object == "response" and response.id.startswith("resp_")
    assert response.status in ("completed", "incomplete")
    assert response.output_text
    assert response.usage is not None and 1 <= response.usage.output_tokens <= 4
    assert response.usage.input_tokens > 0

    types: list[str] = []
    deltas: list[str] = []
    final = None
    with client.responses.stream(
        model=MODEL, input=[{"role": "user", "content": "Hello"}], max_output_tokens=5
    ) as s:
        for event in s:
            types.append(event.type)
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = s.get_final_response()
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert final.output_text == "".join(deltas)
    assert final.usage is not None and final.usage.output_tokens == len(deltas)

    with pytest.raises(openai.BadRequestError):
        client.responses.create(model=MODEL, input=7)  # type: ignore[arg-type]
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="nope", input="x")


async def test_openai_sdk_embeddings_and_responses(replica: SimReplica) -> None:
    await asyncio.to_thread(_sdk_calls, replica.url + "/v1")


def _events(raw: bytes) -> list[tuple[str, dict[str, object]]]:
    out = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        name, data = block.split("\n", 1)
        assert name.startswith("event: ") and data.startswith("data: ")
        event = orjson.loads(data[6:])
        assert event["type"] == name[7:]
        out.append((name[7:], event))
    return out


async def test_messages_whole_and_streamed(replica: SimReplica) -> None:
    body = {
        "model": MODEL,
        "max_tokens": 6,
        "system": [{"type": "text", "text": "You are terse."}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello there"}]}],
    }
    async with aiohttp.ClientSession() as session:
        async with session.post(replica.url + "/v1/messages", json=body) as resp:
            assert resp.status == 200
            whole = await resp.json()
        assert whole["type"] == "message" and whole["role"] == "assistant"
        assert whole["id"].startswith("chatcmpl-")
        assert whole["content"][0]["type"] == "text" and whole["content"][0]["text"]
        assert whole["stop_reason"] in ("end_turn", "max_tokens")
        assert 1 <= whole["usage"]["output_tokens"] <= 6
        usage = whole["usage"]
        prompt = (
            usage["input_tokens"] + usage["cache_read_input_tokens"] + usage["cache_creation_input_tokens"]
        )
        # The precise-prefix scorer's sim tokenizer renders the body as the sim does, system included.
        assert prompt == len(SimPromptTokenizer().prompt_ids(body) or []) > 0

        async with session.post(replica.url + "/v1/messages", json={**body, "stream": True}) as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            events = _events(await resp.read())
        names = [n for n, _ in events]
        assert names[0] == "message_start" and names[1] == "content_block_start"
        assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
        deltas = [e["delta"]["text"] for n, e in events if n == "content_block_delta"]  # type: ignore[index]
        final_usage = events[-2][1]["usage"]
        assert final_usage["output_tokens"] == len(deltas)  # type: ignore[index]
        assert events[0][1]["message"]["usage"]["output_tokens"] == 0  # type: ignore[index]

        bad = {"model": MODEL, "messages": [{"role": "user", "content": "x"}]}  # no max_tokens
        async with session.post(replica.url + "/v1/messages", json=bad) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["param"] == "body.max_tokens"
