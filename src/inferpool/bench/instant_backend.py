"""An instant model server for `inferpool bench overhead`: answers at once, so only the proxy shows.

OpenAI completions (≈1 KB JSON body), or an SSE stream of `max_tokens` events, each stamped
with its send time (`"ts"`: CLOCK_REALTIME ns, written right before the event goes out), so the
load generator measures how long a proxy held each chunk. `"pace_ms"` in the request body
spaces the events (an engine decoding at 1000/pace_ms tokens/s); without it they go out back to
back. `/metrics` is vLLM-shaped (the families `inferpool.scrape` reads, running = in flight),
so pickers and gateways take the server as a ready vLLM replica.

    python -m inferpool.bench.instant_backend --port 8000 --model m
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass

import orjson
import uvloop
from aiohttp import web

MAX_EVENTS = 100_000
MAX_PACE_MS = 10_000.0


def completion_body(model: str, size: int = 1024) -> bytes:
    """A vLLM-shaped non-streamed completion, padded with text to about `size` bytes."""
    answer = {
        "id": "cmpl-instant",
        "object": "text_completion",
        "created": 0,
        "model": model,
        "choices": [
            {"index": 0, "text": "", "logprobs": None, "finish_reason": "length", "stop_reason": None}
        ],
        "usage": {"prompt_tokens": 8, "total_tokens": 24, "completion_tokens": 16},
    }
    bare = len(orjson.dumps(answer))
    answer["choices"][0]["text"] = " tok" * max(0, (size - bare) // 4)  # type: ignore[index]
    return orjson.dumps(answer)


def stream_event_prefix(model: str) -> bytes:
    """Everything of one SSE event before its stamp; the stamp and `}\\n\\n` follow."""
    head = orjson.dumps(
        {"id": "cmpl-instant", "object": "text_completion", "created": 0, "model": model,
         "choices": [{"index": 0, "text": " tok", "logprobs": None, "finish_reason": None}]}
    )  # fmt: skip
    return b"data: " + head[:-1] + b',"ts":'


def metrics_page(model: str, running: int, started: float) -> bytes:
    """The vLLM 0.x series `inferpool.scrape` reads (same names and labels as a real vLLM page;
    the LoRA info gauge's value is a timestamp there too)."""
    labels = f'engine="0",model_name="{model}"'
    return (
        "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
        "# TYPE vllm:num_requests_running gauge\n"
        f"vllm:num_requests_running{{{labels}}} {float(running)}\n"
        "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
        "# TYPE vllm:num_requests_waiting gauge\n"
        f"vllm:num_requests_waiting{{{labels}}} 0.0\n"
        "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.\n"
        "# TYPE vllm:kv_cache_usage_perc gauge\n"
        f"vllm:kv_cache_usage_perc{{{labels}}} 0.0\n"
        "# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig\n"
        "# TYPE vllm:cache_config_info gauge\n"
        'vllm:cache_config_info{block_size="16",engine="0",num_gpu_blocks="16384"} 1.0\n'
        "# HELP vllm:lora_requests_info Running stats on lora requests.\n"
        "# TYPE vllm:lora_requests_info gauge\n"
        'vllm:lora_requests_info{max_lora="4",running_lora_adapters="",waiting_lora_adapters=""} '
        f"{started!r}\n"
    ).encode()


@dataclass
class Backend:
    """One server's state: the in-flight count (for /metrics) and the precomputed answers."""

    model: str
    in_flight: int = 0
    started: float = 0.0

    def __post_init__(self) -> None:
        self._bodies: dict[str, bytes] = {}
        self._prefixes: dict[str, bytes] = {}

    def body(self, model: str) -> bytes:
        found = self._bodies.get(model)
        if found is None:
            found = self._bodies[model] = completion_body(model)
        return found

    def prefix(self, model: str) -> bytes:
        found = self._prefixes.get(model)
        if found is None:
            found = self._prefixes[model] = stream_event_prefix(model)
        return found

    async def completions(self, request: web.Request) -> web.StreamResponse:
        try:
            payload = orjson.loads(await request.read())
            model = str(payload.get("model") or self.model)
            stream = bool(payload.get("stream"))
            events = min(MAX_EVENTS, max(1, int(payload.get("max_tokens") or 16)))
            pace_s = min(MAX_PACE_MS, max(0.0, float(payload.get("pace_ms") or 0.0))) / 1000.0
        except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
            return web.json_response(
                {"error": {"message": "bad request body", "type": "BadRequestError", "code": 400}},
                status=400,
            )
        self.in_flight += 1
        try:
            if not stream:
                return web.Response(body=self.body(model), content_type="application/json")
            return await self._stream(request, model, events, pace_s)
        finally:
            self.in_flight -= 1

    async def _stream(
        self, request: web.Request, model: str, events: int, pace_s: float
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await response.prepare(request)
        prefix = self.prefix(model)
        for i in range(events):
            if i and pace_s:
                await asyncio.sleep(pace_s)
            await response.write(b"%s%d}\n\n" % (prefix, time.time_ns()))
            if not pace_s:
                await asyncio.sleep(0)  # streams interleave, as a batch step would, not one after another
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def metrics(self, _: web.Request) -> web.Response:
        return web.Response(
            body=metrics_page(self.model, self.in_flight, self.started),
            content_type="text/plain",
            charset="utf-8",
        )

    async def models(self, _: web.Request) -> web.Response:
        card = {"id": self.model, "object": "model", "created": 0, "owned_by": "vllm", "root": self.model,
                "parent": None, "max_model_len": 8192}  # fmt: skip
        return web.json_response({"object": "list", "data": [card]})

    async def health(self, _: web.Request) -> web.Response:
        return web.Response()


def build_app(backend: Backend) -> web.Application:
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/v1/completions", backend.completions)
    app.router.add_post("/v1/chat/completions", backend.completions)
    app.router.add_get("/v1/models", backend.models, allow_head=False)
    app.router.add_get("/metrics", backend.metrics, allow_head=False)
    app.router.add_get("/health", backend.health, allow_head=False)
    return app


async def serve(host: str, port: int, model: str) -> None:
    runner = web.AppRunner(
        build_app(Backend(model, started=time.time())), access_log=None, handler_cancellation=True
    )
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_address=True).start()
    print(f"instant backend on http://{host}:{port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", default="instant")
    args = parser.parse_args()
    try:
        uvloop.run(serve(args.host, args.port, args.model))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
