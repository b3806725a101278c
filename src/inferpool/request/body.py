"""Parse an inference request body once, and re-serialize it with only the model changed.

Everything the core needs from the body (model, prompt text for prefix hashing, stream
flags, token budget) is read here so the data planes never touch JSON. Error statuses,
types and `param`s follow what vLLM 0.32 answers (recorded in shared/reference), so a
client sees the same error whether the gateway or the model server rejected it.

Kinds, by path suffix: OpenAI completions and chat, embeddings, the Responses API and
Anthropic's Messages API (vLLM serves all five). Each is passed through untranslated;
only its prompt is read, as text, for prefix hashing and screening.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Literal

import msgspec
import orjson
from pydantic import TypeAdapter, ValidationError

from inferpool.errors import (
    SCHEMA_ERROR_TYPE,
    InferenceError,
    decode_json_body,
    field_failure,
    semantic_error,
    validation_failure,
)

BodyKind = Literal["completion", "chat", "embeddings", "responses", "messages", "other"]

_SCHEMA = SCHEMA_ERROR_TYPE


# a Struct: built per request, and faster to build than a frozen dataclass
class ParsedBody(msgspec.Struct, frozen=True):
    """The facts of one OpenAI request body; `data` is the decoded object (keys in order)."""

    raw: bytes
    data: dict[str, Any]
    kind: BodyKind
    model: str
    prompt: str  # text used for prefix hashing (chat, responses, messages: "role: content" lines)
    stream: bool
    include_usage: bool
    max_tokens: int | None
    prompt_tokens_estimate: int


_SUFFIX_KINDS: tuple[tuple[str, BodyKind], ...] = (
    ("/chat/completions", "chat"),
    ("/completions", "completion"),
    ("/embeddings", "embeddings"),
    ("/responses", "responses"),  # POST /v1/responses; /v1/responses/{id}/cancel is "other"
    ("/messages", "messages"),  # Anthropic's; /v1/messages/count_tokens is "other"
)


@functools.lru_cache(maxsize=256)  # a few paths repeat on every request; bounded, they are the client's
def body_kind(path: str) -> BodyKind:
    """Which API a path is, by its suffix (works behind any route prefix)."""
    path = path.split("?", 1)[0].rstrip("/")
    for suffix, kind in _SUFFIX_KINDS:
        if path.endswith(suffix):
            return kind
    return "other"


class RefusedBody(InferenceError):
    """A body refused for a field other than its model: `model` is the one it names."""

    def __init__(self, error: InferenceError, model: str) -> None:
        super().__init__(error.status, error.message, param=error.param, err_type=error.err_type)
        self.model = model


def parse_body(raw: bytes, path: str) -> ParsedBody:
    """Decode and check `raw`; raise InferenceError(400) with a vLLM-like body when it is wrong
    (RefusedBody, which keeps the model, when the body names one as a string)."""
    kind = body_kind(path)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = _decoded_as_vllm_does(raw)
    if not isinstance(data, dict):
        # FastAPI validates the body against vLLM's request model with from_attributes
        raise field_failure(
            (),
            "model_attributes_type",
            "Input should be a valid dictionary or object to extract fields from",
            data,
        )

    model = data.get("model")
    if model is None:
        raise InferenceError(400, "The request body must name a model in the 'model' field.", param="model")
    if not isinstance(model, str):
        raise _wrong_type("model", _STRING, model)
    if not model:
        raise InferenceError(400, "The 'model' field must not be empty.", param="model")

    try:
        stream = _lax_bool("stream", data.get("stream"))
        if kind in ("chat", "completion", "other"):
            include_usage = _include_usage(data.get("stream_options"))
            max_tokens = _max_tokens(data)
        else:
            include_usage = True  # embeddings, responses and messages always report usage
            max_tokens = None

        if kind == "chat":
            if "messages" not in data:
                raise _missing("messages", data)
            prompt, estimate = _flatten_messages(data["messages"])
        elif kind == "completion":
            given = data.get("prompt")
            if not given and (given is None or given == "" or given == []):  # vLLM's empty prompts
                raise semantic_error(
                    "Either prompt or prompt_embeds must be provided and non-empty.", "prompt"
                )
            prompt, estimate = _prompt_text(given)
        elif kind == "embeddings":
            prompt, estimate = _embeddings_text(data)
            stream = False  # vLLM's embeddings do not stream
        elif kind == "responses":
            prompt, estimate = _responses_text(data)
            max_tokens = _positive_int(data, "max_output_tokens", required=False)
        elif kind == "messages":
            prompt, estimate = _anthropic_text(data)
            max_tokens = _positive_int(data, "max_tokens", required=True)
        else:
            prompt, estimate = _other_text(data)

        return ParsedBody(
            raw=raw,
            data=data,
            kind=kind,
            model=model,
            prompt=prompt,
            stream=stream,
            include_usage=include_usage,
            max_tokens=max_tokens,
            prompt_tokens_estimate=estimate,
        )
    except InferenceError as exc:  # the record keeps the model of a body refused for another field
        raise RefusedBody(exc, model) from None


def with_model(parsed: ParsedBody, model: str) -> bytes:
    """The body to forward: only `model` changed, other keys and their order kept.

    Unchanged models return the original bytes untouched (no re-encoding cost).
    """
    if model == parsed.model:
        return parsed.raw
    data = dict(parsed.data)  # dicts keep insertion order, so "model" stays where it was
    data["model"] = model
    return orjson.dumps(data)  # parse_body took only what orjson writes back unchanged


def estimate_tokens(text: str) -> int:
    """A rough token count (4 characters a token), enough for load balancing."""
    return (len(text) + 3) // 4


# -- helpers -------------------------------------------------------------------


def _decoded_as_vllm_does(raw: bytes) -> Any:
    """A body orjson refused, decoded by Python's json as vLLM's FastAPI does (rare: the error path).

    A UTF-8 BOM is taken, and what neither decoder takes gets vLLM's own 400. A body the
    gateway could not forward unchanged is refused with a 400 saying why: the model rewrite, the
    P/D legs and redaction re-encode bodies with orjson, which writes NaN and Infinity as null
    (a `logit_bias` of -Infinity would reach the server as null) and cannot write integers past
    64 bits; and strings with an unpaired surrogate escape cannot be hashed or tokenized as
    UTF-8 text.
    """
    data = decode_json_body(raw)
    try:
        json.dumps(data, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise InferenceError(
            400, "The request body has a string with an unpaired UTF-16 surrogate escape.", param="body",
            err_type=_SCHEMA,
        ) from None  # fmt: skip
    try:
        faithful = orjson.loads(orjson.dumps(data)) == data  # NaN != NaN, Infinity comes back null
    except orjson.JSONEncodeError:
        faithful = False
    if not faithful:
        raise InferenceError(
            400,
            "The request body has a number the gateway cannot forward unchanged "
            "(NaN, Infinity or an integer beyond 64 bits).",
            param="body",
            err_type=_SCHEMA,
        )
    return data


# pydantic's error type and words for a value of the wrong JSON type, by the type wanted
_STRING = ("string_type", "Input should be a valid string")
_LIST = ("list_type", "Input should be a valid list")
_OBJECT = ("dict_type", "Input should be a valid dictionary")


def _wrong_type(field: str, wanted: tuple[str, str], got: object) -> InferenceError:
    return field_failure(field.split("."), wanted[0], wanted[1], got)


def _missing(field: str, parent: object) -> InferenceError:
    """A required field absent from `parent` (the body, or the object that should hold it)."""
    return field_failure(field.split("."), "missing", "Field required", parent)


def _role_error(parent: dict[str, Any], field: str) -> InferenceError:
    """A message's or input item's `role` absent or not a string."""
    if "role" not in parent:
        return _missing(field, parent)
    return _wrong_type(field, _STRING, parent["role"])


def _include_usage(options: object) -> bool:
    if options is None:
        return False
    if not isinstance(options, dict):
        raise _wrong_type("stream_options", _OBJECT, options)
    return _lax_bool("stream_options.include_usage", options.get("include_usage"))


# vLLM's pydantic models parse in lax mode ("true" and 1 are booleans, true, 5.0 and "5" are
# integers there), so the gateway asks pydantic itself about anything but the plain JSON type.
_BOOL: TypeAdapter[bool] = TypeAdapter(bool)
_INT: TypeAdapter[int] = TypeAdapter(int)


def _lax_bool(field: str, value: object) -> bool:
    if value is None:
        return False
    if value is True or value is False:
        return value
    try:
        return _BOOL.validate_python(value)
    except ValidationError as exc:
        raise validation_failure(exc.errors(include_url=False), ("body", *field.split("."))) from None


def _lax_int(field: str, value: object) -> int:
    if type(value) is int:
        return value
    try:
        return _INT.validate_python(value)
    except ValidationError as exc:
        raise validation_failure(exc.errors(include_url=False), ("body", field)) from None


def _max_tokens(data: dict[str, Any]) -> int | None:
    """max_completion_tokens (the newer name) wins over max_tokens, as in vLLM."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = data.get(name)
        if value is None:
            continue
        value = _lax_int(name, value)
        if value < 1:
            raise semantic_error(f"{name} must be at least 1, got {value}.", name, value)
        return value
    return None


def _prompt_text(prompt: object, field: str = "prompt") -> tuple[str, int]:
    """Prompt as text plus a token estimate; token-id prompts count exactly."""
    if isinstance(prompt, str):
        return prompt, estimate_tokens(prompt)
    if isinstance(prompt, list) and prompt:
        if all(isinstance(p, str) for p in prompt):
            text = "\n".join(prompt)
            return text, sum(estimate_tokens(p) for p in prompt)
        if all(isinstance(p, int) and not isinstance(p, bool) for p in prompt):
            return _ids_text(prompt), len(prompt)
        if all(
            isinstance(p, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in p)
            for p in prompt
        ):
            return "\n".join(_ids_text(p) for p in prompt), sum(len(p) for p in prompt)
    raise InferenceError(
        400,
        f"Field '{field}' must be a string, a list of strings, a list of token ids or a list of token-id lists",
        param=f"body.{field}",
        err_type=_SCHEMA,
    )


def _ids_text(ids: list[int]) -> str:
    # A stable text form so token-id prompts still share prefix hashes with each other.
    return " ".join(map(str, ids))


def _flatten_messages(messages: object) -> tuple[str, int]:
    """Chat messages as "role: content" lines, the text a chat template roughly produces."""
    if not isinstance(messages, list):
        raise _wrong_type("messages", _LIST, messages)
    lines: list[str] = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _wrong_type(f"messages.{index}", _OBJECT, message)
        role = message.get("role")
        if not isinstance(role, str):
            raise _role_error(message, f"messages.{index}.role")
        lines.append(f"{role}: {_content_text(message.get('content'), index)}")
    text = "\n".join(lines)
    return text, estimate_tokens(text)


def _content_text(content: object, index: int) -> str:
    """Text of a message's content: a string, null, or a list of parts (text parts kept)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts: list[str] = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict):
                text = part.get("text")
                if isinstance(text, str):
                    texts.append(text)
                else:
                    # image/audio parts: keep their type so identical prompts still hash alike
                    texts.append(f"<{part.get('type', 'part')}>")
            else:
                break
        else:
            return "\n".join(texts)
    raise InferenceError(
        400,
        f"Field 'messages.{index}.content' must be a string or a list of content parts",
        param=f"body.messages.{index}.content",
        err_type=_SCHEMA,
    )


def _other_text(data: dict[str, Any]) -> tuple[str, int]:
    """Best-effort text of other APIs (embeddings "input", responses "input"/"instructions")."""
    for name in ("input", "prompt", "messages", "text"):
        value = data.get(name)
        if value is None:
            continue
        try:
            if name == "messages":
                return _flatten_messages(value)
            return _prompt_text(value)
        except InferenceError:
            # Unknown APIs are forwarded as they are; the model server judges their schema.
            text = orjson.dumps(value).decode()
            return text, estimate_tokens(text)
    return "", 0


def _positive_int(data: dict[str, Any], name: str, *, required: bool) -> int | None:
    """A token budget of the Responses or Messages API (`max_output_tokens`, `max_tokens`)."""
    value = data.get(name)
    if value is None:
        if required:
            raise _missing(name, data)
        return None
    value = _lax_int(name, value)
    if value < 1:
        raise InferenceError(400, f"{name} must be at least 1, got {value}.", param=name)
    return value


def _embeddings_text(data: dict[str, Any]) -> tuple[str, int]:
    """vLLM's /v1/embeddings: `input` (text, texts or token ids), or chat-style `messages`."""
    if data.get("messages") is not None:
        return _flatten_messages(data["messages"])
    if data.get("input") is None:
        raise _missing("input", data)
    return _prompt_text(data["input"], "input")


def _responses_text(data: dict[str, Any]) -> tuple[str, int]:
    """The Responses API's prompt: `instructions` as a system line, then `input` (text or items)."""
    lines: list[str] = []
    instructions = data.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise _wrong_type("instructions", _STRING, instructions)
        lines.append(f"system: {instructions}")
    if "input" not in data:
        raise _missing("input", data)
    items = data["input"]
    if isinstance(items, str):
        lines.append(f"user: {items}")
    elif isinstance(items, list):
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise _wrong_type(f"input.{index}", _OBJECT, item)
            lines.append(_response_item_line(item, index))
    else:
        raise _wrong_type("input", _LIST, items)
    text = "\n".join(lines)
    return text, estimate_tokens(text)


def _response_item_line(item: dict[str, Any], index: int) -> str:
    """One Responses input item as a line: messages by role; tool calls and outputs by type."""
    kind = item.get("type")
    role = item.get("role")
    if kind in (None, "message") or role is not None:
        if not isinstance(role, str):
            raise _role_error(item, f"input.{index}.role")
        return f"{role}: {_parts_text(item.get('content'), f'input.{index}.content')}"
    texts = [item[key] for key in ("arguments", "output") if isinstance(item.get(key), str)]
    for key in ("summary", "content", "output"):
        parts = item.get(key)
        if isinstance(parts, list):
            texts.append(_parts_text(parts, f"input.{index}.{key}"))
    return f"{kind}: {chr(10).join(texts) or f'<{kind}>'}"


def _anthropic_text(data: dict[str, Any]) -> tuple[str, int]:
    """Anthropic Messages: `system` (text or blocks) as a system line, then each message by role."""
    lines: list[str] = []
    system = data.get("system")
    if system is not None:
        lines.append(f"system: {_parts_text(system, 'system')}")
    if "messages" not in data:
        raise _missing("messages", data)
    messages = data["messages"]
    if not isinstance(messages, list):
        raise _wrong_type("messages", _LIST, messages)
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _wrong_type(f"messages.{index}", _OBJECT, message)
        role = message.get("role")
        if not isinstance(role, str):
            raise _role_error(message, f"messages.{index}.role")
        if message.get("content") is None:
            raise _missing(f"messages.{index}.content", message)
        lines.append(f"{role}: {_parts_text(message['content'], f'messages.{index}.content')}")
    text = "\n".join(lines)
    return text, estimate_tokens(text)


# Where the text is in a content part or block of the Responses and Messages APIs: input_text,
# output_text, text and summary_text parts carry "text"; thinking blocks "thinking"; tool
# results "content" (text or blocks); tool calls "input" (an object, kept as JSON).
_PART_TEXT_KEYS = ("text", "thinking", "content", "output")


def _parts_text(content: object, field: str) -> str:
    """A string, or a list of parts/blocks as lines (non-text parts kept as `<type>`)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InferenceError(
            400,
            f"Field '{field}' must be a string or a list of content blocks",
            param=f"body.{field}",
            err_type=_SCHEMA,
        )
    texts: list[str] = []
    for index, part in enumerate(content):
        if not isinstance(part, dict):
            raise _wrong_type(f"{field}.{index}", _OBJECT, part)
        for key in _PART_TEXT_KEYS:
            value = part.get(key)
            if isinstance(value, str):
                texts.append(value)
                break
            if key in ("content", "output") and isinstance(value, list):
                texts.append(_parts_text(value, f"{field}.{index}.{key}"))
                break
        else:
            tool_input = part.get("input")
            texts.append(
                orjson.dumps(tool_input).decode()
                if tool_input is not None
                else f"<{part.get('type', 'part')}>"
            )
    return "\n".join(texts)
