"""The usage a client of a P/D request sees: cached prompt tokens as the prefill server counted them.

A decode server that pulled the prompt's KV blocks counts them as cached
(`usage.prompt_tokens_details.cached_tokens` ≈ the whole prompt), which no single server
answering the request would have said. llm-d's routing sidecar rewrites that field to the
prefill server's own count (pkg/sidecar/proxy/cached_tokens_usage_rewriter.go), so the client
sees what one server would have reported; this does the same, for both planes that relay a
decode answer. Only split requests whose prefill succeeded pass through it.
"""

from __future__ import annotations

from typing import Any

import orjson

_DATA = b"data: "


def _has_usage(text: bytes) -> bool:
    """A usage object (not the `"usage":null` vLLM puts in every chunk of a stream with usage)."""
    return b'"usage":{' in text or b'"usage": {' in text


def with_cached_tokens(answer: Any, cached_tokens: int) -> bool:
    """Set `answer.usage.prompt_tokens_details.cached_tokens`; False when there is no usage object."""
    if not isinstance(answer, dict):
        return False
    usage = answer.get("usage")
    if not isinstance(usage, dict):
        return False
    details = usage.get("prompt_tokens_details")
    if isinstance(details, dict):
        details["cached_tokens"] = cached_tokens
    else:  # as llm-d: a usage without details gets the standard field
        usage["prompt_tokens_details"] = {"cached_tokens": cached_tokens}
    return True


class CachedTokensRewriter:
    """Rewrites the usage of a decode answer as it is relayed, chunk by chunk.

    A stream (SSE) is rewritten line by line, holding back only an incomplete last line;
    lines without a usage object pass untouched. A JSON answer is held until it is complete.
    """

    def __init__(self, cached_tokens: int, streaming: bool) -> None:
        self.cached_tokens = cached_tokens
        self.streaming = streaming
        self._held = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._held + chunk if self._held else chunk
        if not self.streaming:
            self._held = data
            return b""
        end = data.rfind(b"\n") + 1
        self._held = data[end:]
        return self._lines(data[:end])

    def flush(self) -> bytes:
        data, self._held = self._held, b""
        if not data:
            return b""
        if self.streaming:
            return self._lines(data)
        try:
            answer = orjson.loads(data)
        except orjson.JSONDecodeError:
            return data  # not JSON after all: relayed as it came
        return orjson.dumps(answer) if with_cached_tokens(answer, self.cached_tokens) else data

    def _lines(self, text: bytes) -> bytes:
        if not _has_usage(text):  # most chunks: one substring search, no parsing
            return text
        lines = text.splitlines(keepends=True)
        for i, line in enumerate(lines):
            if not line.startswith(_DATA) or not _has_usage(line):
                continue
            body = line[len(_DATA) :]
            stripped = body.rstrip(b"\r\n")
            try:
                event = orjson.loads(stripped)
            except orjson.JSONDecodeError:
                continue
            if with_cached_tokens(event, self.cached_tokens):
                lines[i] = _DATA + orjson.dumps(event) + body[len(stripped) :]
        return b"".join(lines)
