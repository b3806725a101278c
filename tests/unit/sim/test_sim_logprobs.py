"""`logprobs`, `top_logprobs` and `echo` on the simulated replica: vLLM's shapes through the openai
SDK, the same figures streamed or not, and vLLM's refusals (its request validators and the
engine's --max-logprobs limit of 20)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
import pytest

from inferpool.sim.config import SimConfig
from inferpool.sim.replica import SimReplica

PROMPT = "Hello big world"


@pytest.fixture
async def api() -> AsyncIterator[openai.AsyncOpenAI]:
    replica = SimReplica(SimConfig(model="m", port=0, speed=50))
    await replica.start()
    try:
        yield openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{replica.port}/v1", api_key="x", max_retries=0)
    finally:
        await replica.stop()


async def test_completion_logprobs_with_echo_streamed_or_not(api: openai.AsyncOpenAI) -> None:
    whole = await api.completions.create(
        model="m", prompt=PROMPT, max_tokens=4, logprobs=2, echo=True, seed=1
    )
    choice = whole.choices[0]
    assert choice.text.startswith(PROMPT) and len(choice.text) > len(PROMPT)
    assert choice.logprobs is not None
    tokens, lps = choice.logprobs.tokens or [], choice.logprobs.token_logprobs or []
    assert tokens[0] == "<s>" and lps[0] is None  # the echoed prompt's first token has none, as in vLLM
    assert "".join(tokens[1:]) == choice.text
    top = choice.logprobs.top_logprobs or []
    for token, lp, alternatives in zip(tokens[1:], lps[1:], top[1:], strict=True):
        assert lp is not None and lp < 0
        assert alternatives is not None and len(alternatives) == 3 and alternatives[token] == lp
        assert max(alternatives.values()) == lp  # the sampled token is the most likely
    offsets = choice.logprobs.text_offset or []
    assert [choice.text[o : o + len(t)] for o, t in zip(offsets[1:], tokens[1:], strict=True)] == tokens[1:]
    stream = await api.completions.create(
        model="m", prompt=PROMPT, max_tokens=4, logprobs=2, echo=True, seed=1, stream=True
    )
    chunks = [c.choices[0] async for c in stream if c.choices]
    assert "".join(c.text for c in chunks) == choice.text
    assert chunks[0].text.startswith(PROMPT)  # the prompt opens the first chunk
    assert [lp for c in chunks for lp in (c.logprobs.token_logprobs or [])] == lps  # type: ignore[union-attr]


async def test_chat_logprobs_streamed_or_not(api: openai.AsyncOpenAI) -> None:
    messages = [{"role": "user", "content": "hi"}]
    whole = await api.chat.completions.create(
        model="m",
        messages=messages,
        max_tokens=3,
        logprobs=True,
        top_logprobs=2,
        seed=1,  # type: ignore[arg-type]
    )
    content = whole.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content is not None and len(content) == whole.usage.completion_tokens  # type: ignore[union-attr]
    for entry in content:
        assert entry.bytes == list(entry.token.encode())
        assert len(entry.top_logprobs) == 2 and entry.top_logprobs[0].token == entry.token
        assert entry.top_logprobs[0].logprob == entry.logprob > entry.top_logprobs[1].logprob
    stream = await api.chat.completions.create(
        model="m",
        messages=messages,
        max_tokens=3,
        logprobs=True,
        top_logprobs=2,
        seed=1,
        stream=True,  # type: ignore[arg-type]
    )
    streamed = [e for c in [c async for c in stream] if c.choices and c.choices[0].logprobs
                for e in c.choices[0].logprobs.content or []]  # fmt: skip
    assert [(e.token, e.logprob) for e in streamed] == [(e.token, e.logprob) for e in content]
    plain = await api.chat.completions.create(model="m", messages=messages, max_tokens=2)  # type: ignore[arg-type]
    assert plain.choices[0].logprobs is None  # only when asked


@pytest.mark.parametrize(
    ("kind", "extra", "message"),
    [
        ("chat", {"top_logprobs": 2}, "when using `top_logprobs`, `logprobs` must be set to true."),
        ("chat", {"logprobs": True, "top_logprobs": 21}, "Requested sample logprobs of 21, which is greater than max allowed: 20"),
        ("completion", {"logprobs": -1}, "`logprobs` must be a positive value."),
        ("completion", {"logprobs": 21}, "Requested sample logprobs of 21, which is greater than max allowed: 20"),
    ],
)  # fmt: skip
async def test_refusals_are_vllms(
    api: openai.AsyncOpenAI, kind: str, extra: dict[str, object], message: str
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        if kind == "chat":
            await api.chat.completions.create(
                model="m",
                messages=[{"role": "user", "content": "hi"}],
                max_tokens=2,
                **extra,  # type: ignore[arg-type]
            )
        else:
            await api.completions.create(model="m", prompt="x", max_tokens=2, **extra)  # type: ignore[arg-type]
    assert message in info.value.response.json()["error"]["message"]
