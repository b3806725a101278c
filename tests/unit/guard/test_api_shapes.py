"""Screening finds the prompt and answer texts of embeddings, the Responses API and Anthropic Messages."""

from __future__ import annotations

import orjson
import pytest

from inferpool.guard import Action, CheckConfig, GuardConfig, Screener
from inferpool.guard.openai import (
    Blocked,
    StoredAnswerStream,
    StreamScreener,
    _after_system,
    screen_request,
    screen_response,
)

SECRET = "AKIAIOSFODNN7EXAMPLE"


def _screener() -> Screener:
    return Screener(
        GuardConfig("t", (CheckConfig("pii", Action.REDACT), CheckConfig("secrets", Action.BLOCK)))
    )


@pytest.mark.parametrize(
    "body",
    [
        {"model": "e", "input": f"embed {SECRET}"},  # embeddings, one text
        {"model": "e", "input": ["fine", f"embed {SECRET}"]},  # embeddings, texts
        {"model": "m", "instructions": f"key {SECRET}", "input": "hi"},  # Responses instructions
        {"model": "m", "input": f"key {SECRET}"},  # Responses input text
        {"model": "m", "input": [{"role": "user", "content": [{"type": "input_text", "text": SECRET}]}]},
        {"model": "c", "max_tokens": 5, "system": f"key {SECRET}", "messages": []},  # Anthropic system
        {"model": "c", "max_tokens": 5, "system": [{"type": "text", "text": SECRET}], "messages": []},
        {
            "model": "c",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": [{"type": "text", "text": SECRET}]}],
        },
        {
            "model": "c",
            "max_tokens": 5,
            "messages": [
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": SECRET}]}
            ],
        },
        {  # an Anthropic tool_result whose content is blocks
            "model": "c",
            "max_tokens": 5,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "t",
                            "content": [{"type": "text", "text": SECRET}],
                        }
                    ],
                }
            ],
        },
        {  # a Responses function_call_output (a tool's result), text or content parts
            "model": "m",
            "input": [
                {"role": "user", "content": "hi"},
                {"type": "function_call_output", "call_id": "c1", "output": f"key {SECRET}"},
            ],
        },
        {
            "model": "m",
            "input": [
                {
                    "type": "function_call_output",
                    "call_id": "c1",
                    "output": [{"type": "input_text", "text": SECRET}],
                }
            ],
        },
        # vLLM's rerank and score inputs (a cross-encoder reads them as a prompt)
        {"model": "r", "query": f"key {SECRET}", "documents": ["fine"]},
        {"model": "r", "query": "q", "documents": ["fine", f"key {SECRET}"]},
        {"model": "r", "query": "q", "documents": [{"text": f"key {SECRET}"}]},
        {"model": "r", "query": "q", "documents": {"content": [{"type": "text", "text": SECRET}]}},
        {"model": "s", "text_1": "q", "text_2": ["fine", f"key {SECRET}"]},
        {"model": "s", "text_1": f"key {SECRET}", "text_2": "fine"},
        # chat's RAG documents, rendered into the prompt by the chat template
        {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "documents": [{"title": "t", "text": SECRET}],
        },
    ],
)
async def test_prompt_texts_of_every_api_are_screened(body: dict[str, object]) -> None:
    with pytest.raises(Blocked):
        await screen_request(_screener(), orjson.dumps(body), "m")


async def test_prompt_redaction_puts_text_back_in_place() -> None:
    body = {
        "model": "c",
        "max_tokens": 5,
        "system": [{"type": "text", "text": "mail a@b.io"}],
        "messages": [{"role": "user", "content": "or c@d.io"}],
    }
    out = orjson.loads(await screen_request(_screener(), orjson.dumps(body), "m"))
    assert out["system"][0]["text"] == "mail [REDACTED:email]"
    assert out["messages"][0]["content"] == "or [REDACTED:email]"
    responses = {"model": "m", "instructions": "x@y.org", "input": [{"role": "user", "content": "z@w.org"}]}
    out = orjson.loads(await screen_request(_screener(), orjson.dumps(responses), "m"))
    assert out["instructions"] == "[REDACTED:email]"
    assert out["input"][0]["content"] == "[REDACTED:email]"
    tokens = orjson.dumps({"model": "e", "input": [1, 2, 3]})
    assert await screen_request(_screener(), tokens, "m") == tokens  # token ids: nothing to screen


def test_user_turn_after_a_system_prompt_is_flagged_in_every_api() -> None:
    assert _after_system({"system": "s", "messages": [{"role": "user", "content": "u"}]}) == [False, True]
    assert _after_system({"instructions": "s", "input": "u"}) == [False, True]
    assert _after_system({"instructions": "s", "input": [{"role": "user", "content": "u"}]}) == [False, True]
    assert _after_system({"input": "u"}) == [False]


async def test_whole_answers_of_responses_and_messages_are_screened() -> None:
    responses = {
        "object": "response",
        "output": [
            {
                "type": "message",
                "content": [{"type": "output_text", "text": "mail a@b.io", "annotations": []}],
            }
        ],
    }
    out = orjson.loads(await screen_response(_screener(), orjson.dumps(responses), "m"))
    assert out["output"][0]["content"][0]["text"] == "mail [REDACTED:email]"
    message = {"type": "message", "content": [{"type": "text", "text": f"key {SECRET}"}]}
    with pytest.raises(Blocked):
        await screen_response(_screener(), orjson.dumps(message), "m")


def _event(data: dict[str, object]) -> bytes:
    return f"event: {data['type']}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n"


async def test_responses_stream_redacts_deltas_and_the_repeated_whole_text() -> None:
    stream = StreamScreener(_screener(), "m")
    out = await stream.feed(
        _event({"type": "response.created", "response": {"output": []}})
        + _event({"type": "response.output_text.delta", "delta": "write to x@y.org now"})
        + _event({"type": "response.output_text.done", "text": "write to x@y.org now"})
        + _event(
            {
                "type": "response.completed",
                "response": {"output": [{"type": "message", "content": [{"text": "write to x@y.org now"}]}]},
            }
        )
    )
    assert b"x@y.org" not in out
    assert out.count(b"[REDACTED:email]") == 3
    assert out.startswith(b"event: response.created\ndata: ")
    assert b"event: response.output_text.delta\ndata: " in out  # the event line is kept


async def test_messages_stream_blocks_a_secret_split_across_deltas() -> None:
    stream = StreamScreener(_screener(), "m")
    first = _event(
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "key AKIA"}}
    )
    assert await stream.feed(first) == first
    with pytest.raises(Blocked):
        await stream.feed(
            _event(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": "IOSFODNN7EXAMPLE"},
                }
            )
            + _event({"type": "message_stop"})
        )


async def test_rerank_documents_are_redacted_in_place() -> None:
    body = {"model": "r", "query": "who is a@b.io", "documents": ["fine", {"text": "c@d.io here"}]}
    out = orjson.loads(await screen_request(_screener(), orjson.dumps(body), "r"))
    assert out == {
        "model": "r",
        "query": "who is [REDACTED:email]",
        "documents": ["fine", {"text": "[REDACTED:email] here"}],
    }


async def test_a_redacted_responses_text_loses_its_logprobs() -> None:
    """The Responses API returns an `output_text` part's logprobs (and each delta's) when asked
    (`top_logprobs`); like a choice's, they spell out the text a redaction removed."""
    logprobs = [{"token": "a@b.io", "logprob": -0.1, "top_logprobs": []}]
    part = {"type": "output_text", "text": "mail a@b.io", "annotations": [], "logprobs": logprobs}
    answer = {"object": "response", "output": [{"type": "message", "content": [part]}]}
    out = orjson.loads(await screen_response(_screener(), orjson.dumps(answer), "m"))
    assert out["output"][0]["content"][0] == {**part, "text": "mail [REDACTED:email]", "logprobs": []}
    delta = {"type": "response.output_text.delta", "delta": "mail a@b.io now", "logprobs": logprobs}
    event = b"event: response.output_text.delta\ndata: " + orjson.dumps(delta) + b"\n\n"
    sent = await StreamScreener(_screener(), "m").feed(event)
    data = orjson.loads(sent.split(b"data: ", 1)[1])
    assert data["delta"] == "mail [REDACTED:email] now" and data["logprobs"] == []


async def test_a_streamed_stored_answer_is_screened_by_the_policy_for_the_model_it_names() -> None:
    """`StoredAnswerStream`: the first event with data names the model (the Responses stream's
    `response.created`); until it is complete nothing is sent, then the policy for that model
    screens the rest; a stream that names none gets the policy for any model."""
    asked: list[str] = []

    def lookup(model: str) -> Screener | None:
        asked.append(model)
        return _screener() if model == "food-review" else None

    created = {"type": "response.created", "response": {"id": "r", "model": "food-review", "output": []}}
    first = b": ping\n\nevent: response.created\ndata: " + orjson.dumps(created) + b"\n\n"
    delta = {"type": "response.output_text.delta", "delta": "mail a@b.io now"}
    second = b"event: response.output_text.delta\ndata: " + orjson.dumps(delta) + b"\n\n"
    stream = StoredAnswerStream(lookup)
    assert await stream.feed(first[:30]) == b""  # the first event is not complete yet
    out = await stream.feed(first[30:]) + await stream.feed(second) + await stream.close()
    assert asked == ["food-review"] and b"a@b.io" not in out and b"[REDACTED:email]" in out
    assert out.startswith(b": ping\n\nevent: response.created")
    other = {**created, "response": {**created["response"], "model": "cad-fabricator"}}
    stream = StoredAnswerStream(lookup)
    raw = b"data: " + orjson.dumps(other) + b"\n\n" + second
    assert await stream.feed(raw) + await stream.close() == raw  # no policy for that model
    stream = StoredAnswerStream(lookup)  # ended before any event: decided at the end, as any model's
    assert await stream.feed(b"data: {") == b"" and await stream.close() == b"data: {"
    assert asked[-1] == ""
