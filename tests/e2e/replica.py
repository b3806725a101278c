"""A minimal vLLM-shaped model server, for what the simulator cannot do: misbehave on purpose.

The Envoy tests run on `inferpool.sim` replicas (sim_node.py). This one stays for the
fallback-list test, which needs a replica that accepts the connection and then resets it
(`reset_requests`), for the Envoy benchmark, which wants a replica with no model time at
all so that only the proxy's own latency is measured, and for the tracing tests, which read
the headers each inference request arrived with (`headers`). Each response carries `x-replica`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Replica:
    name: str
    adapters: list[str] = field(default_factory=list)  # running LoRA adapters shown in /metrics
    waiting: int = 0
    kv_usage: float = 0.0
    reset_requests: bool = False  # drop the connection on inference requests (a refusing replica)
    # answer with the prompt, word by word when streamed (screening tests); a chat request with
    # `tools` is answered with a call whose arguments carry its last message: {"text": ...}
    echo: bool = False
    bodies: list[dict[str, object]] = field(default_factory=list)
    stored: dict[str, str] = field(default_factory=dict)  # GET /v1/responses/{id}: the answer's text
    headers: list[dict[str, str]] = field(default_factory=list)  # of each inference request, lower-case names
    refused: int = 0  # inference requests reset (reset_requests)
    raw_sizes: list[int] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/completions", self._complete)
        app.router.add_post("/v1/chat/completions", self._complete)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/health", self._health)
        app.router.add_get("/v1/responses/{rid}", self._stored)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _stored(self, request: web.Request) -> web.Response:
        """A stored Responses answer fetched by id, as vLLM's store answers it (404 if unknown)."""
        rid = request.match_info["rid"]
        if rid not in self.stored:
            raise web.HTTPNotFound()
        content = [{"type": "output_text", "text": self.stored[rid]}]
        output = [{"type": "message", "role": "assistant", "content": content}]
        return web.json_response({"id": rid, "object": "response", "model": "base", "output": output})

    async def _health(self, _: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _metrics(self, _: web.Request) -> web.Response:
        running = ",".join(self.adapters)
        text = (
            f'vllm:num_requests_waiting{{model_name="base"}} {self.waiting}\n'
            f'vllm:num_requests_running{{model_name="base"}} 0\n'
            f'vllm:kv_cache_usage_perc{{model_name="base"}} {self.kv_usage}\n'
            f'vllm:lora_requests_info{{max_lora="4",running_lora_adapters="{running}",'
            f'waiting_lora_adapters=""}} {time.time()}\n'
        )
        return web.Response(text=text, content_type="text/plain")

    async def _complete(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        if self.reset_requests:
            self.refused += 1
            assert request.transport is not None
            request.transport.abort()
            raise web.HTTPServiceUnavailable()
        body = json.loads(raw)
        self.bodies.append(body)
        self.headers.append({k.lower(): v for k, v in request.headers.items()})
        self.raw_sizes.append(len(raw))
        chat = request.path.endswith("/chat/completions")
        model = str(body.get("model"))
        usage = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
        headers = {"x-replica": self.name}
        text = str(body.get("prompt", "")) if self.echo else "a b c"
        if chat and self.echo and body.get("tools"):
            return await self._tool_call(request, body, headers, usage)
        if not body.get("stream"):
            choice = (
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                if chat
                else {"index": 0, "text": text, "finish_reason": "stop"}
            )
            obj = "chat.completion" if chat else "text_completion"
            payload = {
                "id": "x",
                "object": obj,
                "created": 0,
                "model": model,
                "choices": [choice],
                "usage": usage,
            }
            return web.json_response(payload, headers=headers)
        resp = web.StreamResponse(headers={**headers, "Content-Type": "text/event-stream"})
        await resp.prepare(request)
        words = text.split(" ")
        for token in [words[0], *(" " + w for w in words[1:])]:
            delta = {"index": 0, "delta": {"content": token}} if chat else {"index": 0, "text": token}
            obj = "chat.completion.chunk" if chat else "text_completion"
            chunk = {"id": "x", "object": obj, "created": 0, "model": model, "choices": [delta]}
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
        final = {
            "id": "x",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [],
            "usage": usage,
        }
        await resp.write(f"data: {json.dumps(final)}\n\ndata: [DONE]\n\n".encode())
        await resp.write_eof()
        return resp

    async def _tool_call(
        self, request: web.Request, body: dict[str, object], headers: dict[str, str], usage: dict[str, int]
    ) -> web.StreamResponse:
        """A chat answer that is one tool call, its arguments {"text": the last message's text}
        (streamed as vLLM's tool parsers stream them: the call's id and name, then its arguments
        a word at a time)."""
        messages = body.get("messages")
        last = messages[-1] if isinstance(messages, list) and messages else {}
        arguments = json.dumps({"text": str(last.get("content", "")) if isinstance(last, dict) else ""})
        call = {"id": "call_1", "type": "function", "function": {"name": "note", "arguments": arguments}}
        base = {"id": "x", "created": 0, "model": str(body.get("model"))}
        if not body.get("stream"):
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
            choice = {"index": 0, "message": message, "finish_reason": "tool_calls"}
            payload = {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
            return web.json_response(payload, headers=headers)
        resp = web.StreamResponse(headers={**headers, "Content-Type": "text/event-stream"})
        await resp.prepare(request)
        words = arguments.split(" ")
        first = {
            "index": 0,
            "id": "call_1",
            "type": "function",
            "function": {"name": "note", "arguments": ""},
        }
        deltas = [first] + [
            {"index": 0, "function": {"arguments": w if i == 0 else " " + w}} for i, w in enumerate(words)
        ]
        for delta in deltas:
            choice = {"index": 0, "delta": {"tool_calls": [delta]}}
            chunk = {**base, "object": "chat.completion.chunk", "choices": [choice]}
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
        end = {"index": 0, "delta": {}, "finish_reason": "tool_calls"}
        final = {**base, "object": "chat.completion.chunk", "choices": [end], "usage": usage}
        await resp.write(f"data: {json.dumps(final)}\n\ndata: [DONE]\n\n".encode())
        await resp.write_eof()
        return resp
