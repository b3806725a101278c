"""Parse an OpenAI request body once, and re-serialize it with only the model changed.

Everything the core needs from the body (model, prompt text for prefix hashing, stream
flags, token budget) is read here so the data planes never touch JSON. Error statuses,
types and `param`s follow what vLLM 0.32 answers (recorded in shared/reference), so a
client sees the same error whether the gateway or the model server rejected it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson

from inferpool.errors import InferenceError

BodyKind = Literal["completion", "chat", "other"]

# vLLM uses "Bad Request" for schema errors (param "body.<field>") and "BadRequestError"
# for semantic ones (param "<field>"); keep both so clients see identical bodies.
_SCHEMA = "Bad Request"


@dataclass(frozen=True)
class ParsedBody:
    """The facts of one OpenAI request body; `data` is the decoded object (keys in order)."""

    raw: bytes
    data: dict[str, Any]
    kind: BodyKind
    model: str
    prompt: str  # text used for prefix hashing (chat: "role: content" lines)
    stream: bool
    include_usage: bool
    max_tokens: int | None
    prompt_tokens_estimate: int


def body_kind(path: str) -> BodyKind:
    """Which OpenAI API a path is, by its suffix (works behind any route prefix)."""
    path = path.split("?", 1)[0].rstrip("/")
    if path.endswith("/chat/completions"):
        return "chat"
    if path.endswith("/completions"):
        return "completion"
    return "other"


def parse_body(raw: bytes, path: str) -> ParsedBody:
    """Decode and check `raw`; raise InferenceError(400) with a vLLM-like body when it is wrong."""
    kind = body_kind(path)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InferenceError(
            400, f"Malformed JSON request body: {exc.msg}", param=f"body.{exc.pos}", err_type=_SCHEMA
        ) from None
    if not isinstance(data, dict):
        raise InferenceError(
            400, f"Request body must be a JSON object, got {_json_type(data)}", param="body", err_type=_SCHEMA
        )

    model = data.get("model")
    if model is None:
        raise InferenceError(400, "The request body must name a model in the 'model' field.", param="model")
    if not isinstance(model, str):
        raise _wrong_type("model", "a string", model)
    if not model:
        raise InferenceError(400, "The 'model' field must not be empty.", param="model")

    stream = _lax_bool("stream", data.get("stream"))
    include_usage = _include_usage(data.get("stream_options"))
    max_tokens = _max_tokens(data)

    if kind == "chat":
        if "messages" not in data:
            raise InferenceError(400, "Field required: 'messages'", param="body.messages", err_type=_SCHEMA)
        prompt, estimate = _flatten_messages(data["messages"])
    elif kind == "completion":
        if data.get("prompt") is None:
            raise InferenceError(400, "Either prompt or prompt_embeds must be provided.", param="prompt")
        prompt, estimate = _prompt_text(data["prompt"])
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


def with_model(parsed: ParsedBody, model: str) -> bytes:
    """The body to forward: only `model` changed, other keys and their order kept.

    Unchanged models return the original bytes untouched (no re-encoding cost).
    """
    if model == parsed.model:
        return parsed.raw
    data = dict(parsed.data)  # dicts keep insertion order, so "model" stays where it was
    data["model"] = model
    return orjson.dumps(data)


def estimate_tokens(text: str) -> int:
    """A rough token count (4 characters a token), enough for load balancing."""
    return (len(text) + 3) // 4


# -- helpers -------------------------------------------------------------------


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _wrong_type(field: str, wanted: str, got: object) -> InferenceError:
    return InferenceError(
        400,
        f"Field '{field}' must be {wanted}, got {_json_type(got)}",
        param=f"body.{field}",
        err_type=_SCHEMA,
    )


def _include_usage(options: object) -> bool:
    if options is None:
        return False
    if not isinstance(options, dict):
        raise _wrong_type("stream_options", "an object", options)
    return _lax_bool("stream_options.include_usage", options.get("include_usage"))


# vLLM's pydantic models parse in lax mode: "true"/1 are booleans and "5"/5.0 are integers
# there, so the gateway accepts exactly those too rather than refuse what the server takes.
_TRUE = frozenset({"true", "t", "yes", "y", "on", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "off", "0"})


def _lax_bool(field: str, value: object) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _wrong_type(field, "a boolean", value)


def _lax_int(field: str, value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise _wrong_type(field, "an integer", value)


def _max_tokens(data: dict[str, Any]) -> int | None:
    """max_completion_tokens (the newer name) wins over max_tokens, as in vLLM."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = data.get(name)
        if value is None:
            continue
        value = _lax_int(name, value)
        if value < 1:
            raise InferenceError(400, f"{name} must be at least 1, got {value}.", param=name)
        return value
    return None


def _prompt_text(prompt: object) -> tuple[str, int]:
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
        "Field 'prompt' must be a string, a list of strings, a list of token ids or a list of token-id lists",
        param="body.prompt",
        err_type=_SCHEMA,
    )


def _ids_text(ids: list[int]) -> str:
    # A stable text form so token-id prompts still share prefix hashes with each other.
    return " ".join(map(str, ids))


def _flatten_messages(messages: object) -> tuple[str, int]:
    """Chat messages as "role: content" lines, the text a chat template roughly produces."""
    if not isinstance(messages, list):
        raise _wrong_type("messages", "an array", messages)
    lines: list[str] = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _wrong_type(f"messages.{index}", "an object", message)
        role = message.get("role")
        if not isinstance(role, str):
            raise InferenceError(
                400,
                f"Field 'messages.{index}.role' must be a string",
                param=f"body.messages.{index}.role",
                err_type=_SCHEMA,
            )
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
