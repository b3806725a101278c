"""Send one trace to an OpenAI-compatible URL and time every request (open or closed loop).

Times are measured on the wall clock and reported in *simulated* seconds: with a simulated
fleet running `speed` times faster (or slower) than real time, the trace's arrival times are
divided by `speed` and every measured duration is multiplied by it, so a run at speed 0.1
reports what the fleet would show at speed 1, with 10 × fewer requests per wall second.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import orjson

from inferpool.bench.workloads import BenchRequest
from inferpool.gateway.headers import SERVED_HEADER


@dataclass
class RequestResult:
    """What one request did, durations in simulated seconds."""

    index: int
    tag: str
    status: int  # HTTP status; 0 when the connection failed
    sent_at: float  # seconds after the run's start
    ttft: float | None = None
    e2e: float = 0.0
    itls: list[float] = field(default_factory=list)
    prompt_tokens: int | None = None
    output_tokens: int = 0
    cached_tokens: int | None = None
    served_by: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None

    @property
    def tpot(self) -> float | None:
        """(e2e − TTFT) / (out − 1): the decode speed the user sees after the first token."""
        if self.ttft is None or self.output_tokens < 2:
            return None
        return (self.e2e - self.ttft) / (self.output_tokens - 1)

    @property
    def ntpot(self) -> float | None:
        """e2e / out: queueing and prefill included, the gateway metric upstream reports."""
        return self.e2e / self.output_tokens if self.output_tokens else None


@dataclass(frozen=True)
class ClientConfig:
    speed: float = 1.0  # simulated seconds per wall second of the fleet under test
    concurrency: int | None = None  # cap on in-flight requests (closed loop when rate is absent)
    timeout_s: float = 600.0
    closed_loop: bool = False  # ignore arrival times; keep `concurrency` requests in flight


async def run_trace(
    target: str,
    trace: list[BenchRequest],
    config: ClientConfig,
    on_done: Callable[[RequestResult], None] | None = None,
) -> tuple[list[RequestResult], float]:
    """Send every request of `trace`; returns the results (trace order) and the run's simulated length."""
    base = target.rstrip("/")
    if base.endswith("/v1"):
        base = base[:-3]
    results: list[RequestResult | None] = [None] * len(trace)
    limit = asyncio.Semaphore(config.concurrency) if config.concurrency else None
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=config.timeout_s * 1.0)
    start = time.perf_counter()

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(req: BenchRequest) -> None:
            if limit is not None:
                await limit.acquire()
            try:
                res = await send(session, base, req, start, config.speed)
            finally:
                if limit is not None:
                    limit.release()
            results[req.index] = res
            if on_done is not None:
                on_done(res)

        if config.closed_loop:
            await asyncio.gather(*(one(r) for r in trace))
        else:
            tasks = []
            for req in trace:
                delay = req.at / config.speed - (time.perf_counter() - start)
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(req)))
            await asyncio.gather(*tasks)
    elapsed = (time.perf_counter() - start) * config.speed
    return [r for r in results if r is not None], elapsed


async def send(
    session: aiohttp.ClientSession, base: str, req: BenchRequest, start: float, speed: float
) -> RequestResult:
    """One request; streaming answers are parsed event by event for TTFT and inter-token gaps."""
    t0 = time.perf_counter()
    res = RequestResult(req.index, req.tag, 0, (t0 - start) * speed)
    stream = bool(req.body.get("stream"))
    chat = "messages" in req.body
    try:
        async with session.post(base + req.path, json=req.body, headers=req.headers) as resp:
            res.status = resp.status
            res.served_by = resp.headers.get(SERVED_HEADER)
            if resp.status != 200:
                res.error = (await resp.text())[:300]
            elif stream:
                last: float | None = None
                buffer = b""
                async for chunk in resp.content.iter_any():
                    buffer += chunk
                    *events, buffer = buffer.split(b"\n\n")
                    now = time.perf_counter()
                    for event in events:
                        data = event.strip().removeprefix(b"data:").strip()
                        if not data or data == b"[DONE]":
                            continue
                        payload = orjson.loads(data)
                        if _has_text(payload, chat):
                            if last is None:
                                res.ttft = (now - t0) * speed
                            else:
                                res.itls.append((now - last) * speed)
                            last = now
                        _read_usage(payload, res)
                if res.output_tokens == 0:
                    res.output_tokens = len(res.itls) + (1 if res.ttft is not None else 0)
            else:
                payload = orjson.loads(await resp.read())
                _read_usage(payload, res)
    except (TimeoutError, aiohttp.ClientError, orjson.JSONDecodeError) as exc:
        res.error = f"{type(exc).__name__}: {exc}"[:300]
    res.e2e = (time.perf_counter() - t0) * speed
    if res.status == 200 and not stream and res.error is None:
        res.ttft = res.e2e
    return res


def _has_text(payload: dict, chat: bool) -> bool:  # type: ignore[type-arg]
    choices = payload.get("choices") or []
    if not choices:
        return False
    if chat:
        return bool((choices[0].get("delta") or {}).get("content"))
    return bool(choices[0].get("text"))


def _read_usage(payload: dict, res: RequestResult) -> None:  # type: ignore[type-arg]
    usage = payload.get("usage")
    if not usage:
        return
    res.prompt_tokens = usage.get("prompt_tokens")
    res.output_tokens = usage.get("completion_tokens") or res.output_tokens
    details = usage.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens")
    res.cached_tokens = cached if cached is not None else res.cached_tokens
