"""Usage and timing read off the embeddings, Responses and Anthropic Messages answers vLLM sends.

The event sequences are vLLM's (entrypoints/openai/responses/serving.py and
entrypoints/anthropic/serving.py): `event: NAME` lines, no `data: [DONE]`.
"""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferpool.request.accounting import ResponseAccounting, Usage, usage_from

SSE = "text/event-stream; charset=utf-8"
JSON = "application/json"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def _event(data: dict[str, object]) -> bytes:
    return f"event: {data['type']}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n"


def _account(content_type: str, chunks: list[bytes]) -> ResponseAccounting:
    acct = ResponseAccounting(Clock())
    acct.started(200, content_type)
    for chunk in chunks:
        acct.feed(chunk)
    acct.close()
    return acct


RESPONSE_USAGE = {
    "input_tokens": 40,
    "input_tokens_details": {"cached_tokens": 32, "cache_write_tokens": 0},
    "output_tokens": 3,
    "output_tokens_details": {"reasoning_tokens": 0, "tool_output_tokens": 0},
    "total_tokens": 43,
}


def _responses_stream() -> bytes:
    response = {"id": "resp_1", "object": "response", "status": "in_progress", "output": [], "usage": None}
    events = [
        {"type": "response.created", "sequence_number": 0, "response": response},
        {"type": "response.in_progress", "sequence_number": 1, "response": response},
        {"type": "response.output_item.added", "sequence_number": 2, "output_index": 0, "item": {}},
        {"type": "response.content_part.added", "sequence_number": 3, "output_index": 0, "part": {}},
    ]
    for i, word in enumerate(["Hel", "lo", "!"]):
        events.append({"type": "response.output_text.delta", "sequence_number": 4 + i, "delta": word})
    done = {**response, "status": "completed", "usage": RESPONSE_USAGE}
    events += [
        {"type": "response.output_text.done", "sequence_number": 7, "text": "Hello!"},
        {"type": "response.completed", "sequence_number": 8, "response": done},
    ]
    return b"".join(_event(e) for e in events)


MESSAGES_STREAM_EVENTS = [
    {
        "type": "message_start",
        "message": {
            "id": "chatcmpl-1",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": "m",
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 12, "output_tokens": 0},
        },
    },
    {"type": "content_block_start", "content_block": {"type": "text", "text": ""}, "index": 0},
    {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "Hi"}, "index": 0},
    {"type": "content_block_delta", "delta": {"type": "text_delta", "text": " there"}, "index": 0},
    {"type": "content_block_stop", "index": 0},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"input_tokens": 12, "output_tokens": 2},
    },
    {"type": "message_stop"},
]


def test_embeddings_usage_prompt_only() -> None:
    body = {
        "id": "embd-1",
        "object": "list",
        "created": 1,
        "model": "e5",
        "data": [{"index": 0, "object": "embedding", "embedding": [0.1, 0.2]}],
        "usage": {
            "prompt_tokens": 7,
            "total_tokens": 7,
            "completion_tokens": 0,
            "prompt_tokens_details": None,
        },
    }
    acct = _account(JSON, [orjson.dumps(body)])
    assert acct.usage == Usage(prompt_tokens=7, completion_tokens=0, cached_tokens=None)


def test_responses_usage_whole_body() -> None:
    body = {
        "id": "resp_1",
        "object": "response",
        "status": "completed",
        "output": [],
        "usage": RESPONSE_USAGE,
    }
    acct = _account(JSON, [orjson.dumps(body)])
    assert acct.usage == Usage(prompt_tokens=40, completion_tokens=3, cached_tokens=32)
    assert acct.response_id == "resp_1"  # what a later previous_response_id names


def test_responses_stream_usage_ttft_and_end() -> None:
    acct = _account(SSE, [_responses_stream()])
    assert acct.usage == Usage(prompt_tokens=40, completion_tokens=3, cached_tokens=32)
    assert acct.done  # response.completed ends the stream (no [DONE])
    assert acct.token_events == 3
    assert acct.first_token_at is not None and acct.first_event_at is not None
    assert acct.first_token_at > acct.first_event_at  # response.created is not a token
    assert acct.response_id == "resp_1"  # from response.created, the stream's first event


def test_only_responses_answers_have_a_response_id() -> None:
    chat = {"id": "chatcmpl-1", "object": "chat.completion", "choices": [], "usage": None}
    assert _account(JSON, [orjson.dumps(chat)]).response_id is None
    error = {"error": {"message": "Response with id 'resp_x' not found.", "code": 404}}
    acct = ResponseAccounting(Clock())
    acct.started(404, JSON)
    acct.feed(orjson.dumps(error))
    acct.close()
    assert acct.response_id is None


def test_messages_usage_whole_body_with_cache_fields() -> None:
    body = {
        "id": "chatcmpl-1",
        "type": "message",
        "role": "assistant",
        "content": [{"type": "text", "text": "Hi"}],
        "model": "m",
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 4, "output_tokens": 1, "cache_read_input_tokens": 16},
    }
    acct = _account(JSON, [orjson.dumps(body)])
    # Anthropic's input_tokens excludes the cache read; the prompt is the sum, as vLLM computes it
    assert acct.usage == Usage(prompt_tokens=20, completion_tokens=1, cached_tokens=16)


def test_messages_stream_usage_from_start_and_delta() -> None:
    acct = _account(SSE, [b"".join(_event(e) for e in MESSAGES_STREAM_EVENTS)])
    assert acct.usage == Usage(prompt_tokens=12, completion_tokens=2, cached_tokens=None)
    assert acct.done  # message_stop
    assert acct.token_events == 2
    assert acct.completion_tokens == 2


def test_messages_delta_with_output_only_keeps_the_start_input() -> None:
    """Anthropic's own message_delta reports only output_tokens: the input stays from message_start."""
    events = [*MESSAGES_STREAM_EVENTS[:-2], {"type": "message_delta", "usage": {"output_tokens": 2}}]
    acct = _account(SSE, [b"".join(_event(e) for e in events)])
    assert acct.usage == Usage(prompt_tokens=12, completion_tokens=2, cached_tokens=None)
    assert not acct.done  # no message_stop seen


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=400), max_size=12))
def test_stream_split_anywhere_reads_the_same(cuts: list[int]) -> None:
    for stream, usage in (
        (_responses_stream(), Usage(40, 3, 32)),
        (b"".join(_event(e) for e in MESSAGES_STREAM_EVENTS), Usage(12, 2, None)),
    ):
        positions = sorted({c % len(stream) for c in cuts})
        chunks = [stream[a:b] for a, b in zip([0, *positions], [*positions, len(stream)], strict=True)]
        acct = _account(SSE, chunks)
        assert acct.usage == usage
        assert acct.done


@pytest.mark.parametrize(
    "event",
    [
        {"choices": [{"delta": {"content": "x"}}]},  # a chat chunk without usage
        {"type": "response.output_text.delta", "delta": "x"},
        {"type": "content_block_delta", "delta": {"text": "x"}},
        {"type": 5},
    ],
)
def test_events_without_usage(event: dict[str, object]) -> None:
    assert usage_from(event) is None
