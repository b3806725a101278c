"""Request bodies and response shapes of vLLM's OpenAI server, as recorded from vLLM 0.32.0.

Validation goes through pydantic in lax mode (so `"temperature": "0"` passes, as in vLLM) and
errors are rendered the way vLLM renders them: type "Bad Request", param "body.<field>".
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from inferpool.errors import (
    InferenceError,
    decode_json_body,
    schema_error,
    validation_failure,
)
from inferpool.tokenization import content_text

SYSTEM_FINGERPRINT = "vllm-0.32.0-d80a3cb6"
VLLM_VERSION = "0.32.0"
M = TypeVar("M", bound=BaseModel)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool | None = False
    continuous_usage_stats: bool | None = False


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
    n: int = 1
    seed: int | None = None
    ignore_eos: bool = False
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    kv_transfer_params: dict[str, Any] | None = None  # P/D: read only by a replica with a KV connector


class CompletionBody(_Sampling):
    prompt: str | list[str] | list[int] | list[list[int]] | None = None
    max_tokens: int | None = 16
    logprobs: int | None = None
    echo: bool = False

    @model_validator(mode="after")
    def _logprobs(self) -> CompletionBody:  # vLLM's CompletionRequest.check_logprobs
        if self.logprobs is not None and self.logprobs < 0:
            raise ValueError("`logprobs` must be a positive value.")
        return self


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        return content_text(self.content)


class ChatBody(_Sampling):
    messages: list[ChatMessage]
    max_completion_tokens: int | None = None
    logprobs: bool = False
    top_logprobs: int | None = None

    @model_validator(mode="after")
    def _logprobs(self) -> ChatBody:  # vLLM's ChatCompletionRequest.check_logprobs
        top = self.top_logprobs
        if top is not None:
            if top < 0 and top != -1:
                raise ValueError("`top_logprobs` must be a positive value or -1.")
            if (top == -1 or top > 0) and not self.logprobs:
                raise ValueError("when using `top_logprobs`, `logprobs` must be set to true.")
        return self


class TokenizeBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    add_special_tokens: bool = True
    return_token_strs: bool | None = False


class DetokenizeBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    tokens: list[int]


class LoadLoraBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    lora_name: str
    lora_path: str
    base_model_name: str | None = None
    load_inplace: bool = False


class UnloadLoraBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    lora_name: str
    lora_int_id: int | None = None


def validation_error(exc: ValidationError) -> InferenceError:
    return validation_failure(exc.errors(include_url=False))


def parse_json(raw: bytes, content_type: str) -> Any:
    """The body as JSON, or the 400 vLLM answers for a wrong content type or a body it cannot decode."""
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise schema_error(
            "1 validation error:\n  Unsupported Media Type: Only 'application/json' is allowed", None
        )
    return decode_json_body(raw)


def validate(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


def usage(prompt_tokens: int, completion_tokens: int, details: dict[str, Any] | None) -> dict[str, Any]:
    """Usage in vLLM's key order: prompt, total, completion."""
    out: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens": completion_tokens,
    }
    if details is not None:
        out["prompt_tokens_details"] = details
    return out


def model_card(model_id: str, root: str, parent: str | None, max_model_len: int | None, created: int,
               perm_id: str) -> dict[str, Any]:  # fmt: skip
    return {
        "id": model_id,
        "object": "model",
        "created": created,
        "owned_by": "vllm",
        "root": root,
        "parent": parent,
        "max_model_len": max_model_len,
        "permission": [
            {
                "id": perm_id,
                "object": "model_permission",
                "created": created,
                "allow_create_engine": False,
                "allow_sampling": True,
                "allow_logprobs": True,
                "allow_search_indices": False,
                "allow_view": True,
                "allow_fine_tuning": False,
                "organization": "*",
                "group": None,
                "is_blocking": False,
            }
        ],
    }
