"""The sim's /v1/embeddings, /v1/responses and Anthropic /v1/messages, in vLLM's shapes.

Shapes follow vLLM's own models (entrypoints/pooling/embed, entrypoints/openai/responses,
entrypoints/anthropic): the Responses stream is `response.created`, `response.in_progress`,
the output item and content part opened, one `response.output_text.delta` per token, the
`.done` events and `response.completed`; the Messages stream is vLLM's translation of a chat
stream: `message_start`, `content_block_start`, a `content_block_delta` per token,
`content_block_stop`, `message_delta` with the usage and `message_stop`. Neither ends with
`data: [DONE]`.

All three run on the same engine as chat. An embedding is a prefill: the engine runs it as a
one-token request (as a P/D prefill leg is), and the vector is drawn from the token ids, so
equal inputs embed equally.
"""

from __future__ import annotations

import base64
import math
import os
import random
import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import orjson
import xxhash
from aiohttp import web
from pydantic import BaseModel, ConfigDict

from inferpool.errors import InferenceError, schema_error, semantic_error
from inferpool.sim import protocol as p
from inferpool.sim.server import (
    ReplicaState,
    StoredResponse,
    _body,
    _check_length,
    _gate_inference,
    _Generation,
    _json,
    _resolve,
    _sse,
    _start,
    _usage,
)
from inferpool.tokenization import content_text

EMBEDDING_DIM = 16  # small: the vectors only need to be deterministic and unit-length
RESPONSES_STORE_LIMIT = 10_000  # stored /v1/responses answers a sim replica keeps (newest)


# ----- request bodies (lax, extra fields allowed, as vLLM's pydantic models) ----------------------


class EmbeddingsBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    input: str | list[str] | list[int] | list[list[int]] | None = None
    messages: list[p.ChatMessage] | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None


class ResponsesBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    max_output_tokens: int | None = None
    stream: bool | None = False
    temperature: float | None = None
    top_p: float | None = None
    tools: list[dict[str, Any]] = []
    tool_choice: Any = "auto"
    parallel_tool_calls: bool | None = True
    metadata: dict[str, str] | None = None
    previous_response_id: str | None = None
    store: bool | None = True
    reasoning: dict[str, Any] | None = None
    text: dict[str, Any] | None = None
    truncation: Literal["auto", "disabled"] | None = "disabled"
    user: str | None = None
    background: bool | None = False
    service_tier: Literal["auto", "default", "flex", "scale", "priority"] = "auto"
    max_tool_calls: int | None = None
    prompt: dict[str, Any] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    ignore_eos: bool = False
    stop: str | list[str] | None = None


class AnthropicBlock(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None
    content: str | list[dict[str, Any]] | None = None


class AnthropicMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["user", "assistant", "system"]
    content: str | list[AnthropicBlock]


class MessagesBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[AnthropicMessage]
    max_tokens: int
    system: str | list[AnthropicBlock] | None = None
    stream: bool | None = False
    stop_sequences: list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None


# ----- shared -------------------------------------------------------------------------------------


@asynccontextmanager
async def _running(
    state: ReplicaState, prompts: list[list[int]], lora: str | None, max_tokens: int, **sampling: Any
) -> AsyncIterator[_Generation]:
    """Engine requests for one HTTP request, counted in flight and aborted if the client leaves."""
    state.in_flight += 1
    state.idle.clear()
    gen = _start(state, prompts, p._Sampling(**sampling), lora, max_tokens)
    try:
        yield gen
    finally:
        gen.abort(state.engine)
        state.in_flight -= 1
        if state.in_flight == 0:
            state.idle.set()


def _max_tokens(state: ReplicaState, tokens: list[int], asked: int | None) -> int:
    """vLLM clamps the answer to what is left of the context window."""
    room = state.engine.profile.max_model_len - len(tokens)
    return room if asked is None else min(asked, room)


async def _send_event(resp: web.StreamResponse, data: dict[str, Any]) -> None:
    """One typed SSE event, as vLLM writes it: `event: TYPE`, then its JSON."""
    await resp.write(b"event: " + data["type"].encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n")


def _random_id() -> str:
    return os.urandom(8).hex()


# ----- embeddings ---------------------------------------------------------------------------------


def embedding_vector(tokens: list[int], dimensions: int = EMBEDDING_DIM) -> list[float]:
    """A unit vector drawn from the token ids: the same input always embeds the same."""
    seed = xxhash.xxh3_64_intdigest(struct.pack(f"<{len(tokens)}q", *tokens))
    rng = random.Random(seed)
    vector = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


async def embeddings(state: ReplicaState, request: web.Request) -> web.Response:
    _gate_inference(state)
    body = p.validate(EmbeddingsBody, await _body(request))
    lora = _resolve(state, body.model)
    tok = state.engine.tokenizer
    if body.messages is not None:
        text = tok.apply_chat_template([(m.role, m.text()) for m in body.messages])
        prompts = [tok.encode(text, add_bos=False)]
    elif body.input is None or body.input == "" or body.input == []:
        raise semantic_error("Input must not be empty.", "input")
    elif isinstance(body.input, str):
        prompts = [tok.encode(body.input)]
    elif all(isinstance(x, int) for x in body.input):
        prompts = [[x for x in body.input if isinstance(x, int)]]
    else:
        prompts = [
            tok.encode(x) if isinstance(x, str) else list(x) for x in body.input if not isinstance(x, int)
        ]
    dimensions = body.dimensions if body.dimensions is not None else EMBEDDING_DIM
    if not 1 <= dimensions <= EMBEDDING_DIM:
        raise semantic_error(
            f"dimensions must be between 1 and {EMBEDDING_DIM} for this model.", "dimensions", dimensions
        )
    for tokens in prompts:
        _check_length(state, tokens)
    created = int(time.time())
    # One prefill per input; the token the engine samples after it is the pooler's output.
    async with _running(state, prompts, lora, 1, ignore_eos=True) as gen:
        await gen.wait()
    data = []
    for index, tokens in enumerate(prompts):
        vector = embedding_vector(tokens, dimensions)
        encoded: list[float] | str = vector
        if body.encoding_format == "base64":
            encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"index": index, "object": "embedding", "embedding": encoded})
    prompt_tokens = sum(len(t) for t in prompts)
    usage = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens, "completion_tokens": 0,
             "prompt_tokens_details": None, "completion_tokens_details": None}  # fmt: skip
    return _json({"id": f"embd-{_random_id()}", "object": "list", "created": created,
                  "model": body.model or state.model_name, "data": data, "usage": usage})  # fmt: skip


# ----- Responses API ------------------------------------------------------------------------------


def _response_messages(body: ResponsesBody) -> list[tuple[str, str]]:
    messages = [("system", body.instructions)] if body.instructions else []
    if isinstance(body.input, str):
        return [*messages, ("user", body.input)]
    for item in body.input:
        role = item.get("role")
        if isinstance(role, str):
            messages.append((role, content_text(item.get("content"))))
        elif item.get("type") == "function_call_output":
            messages.append(("tool", str(item.get("output", ""))))
        elif item.get("type") == "function_call":
            messages.append(("assistant", str(item.get("arguments", ""))))
    return messages


def _previous_conversation(state: ReplicaState, previous_response_id: str | None) -> list[tuple[str, str]]:
    """The stored conversation a follow-up continues; vLLM's 404 when this server has no such answer
    (always, with the store disabled)."""
    if previous_response_id is None:
        return []
    return _stored(state, previous_response_id).conversation


def _stored(state: ReplicaState, response_id: str) -> StoredResponse:
    """The stored answer `response_id`; vLLM's 404 when this server has none (always, with the
    store disabled)."""
    store = state.responses_store
    found = store.get(response_id) if store is not None else None
    if found is None:
        raise InferenceError(
            404,
            f"Response with id '{response_id}' not found.",
            param="response_id",
            err_type="invalid_request_error",
        )
    return found


def _store_response(state: ReplicaState, body: ResponsesBody, messages: list[tuple[str, str]],
                    text: str, response: dict[str, Any]) -> None:  # fmt: skip
    """Keep the answer for later follow-ups and retrieval (vLLM stores when the request's store is
    true and the server's store is enabled; it never evicts, the sim keeps the newest
    RESPONSES_STORE_LIMIT)."""
    store = state.responses_store
    if store is None or body.store is False:
        return
    store[response["id"]] = StoredResponse([*messages, ("assistant", text)], response)
    while len(store) > RESPONSES_STORE_LIMIT:
        del store[next(iter(store))]


async def retrieve_response(state: ReplicaState, request: web.Request) -> web.StreamResponse:
    """GET /v1/responses/{response_id}: the stored response object, as vLLM's retrieve_responses."""
    return _json(_stored(state, request.match_info["response_id"]).response)


def _response_object(body: ResponsesBody, rid: str, created: int, model: str, max_tokens: int,
                     output: list[dict[str, Any]], status: str, usage: dict[str, Any] | None,
                     ) -> dict[str, Any]:  # fmt: skip
    """vLLM's ResponsesResponse.from_request, field for field."""
    return {
        "id": rid,
        "created_at": created,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": body.instructions,
        "metadata": body.metadata,
        "model": model,
        "object": "response",
        "output": output,
        "parallel_tool_calls": body.parallel_tool_calls if body.parallel_tool_calls is not None else True,
        "temperature": body.temperature if body.temperature is not None else 1.0,
        "tool_choice": body.tool_choice if body.tools else "none",
        "tools": body.tools,
        "top_p": body.top_p if body.top_p is not None else 1.0,
        "background": body.background,
        "max_output_tokens": max_tokens,
        "max_tool_calls": body.max_tool_calls,
        "previous_response_id": body.previous_response_id,
        "prompt": body.prompt,
        "reasoning": body.reasoning,
        "service_tier": body.service_tier,
        "status": status,
        "text": body.text,
        "top_logprobs": None,
        "truncation": body.truncation,
        "usage": usage,
        "user": body.user,
        "presence_penalty": body.presence_penalty if body.presence_penalty is not None else 0.0,
        "frequency_penalty": body.frequency_penalty if body.frequency_penalty is not None else 0.0,
        "kv_transfer_params": None,
        "ec_transfer_params": None,
        "input_messages": None,
        "output_messages": None,
    }


def _output_text(text: str, logprobs: list[Any] | None) -> dict[str, Any]:
    return {"annotations": [], "text": text, "type": "output_text", "logprobs": logprobs}


def _output_message(item_id: str, text: str, status: str) -> dict[str, Any]:
    content = [_output_text(text, None)] if text else []
    return {"id": item_id, "content": content, "role": "assistant", "status": status, "type": "message",
            "phase": None}  # fmt: skip


def _response_usage(state: ReplicaState, gen: _Generation) -> dict[str, Any]:
    chat = _usage(state, gen, 1, chat=True, streaming=False)
    details = chat.get("prompt_tokens_details") or {}
    return {
        "input_tokens": chat["prompt_tokens"],
        "input_tokens_details": {
            "cached_tokens": details.get("cached_tokens") or 0,
            "cache_write_tokens": details.get("created_cache_tokens") or 0,
            "input_tokens_per_turn": [],
            "cached_tokens_per_turn": [],
        },
        "output_tokens": chat["completion_tokens"],
        "output_tokens_details": {
            "reasoning_tokens": 0,
            "tool_output_tokens": 0,
            "output_tokens_per_turn": [],
            "tool_output_tokens_per_turn": [],
        },
        "total_tokens": chat["total_tokens"],
    }


async def responses(state: ReplicaState, request: web.Request) -> web.StreamResponse:
    _gate_inference(state)
    body = p.validate(ResponsesBody, await _body(request))
    lora = _resolve(state, body.model)
    tok = state.engine.tokenizer
    messages = [*_previous_conversation(state, body.previous_response_id), *_response_messages(body)]
    tokens = tok.encode(tok.apply_chat_template(messages), add_bos=False)
    _check_length(state, tokens)
    max_tokens = _max_tokens(state, tokens, body.max_output_tokens)
    rid, created, model = f"resp_{_random_id()}", int(time.time()), body.model or state.model_name
    async with _running(state, [tokens], lora, max_tokens, stop=body.stop, seed=body.seed,
                        ignore_eos=body.ignore_eos) as gen:  # fmt: skip
        if body.stream:
            return await _responses_stream(
                state, request, body, messages, gen, rid, created, model, max_tokens
            )
        await gen.wait()
        req = gen.requests[0]
        status = "incomplete" if req.finish_reason == "length" else "completed"
        output = [_output_message(f"msg_{_random_id()}", req.output_text, "completed")]
        usage = _response_usage(state, gen)
        response = _response_object(body, rid, created, model, max_tokens, output, status, usage)
        _store_response(state, body, messages, req.output_text, response)
        return _json(response)


async def _responses_stream(state: ReplicaState, request: web.Request, body: ResponsesBody,
                            messages: list[tuple[str, str]], gen: _Generation, rid: str, created: int, model: str,
                            max_tokens: int) -> web.StreamResponse:  # fmt: skip
    resp = await _sse(request)
    sequence = 0

    async def send(event: dict[str, Any]) -> None:
        nonlocal sequence
        event["sequence_number"] = sequence
        sequence += 1
        await _send_event(resp, event)

    initial = _response_object(body, rid, created, model, max_tokens, [], "in_progress", None)
    await send({"response": initial, "sequence_number": 0, "type": "response.created"})
    await send({"response": initial, "sequence_number": 0, "type": "response.in_progress"})
    item_id: str | None = None
    text = ""
    finish_reason = None
    async for _, ev in gen.stream():
        finish_reason = ev.finish_reason or finish_reason
        if ev.token_id < 0 or not ev.text:
            continue
        if item_id is None:
            item_id = f"msg_{_random_id()}"
            await send({"item": _output_message(item_id, "", "in_progress"), "output_index": 0,
                        "sequence_number": 0, "type": "response.output_item.added"})  # fmt: skip
            await send({"content_index": 0, "item_id": item_id, "output_index": 0, "part": _output_text("", []),
                        "sequence_number": 0, "type": "response.content_part.added"})  # fmt: skip
        text += ev.text
        await send({"content_index": 0, "delta": ev.text, "item_id": item_id, "logprobs": [], "output_index": 0,
                    "sequence_number": 0, "type": "response.output_text.delta"})  # fmt: skip
    output: list[dict[str, Any]] = []
    if item_id is not None:
        done = _output_message(item_id, text, "completed")
        await send({"content_index": 0, "item_id": item_id, "logprobs": [], "output_index": 0,
                    "sequence_number": 0, "text": text, "type": "response.output_text.done"})  # fmt: skip
        await send({"content_index": 0, "item_id": item_id, "output_index": 0, "part": _output_text(text, None),
                    "sequence_number": 0, "type": "response.content_part.done"})  # fmt: skip
        await send(
            {"item": done, "output_index": 0, "sequence_number": 0, "type": "response.output_item.done"}
        )
        output.append(done)
    status = "incomplete" if finish_reason == "length" else "completed"
    final = _response_object(
        body, rid, created, model, max_tokens, output, status, _response_usage(state, gen)
    )
    _store_response(state, body, messages, text, final)
    await send({"response": final, "sequence_number": 0, "type": "response.completed"})
    await resp.write_eof()
    return resp


# ----- Anthropic Messages -------------------------------------------------------------------------


def _stop_reason(finish_reason: str | None, stop_reason: str | None) -> tuple[str | None, str | None]:
    """vLLM's _to_anthropic_stop_reason for text answers."""
    if finish_reason == "length":
        return "max_tokens", None
    if finish_reason != "stop":
        return None, None
    if isinstance(stop_reason, str):
        return "stop_sequence", stop_reason
    return "end_turn", None


def _anthropic_usage(state: ReplicaState, gen: _Generation) -> dict[str, Any]:
    """vLLM's _build_anthropic_usage: input_tokens excludes the cache read and the cache creation."""
    chat = _usage(state, gen, 1, chat=True, streaming=False)
    out: dict[str, Any] = {"input_tokens": chat["prompt_tokens"], "output_tokens": chat["completion_tokens"]}
    details = chat.get("prompt_tokens_details")
    if isinstance(details, dict):
        read, created = details.get("cached_tokens"), details.get("created_cache_tokens")
        if read is not None:
            out["cache_read_input_tokens"] = read
        if created is not None:
            out["cache_creation_input_tokens"] = created
        out["input_tokens"] = max(0, chat["prompt_tokens"] - (read or 0) - (created or 0))
    return out


async def messages(state: ReplicaState, request: web.Request) -> web.StreamResponse:
    _gate_inference(state)
    body = p.validate(MessagesBody, await _body(request))
    if not body.model:
        raise schema_error("Value error, Model is required", "body.model")
    if body.max_tokens <= 0:
        raise schema_error("Value error, max_tokens must be positive", "body.max_tokens")
    lora = _resolve(state, body.model)
    tok = state.engine.tokenizer
    # Rendered as the precise-prefix scorer's sim tokenizer renders an Anthropic body (text blocks).
    turns = [("system", content_text(body.system))] if body.system else []
    turns += [(m.role, content_text(m.content)) for m in body.messages]
    tokens = tok.encode(tok.apply_chat_template(turns), add_bos=False)
    _check_length(state, tokens)
    max_tokens = _max_tokens(state, tokens, body.max_tokens)
    mid = f"chatcmpl-{_random_id()}"
    async with _running(state, [tokens], lora, max_tokens, stop=body.stop_sequences,
                        temperature=body.temperature, top_p=body.top_p) as gen:  # fmt: skip
        if body.stream:
            return await _messages_stream(state, request, gen, mid, body.model, len(tokens))
        await gen.wait()
        req = gen.requests[0]
        stop_reason, stop_sequence = _stop_reason(req.finish_reason, req.stop_reason)
        out: dict[str, Any] = {"id": mid, "type": "message", "role": "assistant",
                               "content": [{"type": "text", "text": req.output_text}], "model": body.model}  # fmt: skip
        if stop_reason is not None:
            out["stop_reason"] = stop_reason
        if stop_sequence is not None:
            out["stop_sequence"] = stop_sequence
        out["usage"] = _anthropic_usage(state, gen)
        return _json(out)


async def _messages_stream(state: ReplicaState, request: web.Request, gen: _Generation, mid: str, model: str,
                           prompt_tokens: int) -> web.StreamResponse:  # fmt: skip
    resp = await _sse(request)
    start: dict[str, Any] = {"id": mid, "type": "message", "role": "assistant", "content": [], "model": model, "stop_reason": None,
             "stop_sequence": None, "usage": {"input_tokens": prompt_tokens, "output_tokens": 0}}  # fmt: skip
    await _send_event(resp, {"type": "message_start", "message": start})
    block_open = False
    finish_reason = stop_reason = None
    async for _, ev in gen.stream():
        if ev.finish_reason is not None:
            finish_reason, stop_reason = ev.finish_reason, ev.stop_reason
        if ev.token_id < 0 or not ev.text:
            continue
        if not block_open:
            block_open = True
            await _send_event(resp, {"type": "content_block_start", "content_block": {"type": "text", "text": ""},
                                     "index": 0})  # fmt: skip
        await _send_event(resp, {"type": "content_block_delta", "delta": {"type": "text_delta", "text": ev.text},
                                 "index": 0})  # fmt: skip
    if block_open:
        await _send_event(resp, {"type": "content_block_stop", "index": 0})
    reason, sequence = _stop_reason(finish_reason or "stop", stop_reason)
    await _send_event(resp, {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": sequence},
                             "usage": _anthropic_usage(state, gen)})  # fmt: skip
    await _send_event(resp, {"type": "message_stop"})
    await resp.write_eof()
    return resp


def add_routes(app: web.Application, state: ReplicaState) -> None:
    """Register the three endpoints on a replica's app."""

    async def embeddings_handler(request: web.Request) -> web.StreamResponse:
        return await embeddings(state, request)

    async def responses_handler(request: web.Request) -> web.StreamResponse:
        return await responses(state, request)

    async def messages_handler(request: web.Request) -> web.StreamResponse:
        return await messages(state, request)

    async def retrieve_handler(request: web.Request) -> web.StreamResponse:
        return await retrieve_response(state, request)

    app.router.add_post("/v1/embeddings", embeddings_handler)
    app.router.add_post("/v1/responses", responses_handler)
    app.router.add_get("/v1/responses/{response_id}", retrieve_handler)
    app.router.add_post("/v1/messages", messages_handler)
