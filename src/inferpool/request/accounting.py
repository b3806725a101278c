"""Reading usage and the time of the first token off a response, as its bytes pass through.

Bytes arrive in whatever chunks the transport gives (an SSE event may be split anywhere,
or several may share a chunk), so the SSE reader buffers partial lines and dispatches an
event on its blank line, as the EventSource rules say. Non-streaming JSON bodies are kept
(up to a cap) and parsed once at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import msgspec
import orjson

MAX_JSON_BODY = 16 * 1024 * 1024  # bodies larger than this are not parsed for usage


class Usage(msgspec.Struct):
    """Token counts reported by the model server (None: not reported). A Struct: one is built
    per answer, and faster than a dataclass."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None


def usage_from(obj: object) -> Usage | None:
    """The usage of a response or stream event, or None if it carries none.

    OpenAI shapes (completions, chat, embeddings) have `usage.prompt_tokens`; the Responses API
    and Anthropic's Messages API have `usage.input_tokens`/`output_tokens`, and in their streams
    the usage sits in the `response` of `response.completed` or the `message` of `message_start`.
    """
    if not isinstance(obj, dict):
        return None
    usage = obj.get("usage")
    if usage is None:
        # Only typed events (Responses, Messages) nest it; chat chunks stop at this lookup.
        kind = obj.get("type")
        if not isinstance(kind, str):
            return None
        inner = obj.get("response") if kind.startswith("response.") else obj.get("message")
        usage = inner.get("usage") if isinstance(inner, dict) else None
    return _usage_of(usage)


def _usage_of(usage: object) -> Usage | None:
    """A `usage` object's counts (OpenAI's names, or the Responses and Messages APIs')."""
    if not isinstance(usage, dict):
        return None
    if "prompt_tokens" in usage:
        details = usage.get("prompt_tokens_details")
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
        return Usage(
            prompt_tokens=_int(usage.get("prompt_tokens")),
            completion_tokens=_int(usage.get("completion_tokens")),
            cached_tokens=_int(cached),
        )
    return _input_output_usage(usage)


class _AnswerFacts(msgspec.Struct):
    """The top-level fields of a JSON answer that accounting reads; a decode into it skips every
    other field (the answer's text among them) without building it, as orjson.loads would."""

    usage: Any = None
    type: Any = None
    response: Any = None
    message: Any = None
    object: Any = None
    id: Any = None


_ANSWER_DECODER = msgspec.json.Decoder(_AnswerFacts)


def _answer_facts(body: bytes) -> tuple[Usage | None, str | None]:
    """(usage, Responses API id) of a whole JSON answer, as `usage_from(orjson.loads(body))`
    and its `object`/`id` would give them; (None, None) for a body that is no JSON object."""
    try:
        facts = _ANSWER_DECODER.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None, None
    response_id = _str(facts.id) if facts.object == "response" else None
    if facts.usage is not None:
        return _usage_of(facts.usage), response_id
    if facts.type is not None:
        # no top-level usage: usage_from looks in `response`/`message` by `type`
        fields = {"type": facts.type, "response": facts.response, "message": facts.message}
        return usage_from(fields), response_id
    return None, response_id


def _input_output_usage(usage: dict[str, Any]) -> Usage:
    """Responses API usage (`input_tokens` is the whole prompt, `input_tokens_details.cached_tokens`
    the cached part) or Anthropic's (`input_tokens` excludes `cache_read_input_tokens` and
    `cache_creation_input_tokens`, so the prompt is their sum, as vLLM computes it)."""
    prompt = _int(usage.get("input_tokens"))
    details = usage.get("input_tokens_details")
    cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else None
    read = _int(usage.get("cache_read_input_tokens"))
    created = _int(usage.get("cache_creation_input_tokens"))
    if prompt is not None and (read is not None or created is not None):
        prompt += (read or 0) + (created or 0)
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=_int(usage.get("output_tokens")),
        cached_tokens=cached if cached is not None else read,
    )


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: object) -> int | None:
    # JSON integers decode as exact ints; `type() is` also keeps out bool, a subclass of int
    return value if type(value) is int else None


class ResponseAccounting:
    """Feed it the response status, headers and body chunks; read usage and timings after."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.status: int | None = None
        self.sse = False
        self.bytes = 0
        self.first_byte_at: float | None = None
        self.first_token_at: float | None = None
        self.first_event_at: float | None = None
        self.usage: Usage | None = None  # last usage seen (vLLM continuous usage repeats it)
        self.token_events = 0  # SSE events carrying a generated token
        self.done = False  # saw the stream's last event: "data: [DONE]", response.completed, message_stop
        # The id of a Responses API answer (`resp_...`): a later request may name it as its
        # previous_response_id, and only the server that made it has it stored.
        self.response_id: str | None = None
        self._line = bytearray()  # partial SSE line
        self._data: list[bytes] = []  # data lines of the current SSE event
        self._body: list[bytes] = []  # non-streaming body, as it came (one chunk: no copy)
        self._body_bytes = 0
        self._body_overflow = False
        self._closed = False

    def started(self, status: int, content_type: str | None) -> None:
        self.status = status
        self.sse = (
            content_type is not None and content_type.split(";", 1)[0].strip().lower() == "text/event-stream"
        )

    def feed(self, chunk: bytes) -> None:
        if not chunk or self._closed:
            return
        if self.first_byte_at is None:
            self.first_byte_at = self._clock()
        self.bytes += len(chunk)
        if self.sse:
            self._feed_sse(chunk)
        elif not self._body_overflow:
            self._body_bytes += len(chunk)
            if self._body_bytes > MAX_JSON_BODY:
                self._body_overflow = True
                self._body.clear()
            else:
                self._body.append(chunk)

    def close(self) -> None:
        """End of body: dispatch a trailing event without its blank line, parse a JSON body."""
        if self._closed:
            return
        self._closed = True
        if self.sse:
            if self._line:
                self._take_line(bytes(self._line))
                self._line.clear()
            self._dispatch()
        elif self._body and self.status is not None and 200 <= self.status < 300:
            body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
            usage, response_id = _answer_facts(body)
            self.usage = usage or self.usage
            if response_id is not None:
                self.response_id = response_id
            self._body.clear()

    @property
    def ttft_at(self) -> float | None:
        """Streaming: first event with generated content (else the first event); otherwise first byte."""
        if self.sse:
            return self.first_token_at or self.first_event_at
        return self.first_byte_at

    @property
    def completion_tokens(self) -> int | None:
        """Reported completion tokens, else (streaming) the count of token-carrying events."""
        if self.usage is not None and self.usage.completion_tokens is not None:
            return self.usage.completion_tokens
        if self.sse and self.first_event_at is not None:
            return self.token_events
        return None

    # -- SSE -------------------------------------------------------------------
    def _feed_sse(self, chunk: bytes) -> None:
        if (
            not self._line
            and not self._data
            and chunk.startswith(b"data: ")
            and chunk.find(b"\n") == len(chunk) - 2
            and chunk.endswith(b"\n\n")
            and not chunk.endswith(b"\r\n\n")
        ):
            # The common chunk, a whole one-line event and nothing buffered: its payload as the
            # line-by-line path would take it, without splitting lines (an engine streams one
            # such chunk per token).
            self._event(chunk[6:-2])
            return
        if self._line:
            # Complete the buffered partial line first; a chunk without a line end only grows it
            # (a long line sent in many small pieces stays linear).
            end = chunk.find(b"\n")
            if end < 0:
                self._line += chunk
                return
            self._line += chunk[:end]
            line = bytes(self._line)
            self._line.clear()
            self._take_line(line)
            chunk = chunk[end + 1 :]
        # One split in C instead of a find per line: the common chunk is one whole event.
        lines = chunk.split(b"\n")
        partial = lines.pop()  # what follows the last line end (b"" when the chunk ends on one)
        for line in lines:
            self._take_line(line)
        if partial:
            self._line += partial

    def _take_line(self, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            self._dispatch()
        elif line.startswith(b"data:"):
            value = line[5:]
            self._data.append(value[1:] if value.startswith(b" ") else value)
        # other fields (event:, id:, retry:, comments) carry nothing we account

    def _dispatch(self) -> None:
        if not self._data:
            return
        data = self._data
        payload = data[0] if len(data) == 1 else b"\n".join(data)
        data.clear()
        self._event(payload)

    def _event(self, payload: bytes) -> None:
        """One event's data (its data lines joined)."""
        if payload.strip() == b"[DONE]":
            self.done = True
            return
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return
        # Only the first event and the first token are timed: no clock reading per token after.
        now = self._clock() if self.first_token_at is None else None
        if self.first_event_at is None:
            self.first_event_at = now
        usage = usage_from(event)
        if usage is not None:
            self.usage = _merged(self.usage, usage)
        if isinstance(event, dict) and "choices" not in event and "type" in event:
            tokens, content, final = _typed_token_facts(event)
            self.done = self.done or final
            if self.response_id is None and event["type"] == "response.created":
                response = event.get("response")
                self.response_id = _str(response.get("id")) if isinstance(response, dict) else None
        else:
            tokens, content = _token_facts(event)
        self.token_events += tokens
        if content and self.first_token_at is None:
            self.first_token_at = now


def _merged(previous: Usage | None, usage: Usage) -> Usage:
    """The latest usage, with what it leaves out taken from the one before (an Anthropic
    `message_delta` may report only output tokens, its `message_start` had the input)."""
    if previous is None or (usage.prompt_tokens is not None and usage.completion_tokens is not None):
        return usage
    return Usage(
        prompt_tokens=usage.prompt_tokens if usage.prompt_tokens is not None else previous.prompt_tokens,
        completion_tokens=(
            usage.completion_tokens if usage.completion_tokens is not None else previous.completion_tokens
        ),
        cached_tokens=usage.cached_tokens if usage.cached_tokens is not None else previous.cached_tokens,
    )


# The last event of a Responses stream (vLLM sends response.completed whatever the status) and
# of a Messages stream; neither ends with "data: [DONE]".
_FINAL_EVENTS = frozenset({"response.completed", "response.failed", "response.incomplete", "message_stop"})
# Responses stream events that carry generated text (reasoning and tool arguments count as tokens).
_RESPONSE_DELTAS = frozenset(
    {"response.output_text.delta", "response.reasoning_text.delta", "response.function_call_arguments.delta"}
)


def _typed_token_facts(event: dict[str, Any]) -> tuple[int, bool, bool]:
    """(token, visible content, final event) for a Responses or Messages stream event."""
    kind = event.get("type")
    if kind in _RESPONSE_DELTAS:
        return 1, bool(event.get("delta")), False
    if kind == "content_block_delta":
        delta = event.get("delta")
        visible = isinstance(delta, dict) and bool(
            delta.get("text") or delta.get("thinking") or delta.get("partial_json")
        )
        return 1, visible, False
    return 0, False, kind in _FINAL_EVENTS


def _token_facts(event: Any) -> tuple[int, bool]:
    """(1 if the event carries a generated token else 0, whether it carries visible content).

    vLLM sends one chunk per token, empty text included; the chat stream's first chunk
    (delta with "role") is a header, not a token, and the usage chunk has no choices.
    """
    if not isinstance(event, dict):
        return 0, False
    choices = event.get("choices")
    if not isinstance(choices, list) or not choices:
        return 0, False
    tokens = 0
    content = False
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta")
        if isinstance(delta, dict):
            visible = bool(
                delta.get("content")
                or delta.get("reasoning_content")
                or delta.get("reasoning")
                or delta.get("tool_calls")
            )
            if visible or "role" not in delta:
                tokens = 1
            content = content or visible
        elif "text" in choice:
            tokens = 1
            if choice.get("text"):
                content = True
    return tokens, content
