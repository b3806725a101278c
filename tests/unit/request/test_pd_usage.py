"""The decode answer's usage, rewritten to the prefill server's cached tokens (as llm-d's sidecar does)."""

from __future__ import annotations

import orjson

from inferpool.request.pd_usage import CachedTokensRewriter, with_cached_tokens

USAGE = b'data: {"choices":[],"usage":{"prompt_tokens":900,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":896}}}\n\n'


def relay(rewriter: CachedTokensRewriter, chunks: list[bytes]) -> bytes:
    return b"".join(rewriter.feed(c) for c in chunks) + rewriter.flush()


def test_stream_lines_are_rewritten_whatever_the_chunking() -> None:
    tokens = b'data: {"choices":[{"text":"a"}],"usage":null}\n\n'
    stream = tokens * 3 + USAGE + b"data: [DONE]\n\n"
    expected = stream.replace(b'"cached_tokens":896', b'"cached_tokens":64')
    for size in (1, 7, 64, len(stream)):
        chunks = [stream[i : i + size] for i in range(0, len(stream), size)]
        assert relay(CachedTokensRewriter(64, streaming=True), chunks) == expected


def test_chunks_without_a_usage_object_pass_as_they_are() -> None:
    rewriter = CachedTokensRewriter(5, streaming=True)
    chunk = b'data: {"choices":[{"text":"a"}],"usage":null}\n\n'
    assert rewriter.feed(chunk) is chunk  # no copy, no parse


def test_json_answer_is_held_until_complete_and_details_are_added_when_missing() -> None:
    answer = orjson.dumps({"id": "x", "usage": {"prompt_tokens": 10, "completion_tokens": 1}})
    rewriter = CachedTokensRewriter(0, streaming=False)
    assert rewriter.feed(answer[:5]) == b"" and rewriter.feed(answer[5:]) == b""
    out = orjson.loads(rewriter.flush())
    assert out["usage"]["prompt_tokens_details"] == {"cached_tokens": 0} and out["id"] == "x"
    assert relay(CachedTokensRewriter(3, streaming=False), [b"not json"]) == b"not json"
    assert relay(CachedTokensRewriter(3, streaming=False), [b'{"error":"x"}']) == b'{"error":"x"}'


def test_with_cached_tokens_needs_a_usage_object() -> None:
    assert not with_cached_tokens({"usage": None}, 1) and not with_cached_tokens([], 1)
    answer = {"usage": {"prompt_tokens_details": {"cached_tokens": 9, "audio_tokens": 0}}}
    assert with_cached_tokens(answer, 1)
    assert answer["usage"]["prompt_tokens_details"] == {"cached_tokens": 1, "audio_tokens": 0}
